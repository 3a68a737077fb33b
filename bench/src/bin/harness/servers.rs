//! The servers under test, started as child processes of the harness: isobar (`serve` with a
//! generated configuration of N tenants, or `run` with one script), the native responder (one
//! process per tenant, one thread per tenant, or the throughput scenario's "limit"), and the
//! JavaScript runtimes (node, bun, deno: one process per tenant; workerd: one worker per tenant
//! in one process). It writes their scripts and configurations into the run's work directory,
//! places each on the server CPU (and into the harness's network namespace when there is one)
//! before it executes, and waits until it accepts connections.
//!
//! A `Server` owns its children: dropping it kills them and reaps them. Nothing here signals a
//! process the harness did not start.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::load::{Client, Request};

/// The body every hello-world server answers with (examples/hello.js's).
pub const HELLO_BODY: &str = "hello from isobar\n";
/// The bytes each tenant's working-set variant touches per request.
pub const WORKING_SET_BYTES: usize = 64 * 1024;

/// Where a server runs: its CPUs (empty: wherever the caller may run), and the network
/// namespace it joins (None: the harness's own).
#[derive(Clone, Debug, Default)]
pub struct Placement {
    pub cpus: Vec<usize>,
    pub netns: Option<Arc<File>>,
}

impl Placement {
    /// On one CPU, in the harness's network namespace.
    pub fn on(cpu: usize) -> Placement {
        Placement { cpus: vec![cpu], netns: None }
    }

    /// Applies the placement to the calling thread (a client thread, or a child before exec,
    /// where it must not allocate: it only reads `cpus`).
    pub fn enter(&self) -> std::io::Result<()> {
        if let Some(netns) = &self.netns {
            nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
        }
        if !self.cpus.is_empty() {
            let mut set = nix::sched::CpuSet::new();
            for cpu in &self.cpus {
                set.set(*cpu)?;
            }
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)?;
        }
        Ok(())
    }
}

/// Listening ports for the servers: contiguous ranges below the kernel's ephemeral range (so a
/// client's own ports never collide with a server's), each checked free when handed out, going
/// round when the range is used up (the servers of earlier groups are gone by then).
#[derive(Debug)]
pub struct Ports {
    next: u16,
    low: u16,
    high: u16,
}

impl Ports {
    pub fn new() -> Ports {
        let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<u16>().ok()))
            .unwrap_or(32768);
        let high = ephemeral_low.max(20_000);
        Ports { next: 10_000, low: 10_000, high }
    }

    /// `count` consecutive free ports; the first of them.
    pub fn take(&mut self, count: usize) -> Result<u16> {
        let count =
            u16::try_from(count).ok().filter(|c| *c > 0 && *c < self.high - self.low).context("too many ports")?;
        let mut tries = 0u32;
        'search: loop {
            tries += 1;
            if tries > 64 {
                bail!("no {count} consecutive free ports between {} and {}", self.low, self.high);
            }
            if self.next.saturating_add(count) > self.high {
                self.next = self.low;
            }
            let first = self.next;
            for port in first..first + count {
                if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
                    self.next = port + 1;
                    continue 'search;
                }
            }
            self.next = first + count;
            return Ok(first);
        }
    }
}

/// A server under test: its processes, where to reach it, and which Host each tenant has.
pub struct Server {
    pub name: String,
    children: Vec<Child>,
    pub endpoints: Vec<SocketAddr>,
    /// Tenant i: the endpoint it listens on and the Host that routes to it.
    pub tenants: Vec<(usize, String)>,
    /// isobar's admin listener, when it has one.
    pub admin: Option<SocketAddr>,
    pub placement: Placement,
    pub log: PathBuf,
}

impl Server {
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// The rotation over the first `count` tenants, each asked for `path`; with the endpoints
    /// those requests use (renumbered from zero).
    pub fn rotation(&self, tenants: std::ops::Range<usize>, path: &str) -> (Vec<SocketAddr>, Vec<Request>) {
        let mut endpoints: Vec<SocketAddr> = Vec::new();
        let mut index_of = std::collections::HashMap::new();
        let mut requests = Vec::with_capacity(tenants.len());
        for (endpoint, host) in &self.tenants[tenants] {
            let index = *index_of.entry(*endpoint).or_insert_with(|| {
                endpoints.push(self.endpoints[*endpoint]);
                endpoints.len() - 1
            });
            requests.push(Request::get(index, host, path));
        }
        (endpoints, requests)
    }

    /// An error if a child has exited, with the end of the server's log.
    pub fn check_alive(&mut self) -> Result<()> {
        for child in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                bail!("{} exited ({status}): {}", self.name, log_tail(&self.log));
            }
        }
        Ok(())
    }

    /// Waits until every endpoint (and the admin listener) accepts a connection; called on a
    /// thread placed in the server's network namespace.
    pub fn wait_listening(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut addrs = self.endpoints.clone();
        addrs.extend(self.admin);
        for addr in addrs {
            loop {
                if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    break;
                }
                self.check_alive()?;
                if Instant::now() > deadline {
                    bail!(
                        "{} did not listen on {addr} within {} s: {}",
                        self.name,
                        timeout.as_secs(),
                        log_tail(&self.log)
                    );
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    }

    /// One request to each tenant in turn (creating isobar's isolates), checking that each
    /// answers 200 with its own body (`tenant I\n`, or `body` for a hello server).
    pub fn warm_up(&mut self, path: &str, body: Option<&str>) -> Result<()> {
        let mut clients: Vec<Option<Client>> = (0..self.endpoints.len()).map(|_| None).collect();
        for (i, (endpoint, host)) in self.tenants.iter().enumerate() {
            let client = match &mut clients[*endpoint] {
                Some(client) => client,
                slot => slot.insert(
                    Client::connect(self.endpoints[*endpoint], Duration::from_secs(5))
                        .with_context(|| format!("{}: connect to {}", self.name, self.endpoints[*endpoint]))?,
                ),
            };
            let (status, got) = client.get(host, path).with_context(|| format!("{}: tenant {i}", self.name))?;
            let expected = body.map(str::to_string).unwrap_or_else(|| format!("tenant {i}\n"));
            if status != 200 || got != expected.as_bytes() {
                bail!(
                    "{}: tenant {i} answered {status} {:?}, expected 200 {expected:?}",
                    self.name,
                    String::from_utf8_lossy(&got)
                );
            }
        }
        Ok(())
    }

    /// RSS and USS summed over the server's processes.
    pub fn memory(&self) -> crate::procfs::Memory {
        self.pids().into_iter().map(crate::procfs::memory).fold(Default::default(), |a, b| a + b)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(6).collect();
    let tail: Vec<&str> = lines.into_iter().rev().collect();
    if tail.is_empty() { format!("(nothing in {})", log.display()) } else { tail.join(" | ") }
}

/// Starts one child placed on `placement`, its output appended to `log`.
pub fn spawn(
    program: &Path,
    args: &[OsString],
    env: &[(&str, &str)],
    placement: &Placement,
    log: &Path,
) -> Result<Child> {
    let out = File::options().create(true).append(true).open(log).with_context(|| log.display().to_string())?;
    let err = out.try_clone().context("dup log")?;
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
    for (key, value) in env {
        command.env(key, value);
    }
    let placement = placement.clone();
    // SAFETY: the closure runs in the forked child before exec; it makes only the prctl, setns
    // and sched_setaffinity system calls (async-signal-safe) and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            // If the harness dies (Ctrl-C), its servers die with it instead of staying pinned
            // and listening. The harness spawns from its main thread, which lives to the end.
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            placement.enter()
        });
    }
    command.spawn().with_context(|| format!("start {}", program.display()))
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// What a tenant's JavaScript does per request: answer `greeting`, and on /ws first write its
/// own 64 KiB working set with a builtin (`fill`, the same memset the native responder does),
/// allocated on the first such request.
fn js_prelude(id: usize, greeting: &str) -> String {
    format!(
        "const id = {id};\nconst greeting = {greeting:?};\nlet workingSet = null;\nlet round = 0;\n\
         function touch() {{\n  if (workingSet === null) workingSet = new Uint8Array({WORKING_SET_BYTES});\n  \
         workingSet.fill(++round & 255);\n}}\n"
    )
}

/// A Workers module (isobar, workerd) for tenant `id`.
pub fn worker_module(id: usize, greeting: &str) -> String {
    format!(
        "{}export default {{\n  async fetch(request) {{\n    if (request.url.endsWith(\"/ws\")) touch();\n    \
         return new Response(greeting);\n  }},\n}};\n",
        js_prelude(id, greeting)
    )
}

/// The proxy scenario's Worker (isobar, workerd): every request goes to `origin` with the same
/// path, method and headers, and the origin's response is returned as it is (its body is
/// never read by the script).
pub fn proxy_module(origin: SocketAddr) -> String {
    format!(
        "// The proxy scenario's Worker (bench/src/bin/harness/proxy.rs).\nconst ORIGIN = \"http://{origin}\";\n\
         export default {{\n  async fetch(request) {{\n    const url = new URL(request.url);\n    \
         return fetch(ORIGIN + url.pathname + url.search, {{ method: request.method, headers: request.headers }});\n  \
         }},\n}};\n"
    )
}

/// The JavaScript runtimes run per tenant (and for hello world).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Node,
    Bun,
    Deno,
}

impl Runtime {
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Node => "node",
            Runtime::Bun => "bun",
            Runtime::Deno => "deno",
        }
    }

    /// A server script for tenant `id` on `addr`.
    pub fn script(self, id: usize, greeting: &str, addr: SocketAddr) -> String {
        let prelude = js_prelude(id, greeting);
        let (ip, port) = (addr.ip(), addr.port());
        match self {
            Runtime::Node => format!(
                "{prelude}const http = require(\"node:http\");\n\
                 const server = http.createServer((req, res) => {{\n  if (req.url === \"/ws\") touch();\n  \
                 res.writeHead(200, {{ \"content-type\": \"text/plain\", \"content-length\": Buffer.byteLength(greeting) }});\n  \
                 res.end(greeting);\n}});\nserver.keepAliveTimeout = 0;\nserver.listen({port}, \"{ip}\");\n"
            ),
            Runtime::Bun => format!(
                "{prelude}Bun.serve({{ port: {port}, hostname: \"{ip}\", idleTimeout: 0, fetch(request) {{\n  \
                 if (request.url.endsWith(\"/ws\")) touch();\n  return new Response(greeting);\n}} }});\n"
            ),
            Runtime::Deno => format!(
                "{prelude}Deno.serve({{ port: {port}, hostname: \"{ip}\", onListen() {{}} }}, (request) => {{\n  \
                 if (request.url.endsWith(\"/ws\")) touch();\n  return new Response(greeting);\n}});\n"
            ),
        }
    }

    /// The proxy scenario's server on `addr` for this runtime (`proxy_module`'s handler, with
    /// the runtime's own `fetch()`); None for node, which the scenario does not run.
    pub fn proxy_script(self, addr: SocketAddr, origin: SocketAddr) -> Option<String> {
        let (ip, port) = (addr.ip(), addr.port());
        let handler = format!(
            "const ORIGIN = \"http://{origin}\";\nfunction proxy(request) {{\n  const url = new URL(request.url);\n  \
             return fetch(ORIGIN + url.pathname + url.search, {{ method: request.method, headers: request.headers }});\n}}\n"
        );
        match self {
            Runtime::Node => None,
            Runtime::Bun => Some(format!(
                "{handler}Bun.serve({{ port: {port}, hostname: \"{ip}\", idleTimeout: 0, fetch: proxy }});\n"
            )),
            Runtime::Deno => {
                Some(format!("{handler}Deno.serve({{ port: {port}, hostname: \"{ip}\", onListen() {{}} }}, proxy);\n"))
            }
        }
    }

    /// The tls scenario's hello-world HTTPS server on `addr` for this runtime, with the
    /// certificate chain and key (PEM) in the script; None for node.
    pub fn tls_hello_script(self, addr: SocketAddr, cert_pem: &str, key_pem: &str) -> Option<String> {
        let (ip, port) = (addr.ip(), addr.port());
        let pems = format!("const cert = {cert_pem:?};\nconst key = {key_pem:?};\nconst greeting = {HELLO_BODY:?};\n");
        match self {
            Runtime::Node => None,
            Runtime::Bun => Some(format!(
                "{pems}Bun.serve({{ port: {port}, hostname: \"{ip}\", idleTimeout: 0, tls: {{ cert, key }}, \
                 fetch() {{\n  return new Response(greeting);\n}} }});\n"
            )),
            Runtime::Deno => Some(format!(
                "{pems}Deno.serve({{ port: {port}, hostname: \"{ip}\", cert, key, onListen() {{}} }}, () => \
                 new Response(greeting));\n"
            )),
        }
    }

    /// The command line that runs `script` with the runtime at `program`.
    pub fn args(self, script: &Path) -> Vec<OsString> {
        let script = script.as_os_str().to_owned();
        match self {
            Runtime::Node => vec![script],
            Runtime::Bun => vec!["run".into(), script],
            Runtime::Deno => vec!["run".into(), "--allow-net".into(), script],
        }
    }
}

/// Environment for the runtimes: no update checks, no telemetry, caches in the harness's work
/// directory.
pub fn runtime_env(cache: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("DENO_NO_UPDATE_CHECK", "1".into()),
        ("DENO_DIR", cache.join("deno-dir").display().to_string()),
        ("DO_NOT_TRACK", "1".into()),
        ("NO_COLOR", "1".into()),
    ]
}

/// Everything needed to start servers: where files go, the ports, the CPU.
pub struct Launcher {
    pub work: PathBuf,
    pub ports: Ports,
    pub placement: Placement,
    /// The address servers listen on (127.0.0.1, in the namespace or not).
    pub ip: IpAddr,
}

impl Launcher {
    fn dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.work.join(name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
        Ok(dir)
    }

    /// `isobar serve` with `count` tenants `t0..`, each its own script (`script(i)`), routed by
    /// Host `tI.bench`, on `spec.cores` cores (one unless asked).
    pub fn isobar_tenants(&mut self, spec: &IsobarTenants) -> Result<Server> {
        let dir = self.dir(&spec.name)?;
        let port = self.ports.take(1)?;
        let listen = SocketAddr::new(self.ip, port);
        let admin = if spec.admin { Some(SocketAddr::new(self.ip, self.ports.take(1)?)) } else { None };
        let per_core_max = spec.per_core_max.unwrap_or(spec.count + spec.pool as usize + 16);
        let mut config = format!(
            "[server]\nlisten = \"{listen}\"\ncores = {}\n{}[isolates]\nper_core_max = {per_core_max}\n\
             per_core_heap_mb = 1048576\npool = {}\n[defaults.limits]\ncpu_ms = {}\n{}",
            spec.cores,
            admin.map(|a| format!("admin = \"{a}\"\n")).unwrap_or_default(),
            spec.pool,
            spec.cpu_ms,
            spec.config_toml,
        );
        let mut tenants = Vec::with_capacity(spec.count);
        for i in 0..spec.count {
            std::fs::write(dir.join(format!("t{i}.js")), (spec.script)(i)).context("write a tenant's script")?;
            let _ = write!(
                config,
                "[[tenant]]\nname = \"t{i}\"\nscript = \"t{i}.js\"\nroutes = [\"t{i}.bench\"]\n{}",
                spec.tenant_toml
            );
            tenants.push((0, format!("t{i}.bench")));
        }
        let config_path = dir.join("isobar.toml");
        std::fs::write(&config_path, config).context("write isobar.toml")?;
        let log = dir.join("server.log");
        let mut args = os(&["--log", "warn", "serve", "--config"]);
        args.push(config_path.into_os_string());
        if let Some(snapshot) = &spec.snapshot {
            args.push("--snapshot".into());
            args.push(snapshot.clone().into_os_string());
        }
        let child = spawn(&spec.bin, &args, &[], &self.placement, &log)?;
        Ok(Server {
            name: spec.name.clone(),
            children: vec![child],
            endpoints: vec![listen],
            tenants,
            admin,
            placement: self.placement.clone(),
            log,
        })
    }

    /// `isobar run SCRIPT` (hello world) with `extra` arguments; `listen` overrides the
    /// address (the userspace stack listens on its own).
    pub fn isobar_run(
        &mut self,
        name: &str,
        bin: &Path,
        script: &Path,
        extra: &[&str],
        reach: Option<IpAddr>,
    ) -> Result<Server> {
        let dir = self.dir(name)?;
        let port = self.ports.take(1)?;
        let log = dir.join("server.log");
        let mut args = os(&["--log", "warn", "run"]);
        args.push(script.as_os_str().to_owned());
        args.push("--cores".into());
        args.push("1".into());
        args.push("--listen".into());
        let listen_ip = if reach.is_some() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { self.ip };
        args.push(SocketAddr::new(listen_ip, port).to_string().into());
        args.extend(extra.iter().map(OsString::from));
        let child = spawn(bin, &args, &[], &self.placement, &log)?;
        let endpoint = SocketAddr::new(reach.unwrap_or(self.ip), port);
        Ok(Server {
            name: name.to_string(),
            children: vec![child],
            endpoints: vec![endpoint],
            tenants: vec![(0, "hello.bench".into())],
            admin: None,
            placement: self.placement.clone(),
            log,
        })
    }

    /// One responder process per tenant (`count` processes, ports in a row).
    pub fn responder_processes(&mut self, name: &str, responder: &Path, count: usize) -> Result<Server> {
        let dir = self.dir(name)?;
        let first = self.ports.take(count)?;
        let log = dir.join("server.log");
        let mut server = self.empty_server(name, log.clone());
        for i in 0..count {
            let port = first + i as u16;
            let args = os(&["--port", &port.to_string(), "--id", &i.to_string(), "--addr", &self.ip.to_string()]);
            server.children.push(spawn(responder, &args, &[], &self.placement, &log)?);
            server.endpoints.push(SocketAddr::new(self.ip, port));
            server.tenants.push((i, format!("t{i}.bench")));
        }
        Ok(server)
    }

    /// One responder process with one thread per tenant, each on its own port.
    pub fn responder_threads(&mut self, name: &str, responder: &Path, count: usize) -> Result<Server> {
        let dir = self.dir(name)?;
        let first = self.ports.take(count)?;
        let log = dir.join("server.log");
        let mut server = self.empty_server(name, log.clone());
        let args = os(&["--port", &first.to_string(), "--threads", &count.to_string(), "--addr", &self.ip.to_string()]);
        server.children.push(spawn(responder, &args, &[], &self.placement, &log)?);
        for i in 0..count {
            server.endpoints.push(SocketAddr::new(self.ip, first + i as u16));
            server.tenants.push((i, format!("t{i}.bench")));
        }
        Ok(server)
    }

    /// The responder answering hello world: the throughput scenario's "limit".
    pub fn responder_hello(&mut self, name: &str, responder: &Path) -> Result<Server> {
        let dir = self.dir(name)?;
        let port = self.ports.take(1)?;
        let log = dir.join("server.log");
        let mut server = self.empty_server(name, log.clone());
        let args = os(&["--port", &port.to_string(), "--addr", &self.ip.to_string(), "--body", HELLO_BODY]);
        server.children.push(spawn(responder, &args, &[], &self.placement, &log)?);
        server.endpoints.push(SocketAddr::new(self.ip, port));
        server.tenants.push((0, "hello.bench".into()));
        Ok(server)
    }

    /// One runtime process per tenant, each its own script; with `hello`, one process
    /// answering hello world.
    pub fn runtime_processes(
        &mut self,
        name: &str,
        runtime: Runtime,
        program: &Path,
        count: usize,
        hello: bool,
    ) -> Result<Server> {
        let dir = self.dir(name)?;
        let first = self.ports.take(count)?;
        let log = dir.join("server.log");
        let env_owned = runtime_env(&self.work);
        let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut server = self.empty_server(name, log.clone());
        for i in 0..count {
            let addr = SocketAddr::new(self.ip, first + i as u16);
            let greeting = if hello { HELLO_BODY.to_string() } else { format!("tenant {i}\n") };
            let script = dir.join(format!("t{i}.js"));
            std::fs::write(&script, runtime.script(i, &greeting, addr)).context("write a script")?;
            server.children.push(spawn(program, &runtime.args(&script), &env, &self.placement, &log)?);
            server.endpoints.push(addr);
            server.tenants.push((i, format!("t{i}.bench")));
        }
        Ok(server)
    }

    /// workerd with one worker per tenant, each its own script and socket; with `hello`, one
    /// worker running examples/hello.js's response.
    pub fn workerd(&mut self, name: &str, program: &Path, count: usize, hello: bool) -> Result<Server> {
        let dir = self.dir(name)?;
        let first = self.ports.take(count)?;
        let log = dir.join("server.log");
        let mut services = String::new();
        let mut sockets = String::new();
        let mut workers = String::new();
        let mut server = self.empty_server(name, log.clone());
        for i in 0..count {
            let addr = SocketAddr::new(self.ip, first + i as u16);
            let greeting = if hello { HELLO_BODY.to_string() } else { format!("tenant {i}\n") };
            std::fs::write(dir.join(format!("t{i}.js")), worker_module(i, &greeting)).context("write a worker")?;
            let _ = writeln!(services, "    (name = \"t{i}\", worker = .t{i}),");
            let _ = writeln!(sockets, "    (name = \"s{i}\", address = \"{addr}\", http = (), service = \"t{i}\"),");
            let _ = write!(
                workers,
                "const t{i} :Workerd.Worker = (\n  modules = [ (name = \"t{i}.js\", esModule = embed \"t{i}.js\") ],\n  \
                 compatibilityDate = \"2024-09-23\",\n);\n"
            );
            server.endpoints.push(addr);
            server.tenants.push((i, format!("t{i}.bench")));
        }
        let config = format!(
            "using Workerd = import \"/workerd/workerd.capnp\";\nconst config :Workerd.Config = (\n  services = [\n{services}  ],\n  \
             sockets = [\n{sockets}  ],\n);\n{workers}"
        );
        let config_path = dir.join("workerd.capnp");
        std::fs::write(&config_path, config).context("write workerd.capnp")?;
        let args = vec![OsString::from("serve"), config_path.into_os_string()];
        server.children.push(spawn(program, &args, &[], &self.placement, &log)?);
        Ok(server)
    }

    /// workerd running one Worker (`script`, an ES module) whose `env.KV` is workerd's KV
    /// binding, pointed at the HTTP service on `kv_service` (an `external` service: workerd
    /// speaks its KV wire protocol to it, as it would to Cloudflare's).
    pub fn workerd_kv(&mut self, name: &str, program: &Path, script: &str, kv_service: SocketAddr) -> Result<Server> {
        let dir = self.dir(name)?;
        let addr = SocketAddr::new(self.ip, self.ports.take(1)?);
        let log = dir.join("server.log");
        std::fs::write(dir.join("kv.js"), script).context("write the worker")?;
        let config = format!(
            "using Workerd = import \"/workerd/workerd.capnp\";\nconst config :Workerd.Config = (\n  services = [\n    \
             (name = \"main\", worker = .kvWorker),\n    (name = \"kv\", external = (address = \"{kv_service}\", http = ())),\n  ],\n  \
             sockets = [ (name = \"http\", address = \"{addr}\", http = (), service = \"main\") ],\n);\n\
             const kvWorker :Workerd.Worker = (\n  modules = [ (name = \"kv.js\", esModule = embed \"kv.js\") ],\n  \
             compatibilityDate = \"2024-09-23\",\n  bindings = [ (name = \"KV\", kvNamespace = \"kv\") ],\n);\n"
        );
        let config_path = dir.join("workerd.capnp");
        std::fs::write(&config_path, config).context("write workerd.capnp")?;
        let args = vec![OsString::from("serve"), config_path.into_os_string()];
        let mut server = self.empty_server(name, log.clone());
        server.children.push(spawn(program, &args, &[], &self.placement, &log)?);
        server.endpoints.push(addr);
        server.tenants.push((0, "kv.bench".into()));
        Ok(server)
    }

    /// The harness's own in-memory KV service (`harness kv-service`, src/bin/harness/kv_service.rs)
    /// as a process of its own, so that its CPU is read apart from workerd's.
    pub fn kv_service(&mut self, name: &str) -> Result<Server> {
        let dir = self.dir(name)?;
        let addr = SocketAddr::new(self.ip, self.ports.take(1)?);
        let log = dir.join("server.log");
        let exe = std::env::current_exe().context("the harness's own path")?;
        let args = os(&["kv-service", "--listen", &addr.to_string()]);
        let mut server = self.empty_server(name, log.clone());
        server.children.push(spawn(&exe, &args, &[], &self.placement, &log)?);
        server.endpoints.push(addr);
        Ok(server)
    }

    /// A Redis-protocol server (redis-server or valkey-server) on a free port, its files in
    /// the work directory. `durable`: an append-only file fsynced before each reply
    /// (`appendfsync always`, what isobar's embedded store guarantees); otherwise memory only.
    pub fn redis(&mut self, name: &str, program: &Path, durable: bool) -> Result<Server> {
        let dir = self.dir(name)?;
        let addr = SocketAddr::new(self.ip, self.ports.take(1)?);
        let log = dir.join("server.log");
        let mut args = os(&["--port", &addr.port().to_string(), "--bind", &addr.ip().to_string(), "--save", ""]);
        args.extend(os(if durable {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        }));
        args.extend(os(&["--daemonize", "no", "--databases", "1", "--loglevel", "warning", "--dir"]));
        args.push(dir.clone().into_os_string());
        let mut server = self.empty_server(name, log.clone());
        server.children.push(spawn(program, &args, &[], &self.placement, &log)?);
        server.endpoints.push(addr);
        Ok(server)
    }

    /// The responder answering `body` to every request, placed on `placement` (the proxy
    /// scenario's origin runs on the client's CPU, its "direct" reference on the server's).
    pub fn responder_on(&mut self, name: &str, responder: &Path, body: &str, placement: &Placement) -> Result<Server> {
        let dir = self.dir(name)?;
        let port = self.ports.take(1)?;
        let log = dir.join("server.log");
        let mut server = self.empty_server(name, log.clone());
        server.placement = placement.clone();
        let args = os(&["--port", &port.to_string(), "--addr", &self.ip.to_string(), "--body", body]);
        server.children.push(spawn(responder, &args, &[], placement, &log)?);
        server.endpoints.push(SocketAddr::new(self.ip, port));
        server.tenants.push((0, "origin.bench".into()));
        Ok(server)
    }

    /// One runtime process running the script `script(addr)` returns for its address.
    pub fn runtime_script(
        &mut self,
        name: &str,
        runtime: Runtime,
        program: &Path,
        script: impl FnOnce(SocketAddr) -> Option<String>,
    ) -> Result<Server> {
        let dir = self.dir(name)?;
        let addr = SocketAddr::new(self.ip, self.ports.take(1)?);
        let log = dir.join("server.log");
        let env_owned = runtime_env(&self.work);
        let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let text = script(addr).with_context(|| format!("no such script for {}", runtime.name()))?;
        let path = dir.join("server.js");
        std::fs::write(&path, text).context("write a script")?;
        let mut server = self.empty_server(name, log.clone());
        server.children.push(spawn(program, &runtime.args(&path), &env, &self.placement, &log)?);
        server.endpoints.push(addr);
        server.tenants.push((0, "t0.bench".into()));
        Ok(server)
    }

    /// workerd running `proxy_module(origin)`, its global outbound a network service that may
    /// reach loopback (workerd's default "internet" service reaches public addresses only).
    pub fn workerd_proxy(&mut self, name: &str, program: &Path, origin: SocketAddr) -> Result<Server> {
        let dir = self.dir(name)?;
        let addr = SocketAddr::new(self.ip, self.ports.take(1)?);
        let log = dir.join("server.log");
        std::fs::write(dir.join("proxy.js"), proxy_module(origin)).context("write the worker")?;
        let config = format!(
            "using Workerd = import \"/workerd/workerd.capnp\";\nconst config :Workerd.Config = (\n  services = [\n    \
             (name = \"main\", worker = .proxyWorker),\n    (name = \"loopback\", network = (allow = [\"local\"])),\n  ],\n  \
             sockets = [ (name = \"http\", address = \"{addr}\", http = (), service = \"main\") ],\n);\n\
             const proxyWorker :Workerd.Worker = (\n  modules = [ (name = \"proxy.js\", esModule = embed \"proxy.js\") ],\n  \
             compatibilityDate = \"2024-09-23\",\n  globalOutbound = \"loopback\",\n);\n"
        );
        self.workerd_config(name, program, dir, &config, addr, log)
    }

    /// workerd serving hello world (`worker_module`) over HTTPS with the PEM files `cert` and
    /// `key` (embedded into its configuration).
    pub fn workerd_tls(&mut self, name: &str, program: &Path, cert: &Path, key: &Path) -> Result<Server> {
        let dir = self.dir(name)?;
        let addr = SocketAddr::new(self.ip, self.ports.take(1)?);
        let log = dir.join("server.log");
        std::fs::write(dir.join("hello.js"), worker_module(0, HELLO_BODY)).context("write the worker")?;
        std::fs::copy(cert, dir.join("cert.pem")).context("copy the certificate")?;
        std::fs::copy(key, dir.join("key.pem")).context("copy the key")?;
        let config = format!(
            "using Workerd = import \"/workerd/workerd.capnp\";\nconst config :Workerd.Config = (\n  services = [\n    \
             (name = \"main\", worker = .helloWorker),\n  ],\n  \
             sockets = [ (name = \"https\", address = \"{addr}\", service = \"main\",\n    \
             https = (options = (), tlsOptions = (keypair = (privateKey = embed \"key.pem\", certificateChain = embed \"cert.pem\")))) ],\n);\n\
             const helloWorker :Workerd.Worker = (\n  modules = [ (name = \"hello.js\", esModule = embed \"hello.js\") ],\n  \
             compatibilityDate = \"2024-09-23\",\n);\n"
        );
        self.workerd_config(name, program, dir, &config, addr, log)
    }

    fn workerd_config(
        &mut self,
        name: &str,
        program: &Path,
        dir: PathBuf,
        config: &str,
        addr: SocketAddr,
        log: PathBuf,
    ) -> Result<Server> {
        let config_path = dir.join("workerd.capnp");
        std::fs::write(&config_path, config).context("write workerd.capnp")?;
        let args = vec![OsString::from("serve"), config_path.into_os_string()];
        let mut server = self.empty_server(name, log.clone());
        server.children.push(spawn(program, &args, &[], &self.placement, &log)?);
        server.endpoints.push(addr);
        server.tenants.push((0, "t0.bench".into()));
        Ok(server)
    }

    fn empty_server(&self, name: &str, log: PathBuf) -> Server {
        Server {
            name: name.to_string(),
            children: Vec::new(),
            endpoints: Vec::new(),
            tenants: Vec::new(),
            admin: None,
            placement: self.placement.clone(),
            log,
        }
    }
}

/// An `isobar serve` with generated tenants.
pub struct IsobarTenants {
    pub name: String,
    pub bin: PathBuf,
    pub count: usize,
    pub script: Box<dyn Fn(usize) -> String>,
    pub pool: u32,
    /// None: room for every tenant.
    pub per_core_max: Option<usize>,
    pub cpu_ms: u32,
    pub admin: bool,
    pub snapshot: Option<PathBuf>,
    /// `[server] cores`: 1 unless the scenario needs more (its placement must allow them).
    pub cores: usize,
    /// Top-level tables (`[kv]`, `[egress]`), written before the tenants.
    pub config_toml: String,
    /// Keys added to every `[[tenant]]` (`kv = [...]`, `crons = [...]`).
    pub tenant_toml: String,
}

impl IsobarTenants {
    /// `count` tenants answering `tenant I\n` (and touching their working set on /ws).
    pub fn new(name: &str, bin: &Path, count: usize) -> IsobarTenants {
        IsobarTenants {
            name: name.to_string(),
            bin: bin.to_path_buf(),
            count,
            script: Box::new(|i| worker_module(i, &format!("tenant {i}\n"))),
            pool: 4,
            per_core_max: None,
            cpu_ms: 1000,
            admin: false,
            snapshot: None,
            cores: 1,
            config_toml: String::new(),
            tenant_toml: String::new(),
        }
    }
}

//! The end-to-end test harness: builds the real `isobar` binary, starts it on a free loopback
//! port, and talks to it with a small HTTP/1.1 client over real sockets.
//!
//! Only processes the harness started are ever signalled or killed (`Isobar` owns its child).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a process may take to print its "listening" lines (the first test also waits for
/// the cargo build of the binary inside `isobar_bin`, before this clock starts).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

/// The `isobar` binary of the same profile as this test, built once per test process (cargo
/// is re-entrant here: `cargo test` releases the build lock before running tests).
pub fn isobar_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("ISOBAR_BIN") {
            return PathBuf::from(bin);
        }
        // target/<profile>/deps/e2e-<hash> -> target/<profile>
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe.parent().and_then(Path::parent).expect("test binary lives in target/<profile>/deps");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.current_dir(workspace()).args(["build", "--quiet", "-p", "isobar", "--bin", "isobar"]);
        if release {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build for the isobar binary");
        assert!(status.success(), "cargo build of the isobar binary failed");
        let bin = profile_dir.join("isobar");
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
}

/// A running isobar process, killed when dropped.
pub struct Isobar {
    child: Child,
    pub addr: SocketAddr,
    /// The admin listener, when the process printed `isobar admin on http://ADDR` before it was
    /// ready (the harness waits for that line whenever the command line has `--admin`).
    pub admin: Option<SocketAddr>,
    /// The HTTPS listener, when the process printed `isobar listening on https://ADDR` (it does
    /// so before its HTTP line).
    pub tls: Option<SocketAddr>,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Isobar {
    /// Starts `isobar` with `args` (e.g. `["run", "examples/hello.js"]`) on a free loopback
    /// port and waits for its "listening" line.
    pub fn start(args: &[&str]) -> Isobar {
        Isobar::try_start(args).unwrap_or_else(|e| panic!("isobar did not start: {e}"))
    }

    /// Starts `isobar serve --config CONFIG` with `extra` arguments (e.g. `["--admin",
    /// "127.0.0.1:0", "--cores", "1"]`) on a free loopback port.
    pub fn serve(config: &Path, extra: &[&str]) -> Isobar {
        let config = config.to_str().expect("the config path is UTF-8");
        let mut args = vec!["serve", "--config", config];
        args.extend_from_slice(extra);
        Isobar::start(&args)
    }

    /// Like `start`, but returns the stderr text if the process exits before listening.
    ///
    /// For `run` and `serve`, `--listen 127.0.0.1:0` is added unless `args` has `--listen`. When
    /// `args` has `--admin`, this also waits for the admin line and fills in `admin`.
    pub fn try_start(args: &[&str]) -> Result<Isobar, String> {
        Isobar::try_start_with_env(args, &[])
    }

    /// Like `try_start`, with extra environment variables for the process.
    pub fn try_start_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<Isobar, String> {
        let mut command = Command::new(isobar_bin());
        command.current_dir(workspace()).args(args).envs(env.iter().copied());
        let serving = matches!(args.first(), Some(&"run" | &"serve"));
        if serving && !args.iter().any(|a| a.starts_with("--listen")) {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let wants_admin = args.iter().any(|a| a.starts_with("--admin"));
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stderr = Arc::new(Mutex::new(String::new()));
        collect(child.stderr.take().expect("piped stderr"), stderr.clone());
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let rx = collect_lines(child.stdout.take().expect("piped stdout"), stdout.clone());
        let deadline = Instant::now() + START_TIMEOUT;
        let mut addr = None;
        let mut admin = None;
        let mut tls = None;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        addr = Some(parse_addr(rest, &line)?);
                    } else if let Some(rest) = line.split("listening on https://").nth(1) {
                        tls = Some(parse_addr(rest, &line)?);
                    } else if let Some(rest) = line.split("admin on http://").nth(1) {
                        admin = Some(parse_addr(rest, &line)?);
                    }
                    if let Some(addr) = addr
                        && (admin.is_some() || !wants_admin)
                    {
                        return Ok(Isobar { child, addr, admin, tls, stderr, stdout });
                    }
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        std::thread::sleep(Duration::from_millis(100));
                        let err = stderr.lock().unwrap().clone();
                        return Err(format!("exited with {status} before listening; stderr:\n{err}"));
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        let what = if addr.is_some() { "admin" } else { "listening" };
                        let err = stderr.lock().unwrap().clone();
                        return Err(format!("no {what} line within {START_TIMEOUT:?}; stderr:\n{err}"));
                    }
                }
            }
        }
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Every line the process wrote to stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Sends SIGTERM to this (our own) process.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends SIGHUP (re-read the configuration) to this (our own) process.
    pub fn hangup(&self) {
        self.signal(libc::SIGHUP);
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) with a pid we spawned and still own (the Child is not yet reaped, as
        // `&self` keeps it from `wait_exit` and `Drop`), so the pid cannot name another process.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({signal}) failed");
    }

    /// Waits up to `timeout` for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The process id (of our own child), e.g. to read `/proc/PID/status`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A line of `/proc/PID/status` (e.g. `VmRSS`, `Uid`), without its name.
    pub fn status_field(&self, name: &str) -> Option<String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let prefix = format!("{name}:");
        status.lines().find_map(|line| line.strip_prefix(&prefix)).map(|value| value.trim().to_string())
    }

    /// The process's resident memory, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let value = self.status_field("VmRSS").expect("VmRSS in /proc/PID/status");
        let kib: u64 = value.trim_end_matches("kB").trim().parse().expect("VmRSS is a number of kB");
        kib * 1024
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A new connection to the server.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// One request on a fresh connection.
    pub fn get(&self, path: &str) -> Response {
        self.connect().request("GET", path, &[], b"")
    }

    /// One GET with this `Host` header on a fresh connection.
    pub fn get_host(&self, host: &str, path: &str) -> Response {
        self.connect().request_with_host("GET", host, path, &[], b"")
    }

    /// The admin listener's address; panics if the process has none (start it with `--admin`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.expect("isobar printed no admin line; start it with --admin 127.0.0.1:0")
    }

    /// One request to the admin API on a fresh connection.
    pub fn admin_request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let addr = self.admin_addr();
        Client::connect(addr).request_with_host(method, &addr.to_string(), path, headers, body)
    }

    /// `GET /metrics` from the admin API (no token), checked to be 200 and parsed strictly.
    pub fn metrics(&self) -> Metrics {
        let response = self.admin_request("GET", "/metrics", &[], b"");
        assert_eq!(response.status, 200, "GET /metrics: {}", response.text());
        Metrics::parse(&response.text()).unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}"))
    }
}

impl Drop for Isobar {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn collect(stderr: ChildStderr, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            into.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
}

/// Reads `stdout` line by line into `into`, and also sends each line to the returned channel
/// (for as long as anyone listens), so the pipe is drained for the whole life of the process.
fn collect_lines(
    stdout: std::process::ChildStdout,
    into: Arc<Mutex<Vec<String>>>,
) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        while let Some(Ok(line)) = lines.next() {
            into.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
    rx
}

fn parse_addr(rest: &str, line: &str) -> Result<SocketAddr, String> {
    let addr = rest.split_whitespace().next().unwrap_or_default();
    addr.parse().map_err(|e| format!("bad address in {line:?}: {e}"))
}

/// Runs isobar expecting it to fail at start-up; returns (exit code, stderr).
///
/// Bounded: if the process prints a "listening" line instead (it started after all), or is still
/// running after 60 s, it is killed and the exit code is `None`.
pub fn run_expecting_failure(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(isobar_bin())
        .current_dir(workspace())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run isobar");
    let stderr = Arc::new(Mutex::new(String::new()));
    let stderr_done = {
        let stderr = stderr.clone();
        let pipe = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(pipe).read_to_string(&mut text);
            stderr.lock().unwrap().push_str(&text);
        })
    };
    let lines = collect_lines(child.stdout.take().expect("piped stdout"), Arc::new(Mutex::new(Vec::new())));
    let deadline = Instant::now() + START_TIMEOUT;
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        let started = lines.try_iter().any(|line| line.contains("listening on http://"));
        if started || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The pipe closes when the process is gone, so this join is bounded too.
    let _ = stderr_done.join();
    let text = stderr.lock().unwrap().clone();
    (code, text)
}

/// Runs isobar with `args` and extra environment `env` until it exits by itself, at most
/// `timeout` (then it is killed and the code is `None`); returns the exit code and stderr.
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(isobar_bin())
        .current_dir(workspace())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run isobar");
    let pipe = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(pipe).read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + timeout;
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (code, reader.join().unwrap_or_default())
}

/// A fresh directory under the system's temporary directory, removed (with everything in it)
/// when dropped. The name holds the label, the pid, a counter and the time, so concurrent tests
/// and earlier runs never share one.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!("isobar-e2e-{label}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` in this directory and returns its path. The file is written
    /// beside and renamed into place, so a process that re-reads it (SIGHUP) never sees half.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path.join(name);
        let partial = self.path.join(format!(".{name}.partial"));
        std::fs::write(&partial, contents).unwrap_or_else(|e| panic!("write {}: {e}", partial.display()));
        std::fs::rename(&partial, &path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One scrape of `/metrics`, parsed strictly: every line is a `# HELP`, a `# TYPE`, another
/// comment, or a well-formed sample (`name{label="value",...} number [timestamp]`).
/// `prometheus-parse` alone skips lines it does not understand, which would hide a malformed one.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub text: String,
    pub samples: Vec<prometheus_parse::Sample>,
}

impl Metrics {
    pub fn parse(text: &str) -> Result<Metrics, String> {
        use prometheus_parse::LineInfo;
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            let structured = trimmed.starts_with("# HELP") || trimmed.starts_with("# TYPE");
            if trimmed.is_empty() || (trimmed.starts_with('#') && !structured) {
                continue;
            }
            let ok = match LineInfo::parse(trimmed) {
                LineInfo::Doc { .. } | LineInfo::Type { .. } => true,
                LineInfo::Sample { metric_name, labels, value, .. } => {
                    valid_metric_name(metric_name)
                        && labels.is_none_or(valid_labels)
                        && parse_sample_value(value).is_some()
                }
                LineInfo::Empty | LineInfo::Ignored => false,
            };
            if !ok {
                return Err(format!("line {}: {line:?}", i + 1));
            }
        }
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .map_err(|e| format!("prometheus-parse: {e}"))?;
        Ok(Metrics { text: text.to_owned(), samples: scrape.samples })
    }

    /// The samples of `name` whose labels include every pair in `labels`, with their values
    /// (counters, gauges and untyped samples; histograms and summaries are left out).
    pub fn series(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(&prometheus_parse::Labels, f64)> {
        self.samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .filter_map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => Some((&s.labels, v)),
                _ => None,
            })
            .collect()
    }

    /// The sum of `series(name, labels)`: e.g. a tenant's counter over all cores. 0 if none.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series(name, labels).iter().map(|(_, v)| v).sum()
    }

    /// True if any sample of `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.metric == name)
    }
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `a="x",b="y"` (a trailing comma allowed), with `\\`, `\"` and `\n` escapes in values.
fn valid_labels(labels: &str) -> bool {
    let mut rest = labels.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { return false };
        let name = rest[..eq].trim();
        if name.is_empty() || !valid_metric_name(name) || name.contains(':') {
            return false;
        }
        let Some(value) = rest[eq + 1..].trim_start().strip_prefix('"') else { return false };
        let mut end = None;
        let mut escaped = false;
        for (i, c) in value.char_indices() {
            match (escaped, c) {
                (true, '\\' | '"' | 'n') => escaped = false,
                (true, _) => return false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                (false, _) => {}
            }
        }
        let Some(end) = end else { return false };
        rest = value[end + 1..].trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start();
        } else if !rest.is_empty() {
            return false;
        }
    }
    true
}

fn parse_sample_value(value: &str) -> Option<f64> {
    match value {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => value.parse().ok(),
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// A minimal HTTP/1.1 client on one TCP connection: requests, pipelining, raw bytes.
pub struct Client {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream.set_nodelay(true).unwrap();
        Client { stream, buffer: Vec::new() }
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to isobar");
    }

    /// Writes one request (with Host and Content-Length) without reading the answer.
    pub fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        self.send_with_host(method, "test.local", path, headers, body);
    }

    /// Like `send`, with this `Host` header (sent exactly as given, port and case included).
    pub fn send_with_host(&mut self, method: &str, host: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\n");
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            request.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        self.send_raw(&bytes);
    }

    /// One request and its response.
    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        self.send(method, path, headers, body);
        self.read_response(method == "HEAD")
    }

    /// One request with this `Host` header and its response.
    pub fn request_with_host(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.send_with_host(method, host, path, headers, body);
        self.read_response(method == "HEAD")
    }

    /// Reads one response; `head` means the request was HEAD (no body follows).
    pub fn read_response(&mut self, head: bool) -> Response {
        self.try_read_response(head).unwrap_or_else(|e| panic!("reading a response: {e}"))
    }

    pub fn try_read_response(&mut self, head: bool) -> Result<Response, String> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&self.buffer).map_err(|e| format!("bad response: {e}"))? {
                httparse::Status::Complete(head_len) => {
                    let status = parsed.code.unwrap_or(0);
                    let reason = parsed.reason.unwrap_or("").to_string();
                    let headers: Vec<(String, String)> = parsed
                        .headers
                        .iter()
                        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect();
                    let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
                    if (100..200).contains(&status) {
                        self.buffer.drain(..head_len);
                        return Ok(Response { status, reason, headers, body: Vec::new() });
                    }
                    let body = if head || status == 204 || status == 304 {
                        self.buffer.drain(..head_len);
                        Vec::new()
                    } else if find("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
                        self.buffer.drain(..head_len);
                        self.read_chunked()?
                    } else if let Some(len) = find("content-length") {
                        let len: usize = len.trim().parse().map_err(|_| "bad content-length".to_string())?;
                        self.fill(head_len + len)?;
                        let body = self.buffer[head_len..head_len + len].to_vec();
                        self.buffer.drain(..head_len + len);
                        body
                    } else {
                        // Close-delimited.
                        self.buffer.drain(..head_len);
                        let mut rest = std::mem::take(&mut self.buffer);
                        self.stream.read_to_end(&mut rest).map_err(|e| e.to_string())?;
                        rest
                    };
                    return Ok(Response { status, reason, headers, body });
                }
                httparse::Status::Partial => self.read_more()?,
            }
        }
    }

    fn read_more(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed by isobar".into());
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn fill(&mut self, len: usize) -> Result<(), String> {
        while self.buffer.len() < len {
            self.read_more()?;
        }
        Ok(())
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                self.read_more()?;
            };
            let size_text = String::from_utf8_lossy(&self.buffer[..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            self.buffer.drain(..line_end + 2);
            if size == 0 {
                // Trailers end with an empty line.
                loop {
                    if let Some(i) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                        let empty = i == 0;
                        self.buffer.drain(..i + 2);
                        if empty {
                            return Ok(body);
                        }
                    } else {
                        self.read_more()?;
                    }
                }
            }
            self.fill(size + 2)?;
            body.extend_from_slice(&self.buffer[..size]);
            self.buffer.drain(..size + 2);
        }
    }

    /// True if the server closed the connection (reads end of stream within `timeout`).
    pub fn is_closed_by_peer(&mut self, timeout: Duration) -> bool {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let mut byte = [0u8; 1];
        let closed = matches!(self.stream.read(&mut byte), Ok(0))
            || matches!(self.stream.read(&mut byte), Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset);
        self.stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        closed
    }
}

/// Calls `probe` every 50 ms until it returns `Some` (then that value) or `timeout` passes
/// (then `None`); bounded, for waits on something asynchronous (a metric, a reload, a firing).
pub fn eventually<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

//! Tenants at scale, measured on the real server: `isobar serve` with N generated tenants (each
//! a different script), one core, loopback HTTP.
//!
//!   cargo run --release -p isobar-bench --bin tenants -- [--counts 1,100,1000,10000] [--churn 10000] [--pace-ms 10]
//!
//! For each N: RSS before any tenant has an isolate, then one request to each tenant in turn,
//! `--pace-ms` apart (new tenants arriving at a steady rate, so the core refills its pool of
//! ready isolates between them): each creates that tenant's isolate, the "first request"
//! latency. Then RSS again (RSS per added tenant), and one more request to each, back to back
//! (the warm latency). Then the churn scenario: a budget of one isolate per core and no pool,
//! one request to each of M tenants back to back, so every request creates an isolate (on the
//! request path) and evicts the previous one; RSS before and after.
//!
//! The isobar binary is target/release/isobar (built by `cargo build --release -p isobar`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let mut counts = vec![1usize, 100, 1000, 10_000];
    let mut churn = 10_000usize;
    let mut pace = Duration::from_millis(10);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--counts" => {
                counts =
                    args.next().expect("--counts N,N,...").split(',').map(|n| n.parse().expect("a number")).collect()
            }
            "--churn" => churn = args.next().expect("--churn N").parse().expect("a number"),
            "--pace-ms" => pace = Duration::from_millis(args.next().expect("--pace-ms N").parse().expect("a number")),
            other => panic!("unknown argument {other}"),
        }
    }
    let bin = workspace().join("target/release/isobar");
    assert!(bin.exists(), "build it first: cargo build --release -p isobar");
    println!(
        "| tenants | RSS before | RSS after 1 request each | RSS per added tenant | first request p50 | p99 | warm request p50 | p99 |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &counts {
        let dir = scratch_dir(&format!("tenants-{n}"));
        write_tenants(&dir, n, n + 16, 4);
        let mut server = Server::start(&bin, &dir);
        let before = server.rss_bytes();
        let first = server.request_each(n, pace);
        std::thread::sleep(Duration::from_millis(500));
        let after = server.rss_bytes();
        let warm = server.request_each(n, Duration::ZERO);
        let per_tenant = (after as f64 - before as f64) / n as f64;
        println!(
            "| {n} | {:.1} MB | {:.1} MB | {:.3} MB | {} | {} | {} | {} |",
            before as f64 / 1e6,
            after as f64 / 1e6,
            per_tenant / 1e6,
            fmt(percentile(&first, 0.5)),
            fmt(percentile(&first, 0.99)),
            fmt(percentile(&warm, 0.5)),
            fmt(percentile(&warm, 0.99)),
        );
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }
    if churn > 0 {
        let dir = scratch_dir("churn");
        write_tenants(&dir, churn, 1, 0);
        let mut server = Server::start(&bin, &dir);
        // One tenant live, as there will be at the end.
        server.request_each(1, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1500));
        let start = server.rss_bytes();
        let started = Instant::now();
        let times = server.request_each(churn, Duration::ZERO);
        let elapsed = started.elapsed();
        // Evicted isolates' memory is handed back when the core is idle (at most once a second).
        std::thread::sleep(Duration::from_millis(2500));
        server.request_each(1, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1500));
        let end = server.rss_bytes();
        println!();
        println!(
            "churn: {churn} isolates created and evicted in {:.1} s (per request p50 {}, p99 {}); RSS {:.1} MB -> {:.1} MB ({:+.1}%)",
            elapsed.as_secs_f64(),
            fmt(percentile(&times, 0.5)),
            fmt(percentile(&times, 0.99)),
            start as f64 / 1e6,
            end as f64 / 1e6,
            (end as f64 / start as f64 - 1.0) * 100.0
        );
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench/ is in the workspace").to_path_buf()
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("isobar-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// N tenants `t0..tN`, each its own script, routed by host `tI.bench`.
fn write_tenants(dir: &Path, n: usize, per_core_max: usize, pool: usize) {
    let mut config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ncores = 1\n[isolates]\nper_core_max = {per_core_max}\nper_core_heap_mb = 1048576\npool = {pool}\n"
    );
    for i in 0..n {
        let script = format!(
            "const id = {i};\nconst greeting = 'tenant ' + id;\nexport default {{\n  async fetch(request) {{\n    return new Response(greeting + ' ' + new URL(request.url).pathname);\n  }},\n}};\n"
        );
        std::fs::write(dir.join(format!("t{i}.js")), script).expect("write script");
        config.push_str(&format!("[[tenant]]\nname = \"t{i}\"\nscript = \"t{i}.js\"\nroutes = [\"t{i}.bench\"]\n"));
    }
    std::fs::write(dir.join("isobar.toml"), config).expect("write config");
}

struct Server {
    child: Child,
    addr: SocketAddr,
    conn: Option<(TcpStream, Vec<u8>)>,
}

impl Server {
    fn start(bin: &Path, dir: &Path) -> Server {
        let mut child = Command::new(bin)
            .args(["--log", "warn", "serve", "--config"])
            .arg(dir.join("isobar.toml"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start isobar");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("listening line");
        let addr = line.split("http://").nth(1).and_then(|r| r.split_whitespace().next()).expect("address");
        let addr: SocketAddr = addr.parse().expect("address");
        // Let the core fill its isolate pool before measuring.
        std::thread::sleep(Duration::from_millis(1500));
        Server { child, addr, conn: None }
    }

    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    }

    /// One request to each of tenants 0..n on one keep-alive connection, `pace` apart; the
    /// time of each.
    fn request_each(&mut self, n: usize, pace: Duration) -> Vec<Duration> {
        let mut times = Vec::with_capacity(n);
        for i in 0..n {
            if !pace.is_zero() {
                std::thread::sleep(pace);
            }
            let started = Instant::now();
            let body = self.get(&format!("t{i}.bench"), "/x");
            times.push(started.elapsed());
            assert_eq!(body, format!("tenant {i} /x"), "tenant {i} answered");
        }
        times
    }

    fn get(&mut self, host: &str, path: &str) -> String {
        if self.conn.is_none() {
            let stream = TcpStream::connect(self.addr).expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
            self.conn = Some((stream, Vec::new()));
        }
        let (stream, buffer) = self.conn.as_mut().expect("connected");
        stream.write_all(format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n").as_bytes()).expect("send");
        loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end]).to_string();
                assert!(head.starts_with("HTTP/1.1 200"), "unexpected response: {head}");
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map(|v| v.trim().parse().expect("length"))
                    .unwrap_or(0);
                if buffer.len() >= end + 4 + length {
                    let body = String::from_utf8_lossy(&buffer[end + 4..end + 4 + length]).to_string();
                    buffer.drain(..end + 4 + length);
                    return body;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).expect("read");
            assert!(n > 0, "isobar closed the connection");
            buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(values: &[Duration], p: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.get(((sorted.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or_default()
}

fn fmt(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

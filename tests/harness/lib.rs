//! The end-to-end test harness: builds the real `isobar` binary, starts it on a free loopback
//! port, and talks to it with a small HTTP/1.1 client over real sockets.
//!
//! Only processes the harness started are ever signalled or killed (`Isobar` owns its child).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

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
    stderr: Arc<Mutex<String>>,
}

impl Isobar {
    /// Starts `isobar` with `args` (e.g. `["run", "examples/hello.js"]`) on a free loopback
    /// port and waits for its "listening" line.
    pub fn start(args: &[&str]) -> Isobar {
        Isobar::try_start(args).unwrap_or_else(|e| panic!("isobar did not start: {e}"))
    }

    /// Like `start`, but returns the stderr text if the process exits before listening.
    pub fn try_start(args: &[&str]) -> Result<Isobar, String> {
        let mut command = Command::new(isobar_bin());
        command.current_dir(workspace()).args(args);
        if args.first() == Some(&"run") && !args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stderr = Arc::new(Mutex::new(String::new()));
        collect(child.stderr.take().expect("piped stderr"), stderr.clone());
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        let addr: SocketAddr = addr.parse().map_err(|e| format!("bad address in {line:?}: {e}"))?;
                        return Ok(Isobar { child, addr, stderr });
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
                        return Err("no listening line within 60 s".into());
                    }
                }
            }
        }
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM to this (our own) process.
    pub fn terminate(&self) {
        // SAFETY: kill(2) with a pid we spawned and still own (the Child is not yet reaped).
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
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

/// Runs isobar expecting it to fail at start-up; returns (exit code, stderr).
pub fn run_expecting_failure(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(isobar_bin())
        .current_dir(workspace())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run isobar");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
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
        let mut request = format!("{method} {path} HTTP/1.1\r\nhost: test.local\r\n");
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

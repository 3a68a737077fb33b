//! One core's scheduler: the thread that owns a core's io_uring ring, its share of the network
//! and its isolates, and runs them all in one loop.
//!
//! Each turn: wait on the ring until a completion or the next deadline (HTTP timeouts, JS
//! timers); route completions by key tag (network, mailbox); hand complete requests to the
//! worker's isolate; run microtasks and due timers; write finished responses. Nothing in the
//! loop blocks except the ring wait, and nothing is shared with other cores except the mailbox.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;
use kernel_shim::EventFd;
use kernel_shim::ring::{Completion, CompletionData, Op, Ring, RingConfig, key_tag, tagged_key};
use netstack::http1::{self, RequestId};
use netstack::transport::ConnId;
use netstack::{HttpServer, IncomingRequest, KernelNet, NetLimits, TAG_NET};

use crate::state::{Outcome, WireResponse};
use crate::worker::{RequestParts, Worker, WorkerSpec};

/// Completion-key tag of the mailbox's eventfd reads.
const TAG_MAILBOX: u8 = 0x02;

/// What another thread can ask of a core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Stop accepting, finish in-flight requests, then exit the loop.
    Drain,
}

/// Everything a core needs, built on the main thread and moved to the core's thread.
#[derive(Debug)]
pub struct CoreConfig {
    /// The core's index among isobar's cores (0..n), shown in `x-isobar-core`.
    pub index: usize,
    /// The CPU the thread is pinned to.
    pub cpu: usize,
    pub listener: OwnedFd,
    pub worker: WorkerSpec,
    pub http: http1::Limits,
    pub net: NetLimits,
    pub ring: RingConfig,
}

/// Why a core stopped.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// core {index}: cannot pin the thread to CPU {cpu}: {error}
    #[error("core {index}: cannot pin the thread to CPU {cpu}: {error}")]
    Pin { index: usize, cpu: usize, error: std::io::Error },
    #[error("core {index}: {error}")]
    Ring { index: usize, error: kernel_shim::ring::RingError },
    #[error("core {index}: {error}")]
    Load { index: usize, error: crate::worker::LoadError },
    #[error("core {index}: cannot create the wake-up eventfd: {error}")]
    EventFd { index: usize, error: std::io::Error },
}

/// A request handed to the isolate and not yet answered.
#[derive(Debug)]
struct Pending {
    conn: ConnId,
    request: RequestId,
}

/// Formats the `date` header once per second.
#[derive(Debug)]
struct DateHeader {
    second: u64,
    value: Vec<u8>,
}

impl DateHeader {
    fn new() -> DateHeader {
        DateHeader { second: u64::MAX, value: Vec::new() }
    }

    fn get(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if second != self.second {
            self.second = second;
            self.value = httpdate::fmt_http_date(now).into_bytes();
        }
        &self.value
    }
}

/// How many requests, timers and responses one turn of the loop handles before it checks the
/// ring again, so one busy connection cannot starve the others.
const TURN_BATCH_MAX: usize = 64;

pub struct Core {
    index: usize,
    ring: Ring,
    http: HttpServer<KernelNet>,
    worker: Worker,
    worker_name: Rc<str>,
    mailbox: Receiver<Command>,
    wake: Arc<EventFd>,
    pending: HashMap<u64, Pending>,
    next_request_id: u64,
    draining: bool,
    core_header: Vec<u8>,
    date: DateHeader,
    incoming: Vec<IncomingRequest>,
    outcomes: Vec<Outcome>,
    completions: Vec<Completion>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("index", &self.index).field("pending", &self.pending.len()).finish()
    }
}

impl Core {
    /// Sets up a core on the calling thread (which it pins): ring, transport, isolate.
    pub fn new(config: CoreConfig, mailbox: Receiver<Command>, wake: Arc<EventFd>) -> Result<Core, CoreError> {
        let index = config.index;
        kernel_shim::cpu::pin_current_thread(config.cpu).map_err(|error| CoreError::Pin {
            index,
            cpu: config.cpu,
            error,
        })?;
        let mut ring = Ring::new(config.ring).map_err(|error| CoreError::Ring { index, error })?;
        let worker = Worker::new(&config.worker).map_err(|error| CoreError::Load { index, error })?;
        let mut net = KernelNet::new(config.net);
        net.listen(&mut ring, config.listener);
        let http = HttpServer::new(net, config.http);
        let worker_name = worker.name();
        let mut core = Core {
            index,
            ring,
            http,
            worker,
            worker_name,
            mailbox,
            wake,
            pending: HashMap::new(),
            next_request_id: 1,
            draining: false,
            core_header: index.to_string().into_bytes(),
            date: DateHeader::new(),
            incoming: Vec::new(),
            outcomes: Vec::new(),
            completions: Vec::new(),
        };
        core.arm_mailbox(Vec::with_capacity(EventFd::READ_BYTES));
        Ok(core)
    }

    fn arm_mailbox(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        buf.reserve(EventFd::READ_BYTES);
        let fd = self.wake.fd();
        self.ring.submit(Op::Read { fd, buf }, tagged_key(TAG_MAILBOX, 0));
    }

    /// Runs the loop until a drain completes. Returns the number of requests that were still
    /// in flight when the loop ended (non-zero only if the ring failed).
    pub fn run(mut self) -> Result<(), kernel_shim::ring::RingError> {
        loop {
            let now = Instant::now();
            let timeout = self.next_deadline().map(|at| at.saturating_duration_since(now));
            // Work left over from a full batch: look at the ring without sleeping.
            let timeout = if self.incoming.is_empty() { timeout } else { Some(Duration::ZERO) };
            self.ring.wait(timeout, &mut self.completions)?;
            let now = Instant::now();
            let mut completions = std::mem::take(&mut self.completions);
            for completion in completions.drain(..) {
                match key_tag(completion.key) {
                    TAG_NET => self.http.on_completion(&mut self.ring, completion, now, &mut self.incoming),
                    TAG_MAILBOX => self.on_mailbox(completion, now),
                    tag => tracing::error!(core = self.index, tag, "completion with an unknown key tag"),
                }
            }
            self.completions = completions;
            self.http.poll(&mut self.ring, now, &mut self.incoming);
            self.serve(now);
            if self.draining && self.http.is_drained() {
                tracing::debug!(core = self.index, "drained");
                return Ok(());
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        match (self.http.poll_at(), self.worker.next_timer()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_mailbox(&mut self, completion: Completion, now: Instant) {
        let buf = match completion.data {
            CompletionData::Buffer(buf) => buf,
            _ => Vec::new(),
        };
        while let Ok(command) = self.mailbox.try_recv() {
            match command {
                Command::Drain => {
                    if !self.draining {
                        tracing::debug!(core = self.index, in_flight = self.pending.len(), "draining");
                        self.draining = true;
                        self.http.drain(&mut self.ring, now, &mut self.incoming);
                    }
                }
            }
        }
        self.arm_mailbox(buf);
    }

    /// Hands requests to the isolate, runs JS, and writes what finished.
    fn serve(&mut self, now: Instant) {
        let mut rounds = 0;
        loop {
            let batch = self.incoming.len().min(TURN_BATCH_MAX);
            let requests: Vec<IncomingRequest> = self.incoming.drain(..batch).collect();
            for incoming in requests {
                self.dispatch(incoming, now);
            }
            if self.worker.next_timer().is_some_and(|at| at <= now) {
                self.worker.fire_timers(now);
            }
            self.worker.run_microtasks();
            self.worker.take_outcomes(&mut self.outcomes);
            let outcomes = std::mem::take(&mut self.outcomes);
            for outcome in outcomes {
                self.finish(outcome, now);
            }
            self.fail_hung_requests(now);
            rounds += 1;
            // Responding can release pipelined requests; take them in this turn, within bounds.
            if self.incoming.is_empty() || rounds >= 4 {
                break;
            }
        }
    }

    fn dispatch(&mut self, incoming: IncomingRequest, now: Instant) {
        let IncomingRequest { conn, request, .. } = incoming;
        let host = request.header("host").map(|h| String::from_utf8_lossy(h).into_owned());
        let Some(url) = request_url(host.as_deref(), request.target()) else {
            let response = plain_response(400, "bad request: the URL cannot be parsed\n");
            self.http.respond(&mut self.ring, conn, request.id(), response, now, &mut self.incoming);
            return;
        };
        let names: Vec<String> = request.headers().map(|(name, _)| name.to_ascii_lowercase()).collect();
        let headers: Vec<(&str, &[u8])> =
            names.iter().map(String::as_str).zip(request.headers().map(|(_, value)| value)).collect();
        let id = self.next_request_id;
        self.next_request_id += 1;
        self.pending.insert(id, Pending { conn, request: request.id() });
        let parts = RequestParts { method: request.method(), url: &url, headers: &headers, body: request.body() };
        self.worker.dispatch(id, &parts, now);
    }

    fn finish(&mut self, outcome: Outcome, now: Instant) {
        let (id, response) = match outcome {
            Outcome::Response { id, response } => (id, response),
            Outcome::Failed { id, message } => {
                tracing::error!(target: "worker", "[{}] {message}", self.worker_name);
                (
                    id,
                    WireResponse {
                        status: 500,
                        reason: String::new(),
                        headers: vec![("content-type".into(), b"text/plain".to_vec())],
                        body: b"worker threw an exception\n".to_vec(),
                    },
                )
            }
        };
        let Some(pending) = self.pending.remove(&id) else { return };
        let mut http_response = http1::Response::new(response.status);
        if !response.reason.is_empty() {
            http_response.reason = Some(response.reason);
        }
        http_response.headers = response.headers;
        http_response.headers.push(("date".into(), self.date.get().to_vec()));
        http_response.headers.push(("x-isobar-core".into(), self.core_header.clone()));
        http_response.body = response.body;
        self.http.respond(&mut self.ring, pending.conn, pending.request, http_response, now, &mut self.incoming);
    }

    /// Requests whose handler is waiting on nothing that can ever happen: the isolate has no
    /// timer left (and, for now, no other source of events), yet they have not finished.
    fn fail_hung_requests(&mut self, now: Instant) {
        if self.pending.is_empty() || self.worker.has_timers() {
            return;
        }
        let hung: Vec<u64> = self.pending.keys().copied().collect();
        for id in hung {
            let message = "Error: the handler's promise will never resolve: it is waiting on nothing (the script will never generate a response)".to_string();
            self.finish(Outcome::Failed { id, message }, now);
        }
    }
}

/// `http://host/target` for an origin-form target, the target itself for an absolute-form one.
fn request_url(host: Option<&str>, target: &str) -> Option<String> {
    let text = if target.starts_with('/') {
        format!("http://{}{}", host.unwrap_or("localhost"), target)
    } else if target == "*" {
        format!("http://{}/", host.unwrap_or("localhost"))
    } else {
        target.to_string()
    };
    url::Url::parse(&text).ok().map(String::from)
}

fn plain_response(status: u16, body: &str) -> http1::Response {
    http1::Response::new(status).with_header("content-type", "text/plain").with_body(body.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::request_url;

    #[test]
    fn request_urls() {
        assert_eq!(request_url(Some("example.com"), "/a?b").as_deref(), Some("http://example.com/a?b"));
        assert_eq!(request_url(None, "/").as_deref(), Some("http://localhost/"));
        assert_eq!(request_url(Some("h:8080"), "*").as_deref(), Some("http://h:8080/"));
        assert_eq!(request_url(Some("x"), "https://other/p").as_deref(), Some("https://other/p"));
        assert_eq!(request_url(Some("bad host"), "/"), None);
    }
}

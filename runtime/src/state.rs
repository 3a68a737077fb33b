//! What Rust keeps per isolate and shares with the ops: the clock, the request contexts, timers,
//! resources, pending async ops, finished requests and the console sink. Each API area's state
//! is a field here, defined in its own folder.

use std::time::{Duration, Instant};

use crate::api::timers::Timers;
use crate::bridge::async_ops::AsyncOps;
use crate::bridge::context::Contexts;
use crate::bridge::resources::ResourceTable;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// A Response as the HTTP server needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireResponse {
    pub status: u16,
    pub reason: String,
    /// Lower-case names; values are the bytes of the JS ByteStrings.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The body comes from a stream instead (then `body` is empty).
    pub stream: Option<WireStream>,
    /// A `101` answer's WebSocket (see `api::websocket`).
    pub web_socket: Option<WireWebSocket>,
}

/// The WebSocket of a `101` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireWebSocket {
    /// The id the server end (on the client's connection) is bound as.
    pub id: u32,
    /// A socket the isolate opened, to join to the client's connection (`return fetch(request)`
    /// of a WebSocket handshake): the core passes messages between them.
    pub splice: Option<u32>,
}

/// Where a streamed response body comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireStream {
    /// A subrequest's response body, passed through from the origin without entering JS.
    Fetch { key: u64 },
    /// A ReadableStream the script made: its reader, read by the scheduler chunk by chunk.
    Js { reader: u32, length: Option<u64> },
}

/// How one request ended inside the isolate.
#[derive(Debug)]
pub enum Outcome {
    Response {
        id: u64,
        response: WireResponse,
    },
    /// The handler threw, rejected, returned a non-Response, or never responded; `message` is
    /// what goes to the worker's log (usually a stack trace).
    Failed {
        id: u64,
        message: String,
    },
    /// A read of a response body stream (`WireStream::Js`) finished: the next bytes, the end
    /// (`None`), or the stream's error.
    BodyChunk {
        reader: u32,
        chunk: Result<Option<Vec<u8>>, String>,
    },
}

/// The isolate's view of time. It moves only when the scheduler says so (between I/O events),
/// which is what keeps `Date.now()` from being a high-resolution timer inside a request.
#[derive(Debug)]
pub struct Clock {
    wall_ms: f64,
    origin_ms: f64,
    monotonic: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        let mut clock = Clock { wall_ms: 0.0, origin_ms: 0.0, monotonic: Instant::now() };
        clock.advance(Instant::now());
        clock.origin_ms = clock.wall_ms;
        clock
    }

    /// Moves the clock to `now` (the time the scheduler observed at its last I/O event).
    pub fn advance(&mut self, now: Instant) {
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or(Duration::ZERO);
        // Millisecond resolution, like Cloudflare's, and never backwards.
        let ms = wall.as_millis() as f64;
        if ms > self.wall_ms {
            self.wall_ms = ms;
        }
        self.monotonic = now;
    }

    pub fn now_ms(&self) -> f64 {
        self.wall_ms
    }

    /// When the isolate was created, in the same milliseconds: performance.timeOrigin.
    pub fn origin_ms(&self) -> f64 {
        self.origin_ms
    }

    pub fn instant(&self) -> Instant {
        self.monotonic
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Everything Rust keeps for one isolate.
#[derive(Debug)]
pub struct IsolateState {
    /// The worker's name, prefixed to its console output.
    pub name: std::rc::Rc<str>,
    pub clock: Clock,
    /// Live requests (see `bridge::context`).
    pub requests: Contexts,
    pub timers: Timers,
    /// WebCrypto's bookkeeping (`api::crypto`).
    pub crypto: crate::api::crypto::CryptoState,
    pub resources: ResourceTable,
    pub async_ops: AsyncOps,
    /// Requests that finished since the scheduler last looked.
    pub outcomes: Vec<Outcome>,
    /// Handler promises not yet settled, by request id.
    pub awaiting: Vec<(u64, v8::Global<v8::Promise>)>,
    /// `ctx.waitUntil()` promises not yet settled, by request id.
    pub wait_until: Vec<(u64, v8::Global<v8::Promise>)>,
    /// A native callback panicked (an isobar bug): the isolate must be discarded.
    pub panicked: bool,
    /// Rejected promises without a handler yet: (identity hash, the promise).
    pub unhandled_rejections: Vec<(i32, v8::Global<v8::Promise>)>,
    /// I/O the ops asked for during the current call, for the scheduler to carry out.
    pub outbox: Vec<crate::outbound::outbox::Work>,
    /// The last isolate-local key given to a subrequest.
    pub last_fetch_key: u64,
    /// Response bodies being streamed to clients from JS streams: id -> the stream's reader.
    pub body_readers: std::collections::HashMap<u32, v8::Global<v8::Object>>,
    /// Reads in progress on those readers: id -> the promise of the read.
    pub body_reads: Vec<(u32, v8::Global<v8::Promise>)>,
    pub last_body_reader: u32,
    /// Scheduled firings that ended since the scheduler last looked: (id, whether they failed).
    pub scheduled_ended: Vec<(u64, bool)>,
    /// WebAssembly memory: the most every live memory together may reach, and what the live
    /// instances and memories have reserved of it (`api::wasm`).
    pub wasm: crate::api::wasm::WasmBudget,
    /// Whether a Request and an ExecutionContext made at the end of the last dispatch, while the
    /// isolate's memory was in the cache, wait in the context's embedder data for the next
    /// request to fill in (`worker::dispatch_in`).
    pub spare: bool,
}

impl IsolateState {
    pub fn new(name: &str) -> IsolateState {
        IsolateState {
            name: name.into(),
            clock: Clock::new(),
            requests: Contexts::default(),
            timers: Timers::default(),
            crypto: Default::default(),
            resources: ResourceTable::default(),
            async_ops: AsyncOps::default(),
            outcomes: Vec::new(),
            awaiting: Vec::new(),
            wait_until: Vec::new(),
            panicked: false,
            unhandled_rejections: Vec::new(),
            wasm: Default::default(),
            spare: false,
            outbox: Vec::new(),
            last_fetch_key: 0,
            body_readers: std::collections::HashMap::new(),
            body_reads: Vec::new(),
            last_body_reader: 0,
            scheduled_ended: Vec::new(),
        }
    }

    /// How many possibly-unhandled rejections are remembered between checkpoints; beyond it
    /// the oldest are reported at once (a tenant cannot make the list grow without bound).
    pub const UNHANDLED_REJECTIONS_MAX: usize = 1024;

    /// Drops every V8 handle held here; called while the isolate is still alive, before it goes.
    pub fn release_handles(&mut self) {
        self.timers.clear();
        self.awaiting.clear();
        self.wait_until.clear();
        self.unhandled_rejections.clear();
        self.body_readers.clear();
        self.body_reads.clear();
        self.spare = false;
        self.async_ops = AsyncOps::default();
        self.resources = ResourceTable::default();
    }

    pub fn log(&mut self, level: LogLevel, message: &str) {
        let name = &*self.name;
        match level {
            LogLevel::Debug => tracing::debug!(target: "worker", "[{name}] {message}"),
            LogLevel::Info => tracing::info!(target: "worker", "[{name}] {message}"),
            LogLevel::Warn => tracing::warn!(target: "worker", "[{name}] {message}"),
            LogLevel::Error => tracing::error!(target: "worker", "[{name}] {message}"),
        }
    }
}

//! What Rust keeps per isolate and shares with the ops: the clock, timers, finished requests,
//! streaming text decoders and the console sink.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// How many streaming TextDecoders one isolate may hold open. Each owns Rust memory that V8's
/// heap limit does not see, so it is bounded here.
const DECODERS_MAX: usize = 256;
/// How many timers one isolate may have pending at once; setTimeout beyond it throws.
const TIMERS_MAX: usize = 10_000;

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

/// Pending setTimeout/setInterval timers of one isolate: deadlines here, callbacks in JS.
#[derive(Debug, Default)]
pub struct Timers {
    by_deadline: BTreeMap<(Instant, u32), ()>,
    deadline_of: HashMap<u32, Instant>,
    base: Option<Instant>,
}

impl Timers {
    /// Sets the instant from which new timers count (the scheduler's current time).
    pub fn set_base(&mut self, now: Instant) {
        self.base = Some(now);
    }

    pub fn start(&mut self, id: u32, delay_ms: u64) -> Result<(), &'static str> {
        if self.deadline_of.len() >= TIMERS_MAX && !self.deadline_of.contains_key(&id) {
            return Err("setTimeout: too many pending timers in this worker");
        }
        self.cancel(id);
        let base = self.base.unwrap_or_else(Instant::now);
        let deadline = base + Duration::from_millis(delay_ms);
        self.by_deadline.insert((deadline, id), ());
        self.deadline_of.insert(id, deadline);
        Ok(())
    }

    pub fn cancel(&mut self, id: u32) {
        if let Some(deadline) = self.deadline_of.remove(&id) {
            self.by_deadline.remove(&(deadline, id));
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.keys().next().map(|(deadline, _)| *deadline)
    }

    /// Removes and returns the id of the earliest timer due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<u32> {
        let (&(deadline, id), _) = self.by_deadline.iter().next()?;
        if deadline > now {
            return None;
        }
        self.by_deadline.remove(&(deadline, id));
        self.deadline_of.remove(&id);
        Some(id)
    }

    pub fn len(&self) -> usize {
        self.deadline_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deadline_of.is_empty()
    }
}

/// Streaming TextDecoder states, addressed by small integer ids handed to JS.
#[derive(Default)]
pub struct Decoders {
    slots: HashMap<u32, (encoding_rs::Decoder, bool)>,
    next_id: u32,
}

impl std::fmt::Debug for Decoders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoders").field("open", &self.slots.len()).finish()
    }
}

impl Decoders {
    pub fn insert(&mut self, decoder: encoding_rs::Decoder, fatal: bool) -> Option<u32> {
        if self.slots.len() >= DECODERS_MAX {
            return None;
        }
        self.next_id = self.next_id.wrapping_add(1);
        while self.slots.contains_key(&self.next_id) {
            self.next_id = self.next_id.wrapping_add(1);
        }
        self.slots.insert(self.next_id, (decoder, fatal));
        Some(self.next_id)
    }

    /// Decodes `bytes`; `last` ends the stream and frees the decoder. `None` if the id is unknown,
    /// `Some(Err)` on malformed input with `fatal` set (the decoder is then freed too).
    pub fn decode(&mut self, id: u32, bytes: &[u8], last: bool) -> Option<Result<String, ()>> {
        let (decoder, fatal) = self.slots.get_mut(&id)?;
        let fatal = *fatal;
        let mut out =
            String::with_capacity(decoder.max_utf8_buffer_length(bytes.len()).unwrap_or(bytes.len() * 3 + 16));
        let result = if fatal {
            let (result, _read) = decoder.decode_to_string_without_replacement(bytes, &mut out, last);
            match result {
                encoding_rs::DecoderResult::Malformed(_, _) => Err(()),
                _ => Ok(out),
            }
        } else {
            let (_result, _read, _replaced) = decoder.decode_to_string(bytes, &mut out, last);
            Ok(out)
        };
        if last || result.is_err() {
            self.slots.remove(&id);
        }
        Some(result)
    }

    pub fn remove(&mut self, id: u32) {
        self.slots.remove(&id);
    }
}

/// Everything Rust keeps for one isolate.
#[derive(Debug)]
pub struct IsolateState {
    /// The worker's name, prefixed to its console output.
    pub name: std::rc::Rc<str>,
    pub clock: Clock,
    pub timers: Timers,
    pub decoders: Decoders,
    /// Requests that finished since the scheduler last looked.
    pub outcomes: Vec<Outcome>,
    /// Rejected promises without a handler yet: (identity hash, description).
    unhandled_rejections: Vec<(i32, String)>,
}

impl IsolateState {
    pub fn new(name: &str) -> IsolateState {
        IsolateState {
            name: name.into(),
            clock: Clock::new(),
            timers: Timers::default(),
            decoders: Decoders::default(),
            outcomes: Vec::new(),
            unhandled_rejections: Vec::new(),
        }
    }

    /// How many possibly-unhandled rejections are remembered between checkpoints; beyond it
    /// they are reported at once (a tenant cannot make the list grow without bound).
    const UNHANDLED_REJECTIONS_MAX: usize = 1024;

    pub fn note_unhandled_rejection(&mut self, hash: i32, text: String) {
        if self.unhandled_rejections.len() >= Self::UNHANDLED_REJECTIONS_MAX {
            self.report_unhandled_rejections();
        }
        self.unhandled_rejections.push((hash, text));
    }

    pub fn forget_unhandled_rejection(&mut self, hash: i32) {
        if let Some(i) = self.unhandled_rejections.iter().position(|(h, _)| *h == hash) {
            self.unhandled_rejections.swap_remove(i);
        }
    }

    /// Logs the rejections that are still unhandled after a microtask checkpoint.
    pub fn report_unhandled_rejections(&mut self) {
        for (_, text) in std::mem::take(&mut self.unhandled_rejections) {
            self.log(LogLevel::Error, &format!("Uncaught (in promise) {text}"));
        }
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

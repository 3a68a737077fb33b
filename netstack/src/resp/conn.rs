//! One pipelined RESP2 connection as a state machine: commands queued with a deadline each,
//! replies matched to them in order. It must not touch a socket or read a clock.

use std::collections::VecDeque;
use std::time::Instant;

use super::{Decoder, Reply, RespError, RespLimits, encode_command};

/// Identifies one command on its connection; replies come back with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(u64);

impl RequestId {
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A RESP2 connection without the socket. The driver's loop:
/// 1. [`RespConn::send`] commands (each gets a deadline);
/// 2. write [`RespConn::take_output`] to the socket;
/// 3. bytes arrive: [`RespConn::receive`], then [`RespConn::next_reply`] until `None`;
/// 4. [`RespConn::poll`] with the current time, and wake again by [`RespConn::poll_at`];
/// 5. once [`RespConn::failed`] is `Some`, close the socket: every request on it has failed
///    (RESP has no request ids, so after a timeout or a bad byte the stream cannot be resynced).
#[derive(Debug)]
pub struct RespConn {
    limits: RespLimits,
    decoder: Decoder,
    output: Vec<u8>,
    in_flight: VecDeque<(RequestId, Instant)>,
    ready: VecDeque<(RequestId, Result<Reply, RespError>)>,
    next_id: u64,
    failed: Option<RespError>,
}

impl RespConn {
    pub fn new(limits: RespLimits) -> Self {
        Self {
            limits,
            decoder: Decoder::new(limits.reply_bytes_max),
            output: Vec::new(),
            in_flight: VecDeque::new(),
            ready: VecDeque::new(),
            next_id: 0,
            failed: None,
        }
    }

    /// Queues one command whose reply must arrive before `deadline`.
    pub fn send<A: AsRef<[u8]>>(&mut self, args: &[A], deadline: Instant) -> Result<RequestId, RespError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.in_flight.len() >= self.limits.in_flight_max {
            return Err(RespError::TooManyInFlight);
        }
        encode_command(args, &mut self.output);
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.in_flight.push_back((id, deadline));
        Ok(id)
    }

    /// Bytes to write to the socket (all of them; the connection keeps nothing back).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Whether there are bytes waiting for [`RespConn::take_output`].
    pub fn wants_write(&self) -> bool {
        !self.output.is_empty()
    }

    /// Bytes read from the socket.
    pub fn receive(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        self.decoder.feed(bytes);
        loop {
            match self.decoder.next_reply() {
                Ok(Some(reply)) => match self.in_flight.pop_front() {
                    Some((id, _)) => self.ready.push_back((id, Ok(reply))),
                    None => return self.fail(RespError::UnexpectedReply),
                },
                Ok(None) => return,
                Err(error) => return self.fail(error),
            }
        }
    }

    /// The socket closed or errored: every request in flight fails with [`RespError::Closed`].
    pub fn closed(&mut self) {
        self.fail(RespError::Closed);
    }

    /// Fails the connection if the oldest request is past its deadline.
    pub fn poll(&mut self, now: Instant) {
        // Any request past its deadline fails the whole connection: the replies behind it
        // cannot be matched to their requests without its own.
        if self.in_flight.iter().any(|(_, deadline)| *deadline <= now) {
            self.fail(RespError::Timeout);
        }
    }

    /// When [`RespConn::poll`] must next be called, if a request is waiting.
    pub fn poll_at(&self) -> Option<Instant> {
        self.in_flight.iter().map(|(_, deadline)| *deadline).min()
    }

    /// The next finished request: its reply, or why it failed.
    pub fn next_reply(&mut self) -> Option<(RequestId, Result<Reply, RespError>)> {
        self.ready.pop_front()
    }

    /// Why the connection failed, once it has: the caller closes the socket.
    pub fn failed(&self) -> Option<&RespError> {
        self.failed.as_ref()
    }

    /// Commands sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn fail(&mut self, error: RespError) {
        if self.failed.is_none() {
            self.failed = Some(error.clone());
        }
        for (id, _) in self.in_flight.drain(..) {
            self.ready.push_back((id, Err(error.clone())));
        }
        self.output.clear();
    }
}

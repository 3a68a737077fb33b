//! Fuzzes the link edge: every input is a frame for `netstack::frame` (virtio-net header
//! parsing, checksum completion, GSO splitting), then a sequence of frames for a whole
//! `SmolStack`'s receive path (frame -> steer -> smoltcp -> connection events -> our answers).
//! Nothing may panic, and the stack's queues must stay within their bounds.
//!
//! Run (from `netstack/`; `cargo install cargo-fuzz` once; checked with cargo-fuzz 0.13.2 on
//! stable Rust 1.95, no nightly and no RUSTC_BOOTSTRAP needed):
//!
//! ```text
//! cargo fuzz run -s none frame fuzz/corpus/frame fuzz/seeds/frame -- -max_total_time=60
//! ```
//!
//! `-s none`: no sanitizer, which is what lets a stable toolchain build it (AddressSanitizer
//! needs nightly's `-Zsanitizer`); the code under test has no `unsafe` of its own, nor does
//! smoltcp. Coverage and comparison tracing (`-Cpasses=sancov-module`, `-Cllvm-args`) are stable
//! flags. About 25,000 inputs a second on one core of this VM.
//!
//! Input layout: byte 0 picks the configuration (bit 0: virtio-net headers; bit 1: core 0 of
//! two, so steering forwards; bit 2: no listener; bit 3: repair the IPv4 and TCP checksums of
//! every frame, so that mutations reach TCP instead of dying at the checksum; bit 4: a pool of
//! 48 sockets, so they are spread over three socket sets instead of one); then records of
//! `[len_hi, len_lo, advance_ms, bytes...]`, each one frame fed to the stack after advancing
//! its clock. smoltcp's seed is fixed, so its sequence numbers repeat from run to run: the
//! fuzzer, which traces comparisons, has a chance to learn to acknowledge them.
//! Seeds: `fuzz/seeds/frame/` (a SYN, an ARP request, an echo request).

#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use netstack::frame::{self, Received};
use netstack::smol::{IpAddress, IpCidr, SmolStack};
use netstack::{ConnEvent, ConnId, Forwarder, SmolConfig, Steering};

/// Frames per input: enough for a handshake, data and a close.
const FRAMES_MAX: usize = 64;

fn config(flags: u8) -> (SmolConfig, Forwarder, Option<Forwarder>) {
    let ip = IpCidr::new(IpAddress::Ipv4(Ipv4Addr::new(10, 0, 0, 1)), 24);
    let listen_port = if flags & 4 != 0 { 0 } else { 8080 };
    let mut config = SmolConfig::new([0x02, 0, 0, 0, 0, 1], vec![ip], listen_port);
    config.vnet_hdr = flags & 1 != 0;
    // Small, so a fresh stack per input is cheap and the pool bound is easy to reach.
    config.conns_max = if flags & 16 != 0 { 48 } else { 6 };
    config.backlog = 2;
    config.rx_buffer_bytes = 4096;
    config.tx_buffer_bytes = 4096;
    config.send_queue_bytes_max = 8192;
    config.reads_in_flight = 2;
    config.idle_timeout = Duration::from_secs(2);
    config.close_timeout = Duration::from_millis(500);
    config.random_seed = Some(0x15_0ba7);
    if flags & 2 != 0 {
        config.steering = Steering::even(0, 2).expect("two cores");
        let mut mesh = Forwarder::mesh(2, 16, Arc::new(|_| {}));
        let other = mesh.pop();
        (config, mesh.pop().expect("core 0"), other)
    } else {
        (config, Forwarder::single(), None)
    }
}

/// What the application does about an event, after the stack's call returns.
enum Action {
    Greet(ConnId),
    Echo(ConnId, Vec<u8>),
    Close(ConnId),
}

fn record(actions: &mut Vec<Action>, event: ConnEvent<'_>) {
    match event {
        ConnEvent::Accepted { conn, .. } | ConnEvent::Connected { conn } => actions.push(Action::Greet(conn)),
        ConnEvent::Received { conn, bytes } => actions.push(Action::Echo(conn, bytes.to_vec())),
        ConnEvent::PeerClosed { conn } => actions.push(Action::Close(conn)),
        _ => {}
    }
}

/// Recomputes the IPv4 header checksum and the TCP checksum of an Ethernet frame, if it is
/// TCP over IPv4 with lengths that fit.
fn repair_checksums(frame: &mut [u8]) {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    if ihl < 20 || total < ihl || 14 + total > frame.len() {
        return;
    }
    frame[24..26].copy_from_slice(&[0, 0]);
    let ip_sum = !frame::fold(frame::sum_be16(&frame[14..14 + ihl], 0));
    frame[24..26].copy_from_slice(&ip_sum.to_be_bytes());
    let tcp_at = 14 + ihl;
    let tcp_len = total - ihl;
    if frame[23] != 6 || tcp_len < 20 {
        return;
    }
    frame[tcp_at + 16..tcp_at + 18].copy_from_slice(&[0, 0]);
    let pseudo = frame::sum_be16(&frame[26..34], 6 + tcp_len as u64);
    let sum = !frame::fold(frame::sum_be16(&frame[tcp_at..14 + total], pseudo));
    frame[tcp_at + 16..tcp_at + 18].copy_from_slice(&sum.to_be_bytes());
}

/// The input (after its first byte) as one frame through the sans-IO edge, as a frame.
fn fuzz_frame(data: &[u8], vnet: bool) {
    let mut buf = data.to_vec();
    let mut scratch = Vec::new();
    match frame::receive(&mut buf, vnet) {
        Ok(Received::Frame { start }) => assert!(start <= buf.len()),
        Ok(Received::Gso { start, gso }) => {
            let mut segments = 0;
            if let Ok(count) = frame::segment(&buf[start..], gso, &mut scratch, |s| {
                assert!(s.len() >= frame::ETHERNET_HEADER_LEN);
                segments += 1;
            }) {
                assert!(count == segments && count <= frame::SEGMENTS_MAX);
            }
        }
        Err(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else { return };
    fuzz_frame(rest, flags & 1 != 0);

    let (config, forwarder, other_core) = config(flags);
    let mut stack = SmolStack::new(config, forwarder).expect("a valid configuration");
    let start = Instant::now();
    let mut now = start;
    stack.start(now);

    let mut actions: Vec<Action> = Vec::new();
    // An outbound connection too, so SYN-SENT and the steering port range are exercised.
    let _ = stack.connect(SocketAddr::from((Ipv4Addr::new(10, 0, 0, 2), 9000)));

    for _ in 0..FRAMES_MAX {
        let [hi, lo, advance_ms, tail @ ..] = rest else { break };
        let len = (usize::from(*hi) << 8 | usize::from(*lo)).min(tail.len());
        let (frame, next) = tail.split_at(len);
        rest = next;
        now += Duration::from_millis(u64::from(*advance_ms));

        let mut frame = frame.to_vec();
        if flags & 8 != 0 {
            let start = if flags & 1 != 0 { frame::VNET_HDR_LEN.min(frame.len()) } else { 0 };
            repair_checksums(&mut frame[start..]);
        }
        stack.receive_link(frame, now, &mut |event| record(&mut actions, event));
        stack.poll(now, &mut |event| record(&mut actions, event));
        // The application's answers: greet, echo, close when the peer does.
        for action in actions.drain(..) {
            match action {
                Action::Greet(conn) => drop(stack.send_owned(conn, b"HTTP/1.1 200 OK\r\n\r\n".to_vec())),
                Action::Echo(conn, bytes) => drop(stack.send(conn, &bytes)),
                Action::Close(conn) => stack.close(conn),
            }
        }
        // Every frame written at once: the link never pushes back here.
        while let Some(out) = stack.take_tx() {
            let len = out.len();
            stack.tx_complete(out, Ok(len));
        }
        if let Some(other) = &other_core {
            while other.try_recv().is_some() {}
        }
        let stats = stack.stats();
        let pool = stack.config().conns_max;
        assert!(stats.sockets <= pool, "the pool bound held: {stats:?}");
        assert!(stack.open_conns() <= pool);
    }
    // Let every timer run out: retransmissions, keep-alives, TIME-WAIT, close timeouts.
    for _ in 0..8 {
        now += Duration::from_secs(5);
        stack.poll(now, &mut |event| record(&mut actions, event));
        while let Some(out) = stack.take_tx() {
            stack.tx_complete(out, Err(netstack::smol::TIMED_OUT));
        }
    }
    assert_eq!(stack.stats().handshaking, 0, "handshakes time out");
});

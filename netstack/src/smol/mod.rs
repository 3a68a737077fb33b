//! smoltcp 0.14 as a per-core [`Transport`](crate::Transport) on a raw link (a TAP queue or an
//! AF_PACKET fanout socket), driven through the core's io_uring.
//!
//! Per core: one smoltcp interface with the same MAC and addresses as every other core's, fed
//! only by this core's link fd. A frame read from the link passes [`crate::frame`] (virtio-net
//! header: partial checksums completed, GSO super-frames split) and [`crate::steer`] (replies
//! to another core's outbound connections are forwarded there) before smoltcp sees it. The
//! layers:
//!
//! - [`SmolStack`]: smoltcp, the sockets and the connection table, sans-IO: frames and time
//!   in, frames and [`ConnEvent`](crate::ConnEvent)s out. The fuzzer drives it directly.
//! - [`SmolNet`]: the I/O shell: several `Op::Read`s in flight on a TAP queue (one frame each)
//!   or one `Op::RecvMulti` on an AF_PACKET socket (one frame per completion), one `Op::Write`
//!   per frame out, and the [`Transport`](crate::Transport) impl.
//!
//! Frame buffers: AF_PACKET receives into the ring's provided-buffer pool, registered with the
//! kernel once when the ring is made (one multishot recv picks a buffer per frame; the frame is
//! copied out and the buffer goes straight back). TAP reads go into owned buffers that the
//! stack queues and smoltcp parses in place, with no copy, recycled through a pool; frames out
//! are owned buffers too. Neither uses fixed buffers (IORING_REGISTER_BUFFERS): they save the
//! per-I/O page pinning of direct I/O, while a TAP or packet-socket read or write copies the
//! bytes either way, and fixed slots would make smoltcp's device hold ring slots instead of
//! buffers. Not measured yet: it is the next thing to try if the link copies show in a profile.
//!
//! Socket sets: smoltcp looks for a segment's socket by asking every socket of the set it is
//! given, and polls every socket of a set on each egress pass, so one set of a thousand
//! connections costs a thousand visits per frame. The sockets are split instead over
//! `conns_max / 16` sets (1 to 256) by a hash of the flow (peer address and port, our port): a
//! received frame is handed to its flow's set only, and a poll sends for the sets that were
//! touched (a frame in, a send, a close) or whose timer is due, and scans only their
//! connections. At 1,024 connections this took the userspace stack from 0.40x to 0.74x of
//! kernel sockets (BENCHMARKS.md).
//!
//! Connections: smoltcp sockets accept one connection each, so a SYN to our port is handed to a
//! listener made for it in its flow's set (unless that set has one); the listener becomes a
//! handshake, then a connection (`Accepted`) when it reaches ESTABLISHED. The pool never holds
//! more than `conns_max` sockets, counting listeners, handshakes, connections, TIME-WAIT sockets
//! and spares kept for reuse; when it is full no listener is made, and the SYN gets a **reset**
//! from smoltcp (`stats().listen_starved` counts the shortfalls). `Closed` is reported when the connection
//! is over (its socket CLOSED or, after our close, TIME-WAIT); a TIME-WAIT socket stays
//! counted until smoltcp's 10 s timer ends it, and is not reported again.
//!
//! `SendDone` means what it means for [`crate::KernelNet`]: everything queued with `send` is in
//! the TCP socket's transmit buffer (the analogue of the kernel's socket buffer), and
//! `queued_bytes` counts what is not. What does not fit waits in a per-connection queue
//! bounded by `send_queue_bytes_max` (`QueueFull` beyond it).
//!
//! Failure errors: a connection that dies while smoltcp processes input was reset
//! (`ECONNRESET`; `ECONNREFUSED` for a connect), one that dies while it sends timed out
//! (`ETIMEDOUT`: retransmissions or keep-alives unanswered for `idle_timeout`, or the connect
//! for 10 s).
//!
//! # The numbers
//!
//! | what | value | why |
//! |---|---|---|
//! | `rx_buffer_bytes` | 128 KiB | > 64 KiB, so the window is scaled (shift 2); a local link's bandwidth-delay product (10 Gbit/s x 100 us = 125 KB) fits |
//! | `tx_buffer_bytes` | 128 KiB | one window of response in flight without waiting for the application |
//! | `conns_max` | 2048 | sockets per core; worst case 2048 x 256 KiB = 512 MiB of buffers, touched only as data flows |
//! | `backlog` | 32 | closed sockets kept for reuse (their buffers are the costly part), and listeners a reset handshake may return to; a listener is made per SYN, so this does not bound a burst of SYNs |
//! | socket sets | `conns_max / 16`, 1 to 256 | smoltcp walks a whole set per received segment and per egress pass: small sets keep those walks short |
//! | `send_queue_bytes_max` | 1 MiB | as [`crate::NetLimits`]: a peer that does not read holds at most this plus the socket buffer |
//! | `idle_timeout` | 60 s | a peer silent this long while we wait on it (data unacknowledged, keep-alives unanswered) is dropped |
//! | keep-alive | `idle_timeout / 4` (15 s) | three unanswered probes before the timeout ends a half-open connection |
//! | `close_timeout` | 5 s | as [`crate::NetLimits`]: a graceful close that does not finish is reset |
//! | handshake timeout | 5 s | a SYN-RECEIVED socket holds a pool slot this long (SYN-ACK resent at 1 s and 3 s): bounds a SYN flood's hold |
//! | connect timeout | 10 s | an outbound SYN unanswered this long fails with ETIMEDOUT |
//! | Nagle | off | responses leave at once (request/response, not bulk) |
//! | delayed ACK | until the next poll (1 us) | an answer written between two polls carries the ACK, so a request costs one frame out, not two; a pure ACK still leaves on the very next poll, so no 10 ms stall when the peer waits for it; every second segment is acknowledged at once |
//! | congestion control | Reno | conservative on links we do not control (QEMU user networking, real NICs) |
//! | `max_burst_size` | none | the kernel queue behind the fd absorbs bursts; smoltcp's clamp applies to the scaled window field and would defeat window scaling |
//! | `reads_in_flight` | 16 | frames one ring wait can deliver per core; the TAP queue (500 frames) holds the rest until the next turn |
//! | TAP read buffer | 64 KiB + 28 | the largest frame a TAP hands over whatever the MTU (a read reports a longer frame's full length, which the ring must never see); 16 in flight and 32 pooled = 3 MiB per core |
//! | frames out | 128 | writes queued or in flight; beyond it smoltcp keeps data in its socket buffers until writes complete |
//! | receive queue | 512 frames | frames waiting for the next poll; a full queue is processed at once, never dropped |
//! | inbox batch | 256 frames | forwarded frames taken per poll, so another core's traffic cannot starve this one's |
//! | neighbour cache | 64 entries | (`iface-neighbor-cache-count-64`) peers on the link; smoltcp's default of 8 thrashes on a LAN |
//!
//! Memory a peer can make us hold is bounded: `conns_max` sockets with fixed buffers, the send
//! queue bound per connection, the listeners and handshakes inside the pool, bounded frame
//! queues. A zero-window peer keeps its connection (probes are answered) but costs no more than
//! that; the HTTP codec's own deadlines close it.

mod device;
mod net;
mod stack;

use std::net::IpAddr;
use std::time::Duration;

pub use net::{LinkKind, SmolNet};
pub use smoltcp::wire::{IpAddress, IpCidr, Ipv4Cidr, Ipv6Cidr};
pub use stack::{SmolStack, TIMED_OUT};

use crate::steer::{Steering, SteeringError};

/// How long a SYN-RECEIVED socket may wait for the handshake to finish.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an outbound connect may wait for the SYN-ACK.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a socket no connection owns may stay (TIME-WAIT is 10 s in smoltcp; a reset
/// that cannot be sent because the neighbour is gone waits no longer than this).
const LINGER_MAX: Duration = Duration::from_secs(15);
/// Frames waiting for the next poll; at this many, the stack processes them at once.
const RX_QUEUE_FRAMES_MAX: usize = 512;
/// Frames queued for writing or being written.
const TX_FRAMES_MAX: usize = 128;
/// Forwarded frames taken from the inbox per poll.
const INBOX_BATCH_MAX: usize = 256;
/// Passes over the sockets per egress (each sends at most one segment per socket).
const EGRESS_PASSES_MAX: usize = 256;
/// A drained send queue keeps its buffer if it is at most this large.
const PENDING_SPARE_BYTES_MAX: usize = 64 * 1024;
/// How soon to look again when sending waits for writes to complete.
const TX_BLOCKED_RETRY: Duration = Duration::from_millis(1);
/// How long to wait before reading again after a read from the link failed.
const READ_RETRY: Duration = Duration::from_millis(100);
/// The most IP addresses an interface holds (smoltcp's `iface-max-addr-count` default).
const ADDRESSES_MAX: usize = 2;
/// The most reads in flight on a TAP queue.
const READS_IN_FLIGHT_MAX: usize = 1024;
/// The most ports beside `listen_port` (each takes a listener per socket set that sees SYNs).
pub const EXTRA_LISTEN_PORTS_MAX: usize = 7;

/// One core's link and TCP settings. [`SmolConfig::new`] fills in the numbers of the module
/// documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmolConfig {
    /// The interface's MAC address (the same on every core).
    pub mac: [u8; 6],
    /// Its addresses with their prefixes: an IPv4 and/or an IPv6 one (e.g. link-local).
    pub ips: Vec<IpCidr>,
    /// Default routes: at most one per address family.
    pub gateways: Vec<IpAddr>,
    /// IP MTU of the link (Linux's "mtu"): 1500 on Ethernet.
    pub mtu: usize,
    /// Frames carry a `virtio_net_hdr` (TAP with IFF_VNET_HDR, AF_PACKET with PACKET_VNET_HDR).
    pub vnet_hdr: bool,
    /// The port to accept connections on; 0 for none (outbound only).
    pub listen_port: u16,
    /// More ports to accept connections on (HTTPS beside HTTP); each accepted connection is
    /// reported with its port. At most [`EXTRA_LISTEN_PORTS_MAX`], none 0.
    pub extra_listen_ports: Vec<u16>,
    /// Closed sockets kept for reuse, and listeners kept after a reset handshake (a SYN gets a
    /// listener made for it; see the module documentation).
    pub backlog: usize,
    /// Sockets in the pool, whatever their state (see the module documentation).
    pub conns_max: usize,
    pub rx_buffer_bytes: usize,
    pub tx_buffer_bytes: usize,
    /// Bytes one connection may queue beyond its socket's transmit buffer.
    pub send_queue_bytes_max: usize,
    /// This core among the cores, and the outbound port ranges.
    pub steering: Steering,
    /// A peer that does not answer for this long is dropped.
    pub idle_timeout: Duration,
    /// How long a graceful close may take before the connection is reset.
    pub close_timeout: Duration,
    /// Reads kept in flight on a TAP queue.
    pub reads_in_flight: usize,
    /// The seed of smoltcp's generator (initial sequence numbers). `None`, the default: from
    /// the kernel's CSPRNG. `Some` makes runs repeatable, for simulation tests and the fuzzer
    /// only: predictable sequence numbers let an off-path attacker inject segments.
    pub random_seed: Option<u64>,
}

impl SmolConfig {
    /// A configuration with the numbers of the module documentation, one core, no gateway.
    pub fn new(mac: [u8; 6], ips: Vec<IpCidr>, listen_port: u16) -> SmolConfig {
        SmolConfig {
            mac,
            ips,
            gateways: Vec::new(),
            mtu: 1500,
            vnet_hdr: false,
            listen_port,
            extra_listen_ports: Vec::new(),
            backlog: 32,
            conns_max: 2048,
            rx_buffer_bytes: 128 * 1024,
            tx_buffer_bytes: 128 * 1024,
            send_queue_bytes_max: 1 << 20,
            steering: Steering::single(),
            idle_timeout: Duration::from_secs(60),
            close_timeout: Duration::from_secs(5),
            reads_in_flight: 16,
            random_seed: None,
        }
    }

    /// Whether the configuration is consistent; each error names the field and the fix.
    pub fn check(&self) -> Result<(), SmolConfigError> {
        let mac = self.mac;
        if mac[0] & 1 != 0 || mac == [0; 6] {
            return Err(SmolConfigError::InvalidMac { mac });
        }
        if self.ips.is_empty() {
            return Err(SmolConfigError::NoAddress);
        }
        if self.ips.len() > ADDRESSES_MAX {
            return Err(SmolConfigError::TooManyAddresses { count: self.ips.len(), max: ADDRESSES_MAX });
        }
        for cidr in &self.ips {
            if !cidr.address().is_unicast() {
                return Err(SmolConfigError::NotUnicast { address: IpAddr::from(cidr.address()) });
            }
        }
        let has_v6 = self.ips.iter().any(|cidr| matches!(cidr, IpCidr::Ipv6(_)));
        for (index, gateway) in self.gateways.iter().enumerate() {
            let family_has_address =
                self.ips.iter().any(|cidr| IpAddr::from(cidr.address()).is_ipv4() == gateway.is_ipv4());
            if !family_has_address {
                return Err(SmolConfigError::GatewayWithoutAddress { gateway: *gateway });
            }
            if self.gateways[..index].iter().any(|other| other.is_ipv4() == gateway.is_ipv4()) {
                return Err(SmolConfigError::TwoGateways { gateway: *gateway });
            }
        }
        let mtu_min = if has_v6 { 1280 } else { 576 };
        if self.mtu < mtu_min || self.mtu > 9000 {
            return Err(SmolConfigError::Mtu { mtu: self.mtu, min: mtu_min });
        }
        if self.conns_max == 0 || self.backlog == 0 || self.backlog > self.conns_max {
            return Err(SmolConfigError::Pool { backlog: self.backlog, conns_max: self.conns_max });
        }
        for (name, bytes) in [("rx_buffer_bytes", self.rx_buffer_bytes), ("tx_buffer_bytes", self.tx_buffer_bytes)] {
            // smoltcp panics above 1 GiB (the largest scaled window).
            if !(1024..=1 << 30).contains(&bytes) {
                return Err(SmolConfigError::Buffer { name, bytes });
            }
        }
        if self.send_queue_bytes_max == 0 {
            return Err(SmolConfigError::SendQueue);
        }
        if self.reads_in_flight == 0 || self.reads_in_flight > READS_IN_FLIGHT_MAX {
            return Err(SmolConfigError::ReadsInFlight { reads: self.reads_in_flight, max: READS_IN_FLIGHT_MAX });
        }
        if self.idle_timeout < Duration::from_secs(1) || self.close_timeout.is_zero() {
            return Err(SmolConfigError::Timeouts { idle: self.idle_timeout, close: self.close_timeout });
        }
        self.steering.check()?;
        if self.extra_listen_ports.len() > EXTRA_LISTEN_PORTS_MAX || self.extra_listen_ports.contains(&0) {
            return Err(SmolConfigError::ExtraListenPorts { count: self.extra_listen_ports.len() });
        }
        let s = self.steering;
        for port in self.listen_ports() {
            if s.port_owner(port).is_some() {
                let first = s.port_base;
                let last = u32::from(s.port_base) + s.cores as u32 * u32::from(s.ports_per_core) - 1;
                return Err(SmolConfigError::ListenPortInRange { port, first, last });
            }
        }
        Ok(())
    }

    /// Every port connections are accepted on.
    pub fn listen_ports(&self) -> impl Iterator<Item = u16> + '_ {
        (self.listen_port != 0).then_some(self.listen_port).into_iter().chain(self.extra_listen_ports.iter().copied())
    }

    /// Whether connections to `port` are accepted.
    pub fn listens_on(&self, port: u16) -> bool {
        port != 0 && (port == self.listen_port || self.extra_listen_ports.contains(&port))
    }
}

/// Why a [`SmolStack`] or [`SmolNet`] could not be built.
#[derive(Debug, PartialEq, Eq, thiserror::Error, displaydoc::Display)]
pub enum SmolConfigError {
    /// MAC address {mac:02x?} is not a unicast address: its first octet must be even and it must not be all zeros (locally administered: 02:xx:xx:xx:xx:xx)
    InvalidMac { mac: [u8; 6] },
    /// the interface has no IP address: give it an IPv4 and/or an IPv6 address
    NoAddress,
    /// {count} IP addresses, but an interface holds at most {max}
    TooManyAddresses { count: usize, max: usize },
    /// {address} is not a unicast address
    NotUnicast { address: IpAddr },
    /// gateway {gateway} has no address of its family on the interface
    GatewayWithoutAddress { gateway: IpAddr },
    /// gateway {gateway} is a second default route of its family; give one per family
    TwoGateways { gateway: IpAddr },
    /// MTU {mtu} is outside {min}..=9000 (IPv6 needs at least 1280)
    Mtu { mtu: usize, min: usize },
    /// backlog {backlog} must be between 1 and conns_max ({conns_max}), and conns_max at least 1
    Pool { backlog: usize, conns_max: usize },
    /// {name} is {bytes}: socket buffers must be between 1 KiB and 1 GiB
    Buffer { name: &'static str, bytes: usize },
    /// send_queue_bytes_max must be at least 1
    SendQueue,
    /// reads_in_flight is {reads}: it must be between 1 and {max}
    ReadsInFlight { reads: usize, max: usize },
    /// idle_timeout ({idle:?}) must be at least 1 s and close_timeout ({close:?}) above zero
    Timeouts { idle: Duration, close: Duration },
    /// {0}
    Steering(#[from] SteeringError),
    /// extra_listen_ports holds {count} ports: at most 7, none of them 0
    ExtraListenPorts { count: usize },
    /// listen port {port} lies in the outbound port ranges {first}..={last}: replies to it would be forwarded away; choose a port outside them
    ListenPortInRange { port: u16, first: u16, last: u32 },
    /// the forwarder is core {forwarder_core} of {forwarder_cores} but the steering says core {core} of {cores}; build both from the same numbers
    ForwarderMismatch { forwarder_core: usize, forwarder_cores: usize, core: usize, cores: usize },
}

/// Counters and gauges of one core's stack, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmolStats {
    /// Frames and bytes read from the link (before steering; a GSO frame counts once).
    pub frames_in: u64,
    pub bytes_in: u64,
    /// Frames and bytes handed to the link.
    pub frames_out: u64,
    pub bytes_out: u64,
    /// Frames dropped at the link edge: truncated, lying lengths, checksum out of range, bad GSO.
    pub malformed_frames: u64,
    /// GSO frames of a type we do not split (UDP), dropped.
    pub gso_unsupported: u64,
    /// Partial checksums completed (frames with VIRTIO_NET_HDR_F_NEEDS_CSUM).
    pub checksums_completed: u64,
    /// GSO super-frames split, and the segments they made.
    pub gso_frames: u64,
    pub gso_segments: u64,
    /// Frames received from other cores, sent to them, and dropped because an inbox was full.
    pub forwarded_in: u64,
    pub forwarded_out: u64,
    pub forward_dropped: u64,
    /// Reads from and writes to the link that failed.
    pub read_errors: u64,
    pub write_errors: u64,
    /// Connections accepted, and outbound ones established.
    pub conns_accepted: u64,
    pub conns_connected: u64,
    /// Times a listener could not be replaced because the pool was full.
    pub listen_starved: u64,
    /// Sockets in the pool now (every state, spares included), and the most there ever were.
    pub sockets: usize,
    pub sockets_max: usize,
    /// Of those: listening, in a handshake, and lingering (TIME-WAIT or a reset to send).
    pub listening: usize,
    pub handshaking: usize,
    pub lingering: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SmolConfig {
        SmolConfig::new([0x02, 0, 0, 0, 0, 1], vec![IpCidr::new(IpAddress::v4(10, 0, 0, 1), 24)], 8080)
    }

    #[test]
    fn extra_listen_ports_are_checked_like_the_listen_port() {
        let mut config = config();
        config.extra_listen_ports = vec![8443];
        assert_eq!(config.check(), Ok(()));
        assert_eq!(config.listen_ports().collect::<Vec<_>>(), [8080, 8443]);
        assert!(config.listens_on(8443) && config.listens_on(8080) && !config.listens_on(0) && !config.listens_on(80));

        let in_range = config.steering.port_base;
        config.extra_listen_ports = vec![in_range];
        assert!(matches!(config.check(), Err(SmolConfigError::ListenPortInRange { port, .. }) if port == in_range));
        config.extra_listen_ports = vec![0];
        assert_eq!(config.check(), Err(SmolConfigError::ExtraListenPorts { count: 1 }));
        config.extra_listen_ports = (1..=8).collect();
        assert_eq!(config.check(), Err(SmolConfigError::ExtraListenPorts { count: 8 }));

        let mut outbound_only = SmolConfig { listen_port: 0, ..config };
        outbound_only.extra_listen_ports = vec![];
        assert_eq!(outbound_only.listen_ports().count(), 0);
    }
}

//! Tests on real kernel objects. Each test runs on its own thread in a fresh network namespace
//! ([`in_fresh_namespace`]), so the host's interfaces are never touched, and every wait is
//! bounded. Frames are read and written through a real [`Ring`], as the stack will.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::vnet::{self, VirtioNetHdr};
use super::*;
use crate::ring::{Completion, CompletionData, Errno, Op, Ring, RingConfig};

/// How long a test waits for any one frame or completion before it fails.
const WAIT_MS: u64 = 5000;
/// The kernel's address on the test link, and the address our (imaginary) stack answers for.
const KERNEL_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const STACK_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The stack's MAC on a TAP (locally administered).
const STACK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const STACK_PORT: u16 = 9999;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV4: u16 = 0x0800;
/// IEEE 802 local experimental ethertype 1: a frame nobody in the kernel handles.
const ETHERTYPE_EXPERIMENTAL: u16 = 0x88b5;
/// Read buffers: a 1500-byte MTU frame with every header fits.
const FRAME_BYTES: usize = 2048;
/// Completion keys of writes and connects (reads use the queue or socket index).
const WRITE_KEY: u64 = 1000;
const CONNECT_KEY: u64 = 1001;

/// Runs `test` on a new thread in a new network namespace with `lo` up.
fn in_fresh_namespace<T: Send + 'static>(test: impl FnOnce() -> T + Send + 'static) -> T {
    let thread = std::thread::spawn(move || {
        unshare_network_namespace().expect("a fresh network namespace (these tests need root)");
        test()
    });
    thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn assert_blocking_and_cloexec(fd: &OwnedFd) {
    // SAFETY: F_GETFL and F_GETFD only read the descriptor's flags.
    let (status, descriptor) =
        unsafe { (libc::fcntl(fd.as_raw_fd(), libc::F_GETFL), libc::fcntl(fd.as_raw_fd(), libc::F_GETFD)) };
    assert!(status >= 0 && descriptor >= 0);
    assert_eq!(status & libc::O_NONBLOCK, 0, "io_uring needs blocking descriptors");
    assert_ne!(descriptor & libc::FD_CLOEXEC, 0, "descriptors must not leak into spawned processes");
}

/// Fails if io_uring has started a worker thread for this thread's ring: reads and writes on
/// TAP and packet descriptors must complete on the core's own thread (polled, not punted to
/// io-wq, whose workers are named `iou-wrk-<tid of the ring's thread>`).
fn assert_no_io_workers() {
    // SAFETY: gettid has no preconditions.
    let worker = format!("iou-wrk-{}", unsafe { libc::gettid() });
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let comm = std::fs::read_to_string(task.unwrap().path().join("comm")).unwrap_or_default();
        assert_ne!(comm.trim_end(), worker, "io_uring punted an operation to a worker thread");
    }
}

/// One frame as a completion delivered it.
#[derive(Debug)]
struct Frame {
    /// The queue or socket index it came from.
    source: usize,
    bytes: Vec<u8>,
    /// The completion's result (for a TAP read, what the kernel said it read).
    result: u32,
}

/// Reads frames from several TAP queues (several `Op::Read`s in flight each) or packet sockets
/// (one `Op::RecvMulti` each) through one ring, and writes frames.
struct FrameReader {
    ring: Ring,
    fds: Vec<RawFd>,
    multishot: bool,
    frames: VecDeque<Frame>,
    /// Completions of writes and connects, in order.
    others: VecDeque<Completion>,
    /// Every frame read so far, for assertions over the whole run.
    history: Vec<Frame>,
}

impl FrameReader {
    /// Reads of `first_read_bytes` at first, then of [`FRAME_BYTES`].
    fn reads(fds: &[OwnedFd], reads_per_fd: usize, first_read_bytes: usize) -> FrameReader {
        let ring = Ring::new(RingConfig { entries: 64, recv_buffers: 0, recv_buffer_bytes: 0 }).unwrap();
        let mut reader = FrameReader::new(ring, fds, false);
        for source in 0..fds.len() {
            for _ in 0..reads_per_fd {
                reader.arm_read(source, first_read_bytes);
            }
        }
        reader
    }

    fn multishot(fds: &[OwnedFd], buffer_bytes: u32) -> FrameReader {
        let config = RingConfig { entries: 64, recv_buffers: 64, recv_buffer_bytes: buffer_bytes };
        let mut reader = FrameReader::new(Ring::new(config).unwrap(), fds, true);
        for source in 0..fds.len() {
            reader.ring.submit(Op::RecvMulti { fd: reader.fds[source] }, source as u64);
        }
        reader
    }

    fn new(ring: Ring, fds: &[OwnedFd], multishot: bool) -> FrameReader {
        let fds = fds.iter().map(AsRawFd::as_raw_fd).collect();
        FrameReader { ring, fds, multishot, frames: VecDeque::new(), others: VecDeque::new(), history: Vec::new() }
    }

    fn arm_read(&mut self, source: usize, bytes: usize) {
        self.ring.submit(Op::Read { fd: self.fds[source], buf: Vec::with_capacity(bytes) }, source as u64);
    }

    /// Waits once (up to 50 ms) and sorts what completed.
    fn pump(&mut self) {
        let mut out = Vec::new();
        self.ring.wait(Some(Duration::from_millis(50)), &mut out).unwrap();
        for completion in out {
            if completion.key >= WRITE_KEY {
                self.others.push_back(completion);
                continue;
            }
            let source = completion.key as usize;
            match completion.data {
                CompletionData::Buffer(bytes) => {
                    let result = completion.result.unwrap_or_else(|errno| panic!("read from {source}: {errno}"));
                    self.frames.push_back(Frame { source, bytes, result });
                    self.arm_read(source, FRAME_BYTES);
                }
                CompletionData::Provided { buf_id, len } => {
                    let bytes = self.ring.provided(buf_id, len).to_vec();
                    self.ring.recycle(buf_id);
                    self.frames.push_back(Frame { source, bytes, result: completion.result.unwrap() });
                    if !completion.more {
                        self.ring.submit(Op::RecvMulti { fd: self.fds[source] }, source as u64);
                    }
                }
                CompletionData::None if self.multishot => {
                    // A multishot recv that ended without a buffer (ENOBUFS after a burst): re-arm.
                    assert_eq!(completion.result, Err(Errno::NO_BUFFERS), "recv on socket {source}");
                    self.ring.submit(Op::RecvMulti { fd: self.fds[source] }, source as u64);
                }
                other => panic!("unexpected completion from {source}: {:?} {other:?}", completion.result),
            }
        }
    }

    /// The next frame for which `wanted` holds; frames before it are skipped (but kept in the
    /// history). Fails after [`WAIT_MS`].
    fn next(&mut self, what: &str, wanted: impl Fn(&[u8]) -> bool) -> Frame {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
        loop {
            while let Some(frame) = self.frames.pop_front() {
                let found = wanted(&frame.bytes);
                self.history.push(Frame { source: frame.source, bytes: frame.bytes.clone(), result: frame.result });
                if found {
                    return frame;
                }
            }
            if Instant::now() >= deadline {
                for frame in &self.history {
                    eprintln!("read from {}: {:02x?}", frame.source, &frame.bytes[..frame.bytes.len().min(64)]);
                }
                panic!("no {what} within {WAIT_MS} ms");
            }
            self.pump();
        }
    }

    /// Reads for `period` and files every frame in the history.
    fn drain_for(&mut self, period: Duration) {
        let until = Instant::now() + period;
        while Instant::now() < until {
            self.pump();
        }
        self.history.extend(self.frames.drain(..));
    }

    /// The next write or connect completion with `key`.
    fn other(&mut self, key: u64) -> Completion {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
        loop {
            if let Some(at) = self.others.iter().position(|c| c.key == key) {
                return self.others.remove(at).unwrap();
            }
            assert!(Instant::now() < deadline, "no completion with key {key} within {WAIT_MS} ms");
            self.pump();
        }
    }

    /// Writes one frame on `source` with `Op::Write` (or `Op::Send`) and checks it went whole.
    fn write(&mut self, source: usize, frame: Vec<u8>, send: bool) {
        let (fd, length) = (self.fds[source], frame.len());
        let op = if send { Op::Send { fd, buf: frame, offset: 0 } } else { Op::Write { fd, buf: frame, offset: 0 } };
        self.ring.submit(op, WRITE_KEY);
        let done = self.other(WRITE_KEY);
        assert_eq!(done.result, Ok(length as u32), "a frame is written whole or not at all");
    }
}

// ---- Frames: just enough Ethernet/ARP/IPv4/UDP/TCP to drive and check the kernel. ----

fn ethertype(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[12], frame[13]])
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An ARP request asking for `target`, as the kernel sends it.
fn is_arp_request_for(frame: &[u8], target: Ipv4Addr) -> bool {
    frame.len() >= 42
        && ethertype(frame) == ETHERTYPE_ARP
        && frame[20..22] == [0, 1]
        && frame[38..42] == target.octets()
}

fn is_arp_reply(frame: &[u8]) -> bool {
    frame.len() >= 42 && ethertype(frame) == ETHERTYPE_ARP && frame[20..22] == [0, 2]
}

fn arp_reply(sender: ([u8; 6], Ipv4Addr), target: ([u8; 6], Ipv4Addr)) -> Vec<u8> {
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 2];
    arp.extend_from_slice(&sender.0);
    arp.extend_from_slice(&sender.1.octets());
    arp.extend_from_slice(&target.0);
    arp.extend_from_slice(&target.1.octets());
    ethernet(target.0, sender.0, ETHERTYPE_ARP, &arp)
}

/// The IPv4 packet of a frame: (protocol, source, destination, header bytes, total length).
fn ipv4(frame: &[u8]) -> Option<(u8, Ipv4Addr, Ipv4Addr, usize, usize)> {
    if frame.len() < 34 || ethertype(frame) != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = &frame[14..];
    let header = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let address = |at: usize| Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
    Some((ip[9], address(12), address(16), header, total))
}

/// UDP in a frame: (source port, destination port, payload).
fn udp(frame: &[u8]) -> Option<(u16, u16, &[u8])> {
    let (protocol, _, _, header, total) = ipv4(frame)?;
    if protocol != libc::IPPROTO_UDP as u8 || frame.len() < 14 + total {
        return None;
    }
    let segment = &frame[14 + header..14 + total];
    let port = |at: usize| u16::from_be_bytes([segment[at], segment[at + 1]]);
    Some((port(0), port(2), &segment[8..]))
}

/// A TCP SYN in a frame: (source port, destination port).
fn tcp_syn(frame: &[u8]) -> Option<(u16, u16)> {
    let (protocol, _, _, header, _) = ipv4(frame)?;
    let segment = frame.get(14 + header..)?;
    if protocol != libc::IPPROTO_TCP as u8 || segment.len() < 20 || segment[13] & 0x12 != 0x02 {
        return None;
    }
    Some((u16::from_be_bytes([segment[0], segment[1]]), u16::from_be_bytes([segment[2], segment[3]])))
}

/// The Internet checksum's one's-complement sum of `chunks`, folded (not inverted).
fn ones_sum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for chunk in chunks {
        for pair in chunk.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: usize) -> [u8; 12] {
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = protocol;
    pseudo[10..].copy_from_slice(&(length as u16).to_be_bytes());
    pseudo
}

/// Whether the frame's TCP or UDP checksum is complete and right.
fn l4_checksum_ok(frame: &[u8]) -> bool {
    let (protocol, src, dst, header, total) = ipv4(frame).unwrap();
    let segment = &frame[14 + header..14 + total];
    ones_sum(&[&pseudo_header(src, dst, protocol, segment.len()), segment]) == 0xffff
}

/// A UDP frame from the stack to the kernel. `partial`: the checksum field holds only the
/// pseudo-header sum, for a NEEDS_CSUM write; otherwise it is complete.
fn udp_frame(dst_mac: [u8; 6], to: SocketAddr, payload: &[u8], partial: bool) -> Vec<u8> {
    let SocketAddr::V4(to) = to else { panic!("IPv4 only") };
    let length = 8 + payload.len();
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, libc::IPPROTO_UDP as u8, 0, 0];
    ip[2..4].copy_from_slice(&((20 + length) as u16).to_be_bytes());
    ip.extend_from_slice(&STACK_IP.octets());
    ip.extend_from_slice(&to.ip().octets());
    let ip_checksum = !ones_sum(&[&ip]);
    ip[10..12].copy_from_slice(&ip_checksum.to_be_bytes());
    let mut segment = Vec::with_capacity(length);
    segment.extend_from_slice(&STACK_PORT.to_be_bytes());
    segment.extend_from_slice(&to.port().to_be_bytes());
    segment.extend_from_slice(&(length as u16).to_be_bytes());
    segment.extend_from_slice(&[0, 0]);
    segment.extend_from_slice(payload);
    let pseudo = pseudo_header(STACK_IP, *to.ip(), libc::IPPROTO_UDP as u8, length);
    let checksum = if partial { ones_sum(&[&pseudo]) } else { !ones_sum(&[&pseudo, &segment]) };
    segment[6..8].copy_from_slice(&checksum.to_be_bytes());
    ip.extend_from_slice(&segment);
    ethernet(dst_mac, STACK_MAC, ETHERTYPE_IPV4, &ip)
}

/// Splits a frame read from a link into its vnet header (when the link has one) and the
/// Ethernet frame.
fn split(bytes: &[u8], vnet_hdr: bool) -> (Option<VirtioNetHdr>, &[u8]) {
    if !vnet_hdr {
        return (None, bytes);
    }
    let (header, frame) = bytes.split_at(vnet::HEADER_BYTES);
    (Some(VirtioNetHdr::from_bytes(header.try_into().unwrap())), frame)
}

fn with_header(header: VirtioNetHdr, frame: &[u8], vnet_hdr: bool) -> Vec<u8> {
    let mut bytes = if vnet_hdr { header.to_bytes().to_vec() } else { Vec::new() };
    bytes.extend_from_slice(frame);
    bytes
}

// ---- TAP ----

fn tap_arp_udp_round_trip(vnet_hdr: bool) {
    in_fresh_namespace(move || {
        let name = "isotap0";
        let queues = open_tap(name, 2, vnet_hdr).unwrap();
        assert_eq!(queues.len(), 2);
        queues.iter().for_each(assert_blocking_and_cloexec);
        let tap = interface(name).unwrap();
        assert!(!tap.up);
        assert_eq!(tap.mtu, 1500);
        assert!(tap.index > 1, "lo is 1 in a fresh namespace");
        assert_eq!(tap.mac[0] & 0x03, 0x02, "a random, locally administered unicast MAC: {:x?}", tap.mac);
        set_ipv4(name, KERNEL_IP, 24).unwrap();
        set_up(name).unwrap();
        assert!(interface(name).unwrap().up);

        let mut reader = FrameReader::reads(&queues, 2, FRAME_BYTES);
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        socket.send_to(b"hello", (STACK_IP, STACK_PORT)).unwrap();

        // The kernel does not know STACK_IP's MAC yet: it asks first.
        let arp = reader.next("ARP request", |bytes| is_arp_request_for(split(bytes, vnet_hdr).1, STACK_IP));
        assert_eq!(arp.result as usize, arp.bytes.len());
        let (header, frame) = split(&arp.bytes, vnet_hdr);
        if let Some(header) = header {
            assert_eq!(header, VirtioNetHdr::default(), "an ARP frame needs no offload");
        }
        assert_eq!(frame.len(), 42, "one frame per read: exactly the ARP request");
        assert_eq!(frame[..6], [0xff; 6], "broadcast");
        assert_eq!(frame[6..12], tap.mac);
        assert_eq!(frame[28..32], KERNEL_IP.octets(), "sender IP");
        assert_eq!(frame[38..42], STACK_IP.octets(), "target IP");

        // Answer through the ring; the kernel then sends the datagram it held.
        let reply = arp_reply((STACK_MAC, STACK_IP), (tap.mac, KERNEL_IP));
        reader.write(0, with_header(VirtioNetHdr::default(), &reply, vnet_hdr), false);
        let datagram = reader.next("UDP frame", |bytes| {
            udp(split(bytes, vnet_hdr).1).is_some_and(|(_, port, payload)| port == STACK_PORT && payload == b"hello")
        });
        let (header, frame) = split(&datagram.bytes, vnet_hdr);
        assert_eq!(frame[..6], STACK_MAC, "addressed to the MAC our ARP reply gave");
        let (protocol, src, dst, _, total) = ipv4(frame).unwrap();
        assert_eq!((protocol, src, dst), (libc::IPPROTO_UDP as u8, KERNEL_IP, STACK_IP));
        assert_eq!(frame.len(), 14 + total, "one frame per read");
        match header {
            // TUN_F_CSUM lets the kernel leave the UDP checksum to us: partial, described here.
            Some(header) => {
                assert_eq!(header.flags & vnet::VIRTIO_NET_HDR_F_NEEDS_CSUM, vnet::VIRTIO_NET_HDR_F_NEEDS_CSUM);
                assert_eq!((header.csum_start, header.csum_offset), (34, 6), "{header:?}");
                assert_eq!(header.gso_type, vnet::VIRTIO_NET_HDR_GSO_NONE);
            }
            None => assert!(l4_checksum_ok(frame), "without a vnet header every checksum is complete"),
        }

        // A datagram written through the ring reaches the kernel's socket. With a vnet header
        // it asks the kernel to finish the checksum (the kernel checks csum_start/offset).
        let to = socket.local_addr().unwrap();
        let to = SocketAddr::from((KERNEL_IP, to.port()));
        let answer = udp_frame(tap.mac, to, b"world", vnet_hdr);
        let header = VirtioNetHdr {
            flags: vnet::VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..VirtioNetHdr::default()
        };
        reader.write(1, with_header(header, &answer, vnet_hdr), false);
        socket.set_read_timeout(Some(Duration::from_millis(WAIT_MS))).unwrap();
        let mut got = [0u8; 16];
        let (length, from) = socket.recv_from(&mut got).unwrap();
        assert_eq!(&got[..length], b"world");
        assert_eq!(from, SocketAddr::from((STACK_IP, STACK_PORT)));
        assert_no_io_workers();
    });
}

#[test]
fn tap_two_queues_arp_and_udp_through_the_ring() {
    tap_arp_udp_round_trip(false);
}

#[test]
fn tap_two_queues_with_vnet_header_arp_and_udp_through_the_ring() {
    tap_arp_udp_round_trip(true);
}

#[test]
fn tap_read_into_a_short_buffer_truncates_silently_and_drops_the_rest() {
    in_fresh_namespace(|| {
        let queues = open_tap("isotap1", 1, false).unwrap();
        set_ipv4("isotap1", KERNEL_IP, 24).unwrap();
        set_up("isotap1").unwrap();
        // One 20-byte read, then full-size ones. Every frame the kernel sends here is longer:
        // the ARP request the datagram below causes is 42 bytes, IPv6 chatter longer still.
        let mut reader = FrameReader::reads(&queues, 1, 20);
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        socket.send_to(b"hello", (STACK_IP, STACK_PORT)).unwrap();
        let short = reader.next("a first frame", |_| true);
        // The read says 20 bytes: nothing tells the reader the frame was longer.
        assert_eq!((short.result, short.bytes.len()), (20, 20));

        // The rest of that frame is gone: the next reads start new frames.
        let other = Ipv4Addr::new(10, 77, 0, 3);
        socket.send_to(b"hello", (other, STACK_PORT)).unwrap();
        let arp = reader.next("an ARP request for another address", |bytes| is_arp_request_for(bytes, other));
        assert_eq!(arp.bytes.len(), 42);
        for frame in &reader.history {
            let kind = ethertype(&frame.bytes);
            assert!([ETHERTYPE_ARP, ETHERTYPE_IPV4, 0x86dd].contains(&kind), "not a frame start: {frame:x?}");
        }
    });
}

// ---- AF_PACKET on a veth pair ----

/// Our end (the stack reads it with packet sockets) and the kernel's end of the veth pair.
const OURS: &str = "isov0";
const KERNELS: &str = "isov1";
const FANOUT_GROUP: u16 = 7;
const FLOWS: usize = 32;

/// A veth pair, both ends up and running, the kernel's end addressed [`KERNEL_IP`]/24;
/// returns our end.
fn veth_pair() -> Interface {
    create_veth(OURS, KERNELS).unwrap();
    set_ipv4(KERNELS, KERNEL_IP, 24).unwrap();
    // The end brought up second sees its carrier at once and can send at once; the other one
    // waits for the kernel's link watcher (see `set_up`), so wait for both to run.
    set_up(KERNELS).unwrap();
    set_up(OURS).unwrap();
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
    while !(interface(OURS).unwrap().running && interface(KERNELS).unwrap().running) {
        assert!(Instant::now() < deadline, "the veth pair is not running after {WAIT_MS} ms");
        std::thread::sleep(Duration::from_millis(5));
    }
    interface(OURS).unwrap()
}

/// Sends `payload` from `socket` and answers the ARP request it causes through `reader`'s
/// socket 0, as the stack would; returns the datagram's frame.
fn resolve_and_receive(
    reader: &mut FrameReader,
    ours: &Interface,
    socket: &UdpSocket,
    vnet_hdr: bool,
    send: bool,
) -> Frame {
    socket.send_to(b"first", (STACK_IP, STACK_PORT)).unwrap();
    let arp = reader.next("ARP request", |bytes| is_arp_request_for(split(bytes, vnet_hdr).1, STACK_IP));
    let kernel_mac: [u8; 6] = split(&arp.bytes, vnet_hdr).1[6..12].try_into().unwrap();
    let reply = arp_reply((ours.mac, STACK_IP), (kernel_mac, KERNEL_IP));
    reader.write(0, with_header(VirtioNetHdr::default(), &reply, vnet_hdr), send);
    let datagram = reader.next("the first UDP frame", |bytes| {
        udp(split(bytes, vnet_hdr).1).is_some_and(|(_, _, payload)| payload == b"first")
    });
    assert_eq!(split(&datagram.bytes, vnet_hdr).1[..6], ours.mac, "addressed to the MAC our ARP reply gave");
    datagram
}

fn packet_fanout(vnet_hdr: bool) {
    in_fresh_namespace(move || {
        let ours = veth_pair();
        if !vnet_hdr {
            // Without a vnet header nothing would describe partial checksums or merged frames.
            set_offloads(KERNELS, false).unwrap();
            set_offloads(OURS, false).unwrap();
        }
        let sockets: Vec<OwnedFd> = (0..2).map(|_| open_packet(OURS, FANOUT_GROUP, vnet_hdr).unwrap()).collect();
        sockets.iter().for_each(assert_blocking_and_cloexec);
        let mut reader = FrameReader::multishot(&sockets, FRAME_BYTES as u32);

        // ARP through the ring: the reply goes out with Op::Send on one run, Op::Write on the other.
        let first = UdpSocket::bind((KERNEL_IP, 0)).unwrap();
        resolve_and_receive(&mut reader, &ours, &first, vnet_hdr, !vnet_hdr);

        // Many flows: each lands on one socket, whole, one frame per completion.
        let flows: Vec<UdpSocket> = (0..FLOWS).map(|_| UdpSocket::bind((KERNEL_IP, 0)).unwrap()).collect();
        for round in 0..2 {
            for (flow, socket) in flows.iter().enumerate() {
                socket.send_to(format!("flow {flow} round {round}").as_bytes(), (STACK_IP, STACK_PORT)).unwrap();
            }
        }
        let mut sources: BTreeMap<u16, BTreeSet<usize>> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for _ in 0..2 * FLOWS {
            let frame = reader.next("a flow's UDP frame", |bytes| {
                udp(split(bytes, vnet_hdr).1).is_some_and(|(_, _, payload)| payload.starts_with(b"flow "))
            });
            let (header, ethernet) = split(&frame.bytes, vnet_hdr);
            let (_, _, _, _, total) = ipv4(ethernet).unwrap();
            assert_eq!(frame.result as usize, frame.bytes.len());
            assert_eq!(ethernet.len(), 14 + total, "one frame per completion, whole");
            match header {
                // veth offloads are on: the kernel left the UDP checksum partial and says so.
                Some(header) => {
                    assert_eq!(header.flags & vnet::VIRTIO_NET_HDR_F_NEEDS_CSUM, vnet::VIRTIO_NET_HDR_F_NEEDS_CSUM);
                    assert_eq!((header.csum_start, header.csum_offset), (34, 6), "{header:?}");
                }
                None => assert!(l4_checksum_ok(ethernet), "offloads off: complete checksums"),
            }
            let (port, _, payload) = udp(ethernet).unwrap();
            assert!(seen.insert(payload.to_vec()), "a frame arrived twice: {:?}", String::from_utf8_lossy(payload));
            sources.entry(port).or_default().insert(frame.source);
        }
        assert_eq!(sources.len(), FLOWS);
        assert!(sources.values().all(|s| s.len() == 1), "a flow was split across sockets: {sources:?}");
        let used: BTreeSet<usize> = sources.values().flatten().copied().collect();
        // Hashing 32 flows onto 2 sockets puts them all on one with probability 2^-31.
        assert_eq!(used.len(), 2, "the fanout group spread no flows: {sources:?}");

        // A frame another socket sends out of our interface reaches the other end of the veth
        // but not our sockets (PACKET_IGNORE_OUTGOING); our own ARP reply is not read back
        // either (the kernel never loops a group's frames back to that group).
        let other = open_packet(OURS, FANOUT_GROUP + 1, vnet_hdr).unwrap();
        let far_end_socket = [open_packet(KERNELS, FANOUT_GROUP + 2, vnet_hdr).unwrap()];
        let mut far_end = FrameReader::multishot(&far_end_socket, FRAME_BYTES as u32);
        let outgoing = with_header(
            VirtioNetHdr::default(),
            &ethernet([0xff; 6], ours.mac, ETHERTYPE_EXPERIMENTAL, b"outgoing"),
            vnet_hdr,
        );
        // SAFETY: `outgoing` is readable for its length.
        let written = unsafe { libc::write(other.as_raw_fd(), outgoing.as_ptr().cast(), outgoing.len()) };
        assert_eq!(written, outgoing.len() as isize);
        far_end.next("the other socket's frame at the far end", |bytes| {
            ethertype(split(bytes, vnet_hdr).1) == ETHERTYPE_EXPERIMENTAL
        });
        reader.drain_for(Duration::from_millis(100));
        for frame in &reader.history {
            let frame = split(&frame.bytes, vnet_hdr).1;
            assert!(!is_arp_reply(frame), "our own ARP reply was read back");
            assert_ne!(ethertype(frame), ETHERTYPE_EXPERIMENTAL, "an outgoing frame was read");
        }

        if vnet_hdr {
            tcp_checksum_offload(&mut reader);
        }
        assert_no_io_workers();
    });
}

/// With a vnet header: a TCP SYN from the kernel is flagged NEEDS_CSUM while the veth has
/// checksum offload, and comes complete and unflagged once offloads are off.
fn tcp_checksum_offload(reader: &mut FrameReader) {
    let syn_from = |reader: &mut FrameReader| {
        let socket = crate::net::tcp_socket(crate::net::Family::V4).unwrap();
        let bound = crate::net::RawSocketAddr::from(SocketAddr::from((KERNEL_IP, 0)));
        // SAFETY: `bound` is a valid sockaddr of `bound.len()` bytes for the call.
        assert_eq!(unsafe { libc::bind(socket.as_raw_fd(), bound.as_ptr(), bound.len()) }, 0);
        let port = crate::net::local_addr(socket.as_fd()).unwrap().port();
        let to = SocketAddr::from((STACK_IP, 80));
        reader.ring.submit(Op::Connect { fd: socket.as_raw_fd(), addr: to }, CONNECT_KEY);
        let frame = reader.next("a TCP SYN", |bytes| tcp_syn(split(bytes, true).1) == Some((port, 80)));
        (socket, frame)
    };
    let (_pending, frame) = syn_from(reader);
    let (header, _) = split(&frame.bytes, true);
    let header = header.unwrap();
    assert_eq!(header.flags & vnet::VIRTIO_NET_HDR_F_NEEDS_CSUM, vnet::VIRTIO_NET_HDR_F_NEEDS_CSUM, "{header:?}");
    assert_eq!((header.csum_start, header.csum_offset), (34, 16), "{header:?}");
    assert_eq!(header.gso_type, vnet::VIRTIO_NET_HDR_GSO_NONE);

    set_offloads(KERNELS, false).unwrap();
    let (_pending2, frame) = syn_from(reader);
    let (header, ethernet) = split(&frame.bytes, true);
    assert_eq!(header.unwrap().flags & vnet::VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, "{header:?}");
    assert!(l4_checksum_ok(ethernet), "offloads off: the kernel completed the TCP checksum");
}

#[test]
fn packet_fanout_pair_on_veth_through_the_ring() {
    packet_fanout(false);
}

#[test]
fn packet_fanout_pair_on_veth_with_vnet_header_through_the_ring() {
    packet_fanout(true);
}

#[test]
fn packet_recv_multi_cuts_frames_longer_than_a_provided_buffer_silently() {
    in_fresh_namespace(|| {
        let ours = veth_pair();
        set_offloads(KERNELS, false).unwrap();
        set_offloads(OURS, false).unwrap();
        let socket = [open_packet(OURS, FANOUT_GROUP, false).unwrap()];
        // 256-byte provided buffers, and a 600-byte datagram: a 642-byte frame.
        let mut reader = FrameReader::multishot(&socket, 256);
        let client = UdpSocket::bind((KERNEL_IP, 0)).unwrap();
        resolve_and_receive(&mut reader, &ours, &client, false, true);
        client.send_to(&[7u8; 600], (STACK_IP, STACK_PORT)).unwrap();
        let long =
            reader.next("the long datagram", |bytes| ipv4(bytes).is_some_and(|(_, _, _, _, total)| total == 628));
        // The completion says 256: the same as for a 256-byte frame. Only the IP total length
        // (628) tells the stack that the frame was cut.
        assert_eq!((long.result, long.bytes.len()), (256, 256));
        // The rest is dropped, not delivered as a frame of its own.
        client.send_to(b"after", (STACK_IP, STACK_PORT)).unwrap();
        reader.next("the next datagram", |bytes| udp(bytes).is_some_and(|(_, _, payload)| payload == b"after"));
        for frame in &reader.history {
            let kind = ethertype(&frame.bytes);
            assert!([ETHERTYPE_ARP, ETHERTYPE_IPV4, 0x86dd].contains(&kind), "not a frame start: {frame:x?}");
        }
    });
}

// ---- Errors, interface queries, persistence ----

#[test]
fn errors_name_the_cause() {
    in_fresh_namespace(|| {
        let long = "a".repeat(20);
        let error = open_tap(&long, 1, false).unwrap_err();
        assert!(matches!(error, LinkError::InvalidName { .. }), "{error:?}");
        assert!(error.to_string().contains("at most 15 bytes"), "{error}");
        for name in ["", "a/b", "a b", "tap%d", ".."] {
            assert!(matches!(interface(name), Err(LinkError::InvalidName { .. })), "{name:?}");
        }
        assert!(matches!(open_tap("isotap2", 0, false), Err(LinkError::NoQueues { .. })));
        assert!(matches!(open_tap("isotap2", TAP_QUEUES_MAX + 1, false), Err(LinkError::TooManyQueues { .. })));

        // Interfaces that do not exist.
        for error in [
            interface("nosuch0").unwrap_err(),
            open_packet("nosuch0", 1, false).unwrap_err(),
            set_up("nosuch0").unwrap_err(),
            set_ipv4("nosuch0", KERNEL_IP, 24).unwrap_err(),
            set_offloads("nosuch0", false).unwrap_err(),
        ] {
            assert!(matches!(error, LinkError::NoSuchInterface { ref name } if name == "nosuch0"), "{error:?}");
            assert!(error.to_string().contains("ip link show"), "{error}");
        }
        assert!(matches!(set_ipv4("lo", KERNEL_IP, 33), Err(LinkError::InvalidPrefix { prefix: 33, .. })));

        // A name taken by something that is not a multi-queue TAP.
        let single = single_queue_tap("isosq0");
        let error = open_tap("isosq0", 1, false).unwrap_err();
        assert!(matches!(error, LinkError::TapConflict { .. }), "{error:?}");
        assert!(error.to_string().contains("exists with other flags"), "{error}");
        drop(single);
        assert!(matches!(open_tap("lo", 1, false), Err(LinkError::TapConflict { .. })));

        // The same TAP with and without a vnet header: the kernel would silently keep the first
        // opener's flags; we refuse instead. With the same flags, more queues attach.
        let with_header = open_tap("isomq0", 1, true).unwrap();
        let error = open_tap("isomq0", 1, false).unwrap_err();
        assert!(matches!(error, LinkError::TapConflict { .. }), "{error:?}");
        let more = open_tap("isomq0", 2, true).unwrap();
        assert_eq!(with_header.len() + more.len(), 3);

        // A packet socket needs its interface up; a fanout group belongs to one interface.
        let down = open_tap("isotap3", 1, false).unwrap();
        assert!(matches!(open_packet("isotap3", 3, false), Err(LinkError::InterfaceDown { .. })));
        set_up("isotap3").unwrap();
        let _member = open_packet("isotap3", 3, false).unwrap();
        let error = open_packet("lo", 3, false).unwrap_err();
        assert!(matches!(error, LinkError::FanoutConflict { group: 3, .. }), "{error:?}");
        drop(down);

        // veth names already taken; offloads fixed on by the driver.
        let error = create_veth("lo", "isov9").unwrap_err();
        assert!(matches!(error, LinkError::VethExists { .. }), "{error:?}");
        let error = create_veth("isov8", "isov8").unwrap_err();
        assert!(matches!(error, LinkError::VethExists { .. } | LinkError::Netlink { .. }), "{error:?}");
        let error = set_offloads("lo", false).unwrap_err();
        assert!(matches!(error, LinkError::OffloadFixed { ref name, .. } if name == "lo"), "{error:?}");
    });
}

/// A single-queue TAP made with a raw TUNSETIFF (which `open_tap` never makes).
fn single_queue_tap(name: &str) -> OwnedFd {
    let fd = open_tun().unwrap();
    let mut request = ifreq(name).unwrap();
    request.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    ifreq_ioctl(fd.as_fd(), libc::TUNSETIFF, &mut request).unwrap();
    fd
}

#[test]
fn a_tap_has_at_most_the_kernels_queue_limit() {
    in_fresh_namespace(|| {
        let all = open_tap("isoq0", TAP_QUEUES_MAX, false).unwrap();
        assert_eq!(all.len(), TAP_QUEUES_MAX);
        // The kernel refuses one more (E2BIG): our limit is the kernel's.
        let error = open_tap("isoq0", 1, false).unwrap_err();
        assert!(matches!(error, LinkError::TooManyQueues { max: TAP_QUEUES_MAX, .. }), "{error:?}");
    });
}

#[test]
fn interface_reports_lo_and_offloads_round_trip() {
    in_fresh_namespace(|| {
        let lo = interface("lo").unwrap();
        assert_eq!(lo, Interface { index: 1, mac: [0; 6], mtu: 65536, up: true, running: true });

        create_veth(OURS, KERNELS).unwrap();
        let veth = interface(OURS).unwrap();
        assert!(!veth.up && veth.index > 1 && veth.mtu == 1500, "{veth:?}");
        assert_ne!(veth.mac, interface(KERNELS).unwrap().mac);
        set_offloads(OURS, false).unwrap();
        let off = Offloads {
            tx_checksumming: false,
            scatter_gather: false,
            tcp_segmentation: false,
            generic_segmentation: false,
            generic_receive: false,
        };
        assert_eq!(offloads(OURS).unwrap(), off);
        set_offloads(OURS, true).unwrap();
        let on = offloads(OURS).unwrap();
        assert!(on.tx_checksumming && on.scatter_gather && on.tcp_segmentation && on.generic_segmentation, "{on:?}");
        set_offloads(OURS, false).unwrap();
        assert_eq!(offloads(OURS).unwrap(), off);
    });
}

#[test]
fn a_persistent_tap_outlives_its_queues() {
    in_fresh_namespace(|| {
        let queues = open_tap("isop0", 1, true).unwrap();
        set_persistent(queues[0].as_fd(), true).unwrap();
        drop(queues);
        let kept = interface("isop0").unwrap();
        // Reopened with the same flags: the same device.
        let queues = open_tap("isop0", 2, true).unwrap();
        assert_eq!(interface("isop0").unwrap().index, kept.index);
        set_persistent(queues[1].as_fd(), false).unwrap();
        drop(queues);
        // Without persistence the TAP goes with its last queue.
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
        while interface("isop0").is_ok() {
            assert!(Instant::now() < deadline, "the TAP outlived its queues");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(matches!(interface("isop0"), Err(LinkError::NoSuchInterface { .. })));
    });
}

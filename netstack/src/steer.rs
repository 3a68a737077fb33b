//! Flow steering across cores, sans-IO. Every core runs its own smoltcp interface with the
//! same MAC and IP addresses, fed by its own TAP queue or AF_PACKET fanout socket; the kernel
//! spreads inbound flows over the queues by flow hash, so a connection accepted on core K stays
//! on K. Replies to a connection that core K opened may land on any core, though: so each core
//! opens its outbound connections from its own range of local ports, and a core that receives
//! a TCP or UDP frame for a port of another core's range forwards it there ([`Forwarder`]).
//! ARP is processed locally and copied to every other core so every neighbour cache learns;
//! ICMP echo is answered by whichever core gets it. See `docs/why-port-steering.md`.

use std::fmt;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};

/// The first port of the IANA dynamic range, where the per-core ranges start by default.
pub const EPHEMERAL_PORT_BASE: u16 = 49_152;
/// How many frames a core's inbox holds before forwarding to it drops (and counts) frames: a
/// core that stalls must not make the others buffer without bound. 1024 frames of at most
/// 1.5 KiB is 1.5 MiB per core, a few windows' worth of replies.
pub const INBOX_FRAMES_MAX: usize = 1024;

const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IP_PROTOCOL_TCP: u8 = 6;
const IP_PROTOCOL_UDP: u8 = 17;
const IP_PROTOCOL_ICMPV6: u8 = 58;
const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// Where the ARP operation field is in an Ethernet frame.
const ARP_OPERATION_AT: usize = 14 + 6;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;

/// Which core should process a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// This core (also for frames no core wants: smoltcp drops them).
    Local,
    /// Another core, whose outbound port range holds the destination port.
    Core(usize),
    /// This core and, as a copy, every other one (ARP, IPv6 neighbour advertisements).
    Everyone,
}

/// Why a [`Steering`] is inconsistent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, displaydoc::Display)]
pub enum SteeringError {
    /// steering needs at least one core, and core {core} must be below the core count {cores}
    NoSuchCore { core: usize, cores: usize },
    /// {cores} cores x {ports_per_core} ports from {port_base} pass port 65535; lower port_base or ports_per_core
    PortsOverflow { cores: usize, port_base: u16, ports_per_core: u16 },
    /// each core needs at least one outbound port (ports_per_core is 0)
    NoPorts,
}

/// This core's place among the cores, and how outbound ports are split between them: core `k`
/// owns ports `port_base + k * ports_per_core ..` (`ports_per_core` of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Steering {
    pub core: usize,
    pub cores: usize,
    pub port_base: u16,
    pub ports_per_core: u16,
}

impl Steering {
    /// A checked steering.
    pub fn new(core: usize, cores: usize, port_base: u16, ports_per_core: u16) -> Result<Steering, SteeringError> {
        let steering = Steering { core, cores, port_base, ports_per_core };
        steering.check()?;
        Ok(steering)
    }

    /// The dynamic port range 49152..=65535 split evenly over `cores` (16384 ports for one
    /// core, 8192 each for two).
    pub fn even(core: usize, cores: usize) -> Result<Steering, SteeringError> {
        if cores == 0 || core >= cores {
            return Err(SteeringError::NoSuchCore { core, cores });
        }
        let span = 65_536 - u32::from(EPHEMERAL_PORT_BASE);
        let per_core = u16::try_from(span / cores as u32).unwrap_or(u16::MAX);
        Steering::new(core, cores, EPHEMERAL_PORT_BASE, per_core)
    }

    /// One core owning every dynamic port.
    pub fn single() -> Steering {
        Steering { core: 0, cores: 1, port_base: EPHEMERAL_PORT_BASE, ports_per_core: 16_384 }
    }

    /// Whether the fields are consistent (they are public, so a caller may have built one by hand).
    pub fn check(&self) -> Result<(), SteeringError> {
        let Steering { core, cores, port_base, ports_per_core } = *self;
        if cores == 0 || core >= cores {
            return Err(SteeringError::NoSuchCore { core, cores });
        }
        if ports_per_core == 0 {
            return Err(SteeringError::NoPorts);
        }
        let end = u64::from(port_base) + cores as u64 * u64::from(ports_per_core);
        if end > 65_536 {
            return Err(SteeringError::PortsOverflow { cores, port_base, ports_per_core });
        }
        Ok(())
    }

    /// The core whose outbound range holds `port`, if any.
    pub fn port_owner(&self, port: u16) -> Option<usize> {
        let offset = port.checked_sub(self.port_base)?;
        let core = usize::from(offset / self.ports_per_core.max(1));
        (core < self.cores).then_some(core)
    }

    /// This core's outbound ports: the first one and how many.
    pub fn local_ports(&self) -> (u16, u16) {
        let first = u32::from(self.port_base) + self.core as u32 * u32::from(self.ports_per_core);
        (u16::try_from(first).unwrap_or(u16::MAX), self.ports_per_core)
    }

    /// Which core should process `frame` (an Ethernet frame). Never panics; a frame too short
    /// or odd to classify is `Local` (smoltcp then drops it and nobody else pays for it).
    pub fn owner(&self, frame: &[u8]) -> Owner {
        match classify(frame) {
            Class::Arp | Class::NeighborAdvertisement => Owner::Everyone,
            Class::Port { dst_port, .. } => match self.port_owner(dst_port) {
                Some(core) if core != self.core => Owner::Core(core),
                _ => Owner::Local,
            },
            Class::Other => Owner::Local,
        }
    }
}

/// What the steering (and the stack's SYN accounting) needs to know about a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Arp,
    NeighborAdvertisement,
    /// TCP (with its flags) or UDP (flags 0) to `dst_port`.
    Port {
        dst_port: u16,
        tcp_flags: Option<u8>,
    },
    Other,
}

pub(crate) fn classify(frame: &[u8]) -> Class {
    if frame.get(12..14) == Some(&ETHERTYPE_ARP.to_be_bytes()[..]) {
        return Class::Arp;
    }
    let Some(Ip { protocol, transport, .. }) = ip(frame) else { return Class::Other };
    match protocol {
        IP_PROTOCOL_TCP if transport.len() >= 14 => {
            Class::Port { dst_port: u16::from_be_bytes([transport[2], transport[3]]), tcp_flags: Some(transport[13]) }
        }
        IP_PROTOCOL_UDP if transport.len() >= 4 => {
            Class::Port { dst_port: u16::from_be_bytes([transport[2], transport[3]]), tcp_flags: None }
        }
        IP_PROTOCOL_ICMPV6 if transport.first() == Some(&ICMPV6_NEIGHBOR_ADVERTISEMENT) => Class::NeighborAdvertisement,
        _ => Class::Other,
    }
}

/// The IP layer of an Ethernet frame, as far as steering reads it.
struct Ip<'f> {
    protocol: u8,
    /// The source address: 4 or 16 bytes.
    source: &'f [u8],
    transport: &'f [u8],
}

fn ip(frame: &[u8]) -> Option<Ip<'_>> {
    let ethertype = frame.get(12..14)?;
    let ip = &frame[14..];
    match u16::from_be_bytes([ethertype[0], ethertype[1]]) {
        ETHERTYPE_IPV4 => {
            let header_len = usize::from(ip.first()? & 0x0f) * 4;
            if ip[0] >> 4 != 4 || header_len < 20 || ip.len() < header_len {
                return None;
            }
            // Only the first fragment carries ports; later ones are Local (and dropped: smoltcp
            // is built without reassembly).
            if u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0 {
                return None;
            }
            Some(Ip { protocol: ip[9], source: &ip[12..16], transport: &ip[header_len..] })
        }
        ETHERTYPE_IPV6 => {
            // No extension-header walk: TCP, UDP and ICMPv6 directly after the fixed header
            // is what every peer of ours sends; anything else stays Local.
            if ip.len() < 40 || ip[0] >> 4 != 6 {
                return None;
            }
            Some(Ip { protocol: ip[6], source: &ip[8..24], transport: &ip[40..] })
        }
        _ => None,
    }
}

/// A TCP segment's source address bytes (4 or 16), source port, destination port and flags;
/// `None` for anything else.
pub(crate) fn tcp_source(frame: &[u8]) -> Option<(&[u8], u16, u16, u8)> {
    let Ip { protocol, source, transport } = ip(frame)?;
    if protocol != IP_PROTOCOL_TCP || transport.len() < 14 {
        return None;
    }
    let port = |at: usize| u16::from_be_bytes([transport[at], transport[at + 1]]);
    Some((source, port(0), port(2), transport[13]))
}

/// The copy of an ARP frame that other cores get: a request becomes a reply. Every core learns
/// the sender from it (smoltcp fills its cache from any ARP packet aimed at its address) but
/// only the core that got the real request answers it, so the peer sees one reply, not one per
/// core.
pub(crate) fn arp_copy_for_peers(frame: &[u8]) -> Vec<u8> {
    let mut copy = frame.to_vec();
    if let Some(operation) = copy.get_mut(ARP_OPERATION_AT..ARP_OPERATION_AT + 2)
        && u16::from_be_bytes([operation[0], operation[1]]) == ARP_REQUEST
    {
        operation.copy_from_slice(&ARP_REPLY.to_be_bytes());
    }
    copy
}

/// Wakes a core (by index) so it looks at its inbox: the scheduler's per-core wake-up, e.g. an
/// `EventFd::notify`. Called at most once per target core per [`Forwarder::flush_wakes`].
pub type Wake = Arc<dyn Fn(usize) + Send + Sync>;

/// Counters of the forwarding path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwardStats {
    /// Frames handed to another core's inbox.
    pub forwarded: u64,
    /// Frames dropped because the target's inbox was full or gone.
    pub dropped: u64,
}

/// One core's ends of the bounded channels between cores: senders to every other core's inbox,
/// its own inbox, and the wake-up to call after sending. Built for all cores at once by
/// [`Forwarder::mesh`]; a single core uses [`Forwarder::single`].
pub struct Forwarder {
    core: usize,
    /// Indexed by core; `None` for this core.
    peers: Vec<Option<Sender<Vec<u8>>>>,
    inbox: Option<Receiver<Vec<u8>>>,
    wake: Option<Wake>,
    /// Cores sent to since the last wake-up.
    to_wake: Vec<bool>,
    stats: ForwardStats,
}

impl fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forwarder").field("core", &self.core).field("stats", &self.stats).finish()
    }
}

impl Forwarder {
    /// A forwarder for a core alone: nothing to forward to, no inbox.
    pub fn single() -> Forwarder {
        Forwarder {
            core: 0,
            peers: vec![None],
            inbox: None,
            wake: None,
            to_wake: vec![false],
            stats: ForwardStats::default(),
        }
    }

    /// Forwarders for `cores` cores (index = core), each inbox bounded to `inbox_frames`
    /// frames ([`INBOX_FRAMES_MAX`] is a good default). Move each to its core's thread.
    pub fn mesh(cores: usize, inbox_frames: usize, wake: Wake) -> Vec<Forwarder> {
        assert!(cores > 0 && inbox_frames > 0);
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..cores).map(|_| crossbeam_channel::bounded::<Vec<u8>>(inbox_frames)).unzip();
        receivers
            .into_iter()
            .enumerate()
            .map(|(core, inbox)| Forwarder {
                core,
                peers: senders.iter().enumerate().map(|(k, s)| (k != core).then(|| s.clone())).collect(),
                inbox: Some(inbox),
                wake: Some(Arc::clone(&wake)),
                to_wake: vec![false; cores],
                stats: ForwardStats::default(),
            })
            .collect()
    }

    /// The core this forwarder belongs to.
    pub fn core(&self) -> usize {
        self.core
    }

    /// The number of cores it connects.
    pub fn cores(&self) -> usize {
        self.peers.len()
    }

    /// Hands `frame` to core `target`'s inbox; drops and counts it when the inbox is full (a
    /// stalled core must not make others buffer) or gone. The wake-up waits for
    /// [`Forwarder::flush_wakes`], so a batch costs one wake per core.
    pub fn send(&mut self, target: usize, frame: Vec<u8>) -> bool {
        let Some(Some(sender)) = self.peers.get(target) else {
            self.stats.dropped += 1;
            return false;
        };
        match sender.try_send(frame) {
            Ok(()) => {
                self.stats.forwarded += 1;
                self.to_wake[target] = true;
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped += 1;
                false
            }
        }
    }

    /// Wakes every core sent to since the last call.
    pub fn flush_wakes(&mut self) {
        for (core, pending) in self.to_wake.iter_mut().enumerate() {
            if std::mem::take(pending)
                && let Some(wake) = &self.wake
            {
                wake(core);
            }
        }
    }

    /// The next frame another core forwarded to this one, if any.
    pub fn try_recv(&self) -> Option<Vec<u8>> {
        self.inbox.as_ref()?.try_recv().ok()
    }

    /// Whether frames wait in this core's inbox.
    pub fn has_inbound(&self) -> bool {
        self.inbox.as_ref().is_some_and(|inbox| !inbox.is_empty())
    }

    /// Takes this core's inbox, for a scheduler that drains it itself and hands each frame to
    /// `SmolNet::receive_forwarded`. The stack then no longer looks at it.
    pub fn take_inbox(&mut self) -> Option<Receiver<Vec<u8>>> {
        self.inbox.take()
    }

    pub fn stats(&self) -> ForwardStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn ethernet(ethertype: u16) -> Vec<u8> {
        let mut frame = vec![0xff; 12];
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame
    }

    fn tcp_v4(dst_port: u16, fragment: u16) -> Vec<u8> {
        let mut frame = ethernet(ETHERTYPE_IPV4);
        let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0, 0, 64, IP_PROTOCOL_TCP, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        ip[6..8].copy_from_slice(&fragment.to_be_bytes());
        frame.extend_from_slice(&ip);
        let mut tcp = vec![0u8; 20];
        tcp[2..4].copy_from_slice(&dst_port.to_be_bytes());
        tcp[13] = 0x02;
        frame.extend_from_slice(&tcp);
        frame
    }

    fn ipv6(next_header: u8, transport: &[u8]) -> Vec<u8> {
        let mut frame = ethernet(ETHERTYPE_IPV6);
        let mut ip = vec![0x60, 0, 0, 0, 0, 0, next_header, 64];
        ip.extend_from_slice(&[0; 32]);
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(transport);
        frame
    }

    #[test]
    fn port_ranges_are_disjoint_and_checked() {
        let s = Steering::even(1, 2).unwrap();
        assert_eq!(s, Steering { core: 1, cores: 2, port_base: 49152, ports_per_core: 8192 });
        assert_eq!(s.local_ports(), (57344, 8192));
        assert_eq!(s.port_owner(49151), None);
        assert_eq!(s.port_owner(49152), Some(0));
        assert_eq!(s.port_owner(57343), Some(0));
        assert_eq!(s.port_owner(57344), Some(1));
        assert_eq!(s.port_owner(65535), Some(1));
        assert_eq!(Steering::single().check(), Ok(()));
        assert_eq!(Steering::single().local_ports(), (49152, 16384));
        assert_eq!(Steering::even(2, 2), Err(SteeringError::NoSuchCore { core: 2, cores: 2 }));
        assert_eq!(Steering::new(0, 0, 1, 1), Err(SteeringError::NoSuchCore { core: 0, cores: 0 }));
        assert_eq!(Steering::new(0, 1, 1, 0), Err(SteeringError::NoPorts));
        assert!(matches!(Steering::new(0, 3, 60000, 2000), Err(SteeringError::PortsOverflow { .. })));
        // A range that ends exactly at 65535.
        assert_eq!(Steering::new(0, 3, 65533, 1).unwrap().port_owner(65535), Some(2));
        // Hand-built and inconsistent: still no panic.
        let broken = Steering { core: 5, cores: 2, port_base: 65535, ports_per_core: 0 };
        assert_eq!(broken.port_owner(65535), Some(0));
        assert_eq!(broken.owner(&tcp_v4(65535, 0)), Owner::Core(0));
    }

    #[test]
    fn frames_go_to_the_owner_of_their_destination_port() {
        let s = Steering::even(0, 2).unwrap();
        assert_eq!(s.owner(&tcp_v4(8080, 0)), Owner::Local, "the listening port is everyone's");
        assert_eq!(s.owner(&tcp_v4(50000, 0)), Owner::Local, "our own range");
        assert_eq!(s.owner(&tcp_v4(60000, 0)), Owner::Core(1));
        assert_eq!(s.owner(&tcp_v4(60000, 0x2000)), Owner::Core(1), "a first fragment (MF) has ports");
        assert_eq!(s.owner(&tcp_v4(60000, 0x0010)), Owner::Local, "later fragments have none");
        let mut udp = tcp_v4(60000, 0);
        udp[14 + 9] = IP_PROTOCOL_UDP;
        assert_eq!(s.owner(&udp), Owner::Core(1));
        let mut tcp6 = vec![0u8; 20];
        tcp6[2..4].copy_from_slice(&60001u16.to_be_bytes());
        assert_eq!(s.owner(&ipv6(IP_PROTOCOL_TCP, &tcp6)), Owner::Core(1));
        assert_eq!(classify(&ipv6(IP_PROTOCOL_TCP, &tcp6)), Class::Port { dst_port: 60001, tcp_flags: Some(0) });
    }

    #[test]
    fn neighbour_discovery_goes_everywhere_and_echo_stays() {
        let s = Steering::even(0, 2).unwrap();
        assert_eq!(s.owner(&ethernet(ETHERTYPE_ARP)), Owner::Everyone);
        assert_eq!(s.owner(&ipv6(IP_PROTOCOL_ICMPV6, &[136, 0, 0, 0])), Owner::Everyone);
        assert_eq!(
            s.owner(&ipv6(IP_PROTOCOL_ICMPV6, &[135, 0, 0, 0])),
            Owner::Local,
            "solicitations are answered here"
        );
        assert_eq!(s.owner(&ipv6(IP_PROTOCOL_ICMPV6, &[128, 0, 0, 0])), Owner::Local, "echo");
        let mut icmp = tcp_v4(0, 0);
        icmp[14 + 9] = 1;
        assert_eq!(s.owner(&icmp), Owner::Local);
    }

    #[test]
    fn arp_requests_reach_peers_as_replies() {
        let mut request = ethernet(ETHERTYPE_ARP);
        request.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        request.extend_from_slice(&[0; 20]);
        let copy = arp_copy_for_peers(&request);
        assert_eq!(&copy[ARP_OPERATION_AT..ARP_OPERATION_AT + 2], &[0, 2]);
        assert_eq!(copy[..ARP_OPERATION_AT], request[..ARP_OPERATION_AT]);
        assert_eq!(arp_copy_for_peers(&copy), copy, "replies are copied as they are");
        assert_eq!(arp_copy_for_peers(&request[..15]), request[..15].to_vec(), "short frames too");
    }

    #[test]
    fn short_and_odd_frames_are_local() {
        let s = Steering::even(0, 2).unwrap();
        let full = tcp_v4(60000, 0);
        for cut in 0..full.len() {
            let expected = if cut >= 14 + 20 + 14 { Owner::Core(1) } else { Owner::Local };
            assert_eq!(s.owner(&full[..cut]), expected, "cut at {cut}");
        }
        let mut bad_ihl = full.clone();
        bad_ihl[14] = 0x4f; // 60-byte header in a 40-byte packet
        assert_eq!(s.owner(&bad_ihl), Owner::Local);
    }

    #[test]
    fn forwarding_is_bounded_and_wakes_once_per_batch() {
        let woken = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&woken);
        let mut mesh = Forwarder::mesh(3, 2, Arc::new(move |core| log.lock().unwrap().push(core)));
        let mut third = mesh.pop().unwrap();
        let second = mesh.pop().unwrap();
        let mut first = mesh.pop().unwrap();
        assert!(first.send(1, vec![1]));
        assert!(first.send(1, vec![2]));
        assert!(!first.send(1, vec![3]), "the inbox holds 2 frames");
        assert!(!first.send(0, vec![4]), "no channel to itself");
        assert!(!first.send(9, vec![5]), "no such core");
        assert!(first.send(2, vec![6]));
        assert_eq!(first.stats(), ForwardStats { forwarded: 3, dropped: 3 });
        assert!(woken.lock().unwrap().is_empty(), "no wake before the flush");
        first.flush_wakes();
        first.flush_wakes();
        assert_eq!(*woken.lock().unwrap(), vec![1, 2]);
        assert!(second.has_inbound());
        assert_eq!(second.try_recv(), Some(vec![1]));
        assert_eq!(second.try_recv(), Some(vec![2]));
        assert_eq!(second.try_recv(), None);
        let inbox = third.take_inbox().unwrap();
        assert_eq!(inbox.try_recv(), Ok(vec![6]));
        assert!(!third.has_inbound());
        assert_eq!(Forwarder::single().cores(), 1);
    }
}

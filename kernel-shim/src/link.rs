//! Raw links for the userspace TCP/IP stack: multi-queue TAP devices and AF_PACKET sockets in
//! a fanout group, one queue or socket per core, plus the few interface ioctls that tests and
//! operators need (index, MAC, MTU, up, IPv4 address, offloads), a veth pair and a private
//! network namespace for tests.
//!
//! Frames move through the core's [`Ring`](crate::ring::Ring), one frame per operation:
//! - a TAP queue: each [`Op::Read`](crate::ring::Op::Read) returns exactly one frame (keep
//!   several in flight per queue); each [`Op::Write`](crate::ring::Op::Write) sends one frame,
//!   all of it or nothing.
//! - a packet socket: [`Op::RecvMulti`](crate::ring::Op::RecvMulti) posts one completion per
//!   frame, never two frames in one buffer; [`Op::Send`](crate::ring::Op::Send) and `Op::Write`
//!   send one frame.
//!
//! Buffers must hold the largest frame: [`vnet::HEADER_BYTES`] (when opened with `vnet_hdr`) +
//! 14 (Ethernet) + 4 (a VLAN tag, if any) + the MTU. A longer frame is cut silently, on both
//! links: the completion's result is the buffer's size, exactly as for a frame that fit, and the
//! rest of the frame is dropped (the next completion starts a new frame). Only the IP total
//! length, larger than the bytes received, shows the cut; the stack drops such frames. Frames
//! longer than the MTU come from offloads (GRO on the interface read, TSO/GSO on a veth's other
//! end): turn those off with [`set_offloads`].
//!
//! Every descriptor is blocking and close-on-exec: io_uring tries each operation without
//! blocking and parks it on a poll when it would block, whereas `O_NONBLOCK` would only make
//! it fail with EAGAIN.

mod netlink;
pub mod vnet;

use std::io;
use std::mem::{size_of, zeroed};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::net::set_int_option;

/// The most queues one TAP can have: `MAX_TAP_QUEUES` in drivers/net/tun.c.
pub const TAP_QUEUES_MAX: usize = 256;

/// AF_PACKET socket options and fanout modes (include/uapi/linux/if_packet.h).
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_FANOUT_HASH: u32 = 0;
/// The fanout group's own "ignore outgoing" (Linux >= 6.9; older kernels ignore the flag): a
/// socket in a fanout group receives through the group's hook, to which the socket option
/// PACKET_IGNORE_OUTGOING does not apply (a test shows that without this flag the group reads
/// frames that other senders transmit on the interface). The group never reads its own
/// members' frames either way.
const PACKET_FANOUT_FLAG_IGNORE_OUTGOING: u32 = 0x4000;

/// The legacy ethtool feature commands (include/uapi/linux/ethtool.h): (name as `ethtool -k`
/// prints it, get, set). Enabling goes in this order (TSO needs scatter-gather, which needs
/// checksumming); disabling in the reverse order.
const OFFLOADS: [(&str, u32, u32); 5] = [
    ("tx-checksumming", 0x16, 0x17),
    ("scatter-gather", 0x18, 0x19),
    ("tcp-segmentation-offload", 0x1e, 0x1f),
    ("generic-segmentation-offload", 0x23, 0x24),
    ("generic-receive-offload", 0x2b, 0x2c),
];

/// Why a link could not be opened or configured.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum LinkError {
    /// interface name {name:?} is invalid: {reason}
    InvalidName { name: String, reason: &'static str },
    /// {operation} needs {capability} (run as root)
    PermissionDenied { operation: &'static str, capability: &'static str },
    /// /dev/net/tun cannot be opened ({error}): load the tun module (modprobe tun) or create the device node (mkdir -p /dev/net && mknod /dev/net/tun c 10 200)
    TunMissing { error: io::Error },
    /// no interface named {name} in this network namespace (ip link show)
    NoSuchInterface { name: String },
    /// interface {name} is down, so a packet socket cannot join its fanout group; bring it up first (link::set_up, or ip link set {name} up)
    InterfaceDown { name: String },
    /// a TAP named {name} exists with other flags (multi-queue/vnet header), or {name} is not a TAP; delete it (ip link del {name}) or use another name
    TapConflict { name: String },
    /// TAP {name} would have more than {max} queues, the kernel's limit (MAX_TAP_QUEUES); open fewer queues
    TooManyQueues { name: String, max: usize },
    /// TAP {name} was asked for 0 queues; open at least one
    NoQueues { name: String },
    /// the IPv4 prefix length /{prefix} for {name} is over 32
    InvalidPrefix { name: String, prefix: u8 },
    /// the kernel has no AF_PACKET sockets ({error}): load the af_packet module (modprobe af_packet) or build the kernel with CONFIG_PACKET
    PacketUnsupported { error: io::Error },
    /// fanout group {group} is used in this network namespace by sockets on another interface than {name} or with another mode; choose another group id
    FanoutConflict { name: String, group: u16 },
    /// fanout group {group} on {name} is full (the kernel's limit of sockets per group); open fewer sockets or use another group
    FanoutFull { name: String, group: u16 },
    /// the {feature} offload of {name} is fixed on by its driver and cannot be turned off; complete partial checksums in the stack (open the link with vnet_hdr) or use another device
    OffloadFixed { name: String, feature: &'static str },
    /// cannot create veth pair {pair}: an interface with one of these names exists; delete it (ip link del NAME) or choose other names
    VethExists { pair: String },
    /// cannot create veth pair {pair}: the kernel has no veth driver; load it (modprobe veth) or build the kernel with CONFIG_VETH
    VethUnsupported { pair: String },
    /// creating veth pair {pair} over rtnetlink failed: {error}{kernel_message}
    Netlink { pair: String, error: io::Error, kernel_message: String },
    /// cannot create a network namespace (unshare(CLONE_NEWNET)): {error}; the kernel needs CONFIG_NET_NS, and no seccomp filter or container policy may block unshare
    Namespace { error: io::Error },
    /// {operation} on {name} failed: {error}
    Io { operation: &'static str, name: String, error: io::Error },
}

/// An interface as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interface {
    pub index: u32,
    /// The first 6 bytes of the hardware address (all of an Ethernet MAC; zeros for `lo`).
    pub mac: [u8; 6],
    pub mtu: u32,
    /// IFF_UP: administratively up.
    pub up: bool,
    /// IFF_RUNNING: operationally up, i.e. carrier on and the kernel's link watcher has seen it.
    /// Until then a frame written to a packet socket on the interface may be dropped silently
    /// (its queueing discipline is still the drop-everything placeholder); see [`set_up`].
    pub running: bool,
}

/// Which offloads an interface has on, as `ethtool -k` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offloads {
    pub tx_checksumming: bool,
    pub scatter_gather: bool,
    pub tcp_segmentation: bool,
    pub generic_segmentation: bool,
    pub generic_receive: bool,
}

/// Opens (creating if needed) TAP `name` with `queues` queues and returns one descriptor per
/// queue (blocking, close-on-exec), for one core each.
///
/// The TAP is always IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE, so one queue or many behave the
/// same. With `vnet_hdr` it is IFF_VNET_HDR too: every frame, read or written, starts with a
/// [`vnet::VirtioNetHdr`] of [`vnet::HEADER_BYTES`] (TUNSETVNETHDRSZ), and the kernel is told
/// we handle partial checksums (TUNSETOFFLOAD with TUN_F_CSUM): it may hand us frames flagged
/// NEEDS_CSUM, which the stack completes, and it completes the checksums of frames we write with
/// NEEDS_CSUM. Without `vnet_hdr` all offloads are off, so every frame read is complete.
///
/// The TAP is deleted when its last queue closes, unless made persistent ([`set_persistent`]).
/// Attaching to an existing TAP works when its flags are the same; otherwise the error says so.
pub fn open_tap(name: &str, queues: usize, vnet_hdr: bool) -> Result<Vec<OwnedFd>, LinkError> {
    let mut request = ifreq(name)?;
    if queues == 0 {
        return Err(LinkError::NoQueues { name: name.to_owned() });
    }
    if queues > TAP_QUEUES_MAX {
        return Err(LinkError::TooManyQueues { name: name.to_owned(), max: TAP_QUEUES_MAX });
    }
    let vnet_flag = if vnet_hdr { libc::IFF_VNET_HDR } else { 0 };
    let flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE | vnet_flag;
    // The flags that must match what the TAP already has (TUNGETIFF reports these).
    let compared = libc::IFF_TUN | libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE | libc::IFF_VNET_HDR;

    let mut fds = Vec::with_capacity(queues);
    for _ in 0..queues {
        let fd = open_tun()?;
        request.ifr_ifru.ifru_flags = flags as libc::c_short;
        ifreq_ioctl(fd.as_fd(), libc::TUNSETIFF, &mut request).map_err(|error| match error.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => LinkError::PermissionDenied {
                operation: "opening a TAP queue (TUNSETIFF)",
                capability: "CAP_NET_ADMIN",
            },
            // EINVAL: not a TAP, or multi-queue differs; EBUSY: a single-queue TAP in use.
            Some(libc::EINVAL | libc::EBUSY) => LinkError::TapConflict { name: name.to_owned() },
            Some(libc::E2BIG) => LinkError::TooManyQueues { name: name.to_owned(), max: TAP_QUEUES_MAX },
            _ => LinkError::Io { operation: "opening a TAP queue (TUNSETIFF)", name: name.to_owned(), error },
        })?;
        // While other queues are attached, the kernel keeps the TAP's flags and silently ignores
        // ours (a vnet header we did not ask for would corrupt every frame): compare.
        let mut current = ifreq(name)?;
        ifreq_ioctl(fd.as_fd(), libc::TUNGETIFF, &mut current)
            .map_err(|error| io_error("reading a TAP's flags (TUNGETIFF)", name, error))?;
        // SAFETY: TUNGETIFF filled in `ifru_flags`; any bit pattern is a valid c_short.
        let actual = libc::c_int::from(unsafe { current.ifr_ifru.ifru_flags }) & compared;
        if actual != flags {
            return Err(LinkError::TapConflict { name: name.to_owned() });
        }
        fds.push(fd);
    }

    // The header size and the offloads belong to the TAP, not to a queue: set them once.
    let first = fds[0].as_fd();
    if vnet_hdr {
        let header_bytes = vnet::HEADER_BYTES as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one c_int through the pointer, which is live.
        let rc = unsafe { libc::ioctl(first.as_raw_fd(), libc::TUNSETVNETHDRSZ, &raw const header_bytes) };
        check(rc).map_err(|error| io_error("setting the vnet header size (TUNSETVNETHDRSZ)", name, error))?;
    }
    let offloads = if vnet_hdr { libc::TUN_F_CSUM } else { 0 };
    // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is passed.
    let rc = unsafe { libc::ioctl(first.as_raw_fd(), libc::TUNSETOFFLOAD, libc::c_ulong::from(offloads)) };
    check(rc).map_err(|error| io_error("setting the TAP's offloads (TUNSETOFFLOAD)", name, error))?;
    Ok(fds)
}

/// Makes the TAP behind queue `fd` outlive its queues (TUNSETPERSIST), or not: a test can
/// pre-create a TAP, and an operator's TAP survives a restart of the process.
pub fn set_persistent(fd: BorrowedFd<'_>, persistent: bool) -> Result<(), LinkError> {
    // SAFETY: TUNSETPERSIST takes its argument by value; no memory is passed.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, libc::c_ulong::from(persistent)) };
    check(rc).map_err(|error| match error.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => LinkError::PermissionDenied {
            operation: "making a TAP persistent (TUNSETPERSIST)",
            capability: "CAP_NET_ADMIN",
        },
        _ => LinkError::Io { operation: "TUNSETPERSIST", name: "a TAP queue".to_owned(), error },
    })
}

/// An AF_PACKET raw socket (blocking, close-on-exec) on interface `name` that receives every
/// frame (ETH_P_ALL) and sends whole Ethernet frames. Call it once per core with the same
/// `group`: the sockets form a PACKET_FANOUT_HASH group, so the kernel spreads frames over them
/// by flow hash and every frame of one flow reaches the same socket (the same core). Frames the
/// sockets send are not read back (PACKET_IGNORE_OUTGOING, on the socket and on the group).
/// With `vnet_hdr`, frames in both directions start with a [`vnet::VirtioNetHdr`], which
/// describes partial checksums and GSO frames instead of passing them on silently.
///
/// Turn GRO off on the interface (and TSO/GSO on a veth's other end) with [`set_offloads`]:
/// otherwise the kernel may hand over merged frames of up to 64 KiB, which a buffer sized for
/// the MTU cuts (with `vnet_hdr` their header says GSO; without, nothing does).
///
/// The interface must be up (a fanout group only takes running sockets). Frames that arrive
/// between the socket's bind and its joining the group go to that socket alone; the ifindex is
/// fixed at open, so a re-created interface needs new sockets. A receive ends with ENETDOWN when
/// the interface goes down; re-arm it.
pub fn open_packet(name: &str, group: u16, vnet_hdr: bool) -> Result<OwnedFd, LinkError> {
    let control = control_socket(name)?;
    let index = query(control.as_fd(), name, libc::SIOCGIFINDEX, "reading an interface's index (SIOCGIFINDEX)")?;
    // SAFETY: SIOCGIFINDEX filled in `ifru_ifindex`.
    let index = unsafe { index.ifr_ifru.ifru_ifindex };

    // Protocol 0: the socket receives nothing until bound to the interface below, so it never
    // sees another interface's frames.
    // SAFETY: socket only reads its integer arguments.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        let error = io::Error::last_os_error();
        return Err(match error.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => {
                LinkError::PermissionDenied { operation: "opening an AF_PACKET socket", capability: "CAP_NET_RAW" }
            }
            Some(libc::EAFNOSUPPORT) => LinkError::PacketUnsupported { error },
            _ => LinkError::Io { operation: "opening an AF_PACKET socket", name: name.to_owned(), error },
        });
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };

    set_int_option(socket.as_fd(), libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        .map_err(|error| io_error("setting PACKET_IGNORE_OUTGOING (Linux >= 4.20)", name, error))?;
    if vnet_hdr {
        set_int_option(socket.as_fd(), libc::SOL_PACKET, PACKET_VNET_HDR, 1)
            .map_err(|error| io_error("setting PACKET_VNET_HDR", name, error))?;
    }

    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut address: libc::sockaddr_ll = unsafe { zeroed() };
    address.sll_family = libc::AF_PACKET as libc::c_ushort;
    address.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    address.sll_ifindex = index;
    // SAFETY: `address` is a live sockaddr_ll of the size passed.
    let rc = unsafe {
        libc::bind(socket.as_raw_fd(), (&raw const address).cast(), size_of::<libc::sockaddr_ll>() as libc::socklen_t)
    };
    check(rc).map_err(|error| io_error("binding a packet socket", name, error))?;

    if !interface(name)?.up {
        return Err(LinkError::InterfaceDown { name: name.to_owned() });
    }
    let mode = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
    let fanout = (u32::from(group) | (mode << 16)) as libc::c_int;
    set_int_option(socket.as_fd(), libc::SOL_PACKET, PACKET_FANOUT, fanout).map_err(|error| {
        match error.raw_os_error() {
            Some(libc::EINVAL) => LinkError::FanoutConflict { name: name.to_owned(), group },
            Some(libc::ENOSPC) => LinkError::FanoutFull { name: name.to_owned(), group },
            _ => io_error("joining a fanout group (PACKET_FANOUT)", name, error),
        }
    })?;
    Ok(socket)
}

/// Index, MAC, MTU and state of interface `name`.
pub fn interface(name: &str) -> Result<Interface, LinkError> {
    let control = control_socket(name)?;
    let control = control.as_fd();
    let index = query(control, name, libc::SIOCGIFINDEX, "reading an interface's index (SIOCGIFINDEX)")?;
    let hardware = query(control, name, libc::SIOCGIFHWADDR, "reading an interface's MAC (SIOCGIFHWADDR)")?;
    let mtu = query(control, name, libc::SIOCGIFMTU, "reading an interface's MTU (SIOCGIFMTU)")?;
    let flags = query(control, name, libc::SIOCGIFFLAGS, "reading an interface's flags (SIOCGIFFLAGS)")?;
    // SAFETY: each ioctl above filled in the union member read from its answer; every member is
    // plain old data valid for any bit pattern.
    let (index, address, mtu, flags) = unsafe {
        (
            index.ifr_ifru.ifru_ifindex,
            hardware.ifr_ifru.ifru_hwaddr.sa_data,
            mtu.ifr_ifru.ifru_mtu,
            flags.ifr_ifru.ifru_flags,
        )
    };
    let mut mac = [0u8; 6];
    for (byte, &raw) in mac.iter_mut().zip(&address) {
        *byte = raw as u8;
    }
    Ok(Interface {
        index: index as u32,
        mac,
        mtu: mtu as u32,
        up: libc::c_int::from(flags) & libc::IFF_UP != 0,
        running: libc::c_int::from(flags) & libc::IFF_RUNNING != 0,
    })
}

/// Brings interface `name` up (IFF_UP), `lo` included.
///
/// If the carrier is on at that moment (a TAP with a queue attached, a veth whose peer is up),
/// the interface can send at once. If the carrier comes on later (the first end of a veth pair
/// brought up, a NIC still negotiating), the kernel only starts sending once its link watcher
/// has run, up to a second later: frames written before then are dropped without an error.
/// Wait for [`Interface::running`] where the first frames matter; TCP and ARP retry anyway.
pub fn set_up(name: &str) -> Result<(), LinkError> {
    let control = control_socket(name)?;
    let mut request = query(control.as_fd(), name, libc::SIOCGIFFLAGS, "reading an interface's flags (SIOCGIFFLAGS)")?;
    // SAFETY: SIOCGIFFLAGS filled in `ifru_flags`; any bit pattern is a valid c_short.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    request.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    ifreq_ioctl(control.as_fd(), libc::SIOCSIFFLAGS, &mut request)
        .map_err(|error| io_error("bringing an interface up (SIOCSIFFLAGS)", name, error))
}

/// Gives interface `name` the IPv4 address `addr/prefix`: the kernel's own address on that
/// link (the userspace stack has its own), for tests and operators.
pub fn set_ipv4(name: &str, addr: Ipv4Addr, prefix: u8) -> Result<(), LinkError> {
    if prefix > 32 {
        return Err(LinkError::InvalidPrefix { name: name.to_owned(), prefix });
    }
    let control = control_socket(name)?;
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    // SIOCSIFADDR gives the address its classful mask; SIOCSIFNETMASK then sets ours and
    // re-derives the broadcast address and the prefix route.
    for (request, value, operation) in [
        (libc::SIOCSIFADDR, addr, "setting an IPv4 address (SIOCSIFADDR)"),
        (libc::SIOCSIFNETMASK, Ipv4Addr::from(mask), "setting an IPv4 netmask (SIOCSIFNETMASK)"),
    ] {
        let mut ifreq = ifreq(name)?;
        // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
        let mut inet: libc::sockaddr_in = unsafe { zeroed() };
        inet.sin_family = libc::AF_INET as libc::sa_family_t;
        inet.sin_addr.s_addr = u32::from(value).to_be();
        // SAFETY: the union member `ifru_addr` is a 16-byte `struct sockaddr`, exactly the size
        // of a sockaddr_in (the kernel reads it as one for AF_INET); the write is unaligned-safe.
        unsafe { std::ptr::write_unaligned((&raw mut ifreq.ifr_ifru.ifru_addr).cast::<libc::sockaddr_in>(), inet) };
        ifreq_ioctl(control.as_fd(), request, &mut ifreq).map_err(|error| io_error(operation, name, error))?;
    }
    Ok(())
}

/// Turns tx checksumming, scatter-gather, TSO, GSO and GRO of interface `name` off (or on) with
/// the ethtool ioctl, like `ethtool -K name tx off sg off tso off gso off gro off`. With them
/// off the kernel hands a packet socket complete checksums and MTU-sized frames, which a stack
/// reading without a vnet header needs. Turning off fails when a feature is fixed on (e.g. on
/// `lo`); turning on enables what the driver allows.
pub fn set_offloads(name: &str, enabled: bool) -> Result<(), LinkError> {
    checked_name(name)?;
    let control = control_socket(name)?;
    let order: Vec<_> = if enabled { OFFLOADS.iter().collect() } else { OFFLOADS.iter().rev().collect() };
    for &(feature, get, set) in order {
        match ethtool(control.as_fd(), name, set, u32::from(enabled)) {
            Ok(_) => {}
            // The driver does not let this feature change; only a problem if it stays on.
            Err(error) if error.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            Err(error) => return Err(offload_error(name, error)),
        }
        if !enabled && ethtool(control.as_fd(), name, get, 0).map_err(|error| offload_error(name, error))? != 0 {
            return Err(LinkError::OffloadFixed { name: name.to_owned(), feature });
        }
    }
    Ok(())
}

/// Which offloads interface `name` has on (the ethtool ioctl).
pub fn offloads(name: &str) -> Result<Offloads, LinkError> {
    checked_name(name)?;
    let control = control_socket(name)?;
    let mut on = [false; OFFLOADS.len()];
    for (on, &(_, get, _)) in on.iter_mut().zip(&OFFLOADS) {
        *on = ethtool(control.as_fd(), name, get, 0).map_err(|error| offload_error(name, error))? != 0;
    }
    let [tx_checksumming, scatter_gather, tcp_segmentation, generic_segmentation, generic_receive] = on;
    Ok(Offloads { tx_checksumming, scatter_gather, tcp_segmentation, generic_segmentation, generic_receive })
}

/// Moves the calling *thread* into a new, empty network namespace (unshare(CLONE_NEWNET)) and
/// brings its `lo` up. The process's other threads stay where they were; sockets and devices
/// this thread opens afterwards, threads and processes it spawns, are in the new namespace. The
/// namespace vanishes when its last thread has gone and its last socket or device is closed.
/// For tests: a namespace per test thread keeps the host's interfaces untouched.
pub fn unshare_network_namespace() -> Result<(), LinkError> {
    // SAFETY: unshare only reads its flags; CLONE_NEWNET changes which namespace this thread's
    // later sockets and ioctls address, nothing in this process's memory.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        let error = io::Error::last_os_error();
        return Err(match error.raw_os_error() {
            Some(libc::EPERM) => {
                LinkError::PermissionDenied { operation: "unshare(CLONE_NEWNET)", capability: "CAP_SYS_ADMIN" }
            }
            _ => LinkError::Namespace { error },
        });
    }
    set_up("lo")
}

/// Creates veth pair `name` <-> `peer` in the calling thread's network namespace (an rtnetlink
/// RTM_NEWLINK request), both ends down: frames sent on one end arrive on the other.
pub fn create_veth(name: &str, peer: &str) -> Result<(), LinkError> {
    netlink::create_veth(name, peer)
}

/// `name` as a NUL-padded `ifr_name`, if the kernel would accept it (`dev_valid_name`).
fn checked_name(name: &str) -> Result<[u8; libc::IFNAMSIZ], LinkError> {
    let invalid = |reason| Err(LinkError::InvalidName { name: name.to_owned(), reason });
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() >= libc::IFNAMSIZ {
        return invalid("Linux allows at most 15 bytes (IFNAMSIZ - 1); choose a shorter name");
    }
    if name == "." || name == ".." || name.bytes().any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        return invalid("it is '.' or '..', or contains '/', ':', NUL or whitespace");
    }
    if name.contains('%') {
        return invalid("'%' asks the kernel to pick a name; give the exact name");
    }
    let mut bytes = [0u8; libc::IFNAMSIZ];
    bytes[..name.len()].copy_from_slice(name.as_bytes());
    Ok(bytes)
}

/// A zeroed `struct ifreq` naming interface `name`.
fn ifreq(name: &str) -> Result<libc::ifreq, LinkError> {
    let bytes = checked_name(name)?;
    // SAFETY: ifreq is plain old data (a name and a union of integers, addresses and a
    // pointer); all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(bytes) {
        *slot = byte as libc::c_char;
    }
    Ok(request)
}

/// `ioctl(fd, request, &mut ifreq)`.
fn ifreq_ioctl(fd: BorrowedFd<'_>, request: libc::Ioctl, ifreq: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: every request passed here (SIOCGIF*/SIOCSIF* other than SIOCETHTOOL, TUNSETIFF,
    // TUNGETIFF) reads and/or writes exactly one `struct ifreq` through the pointer, which is
    // live and writable for the call; none of them keeps the pointer.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, &raw mut *ifreq) };
    check(rc)
}

/// Runs an SIOCGIF* `request` for `name` and returns the kernel's answer.
fn query(
    control: BorrowedFd<'_>,
    name: &str,
    request: libc::Ioctl,
    operation: &'static str,
) -> Result<libc::ifreq, LinkError> {
    let mut answer = ifreq(name)?;
    ifreq_ioctl(control, request, &mut answer).map_err(|error| io_error(operation, name, error))?;
    Ok(answer)
}

/// `struct ethtool_value`: a legacy ethtool command and its one integer.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Runs legacy ethtool command `command` (ETHTOOL_G*/S* of one feature) on `name`.
fn ethtool(control: BorrowedFd<'_>, name: &str, command: u32, data: u32) -> io::Result<u32> {
    let mut value = EthtoolValue { cmd: command, data };
    // The callers validated `name` already; this only turns a bad one into an io::Error.
    let mut request = ifreq(name).map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error.to_string()))?;
    request.ifr_ifru.ifru_data = (&raw mut value).cast();
    // SAFETY: SIOCETHTOOL reads the ifreq and, for the ETHTOOL_G*/S* feature commands used here,
    // reads and writes one `struct ethtool_value` at `ifr_data`, which points at `value`: live,
    // writable and of that layout (repr(C), two u32) for the whole call.
    let rc = unsafe { libc::ioctl(control.as_raw_fd(), libc::SIOCETHTOOL, &raw mut request) };
    check(rc)?;
    Ok(value.data)
}

fn offload_error(name: &str, error: io::Error) -> LinkError {
    io_error("changing an interface's offloads (SIOCETHTOOL)", name, error)
}

/// An AF_INET datagram socket: the handle the interface ioctls go through. It addresses the
/// network namespace of the calling thread.
fn control_socket(name: &str) -> Result<OwnedFd, LinkError> {
    // SAFETY: socket only reads its integer arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io_error("opening a socket for interface ioctls", name, io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens /dev/net/tun (blocking, close-on-exec).
fn open_tun() -> Result<OwnedFd, LinkError> {
    // SAFETY: the path is a NUL-terminated C string literal; open only reads it.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        let error = io::Error::last_os_error();
        return Err(match error.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => {
                LinkError::PermissionDenied { operation: "opening /dev/net/tun", capability: "CAP_NET_ADMIN" }
            }
            _ => LinkError::TunMissing { error },
        });
    }
    // SAFETY: `fd` was just returned by open(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The error of an operation on interface `name`, with the common causes named.
fn io_error(operation: &'static str, name: &str, error: io::Error) -> LinkError {
    match error.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => LinkError::PermissionDenied { operation, capability: "CAP_NET_ADMIN" },
        Some(libc::ENODEV | libc::ENXIO) => LinkError::NoSuchInterface { name: name.to_owned() },
        _ => LinkError::Io { operation, name: name.to_owned(), error },
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(test)]
mod tests;

//! TCP sockets: per-core listeners sharing one port (SO_REUSEPORT), outbound sockets for
//! [`Op::Connect`](crate::ring::Op::Connect), and socket-address conversions; and the connected
//! UDP socket a DNS query goes out on ([`udp_socket`]).
//!
//! Sockets stay in blocking mode on purpose: io_uring tries each operation without blocking and
//! arms a poll when it would block, whereas `O_NONBLOCK` only makes it fail with EAGAIN.
//! TCP_NODELAY is set on listeners; Linux copies it to every accepted socket (a test checks).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Why a listening socket could not be opened.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum ListenError {
    /// address {addr} is already in use by a socket without SO_REUSEPORT or of another user; stop that process or choose another port
    AddressInUse { addr: SocketAddr },
    /// permission denied to listen on {addr}: ports below 1024 need CAP_NET_BIND_SERVICE, or lower sysctl net.ipv4.ip_unprivileged_port_start
    PermissionDenied { addr: SocketAddr },
    /// address {addr} is not available: no interface of this host has that IP address
    AddressNotAvailable { addr: SocketAddr },
    /// could not create a TCP socket for {addr}: {error}
    Socket { addr: SocketAddr, error: io::Error },
    /// could not set {option} on the listener for {addr}: {error}
    SetOption { addr: SocketAddr, option: &'static str, error: io::Error },
    /// could not bind {addr}: {error}
    Bind { addr: SocketAddr, error: io::Error },
    /// could not listen on {addr}: {error}
    Listen { addr: SocketAddr, error: io::Error },
}

/// The address family of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: &SocketAddr) -> Family {
        match addr {
            SocketAddr::V4(_) => Family::V4,
            SocketAddr::V6(_) => Family::V6,
        }
    }

    fn raw(self) -> libc::c_int {
        match self {
            Family::V4 => libc::AF_INET,
            Family::V6 => libc::AF_INET6,
        }
    }
}

/// A listening TCP socket on `addr` that other cores' listeners can share (SO_REUSEPORT: the
/// kernel spreads new connections over them), with SO_REUSEADDR (restart without waiting for
/// TIME_WAIT) and TCP_NODELAY. An IPv6 wildcard address also accepts IPv4 unless the sysctl
/// net.ipv6.bindv6only says otherwise.
pub fn reuseport_listener(addr: SocketAddr, backlog: u32) -> Result<OwnedFd, ListenError> {
    let fd = new_socket(Family::of(&addr)).map_err(|error| ListenError::Socket { addr, error })?;
    for (level, name, option) in [
        (libc::SOL_SOCKET, libc::SO_REUSEADDR, "SO_REUSEADDR"),
        (libc::SOL_SOCKET, libc::SO_REUSEPORT, "SO_REUSEPORT"),
        (libc::IPPROTO_TCP, libc::TCP_NODELAY, "TCP_NODELAY"),
    ] {
        set_int_option(fd.as_fd(), level, name, 1).map_err(|error| ListenError::SetOption { addr, option, error })?;
    }
    let raw = RawSocketAddr::from(addr);
    // SAFETY: `raw` is a valid sockaddr of `raw.len()` bytes for the duration of the call.
    if unsafe { libc::bind(fd.as_raw_fd(), raw.as_ptr(), raw.len()) } != 0 {
        let error = io::Error::last_os_error();
        return Err(match error.raw_os_error() {
            Some(libc::EADDRINUSE) => ListenError::AddressInUse { addr },
            Some(libc::EACCES | libc::EPERM) => ListenError::PermissionDenied { addr },
            Some(libc::EADDRNOTAVAIL) => ListenError::AddressNotAvailable { addr },
            _ => ListenError::Bind { addr, error },
        });
    }
    let backlog = libc::c_int::try_from(backlog).unwrap_or(libc::c_int::MAX);
    // SAFETY: listen only reads its integer arguments.
    if unsafe { libc::listen(fd.as_raw_fd(), backlog) } != 0 {
        return Err(ListenError::Listen { addr, error: io::Error::last_os_error() });
    }
    Ok(fd)
}

/// A TCP socket for an outbound [`Op::Connect`](crate::ring::Op::Connect), with TCP_NODELAY.
pub fn tcp_socket(family: Family) -> io::Result<OwnedFd> {
    let fd = new_socket(family)?;
    set_int_option(fd.as_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    Ok(fd)
}

/// A UDP socket connected to `peer` (a DNS server, say), bound to an ephemeral port the kernel
/// picks at random. Connected, the kernel delivers only datagrams from `peer` to it (others are
/// dropped before they reach us), and `send`/`recv` (or io_uring SEND/RECV) need no address.
///
/// Blocking mode, like every socket here: io_uring arms a poll when an operation would block,
/// and O_NONBLOCK would make it fail with EAGAIN instead. A caller that uses plain `recv`
/// passes MSG_DONTWAIT so it never waits. Open one per lookup (or rotate them) so that the
/// source port, too, is unpredictable to someone forging answers.
pub fn udp_socket(peer: SocketAddr) -> io::Result<OwnedFd> {
    let family = Family::of(&peer);
    // SAFETY: socket only reads its integer arguments.
    let fd = unsafe { libc::socket(family.raw(), libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = RawSocketAddr::from(peer);
    // SAFETY: `raw` is a valid sockaddr of `raw.len()` bytes for the duration of the call; a
    // UDP connect only records the peer, it never waits.
    if unsafe { libc::connect(fd.as_raw_fd(), raw.as_ptr(), raw.len()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// The address a socket is bound to.
pub fn local_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    socket_name(fd, libc::getsockname)
}

/// The address of a connected socket's peer.
pub fn peer_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    socket_name(fd, libc::getpeername)
}

/// Whether TCP_NODELAY is set on `fd`.
pub fn nodelay(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of the sizes passed.
    let rc = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, (&raw mut value).cast(), &mut len)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value != 0)
}

/// Sets SO_SNDBUF (the kernel doubles it and applies its minimum).
pub fn set_send_buffer_bytes(fd: BorrowedFd<'_>, bytes: u32) -> io::Result<()> {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, bytes)
}

fn new_socket(family: Family) -> io::Result<OwnedFd> {
    // SAFETY: socket only reads its integer arguments.
    let fd = unsafe { libc::socket(family.raw(), libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(fd, level, name, &value)` for an int option.
pub(crate) fn set_int_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

type NameFn = unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

fn socket_name(fd: BorrowedFd<'_>, name: NameFn) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is writable for `len` bytes, and `name` is getsockname/getpeername.
    let rc = unsafe { name(fd.as_raw_fd(), (&raw mut storage).cast(), &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    RawSocketAddr { storage, len }
        .to_socket_addr()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IPv4 or IPv6 socket"))
}

/// A socket address in the kernel's layout.
pub(crate) struct RawSocketAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawSocketAddr {
    pub(crate) fn as_ptr(&self) -> *const libc::sockaddr {
        (&raw const self.storage).cast()
    }

    pub(crate) fn len(&self) -> libc::socklen_t {
        self.len
    }

    fn to_socket_addr(&self) -> Option<SocketAddr> {
        match libc::c_int::from(self.storage.ss_family) {
            libc::AF_INET if self.len as usize >= size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says the storage holds a sockaddr_in, and it is large and
                // aligned enough for one.
                let sin = unsafe { &*(&raw const self.storage).cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
            }
            libc::AF_INET6 if self.len as usize >= size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, for sockaddr_in6.
                let sin6 = unsafe { &*(&raw const self.storage).cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                let port = u16::from_be(sin6.sin6_port);
                Some(SocketAddr::V6(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id)))
            }
            _ => None,
        }
    }
}

impl From<SocketAddr> for RawSocketAddr {
    fn from(addr: SocketAddr) -> RawSocketAddr {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let len = match addr {
            SocketAddr::V4(v4) => {
                // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
                let sin = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in>() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = v4.port().to_be();
                sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(v6) => {
                // SAFETY: as above.
                let sin6 = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in6>() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = v6.port().to_be();
                sin6.sin6_addr.s6_addr = v6.ip().octets();
                sin6.sin6_flowinfo = v6.flowinfo();
                sin6.sin6_scope_id = v6.scope_id();
                size_of::<libc::sockaddr_in6>()
            }
        };
        RawSocketAddr { storage, len: len as libc::socklen_t }
    }
}

/// The IP addresses of this host's interfaces (getifaddrs(3)): what a tenant may not reach as
/// "somewhere else".
pub fn host_addresses() -> io::Result<Vec<std::net::IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into `head`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut entry = head;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let node = unsafe { &*entry };
        let addr = node.ifa_addr;
        if !addr.is_null() {
            // SAFETY: `addr` points to a sockaddr of the family it says; the casts read only the
            // structure that family uses.
            unsafe {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(addr as *const libc::sockaddr_in);
                        out.push(std::net::IpAddr::V4(std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(std::net::IpAddr::V6(std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
        }
        entry = node.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    use super::*;

    fn accept_one(listener: &OwnedFd) -> OwnedFd {
        // SAFETY: accept4 writes nothing through the null address pointers.
        let fd = unsafe {
            libc::accept4(listener.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC)
        };
        assert!(fd >= 0, "accept4: {}", io::Error::last_os_error());
        // SAFETY: accept4 returned a new descriptor that only we own.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    #[test]
    fn ipv4_listener_accepts_and_accepted_sockets_inherit_nodelay() {
        let listener = reuseport_listener("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        assert!(nodelay(listener.as_fd()).unwrap());
        let addr = local_addr(listener.as_fd()).unwrap();
        assert_eq!(addr.ip(), Ipv4Addr::LOCALHOST);
        assert_ne!(addr.port(), 0);
        let mut client = TcpStream::connect(addr).unwrap();
        let accepted = accept_one(&listener);
        // Linux copies TCP_NODELAY from the listener into each accepted socket, so the accept
        // path does not need a setsockopt per connection.
        assert!(nodelay(accepted.as_fd()).unwrap());
        assert_eq!(peer_addr(accepted.as_fd()).unwrap(), client.local_addr().unwrap());
        client.write_all(b"hi").unwrap();
        let mut stream = TcpStream::from(accepted);
        let mut got = [0u8; 2];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
    }

    #[test]
    fn ipv6_listener_and_reuseport_sharing() {
        let first = reuseport_listener("[::1]:0".parse().unwrap(), 16).unwrap();
        let addr = local_addr(first.as_fd()).unwrap();
        assert_eq!(addr.ip(), Ipv6Addr::LOCALHOST);
        // A second core's listener on the same port: SO_REUSEPORT lets both bind.
        let second = reuseport_listener(addr, 16).unwrap();
        assert_eq!(local_addr(second.as_fd()).unwrap(), addr);
    }

    #[test]
    fn address_in_use_is_reported() {
        // std's listener has no SO_REUSEPORT, so ours cannot share its port.
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let error = reuseport_listener(addr, 16).unwrap_err();
        assert!(matches!(error, ListenError::AddressInUse { .. }), "{error:?}");
        assert!(error.to_string().contains("already in use"), "{error}");
    }

    #[test]
    fn address_not_available_is_reported() {
        // TEST-NET-1 (RFC 5737) is on no interface of this host; binding sends nothing.
        let error = reuseport_listener("192.0.2.1:0".parse().unwrap(), 16).unwrap_err();
        assert!(matches!(error, ListenError::AddressNotAvailable { .. }), "{error:?}");
    }

    #[test]
    fn outbound_socket_has_nodelay_and_raw_addresses_round_trip() {
        let fd = tcp_socket(Family::V6).unwrap();
        assert!(nodelay(fd.as_fd()).unwrap());
        for text in ["127.0.0.1:8080", "[::1]:443", "[fe80::1%2]:80"] {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(RawSocketAddr::from(addr).to_socket_addr(), Some(addr));
        }
    }

    #[test]
    fn udp_socket_talks_to_its_peer_only() {
        use std::net::UdpSocket;
        use std::time::Duration;

        for loopback in ["127.0.0.1:0", "[::1]:0"] {
            let echo = UdpSocket::bind(loopback).unwrap();
            echo.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let fd = udp_socket(echo.local_addr().unwrap()).unwrap();
            let local = local_addr(fd.as_fd()).unwrap();
            assert_ne!(local.port(), 0, "bound to an ephemeral port by connect");
            assert_eq!(peer_addr(fd.as_fd()).unwrap(), echo.local_addr().unwrap());
            let ours = UdpSocket::from(fd);
            ours.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

            // The echo server answers what it gets, to whoever sent it.
            ours.send(b"query").unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = echo.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"query"[..], local));
            echo.send_to(&buf[..n], from).unwrap();
            let n = ours.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"query");

            // A stranger's datagram to our port never reaches a connected socket.
            let stranger = UdpSocket::bind(loopback).unwrap();
            stranger.send_to(b"forged", local).unwrap();
            echo.send_to(b"real", local).unwrap();
            let n = ours.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"real");
            ours.set_nonblocking(true).unwrap();
            assert_eq!(ours.recv(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        }
    }
}

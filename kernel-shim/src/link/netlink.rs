//! The one rtnetlink request isobar makes: RTM_NEWLINK for a veth pair. Written by hand (a
//! message of a few nested attributes) rather than with a netlink crate, because nothing else
//! in the process speaks netlink.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::{LinkError, checked_name};
use crate::net::set_int_option;

/// `IFLA_LINKINFO` and its nested attributes (include/uapi/linux/if_link.h, veth.h).
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const NLA_F_NESTED: u16 = 1 << 15;
/// Netlink attributes and messages are padded to 4 bytes.
const NLA_ALIGN: usize = 4;
/// `NLMSGERR_ATTR_MSG`: the kernel's error text in an extended ack.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Ack flags: the request's payload was left out / TLVs follow (include/uapi/linux/netlink.h).
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;

/// Bytes of `struct nlmsghdr` and `struct ifinfomsg`.
const NLMSG_HEADER_BYTES: usize = 16;
const IFINFOMSG_BYTES: usize = 16;

/// How long to wait for the kernel's answer before giving up (it answers at once in practice).
const ANSWER_WAIT_SECONDS: libc::time_t = 5;
/// The most messages read while looking for our ack; others (none are expected on an unbound
/// socket) are skipped.
const ANSWER_MESSAGES_MAX: usize = 64;

/// Creates veth pair `name` <-> `peer` in the calling thread's network namespace.
pub(super) fn create_veth(name: &str, peer: &str) -> Result<(), LinkError> {
    // NUL-terminated, as iproute2 sends them.
    let name_bytes = checked_name(name)?;
    let name_bytes = &name_bytes[..=name.len()];
    let peer_bytes = checked_name(peer)?;
    let peer_bytes = &peer_bytes[..=peer.len()];
    let socket = netlink_socket()?;

    const SEQUENCE: u32 = 1;
    let mut message = Message::new(libc::RTM_NEWLINK, SEQUENCE);
    message.bytes(&[0; IFINFOMSG_BYTES]);
    message.attribute(libc::IFLA_IFNAME, name_bytes);
    let link_info = message.begin_nest(IFLA_LINKINFO);
    message.attribute(IFLA_INFO_KIND, b"veth");
    let info_data = message.begin_nest(IFLA_INFO_DATA);
    let peer_info = message.begin_nest(VETH_INFO_PEER);
    message.bytes(&[0; IFINFOMSG_BYTES]);
    message.attribute(libc::IFLA_IFNAME, peer_bytes);
    message.end_nest(peer_info);
    message.end_nest(info_data);
    message.end_nest(link_info);
    let request = message.finish();

    let pair = || format!("{name}/{peer}");
    // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value (pid 0: the kernel).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `request` is readable for its length and `kernel` is a sockaddr_nl of the size
    // passed.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
            (&raw const kernel).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(LinkError::Netlink {
            pair: pair(),
            error: io::Error::last_os_error(),
            kernel_message: String::new(),
        });
    }

    let (errno, kernel_message) = read_ack(socket.as_fd(), SEQUENCE).map_err(|error| LinkError::Netlink {
        pair: pair(),
        error,
        kernel_message: String::new(),
    })?;
    match errno {
        0 => Ok(()),
        libc::EEXIST => Err(LinkError::VethExists { pair: pair() }),
        libc::EOPNOTSUPP => Err(LinkError::VethUnsupported { pair: pair() }),
        libc::EPERM | libc::EACCES => {
            Err(LinkError::PermissionDenied { operation: "creating a veth pair", capability: "CAP_NET_ADMIN" })
        }
        errno => {
            let kernel_message = if kernel_message.is_empty() {
                kernel_message
            } else {
                format!(" (the kernel says: {kernel_message})")
            };
            Err(LinkError::Netlink { pair: pair(), error: io::Error::from_raw_os_error(errno), kernel_message })
        }
    }
}

fn netlink_socket() -> Result<OwnedFd, LinkError> {
    let failed = |error| LinkError::Netlink { pair: String::new(), error, kernel_message: String::new() };
    // SAFETY: socket only reads its integer arguments.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(failed(io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // A bounded wait for the answer, so a caller can never hang here.
    let timeout = libc::timeval { tv_sec: ANSWER_WAIT_SECONDS, tv_usec: 0 };
    // SAFETY: `timeout` is a live timeval and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(failed(io::Error::last_os_error()));
    }
    // Extended acks carry the kernel's own explanation of a failure; without them (very old
    // kernels) the errno alone is reported.
    let _ = set_int_option(socket.as_fd(), libc::SOL_NETLINK, libc::NETLINK_EXT_ACK, 1);
    Ok(socket)
}

/// Reads until the ack of request `sequence`: its errno (0 for success) and the kernel's text.
fn read_ack(socket: BorrowedFd<'_>, sequence: u32) -> io::Result<(i32, String)> {
    // An ack holds the error, our request's header and a few TLVs: well under a page.
    let mut buf = vec![0u8; 8192];
    for _ in 0..ANSWER_MESSAGES_MAX {
        // SAFETY: `buf` is writable for its length.
        let read = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if read < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut rest = &buf[..read as usize];
        while rest.len() >= NLMSG_HEADER_BYTES {
            let length = u32_at(rest, 0) as usize;
            if length < NLMSG_HEADER_BYTES || length > rest.len() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "malformed netlink message"));
            }
            let (kind, flags, seq) = (u16_at(rest, 4), u16_at(rest, 6), u32_at(rest, 8));
            if kind == libc::NLMSG_ERROR as u16 && seq == sequence {
                return ack(&rest[..length], flags);
            }
            rest = &rest[length.next_multiple_of(NLA_ALIGN).min(rest.len())..];
        }
    }
    Err(io::Error::new(io::ErrorKind::InvalidData, "no netlink ack among the kernel's messages"))
}

/// Parses one NLMSG_ERROR message: `struct nlmsgerr` (errno, then our request's header and,
/// unless capped, its payload) and then the extended-ack TLVs.
fn ack(message: &[u8], flags: u16) -> io::Result<(i32, String)> {
    let too_short = || io::Error::new(io::ErrorKind::InvalidData, "truncated netlink ack");
    let body = message.get(NLMSG_HEADER_BYTES..).ok_or_else(too_short)?;
    let errno = -i32::from_ne_bytes(body.get(..4).ok_or_else(too_short)?.try_into().unwrap_or_default());
    let mut text = String::new();
    if flags & NLM_F_ACK_TLVS != 0 {
        let request = body.get(4..).ok_or_else(too_short)?;
        let request_length = if flags & NLM_F_CAPPED != 0 {
            NLMSG_HEADER_BYTES
        } else {
            (u32_at(request, 0) as usize).next_multiple_of(NLA_ALIGN)
        };
        let mut tlvs = request.get(request_length..).unwrap_or_default();
        while tlvs.len() >= 4 {
            let (length, kind) = (usize::from(u16_at(tlvs, 0)), u16_at(tlvs, 2));
            if length < 4 || length > tlvs.len() {
                break;
            }
            if kind == NLMSGERR_ATTR_MSG {
                let value = &tlvs[4..length];
                let end = value.iter().position(|&byte| byte == 0).unwrap_or(value.len());
                text = String::from_utf8_lossy(&value[..end]).into_owned();
            }
            tlvs = &tlvs[length.next_multiple_of(NLA_ALIGN).min(tlvs.len())..];
        }
    }
    Ok((errno, text))
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    bytes.get(at..at + 2).map_or(0, |b| u16::from_ne_bytes([b[0], b[1]]))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    bytes.get(at..at + 4).map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// A netlink request being built: header, then attributes, each padded to 4 bytes.
struct Message {
    buf: Vec<u8>,
}

impl Message {
    fn new(kind: u16, sequence: u32) -> Message {
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, patched by `finish`
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&sequence.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: 0, the kernel fills it in
        Message { buf }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.pad();
    }

    fn attribute(&mut self, kind: u16, value: &[u8]) {
        let length = u16::try_from(4 + value.len()).expect("netlink attributes here are a few bytes");
        self.buf.extend_from_slice(&length.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.bytes(value);
    }

    /// Starts a nested attribute; returns where its length is patched by `end_nest`.
    fn begin_nest(&mut self, kind: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        start
    }

    fn end_nest(&mut self, start: usize) {
        let length = u16::try_from(self.buf.len() - start).expect("netlink attributes here are a few bytes");
        self.buf[start..start + 2].copy_from_slice(&length.to_ne_bytes());
    }

    fn pad(&mut self) {
        self.buf.resize(self.buf.len().next_multiple_of(NLA_ALIGN), 0);
    }

    fn finish(mut self) -> Vec<u8> {
        let length = u32::try_from(self.buf.len()).expect("a netlink request of a few hundred bytes");
        self.buf[..4].copy_from_slice(&length.to_ne_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_request_has_the_layout_iproute2_sends() {
        let mut message = Message::new(libc::RTM_NEWLINK, 7);
        message.bytes(&[0; IFINFOMSG_BYTES]);
        message.attribute(libc::IFLA_IFNAME, b"a\0");
        let outer = message.begin_nest(IFLA_LINKINFO);
        message.attribute(IFLA_INFO_KIND, b"veth");
        message.end_nest(outer);
        let bytes = message.finish();
        // 16 header + 16 ifinfomsg + 8 (IFNAME "a\0" padded) + 4 (LINKINFO) + 8 (KIND "veth").
        assert_eq!(bytes.len(), 52);
        assert_eq!(u32_at(&bytes, 0), 52);
        assert_eq!(u16_at(&bytes, 4), libc::RTM_NEWLINK);
        assert_eq!(u32_at(&bytes, 8), 7);
        assert_eq!((u16_at(&bytes, 32), u16_at(&bytes, 34)), (6, libc::IFLA_IFNAME));
        assert_eq!((u16_at(&bytes, 40), u16_at(&bytes, 42)), (12, IFLA_LINKINFO | NLA_F_NESTED));
        assert_eq!((u16_at(&bytes, 44), u16_at(&bytes, 46)), (8, IFLA_INFO_KIND));
        assert_eq!(&bytes[48..52], b"veth");
    }
}

//! Frames at the link edge, sans-IO: what a raw link hands us before smoltcp may see it, and
//! what we prepend to what smoltcp sends.
//!
//! A TAP opened with `IFF_VNET_HDR` and an AF_PACKET socket with `PACKET_VNET_HDR` put a
//! `struct virtio_net_hdr` (10 bytes, native byte order) before every frame. With offloads on,
//! the kernel then hands over two kinds of frame that smoltcp would drop:
//!
//! - **partial checksums** (`VIRTIO_NET_HDR_F_NEEDS_CSUM`): the checksum field holds only the
//!   folded pseudo-header sum; [`receive`] completes it in place (RFC 1071 sum from
//!   `csum_start` to the end of the frame, complemented, stored at `csum_start + csum_offset`,
//!   a zero result stored as `0xffff` as Linux's `skb_checksum_help` does);
//! - **GSO super-frames** (`gso_type` TCPv4/TCPv6, up to 64 KiB): [`segment`] splits them into
//!   `gso_size`-byte segments with their own IP length, IPv4 id and header checksum, TCP
//!   sequence number, flags (FIN/PSH on the last segment only, CWR on the first only) and full
//!   TCP checksum. UDP GSO is refused ([`FrameError::UnsupportedGso`]): we serve TCP only.
//!
//! Frames we send get a zeroed header ([`VnetHeader::NONE`]): smoltcp computes every checksum
//! itself and never sends a super-frame.
//!
//! Contract (smoltcp's `new_checked` idea): every input, however truncated or lying about its
//! lengths, yields a value; no function here panics or reads out of bounds. A property test
//! and the `frame` fuzz target hold us to it.

/// Bytes of `struct virtio_net_hdr` (without `num_buffers`), the size that TAP (unless
/// `TUNSETVNETHDRSZ` says otherwise) and AF_PACKET with `PACKET_VNET_HDR` use.
pub use kernel_shim::link::vnet::HEADER_BYTES as VNET_HDR_LEN;
/// `struct virtio_net_hdr`: the kernel's layout, defined with the links in kernel-shim.
pub use kernel_shim::link::vnet::VirtioNetHdr as VnetHeader;
/// `flags` and `gso_type` values, under the short names this module uses.
pub use kernel_shim::link::vnet::{
    VIRTIO_NET_HDR_F_DATA_VALID as F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM as F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_ECN as GSO_ECN, VIRTIO_NET_HDR_GSO_NONE as GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4 as GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6 as GSO_TCPV6, VIRTIO_NET_HDR_GSO_UDP as GSO_UDP, VIRTIO_NET_HDR_GSO_UDP_L4 as GSO_UDP_L4,
};
/// Bytes of an Ethernet header without a VLAN tag.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// The most bytes a GSO super-frame may have after its virtio-net header: an IP packet of at
/// most 64 KiB plus its Ethernet header.
pub const GSO_FRAME_BYTES_MAX: usize = ETHERNET_HEADER_LEN + 65_535;
/// The most segments one super-frame may be split into. A 64 KiB frame of 1448-byte segments
/// makes 46; this bound stops a tiny `gso_size` from turning one read into thousands of frames.
pub const SEGMENTS_MAX: usize = 256;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IP_PROTOCOL_TCP: u8 = 6;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Why a frame was dropped at the link edge. Small and `Copy`: counted, never propagated far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, displaydoc::Display)]
pub enum FrameError {
    /// the frame ({len} bytes) is shorter than its virtio-net header
    TruncatedVnetHeader { len: usize },
    /// the frame ({len} bytes) is shorter than an Ethernet header
    Runt { len: usize },
    /// the partial checksum at {start}+{offset} lies outside the {len}-byte frame
    ChecksumOutOfRange { start: u16, offset: u16, len: usize },
    /// GSO type {gso_type:#x} is not split here (only TCPv4 and TCPv6 are)
    UnsupportedGso { gso_type: u8 },
    /// a GSO super-frame whose headers do not parse: {what}
    MalformedGso { what: &'static str },
    /// splitting would make {segments} segments, more than SEGMENTS_MAX
    TooManySegments { segments: usize },
}

/// The virtio-net header at the start of `bytes`.
pub fn parse_vnet_header(bytes: &[u8]) -> Result<VnetHeader, FrameError> {
    VnetHeader::from_prefix(bytes).ok_or(FrameError::TruncatedVnetHeader { len: bytes.len() })
}

/// The IP version of a GSO super-frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsoKind {
    TcpV4,
    TcpV6,
}

/// How to split a super-frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gso {
    pub kind: GsoKind,
    /// TCP payload bytes per segment (the sender's MSS).
    pub segment_bytes: u16,
    /// Clear CWR on every segment but the first.
    pub ecn: bool,
}

/// What [`receive`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// One complete Ethernet frame at `buf[start..]`.
    Frame { start: usize },
    /// A super-frame at `buf[start..]`: split it with [`segment`].
    Gso { start: usize, gso: Gso },
}

/// Takes one frame as read from the link (with its virtio-net header when `vnet_hdr`),
/// completes a partial checksum in place and says where the Ethernet frame starts.
pub fn receive(buf: &mut [u8], vnet_hdr: bool) -> Result<Received, FrameError> {
    if !vnet_hdr {
        return match buf.len() {
            len if len < ETHERNET_HEADER_LEN => Err(FrameError::Runt { len }),
            _ => Ok(Received::Frame { start: 0 }),
        };
    }
    let header = parse_vnet_header(buf)?;
    let frame = &mut buf[VNET_HDR_LEN..];
    if frame.len() < ETHERNET_HEADER_LEN {
        return Err(FrameError::Runt { len: frame.len() });
    }
    let gso = match header.gso_type & !GSO_ECN {
        GSO_NONE => None,
        GSO_TCPV4 => Some(GsoKind::TcpV4),
        GSO_TCPV6 => Some(GsoKind::TcpV6),
        gso_type => return Err(FrameError::UnsupportedGso { gso_type }),
    };
    if let Some(kind) = gso {
        // Segmentation computes every checksum from scratch; the partial one is irrelevant.
        let gso = Gso { kind, segment_bytes: header.gso_size, ecn: header.gso_type & GSO_ECN != 0 };
        return Ok(Received::Gso { start: VNET_HDR_LEN, gso });
    }
    if header.flags & F_NEEDS_CSUM != 0 {
        complete_checksum(frame, header.csum_start, header.csum_offset)?;
    }
    Ok(Received::Frame { start: VNET_HDR_LEN })
}

/// Completes a partial checksum: the ones' complement sum of `frame[start..]` (whose checksum
/// field already holds the folded pseudo-header sum) is complemented and stored at
/// `start + offset`.
pub fn complete_checksum(frame: &mut [u8], start: u16, offset: u16) -> Result<(), FrameError> {
    let (begin, at) = (usize::from(start), usize::from(start) + usize::from(offset));
    if begin > frame.len() || at + 2 > frame.len() {
        return Err(FrameError::ChecksumOutOfRange { start, offset, len: frame.len() });
    }
    let sum = !fold(sum_be16(&frame[begin..], 0));
    let sum = if sum == 0 { 0xffff } else { sum };
    frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// The RFC 1071 ones' complement sum of `data` as big-endian 16-bit words (an odd last byte is
/// padded with zero), added to `initial`. Not folded: the caller folds once at the end.
pub fn sum_be16(data: &[u8], initial: u64) -> u64 {
    let mut sum = initial;
    let mut words = data.chunks_exact(2);
    for word in &mut words {
        sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds a sum to 16 bits (end-around carry), not complemented.
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Where the headers of a TCP super-frame are.
struct TcpFrame {
    /// Bytes of Ethernet + IP + TCP headers.
    headers_len: usize,
    ip_header_len: usize,
    /// Where the IP packet ends (before any Ethernet padding).
    end: usize,
}

fn parse_tcp_frame(frame: &[u8], kind: GsoKind) -> Result<TcpFrame, FrameError> {
    let malformed = |what| FrameError::MalformedGso { what };
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let ip = &frame[ETHERNET_HEADER_LEN..];
    let (ip_header_len, ip_len) = match kind {
        GsoKind::TcpV4 => {
            if ethertype != ETHERTYPE_IPV4 || ip.len() < 20 || ip[0] >> 4 != 4 {
                return Err(malformed("not an IPv4 packet"));
            }
            let header_len = usize::from(ip[0] & 0x0f) * 4;
            let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            if header_len < 20 || total_len < header_len || total_len > ip.len() {
                return Err(malformed("IPv4 lengths"));
            }
            if ip[9] != IP_PROTOCOL_TCP {
                return Err(malformed("IPv4 payload is not TCP"));
            }
            if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
                return Err(malformed("an IPv4 fragment"));
            }
            (header_len, total_len)
        }
        GsoKind::TcpV6 => {
            if ethertype != ETHERTYPE_IPV6 || ip.len() < 40 || ip[0] >> 4 != 6 {
                return Err(malformed("not an IPv6 packet"));
            }
            let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            if 40 + payload_len > ip.len() {
                return Err(malformed("IPv6 payload length"));
            }
            // Extension headers would have to be walked; Linux's TSO frames have none.
            if ip[6] != IP_PROTOCOL_TCP {
                return Err(malformed("IPv6 next header is not TCP"));
            }
            (40, 40 + payload_len)
        }
    };
    let tcp = &ip[ip_header_len..ip_len];
    if tcp.len() < 20 {
        return Err(malformed("TCP header truncated"));
    }
    let tcp_header_len = usize::from(tcp[12] >> 4) * 4;
    if tcp_header_len < 20 || tcp_header_len > tcp.len() {
        return Err(malformed("TCP data offset"));
    }
    Ok(TcpFrame {
        headers_len: ETHERNET_HEADER_LEN + ip_header_len + tcp_header_len,
        ip_header_len,
        end: ETHERNET_HEADER_LEN + ip_len,
    })
}

/// Splits a TCP super-frame (`frame` starts at its Ethernet header) into segments of at most
/// `gso.segment_bytes` payload bytes, each built in `scratch` and handed to `out`. Returns how
/// many segments were made. Nothing is handed out unless the whole frame parses.
pub fn segment(frame: &[u8], gso: Gso, scratch: &mut Vec<u8>, mut out: impl FnMut(&[u8])) -> Result<usize, FrameError> {
    if frame.len() < ETHERNET_HEADER_LEN {
        return Err(FrameError::Runt { len: frame.len() });
    }
    if frame.len() > GSO_FRAME_BYTES_MAX {
        return Err(FrameError::MalformedGso { what: "longer than 64 KiB" });
    }
    if gso.segment_bytes == 0 {
        return Err(FrameError::MalformedGso { what: "gso_size is 0" });
    }
    let layout = parse_tcp_frame(frame, gso.kind)?;
    let headers = &frame[..layout.headers_len];
    let payload = &frame[layout.headers_len..layout.end];
    let step = usize::from(gso.segment_bytes);
    let segments = payload.len().div_ceil(step).max(1);
    if segments > SEGMENTS_MAX {
        return Err(FrameError::TooManySegments { segments });
    }
    let ip_at = ETHERNET_HEADER_LEN;
    let tcp_at = ip_at + layout.ip_header_len;
    let tcp_header_len = layout.headers_len - tcp_at;
    let seq = u32::from_be_bytes([frame[tcp_at + 4], frame[tcp_at + 5], frame[tcp_at + 6], frame[tcp_at + 7]]);
    let flags = frame[tcp_at + 13];
    let ip_id = u16::from_be_bytes([frame[ip_at + 4], frame[ip_at + 5]]);

    for index in 0..segments {
        let from = index * step;
        let chunk = &payload[from.min(payload.len())..(from + step).min(payload.len())];
        scratch.clear();
        scratch.extend_from_slice(headers);
        scratch.extend_from_slice(chunk);
        let last = index + 1 == segments;
        // `index` < SEGMENTS_MAX, so these fit in 16 and 32 bits.
        let (index16, from32) = (index as u16, from as u32);

        let tcp_len = tcp_header_len + chunk.len();
        match gso.kind {
            GsoKind::TcpV4 => {
                let ip = &mut scratch[ip_at..tcp_at];
                let total_len = (layout.ip_header_len + tcp_len) as u16;
                ip[2..4].copy_from_slice(&total_len.to_be_bytes());
                ip[4..6].copy_from_slice(&ip_id.wrapping_add(index16).to_be_bytes());
                ip[10..12].copy_from_slice(&[0, 0]);
                let checksum = !fold(sum_be16(ip, 0));
                ip[10..12].copy_from_slice(&checksum.to_be_bytes());
            }
            GsoKind::TcpV6 => {
                let ip = &mut scratch[ip_at..tcp_at];
                ip[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
            }
        }
        let tcp = &mut scratch[tcp_at..];
        tcp[4..8].copy_from_slice(&seq.wrapping_add(from32).to_be_bytes());
        let mut segment_flags = flags;
        if !last {
            segment_flags &= !(TCP_FIN | TCP_PSH);
        }
        if gso.ecn && index > 0 {
            segment_flags &= !TCP_CWR;
        }
        tcp[13] = segment_flags;
        tcp[16..18].copy_from_slice(&[0, 0]);
        let pseudo = pseudo_header_sum(&scratch[ip_at..tcp_at], gso.kind, tcp_len);
        let checksum = !fold(sum_be16(&scratch[tcp_at..], pseudo));
        scratch[tcp_at + 16..tcp_at + 18].copy_from_slice(&checksum.to_be_bytes());
        out(scratch);
    }
    Ok(segments)
}

/// The pseudo-header sum for a TCP segment of `tcp_len` bytes under `ip` (a parsed header).
fn pseudo_header_sum(ip: &[u8], kind: GsoKind, tcp_len: usize) -> u64 {
    let addresses = match kind {
        GsoKind::TcpV4 => &ip[12..20],
        GsoKind::TcpV6 => &ip[8..40],
    };
    sum_be16(addresses, u64::from(IP_PROTOCOL_TCP) + tcp_len as u64)
}

#[cfg(test)]
mod tests;

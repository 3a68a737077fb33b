//! The virtio-net header that TAP queues (IFF_VNET_HDR) and packet sockets (PACKET_VNET_HDR)
//! put in front of every frame, in both directions. Only the layout lives here; completing
//! partial checksums and splitting GSO frames is the network stack's job.
//!
//! isobar uses the 10-byte `struct virtio_net_hdr` (legacy, without `num_buffers`) on both
//! links, because it is what AF_PACKET speaks on every kernel (12 bytes there needs the recent
//! PACKET_VNET_HDR_SZ option), and because with 10 bytes the IP header of an Ethernet
//! frame lands at offset 24, 8-byte aligned (12 would put it at 26). [`crate::link::open_tap`]
//! sets TUNSETVNETHDRSZ to the same 10 so that a TAP left with another size is reset.
//!
//! Byte layout (multi-byte fields little-endian):
//!
//! ```text
//! offset 0  u8   flags        VIRTIO_NET_HDR_F_*
//! offset 1  u8   gso_type     VIRTIO_NET_HDR_GSO_*
//! offset 2  u16  hdr_len      bytes of headers (Ethernet + IP + L4) of a GSO frame
//! offset 4  u16  gso_size     payload bytes per segment of a GSO frame
//! offset 6  u16  csum_start   with NEEDS_CSUM: where checksumming starts, from the Ethernet header
//! offset 8  u16  csum_offset  with NEEDS_CSUM: where the result goes, from csum_start
//! offset 10      the Ethernet frame
//! ```
//!
//! The kernel writes these fields in its native order for TAP (legacy virtio) and for
//! AF_PACKET; isobar builds only for little-endian targets, where that is little-endian (the
//! assertion below keeps it so).

const _: () = assert!(cfg!(target_endian = "little"), "the virtio-net header layout assumes a little-endian host");

/// Bytes of the header in front of every frame when a link is opened with `vnet_hdr`.
pub const HEADER_BYTES: usize = 10;

/// The frame's checksum is partial: the stack must compute the Internet checksum from
/// `csum_start` to the end of the frame and store it at `csum_start + csum_offset` (the field
/// already holds the pseudo-header sum). On send, asks the kernel to do that for us.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// The kernel has verified the checksum (received frames only).
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;

/// Not a GSO frame: one frame on the wire.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
/// A TCP/IPv4 frame to be cut into `gso_size`-byte segments.
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
/// A UDP/IPv4 datagram to be fragmented (UFO, deprecated).
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
/// A TCP/IPv6 frame to be cut into `gso_size`-byte segments.
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// A UDP frame to be cut into `gso_size`-byte datagrams (USO).
pub const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
/// Flag on `gso_type`: the TCP segments carry ECN (CWR on the first only).
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

/// `struct virtio_net_hdr`, exactly as the kernel lays it out.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioNetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

const _: () = assert!(size_of::<VirtioNetHdr>() == HEADER_BYTES);

impl VirtioNetHdr {
    /// The header of a complete frame with nothing for the other side to do (no partial
    /// checksum, no GSO).
    pub const NONE: VirtioNetHdr = VirtioNetHdr {
        flags: 0,
        gso_type: VIRTIO_NET_HDR_GSO_NONE,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// The header at the start of `bytes`, if they are long enough to hold one.
    pub fn from_prefix(bytes: &[u8]) -> Option<VirtioNetHdr> {
        let header: [u8; HEADER_BYTES] = bytes.get(..HEADER_BYTES)?.try_into().ok()?;
        Some(VirtioNetHdr::from_bytes(header))
    }

    /// The header from the first [`HEADER_BYTES`] of a frame read from a link.
    pub fn from_bytes(bytes: [u8; HEADER_BYTES]) -> VirtioNetHdr {
        let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        VirtioNetHdr {
            flags: bytes[0],
            gso_type: bytes[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        }
    }

    /// The bytes to put in front of a frame written to a link.
    pub fn to_bytes(self) -> [u8; HEADER_BYTES] {
        let mut bytes = [0; HEADER_BYTES];
        bytes[0] = self.flags;
        bytes[1] = self.gso_type;
        for (at, value) in [(2, self.hdr_len), (4, self.gso_size), (6, self.csum_start), (8, self.csum_offset)] {
            bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_in_the_documented_layout() {
        let header = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN,
            hdr_len: 0x0102,
            gso_size: 0x0304,
            csum_start: 34,
            csum_offset: 16,
        };
        let bytes = header.to_bytes();
        assert_eq!(bytes, [1, 0x81, 0x02, 0x01, 0x04, 0x03, 34, 0, 16, 0]);
        assert_eq!(VirtioNetHdr::from_bytes(bytes), header);
        // The in-memory struct has the same bytes (no padding, little-endian host).
        // SAFETY: VirtioNetHdr is repr(C), 10 bytes without padding (asserted above), so all of
        // its bytes are initialised and may be viewed as u8.
        let raw: [u8; HEADER_BYTES] = unsafe { std::mem::transmute(header) };
        assert_eq!(raw, bytes);
    }
}

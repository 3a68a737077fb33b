//! Hand-built frames, checked against smoltcp's own checksum code (an independent
//! implementation), plus a property: no input makes the link edge panic.

use proptest::prelude::*;
use smoltcp::wire::{IpAddress, Ipv4Address, Ipv4Packet, Ipv6Address, Ipv6Packet, TcpPacket};

use super::*;

const SRC4: [u8; 4] = [10, 0, 0, 2];
const DST4: [u8; 4] = [10, 0, 0, 1];
const SRC6: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const DST6: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

fn ethernet(ethertype: u16) -> Vec<u8> {
    let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame
}

/// A TCP header of 32 bytes (12 bytes of options: NOP NOP timestamps) with `flags`.
fn tcp_header(seq: u32, flags: u8) -> Vec<u8> {
    let mut tcp = vec![0u8; 32];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&8080u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&7u32.to_be_bytes());
    tcp[12] = 8 << 4;
    tcp[13] = flags | 0x10; // always ACK
    tcp[14..16].copy_from_slice(&512u16.to_be_bytes());
    tcp[20..22].copy_from_slice(&[1, 1]);
    tcp[22..24].copy_from_slice(&[8, 10]);
    tcp[24..28].copy_from_slice(&123u32.to_be_bytes());
    tcp[28..32].copy_from_slice(&456u32.to_be_bytes());
    tcp
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// An Ethernet + IPv4 + TCP frame with correct checksums (filled by smoltcp).
fn tcp_v4(seq: u32, flags: u8, id: u16, data: &[u8]) -> Vec<u8> {
    let mut frame = ethernet(0x0800);
    let total = 20 + 32 + data.len();
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0];
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    ip.extend_from_slice(&SRC4);
    ip.extend_from_slice(&DST4);
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&tcp_header(seq, flags));
    frame.extend_from_slice(data);
    Ipv4Packet::new_unchecked(&mut frame[14..34]).fill_checksum();
    let (src, dst) = (IpAddress::Ipv4(Ipv4Address::from(SRC4)), IpAddress::Ipv4(Ipv4Address::from(DST4)));
    TcpPacket::new_unchecked(&mut frame[34..]).fill_checksum(&src, &dst);
    frame
}

fn tcp_v6(seq: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut frame = ethernet(0x86dd);
    let mut ip = vec![0x60, 0, 0, 0, 0, 0, 6, 64];
    ip[4..6].copy_from_slice(&((32 + data.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&SRC6);
    ip.extend_from_slice(&DST6);
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&tcp_header(seq, flags));
    frame.extend_from_slice(data);
    let (src, dst) = (IpAddress::Ipv6(Ipv6Address::from(SRC6)), IpAddress::Ipv6(Ipv6Address::from(DST6)));
    TcpPacket::new_unchecked(&mut frame[54..]).fill_checksum(&src, &dst);
    frame
}

fn with_vnet(header: VnetHeader, frame: &[u8]) -> Vec<u8> {
    let mut buf = header.to_bytes().to_vec();
    buf.extend_from_slice(frame);
    buf
}

fn tcp_checksum_ok_v4(frame: &[u8]) -> bool {
    let (src, dst) = (IpAddress::Ipv4(Ipv4Address::from(SRC4)), IpAddress::Ipv4(Ipv4Address::from(DST4)));
    let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    ip.verify_checksum() && TcpPacket::new_checked(ip.payload()).unwrap().verify_checksum(&src, &dst)
}

#[test]
fn header_round_trips() {
    let header = VnetHeader { flags: 1, gso_type: 4, hdr_len: 74, gso_size: 1428, csum_start: 54, csum_offset: 16 };
    assert_eq!(parse_vnet_header(&header.to_bytes()), Ok(header));
    assert_eq!(VnetHeader::NONE.to_bytes(), [0; VNET_HDR_LEN]);
    assert_eq!(parse_vnet_header(&[0; 9]), Err(FrameError::TruncatedVnetHeader { len: 9 }));
}

#[test]
fn plain_frames_pass_through() {
    let mut frame = tcp_v4(1, 0, 1, b"hello");
    let before = frame.clone();
    assert_eq!(receive(&mut frame, false), Ok(Received::Frame { start: 0 }));
    assert_eq!(frame, before);
    assert_eq!(receive(&mut [0u8; 13], false), Err(FrameError::Runt { len: 13 }));
}

#[test]
fn a_zero_header_strips_and_changes_nothing() {
    let frame = tcp_v4(1, 0, 1, b"hello");
    let mut buf = with_vnet(VnetHeader::NONE, &frame);
    assert_eq!(receive(&mut buf, true), Ok(Received::Frame { start: VNET_HDR_LEN }));
    assert_eq!(&buf[VNET_HDR_LEN..], &frame[..]);
    let mut short = with_vnet(VnetHeader::NONE, &frame[..13]);
    assert_eq!(receive(&mut short, true), Err(FrameError::Runt { len: 13 }));
}

/// What the kernel sends with checksum offload: the TCP checksum field holds the folded
/// pseudo-header sum, not complemented.
fn partial_v4(frame: &[u8]) -> Vec<u8> {
    let mut partial = frame.to_vec();
    let tcp_len = partial.len() - 34;
    let pseudo = sum_be16(&SRC4, sum_be16(&DST4, 6 + tcp_len as u64));
    partial[34 + 16..34 + 18].copy_from_slice(&fold(pseudo).to_be_bytes());
    partial
}

#[test]
fn partial_checksums_are_completed() {
    for len in [0, 1, 2, 3, 1000, 1447, 1448] {
        let full = tcp_v4(99, 0x08, 5, &payload(len));
        let partial = partial_v4(&full);
        assert!(!tcp_checksum_ok_v4(&partial) || len == 0, "the partial frame must not verify as is");
        let header = VnetHeader { flags: F_NEEDS_CSUM, csum_start: 34, csum_offset: 16, ..VnetHeader::NONE };
        let mut buf = with_vnet(header, &partial);
        assert_eq!(receive(&mut buf, true), Ok(Received::Frame { start: VNET_HDR_LEN }));
        assert!(tcp_checksum_ok_v4(&buf[VNET_HDR_LEN..]), "payload of {len} bytes");
    }
}

#[test]
fn partial_checksums_outside_the_frame_are_refused() {
    let frame = tcp_v4(1, 0, 1, b"x");
    let len = frame.len();
    for (start, offset) in [(len as u16, 0), (len as u16 - 1, 0), (34, len as u16), (u16::MAX, u16::MAX), (0, u16::MAX)]
    {
        let header = VnetHeader { flags: F_NEEDS_CSUM, csum_start: start, csum_offset: offset, ..VnetHeader::NONE };
        let mut buf = with_vnet(header, &frame);
        assert_eq!(
            receive(&mut buf, true),
            Err(FrameError::ChecksumOutOfRange { start, offset, len }),
            "start {start} offset {offset}"
        );
    }
    // The last two bytes of the frame are a valid place.
    let header = VnetHeader { flags: F_NEEDS_CSUM, csum_start: 0, csum_offset: len as u16 - 2, ..VnetHeader::NONE };
    assert!(receive(&mut with_vnet(header, &frame), true).is_ok());
}

#[test]
fn a_zero_checksum_is_stored_as_ffff() {
    // Sum of [0xff, 0xff] is 0xffff, complemented 0: stored as 0xffff instead.
    let mut frame = [0xff, 0xff, 0, 0];
    complete_checksum(&mut frame, 0, 2).unwrap();
    assert_eq!(frame, [0xff, 0xff, 0xff, 0xff]);
}

fn split(frame: &[u8], gso: Gso) -> Result<Vec<Vec<u8>>, FrameError> {
    let mut segments = Vec::new();
    let mut scratch = Vec::new();
    let count = segment(frame, gso, &mut scratch, |s| segments.push(s.to_vec()))?;
    assert_eq!(count, segments.len());
    Ok(segments)
}

#[test]
fn tcp_v4_super_frames_are_split_into_valid_segments() {
    let data = payload(5000);
    let frame = tcp_v4(0xffff_f000, 0x08 | 0x01, 0xfffe, &data); // PSH|FIN; seq and id wrap
    let mut buf =
        with_vnet(VnetHeader { gso_type: GSO_TCPV4, gso_size: 1448, hdr_len: 66, ..VnetHeader::NONE }, &frame);
    let Ok(Received::Gso { start, gso }) = receive(&mut buf, true) else { panic!("not a GSO frame") };
    assert_eq!(gso, Gso { kind: GsoKind::TcpV4, segment_bytes: 1448, ecn: false });
    let segments = split(&buf[start..], gso).unwrap();
    assert_eq!(segments.len(), 4);
    let mut joined = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        assert!(tcp_checksum_ok_v4(seg), "segment {i} checksums");
        let ip = Ipv4Packet::new_checked(&seg[14..]).unwrap();
        assert_eq!(usize::from(ip.total_len()), seg.len() - 14);
        assert_eq!(ip.ident(), 0xfffeu16.wrapping_add(i as u16));
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(tcp.seq_number().0 as u32, 0xffff_f000u32.wrapping_add(1448 * i as u32));
        let last = i == 3;
        assert_eq!(tcp.fin(), last, "FIN on the last segment only");
        assert_eq!(tcp.psh(), last, "PSH on the last segment only");
        assert!(tcp.ack());
        assert_eq!(tcp.header_len(), 32, "options are copied");
        assert!(tcp.payload().len() <= 1448);
        joined.extend_from_slice(tcp.payload());
    }
    assert_eq!(joined, data);
}

#[test]
fn tcp_v6_super_frames_are_split_into_valid_segments() {
    let data = payload(4000);
    let frame = tcp_v6(1000, 0x08 | 0x80, &data); // PSH|CWR
    let header = VnetHeader { gso_type: GSO_TCPV6 | GSO_ECN, gso_size: 1000, ..VnetHeader::NONE };
    let mut buf = with_vnet(header, &frame);
    let Ok(Received::Gso { start, gso }) = receive(&mut buf, true) else { panic!("not a GSO frame") };
    assert!(gso.ecn);
    let segments = split(&buf[start..], gso).unwrap();
    assert_eq!(segments.len(), 4);
    let (src, dst) = (IpAddress::Ipv6(Ipv6Address::from(SRC6)), IpAddress::Ipv6(Ipv6Address::from(DST6)));
    let mut joined = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        let ip = Ipv6Packet::new_checked(&seg[14..]).unwrap();
        assert_eq!(usize::from(ip.payload_len()), seg.len() - 54);
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum(&src, &dst), "segment {i} checksum");
        assert_eq!(tcp.seq_number().0 as u32, 1000 + 1000 * i as u32);
        assert_eq!(tcp.cwr(), i == 0, "CWR on the first segment only");
        assert_eq!(tcp.psh(), i == 3);
        joined.extend_from_slice(tcp.payload());
    }
    assert_eq!(joined, data);
}

#[test]
fn a_super_frame_that_fits_one_segment_is_one_valid_frame() {
    let frame = tcp_v4(5, 0x01, 9, b"short");
    let segments = split(&frame, Gso { kind: GsoKind::TcpV4, segment_bytes: 1448, ecn: false }).unwrap();
    assert_eq!(segments, vec![frame.clone()]);
    let empty = tcp_v4(5, 0x01, 9, b"");
    let segments = split(&empty, Gso { kind: GsoKind::TcpV4, segment_bytes: 1448, ecn: false }).unwrap();
    assert_eq!(segments, vec![empty]);
}

#[test]
fn ethernet_padding_after_the_ip_packet_is_not_payload() {
    let mut frame = tcp_v4(5, 0, 9, b"ab");
    frame.extend_from_slice(&[0xee; 6]);
    let segments = split(&frame, Gso { kind: GsoKind::TcpV4, segment_bytes: 1, ecn: false }).unwrap();
    assert_eq!(segments.len(), 2);
    assert!(segments.iter().all(|s| tcp_checksum_ok_v4(s) && s.len() == 14 + 20 + 32 + 1));
}

#[test]
fn bad_super_frames_are_refused() {
    let v4 = Gso { kind: GsoKind::TcpV4, segment_bytes: 1448, ecn: false };
    let frame = tcp_v4(1, 0, 1, &payload(3000));
    assert_eq!(split(&frame, Gso { segment_bytes: 0, ..v4 }), Err(FrameError::MalformedGso { what: "gso_size is 0" }));
    assert_eq!(split(&frame, Gso { segment_bytes: 10, ..v4 }), Err(FrameError::TooManySegments { segments: 300 }));
    assert!(matches!(split(&frame, Gso { kind: GsoKind::TcpV6, ..v4 }), Err(FrameError::MalformedGso { .. })));
    // The IP total length claims more than there is.
    let mut lying = frame.clone();
    lying[16..18].copy_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(split(&lying, v4), Err(FrameError::MalformedGso { what: "IPv4 lengths" }));
    // The TCP data offset points past the packet.
    let mut lying = tcp_v4(1, 0, 1, b"");
    lying[34 + 12] = 0xf0;
    assert_eq!(split(&lying, v4), Err(FrameError::MalformedGso { what: "TCP data offset" }));
    // Truncated anywhere: never a panic, always an error (or a valid split of what is left).
    for cut in 0..frame.len() {
        let _ = split(&frame[..cut], v4);
    }
    let udp = VnetHeader { gso_type: GSO_UDP_L4, gso_size: 1000, ..VnetHeader::NONE };
    assert_eq!(receive(&mut with_vnet(udp, &frame), true), Err(FrameError::UnsupportedGso { gso_type: GSO_UDP_L4 }));
    let ufo = VnetHeader { gso_type: GSO_UDP, ..VnetHeader::NONE };
    assert_eq!(receive(&mut with_vnet(ufo, &frame), true), Err(FrameError::UnsupportedGso { gso_type: GSO_UDP }));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..2000), vnet in any::<bool>()) {
        let mut scratch = Vec::new();
        match receive(&mut bytes, vnet) {
            Ok(Received::Frame { start }) => prop_assert!(start <= bytes.len()),
            Ok(Received::Gso { start, gso }) => {
                let _ = segment(&bytes[start..], gso, &mut scratch, |s| assert!(s.len() >= ETHERNET_HEADER_LEN));
            }
            Err(_) => {}
        }
    }

    #[test]
    fn mutated_super_frames_never_panic(
        len in 0usize..4000,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in any::<usize>(),
        segment_bytes in any::<u16>(),
        v6 in any::<bool>(),
    ) {
        let mut frame = if v6 { tcp_v6(1, 0, &payload(len)) } else { tcp_v4(1, 0, 1, &payload(len)) };
        for (at, value) in flips {
            let at = at % frame.len();
            frame[at] = value;
        }
        frame.truncate(cut % (frame.len() + 1));
        let kind = if v6 { GsoKind::TcpV6 } else { GsoKind::TcpV4 };
        let mut scratch = Vec::new();
        let mut total = 0;
        if let Ok(count) = segment(&frame, Gso { kind, segment_bytes, ecn: true }, &mut scratch, |s| total += s.len()) {
            prop_assert!((1..=SEGMENTS_MAX).contains(&count));
        }
    }
}

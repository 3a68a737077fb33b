use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::cluster::{Redirect, SlotMap, key_slot};
use super::*;

fn decode_all(bytes: &[u8]) -> Result<Vec<Reply>, RespError> {
    let mut decoder = Decoder::new(1024 * 1024);
    decoder.feed(bytes);
    let mut replies = Vec::new();
    while let Some(reply) = decoder.next_reply()? {
        replies.push(reply);
    }
    Ok(replies)
}

#[test]
fn encodes_a_command_as_an_array_of_bulk_strings() {
    let mut out = Vec::new();
    encode_command(&[&b"SET"[..], b"k", b"v\r\n"], &mut out);
    assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n");
}

#[test]
fn decodes_every_reply_type_and_keeps_partial_input() {
    let wire = b"+OK\r\n-ERR bad\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n*-1\r\n";
    let replies = decode_all(wire).unwrap();
    assert_eq!(
        replies,
        vec![
            Reply::Simple(b"OK".to_vec()),
            Reply::Error("ERR bad".into()),
            Reply::Integer(42),
            Reply::Bulk(b"abc".to_vec()),
            Reply::Nil,
            Reply::Array(vec![Reply::Bulk(b"a".to_vec()), Reply::Array(vec![Reply::Integer(1)])]),
            Reply::Nil,
        ]
    );
    // Fed one byte at a time, the same replies come out, none early.
    let mut decoder = Decoder::new(1024);
    let mut replies_bytewise = Vec::new();
    for byte in wire {
        decoder.feed(&[*byte]);
        while let Some(reply) = decoder.next_reply().unwrap() {
            replies_bytewise.push(reply);
        }
    }
    assert_eq!(replies_bytewise, replies);
    assert_eq!(decoder.buffered_bytes(), 0);
}

#[test]
fn refuses_deep_nesting_before_decoding_it() {
    let mut wire = Vec::new();
    for _ in 0..100_000 {
        wire.extend_from_slice(b"*1\r\n");
    }
    wire.extend_from_slice(b":1\r\n");
    assert_eq!(decode_all(&wire), Err(RespError::ReplyTooDeep));
    // Exactly the limit is fine.
    let mut wire = b"*1\r\n".repeat(REPLY_DEPTH_MAX);
    wire.extend_from_slice(b":1\r\n");
    assert_eq!(decode_all(&wire).unwrap().len(), 1);
}

#[test]
fn refuses_replies_over_the_size_limit() {
    let mut decoder = Decoder::new(100);
    decoder.feed(b"$1000\r\n");
    decoder.feed(&[b'x'; 200]);
    assert_eq!(decoder.next_reply(), Err(RespError::ReplyTooLarge(100)));
    let mut decoder = Decoder::new(100);
    decoder.feed(b"$50\r\n");
    decoder.feed(&[b'x'; 52]);
    assert!(matches!(decoder.next_reply(), Ok(Some(Reply::Bulk(b))) if b.len() == 50));
}

#[test]
fn malformed_input_is_an_error() {
    assert_eq!(decode_all(b"?what\r\n"), Err(RespError::Malformed));
    assert_eq!(decode_all(b"$-5\r\n"), Err(RespError::Malformed));
    assert_eq!(decode_all(b"*x\r\n"), Err(RespError::Malformed));
}

#[test]
fn connection_matches_replies_in_order_and_times_out() {
    let t0 = Instant::now();
    let mut conn = RespConn::new(RespLimits::default());
    let a = conn.send(&["PING"], t0 + Duration::from_secs(1)).unwrap();
    let b = conn.send(&["GET", "k"], t0 + Duration::from_secs(1)).unwrap();
    assert_eq!(conn.take_output(), b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    conn.receive(b"+PONG\r\n$1");
    assert_eq!(conn.next_reply(), Some((a, Ok(Reply::Simple(b"PONG".to_vec())))));
    assert_eq!(conn.next_reply(), None);
    assert_eq!(conn.poll_at(), Some(t0 + Duration::from_secs(1)));
    conn.poll(t0 + Duration::from_millis(999));
    assert!(conn.failed().is_none());
    conn.poll(t0 + Duration::from_secs(1));
    assert_eq!(conn.failed(), Some(&RespError::Timeout));
    assert_eq!(conn.next_reply(), Some((b, Err(RespError::Timeout))));
    assert_eq!(conn.send(&["PING"], t0), Err(RespError::Timeout));
}

#[test]
fn connection_refuses_unasked_replies_and_bounds_in_flight() {
    let t0 = Instant::now();
    let mut conn = RespConn::new(RespLimits { reply_bytes_max: 1024, in_flight_max: 2 });
    conn.send(&["PING"], t0).unwrap();
    conn.send(&["PING"], t0).unwrap();
    assert_eq!(conn.send(&["PING"], t0), Err(RespError::TooManyInFlight));
    conn.receive(b"+a\r\n+b\r\n+c\r\n");
    assert_eq!(conn.failed(), Some(&RespError::UnexpectedReply));
}

#[test]
fn key_slots_match_the_cluster_specification() {
    // The specification's own example: CRC16 of "123456789" is 0x31C3.
    assert_eq!(key_slot(b"123456789"), 0x31C3);
    assert_eq!(key_slot(b"foo"), 12182);
    assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"{user1000}.followers"));
    assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
    // An empty tag hashes the whole key.
    assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
    assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
    assert!(key_slot(b"") < cluster::SLOT_COUNT);
}

#[test]
fn slot_map_from_cluster_slots_and_redirects() {
    let node = |host: &str, port: i64| Reply::Array(vec![Reply::Bulk(host.into()), Reply::Integer(port)]);
    let reply = Reply::Array(vec![
        Reply::Array(vec![Reply::Integer(0), Reply::Integer(5460), node("127.0.0.1", 7000)]),
        Reply::Array(vec![Reply::Integer(5461), Reply::Integer(16383), node("::1", 7001), node("127.0.0.1", 7002)]),
    ]);
    let mut map = SlotMap::from_cluster_slots(&reply).unwrap();
    assert_eq!(map.node(0), Some("127.0.0.1:7000"));
    assert_eq!(map.node(5460), Some("127.0.0.1:7000"));
    assert_eq!(map.node(5461), Some("[::1]:7001"));
    assert_eq!(map.node(16383), Some("[::1]:7001"));
    map.set(5460, "127.0.0.1:7002");
    assert_eq!(map.node(5460), Some("127.0.0.1:7002"));
    assert_eq!(map.nodes().len(), 3);
    let bad = Reply::Array(vec![Reply::Array(vec![Reply::Integer(9), Reply::Integer(3), node("a", 1)])]);
    assert_eq!(SlotMap::from_cluster_slots(&bad), None);

    assert_eq!(
        Redirect::parse("MOVED 3999 127.0.0.1:6381"),
        Some(Redirect::Moved { slot: 3999, node: "127.0.0.1:6381".into() })
    );
    assert_eq!(Redirect::parse("ASK 1 10.0.0.1:7000"), Some(Redirect::Ask { slot: 1, node: "10.0.0.1:7000".into() }));
    assert_eq!(Redirect::parse("MOVED 16384 a:1"), None);
    assert_eq!(Redirect::parse("ERR unknown command"), None);
    assert_eq!(Redirect::parse("MOVED 1 :7000"), None);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut decoder = Decoder::new(256);
        decoder.feed(&bytes);
        for _ in 0..64 {
            match decoder.next_reply() {
                Ok(Some(_)) => continue,
                _ => break,
            }
        }
    }

    #[test]
    fn prefixes_of_protocol_like_bytes_never_panic(
        parts in proptest::collection::vec(prop_oneof![
            Just(&b"*"[..]), Just(&b"$"[..]), Just(&b"+"[..]), Just(&b"-"[..]), Just(&b":"[..]),
            Just(&b"\r\n"[..]), Just(&b"1"[..]), Just(&b"-1"[..]), Just(&b"3"[..]), Just(&b"x"[..]),
        ], 0..64)
    ) {
        let bytes: Vec<u8> = parts.concat();
        let mut conn = RespConn::new(RespLimits { reply_bytes_max: 256, in_flight_max: 64 });
        let t0 = Instant::now();
        for _ in 0..8 {
            let _ = conn.send(&["PING"], t0 + Duration::from_secs(1));
        }
        conn.receive(&bytes);
        while conn.next_reply().is_some() {}
    }

    #[test]
    fn bulk_strings_round_trip(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8)) {
        // A command is an array of bulk strings: the decoder reads back exactly what was encoded.
        let mut wire = Vec::new();
        encode_command(&args, &mut wire);
        let replies = decode_all(&wire).unwrap();
        let expected = Reply::Array(args.into_iter().map(Reply::Bulk).collect());
        prop_assert_eq!(replies, vec![expected]);
    }
}

//! Client and server roles talking to each other in memory, and hand-made frames for what a
//! well-behaved peer never sends.

use proptest::prelude::*;

use super::*;

fn pair(limits: WsLimits) -> (WsConnection, WsConnection) {
    (WsConnection::new(WsRole::Client, limits), WsConnection::new(WsRole::Server, limits))
}

/// Everything one side received, and the errors it reported.
#[derive(Debug, Default)]
struct Inbox {
    messages: Vec<WsMessage>,
    errors: Vec<WsError>,
}

fn drain(conn: &mut WsConnection, inbox: &mut Inbox) {
    for _ in 0..10_000 {
        match conn.poll_message() {
            None => break,
            Some(Ok(message)) => inbox.messages.push(message),
            Some(Err(error)) => inbox.errors.push(error),
        }
    }
}

/// Carries bytes both ways until both sides are quiet, `piece` bytes at a time.
fn shuttle(client: &mut WsConnection, server: &mut WsConnection, piece: usize) -> (Inbox, Inbox) {
    let (mut at_client, mut at_server) = (Inbox::default(), Inbox::default());
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    for _ in 0..100_000 {
        client.take_output(&mut to_server);
        server.take_output(&mut to_client);
        if to_server.is_empty() && to_client.is_empty() {
            drain(client, &mut at_client);
            drain(server, &mut at_server);
            if client.output_bytes() == 0 && server.output_bytes() == 0 {
                break;
            }
            continue;
        }
        let n = server.receive(&to_server[..to_server.len().min(piece)]);
        to_server.drain(..n);
        drain(server, &mut at_server);
        let n = client.receive(&to_client[..to_client.len().min(piece)]);
        to_client.drain(..n);
        drain(client, &mut at_client);
    }
    (at_client, at_server)
}

/// A frame as the wire has it; `mask` for client-to-server frames.
fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let masked = u8::from(mask.is_some()) << 7;
    match payload.len() {
        n if n < 126 => out.push(masked | n as u8),
        n if n <= 0xffff => {
            out.push(masked | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(masked | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

const MASK: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

/// The close code in the first close frame of a server's (unmasked) output.
fn close_code(output: &[u8]) -> Option<u16> {
    let [first, len, rest @ ..] = output else { return None };
    (first & 0x0f == 0x8 && *len >= 2).then(|| u16::from_be_bytes([rest[0], rest[1]]))
}

#[test]
fn accept_key_matches_the_rfc_example() {
    assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    let key = client_key();
    assert_eq!(key.len(), 24);
    assert_ne!(key, client_key());
}

#[test]
fn messages_both_ways_with_automatic_pongs() {
    let (mut client, mut server) = pair(WsLimits::default());
    client.send(WsMessage::Text("hello ✓".into())).unwrap();
    client.send(WsMessage::Binary(vec![0, 1, 2, 255])).unwrap();
    client.send(WsMessage::Ping(b"are you there".to_vec())).unwrap();
    server.send(WsMessage::Binary((0..=255).collect())).unwrap();
    let (at_client, at_server) = shuttle(&mut client, &mut server, usize::MAX);
    assert_eq!(
        at_server.messages,
        [
            WsMessage::Text("hello ✓".into()),
            WsMessage::Binary(vec![0, 1, 2, 255]),
            WsMessage::Ping(b"are you there".to_vec())
        ]
    );
    assert_eq!(
        at_client.messages,
        [WsMessage::Binary((0..=255).collect()), WsMessage::Pong(b"are you there".to_vec())]
    );
    assert!(at_client.errors.is_empty() && at_server.errors.is_empty());
    assert_eq!((client.state(), server.state()), (WsState::Open, WsState::Open));
}

#[test]
fn client_frames_are_masked_and_server_frames_are_not() {
    let (mut client, mut server) = pair(WsLimits::default());
    client.send(WsMessage::Text("abc".into())).unwrap();
    server.send(WsMessage::Text("abc".into())).unwrap();
    let (mut from_client, mut from_server) = (Vec::new(), Vec::new());
    client.take_output(&mut from_client);
    server.take_output(&mut from_server);
    assert_eq!(from_client[1] & 0x80, 0x80, "client sets the mask bit");
    assert_eq!(from_client.len(), 2 + 4 + 3);
    assert_eq!(from_server, [0x81, 3, b'a', b'b', b'c']);
}

#[test]
fn byte_by_byte_delivery_gives_the_same_messages() {
    let limits = WsLimits::default();
    let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
    let run = |piece: usize| {
        let (mut client, mut server) = pair(limits);
        client.send(WsMessage::Binary(big.clone())).unwrap();
        client.send(WsMessage::Text("after".into())).unwrap();
        let (_, at_server) = shuttle(&mut client, &mut server, piece);
        at_server.messages
    };
    let whole = run(usize::MAX);
    assert_eq!(whole, [WsMessage::Binary(big.clone()), WsMessage::Text("after".into())]);
    for piece in [1, 2, 3, 7, 4096] {
        assert_eq!(run(piece), whole, "pieces of {piece}");
    }
}

#[test]
fn fragmented_messages_with_a_ping_between_fragments() {
    let mut server = WsConnection::new(WsRole::Server, WsLimits::default());
    let mut input = frame(false, 0x1, "Hel".as_bytes(), MASK);
    input.extend(frame(true, 0x9, b"mid", MASK));
    input.extend(frame(false, 0x0, "lo, wör".as_bytes(), MASK));
    input.extend(frame(true, 0x0, "ld".as_bytes(), MASK));
    input.extend(frame(true, 0x2, &[9, 9], MASK));
    assert_eq!(server.receive(&input), input.len());
    let mut inbox = Inbox::default();
    drain(&mut server, &mut inbox);
    assert_eq!(
        inbox.messages,
        [WsMessage::Ping(b"mid".to_vec()), WsMessage::Text("Hello, wörld".into()), WsMessage::Binary(vec![9, 9])]
    );
    let mut out = Vec::new();
    server.take_output(&mut out);
    assert_eq!(out, [0x8a, 3, b'm', b'i', b'd'], "the pong");
}

#[test]
fn unmasked_client_frames_and_masked_server_frames_are_protocol_errors() {
    let mut server = WsConnection::new(WsRole::Server, WsLimits::default());
    server.receive(&frame(true, 0x1, b"plain", None));
    let mut inbox = Inbox::default();
    drain(&mut server, &mut inbox);
    assert!(matches!(inbox.errors.as_slice(), [WsError::Protocol { .. }]), "{inbox:?}");
    let mut out = Vec::new();
    server.take_output(&mut out);
    assert_eq!(close_code(&out), Some(1002));
    assert_eq!(server.state(), WsState::Closed);
    assert!(server.poll_message().is_none(), "the error is reported once");

    let mut client = WsConnection::new(WsRole::Client, WsLimits::default());
    client.receive(&frame(true, 0x1, b"masked", MASK));
    let mut inbox = Inbox::default();
    drain(&mut client, &mut inbox);
    assert!(matches!(inbox.errors.as_slice(), [WsError::Protocol { .. }]), "{inbox:?}");
    assert_eq!(client.state(), WsState::Closed);
}

#[test]
fn oversized_frames_and_messages_close_with_1009() {
    let limits = WsLimits { frame_bytes_max: 1000, message_bytes_max: 1500, ..WsLimits::default() };
    // One frame over the frame limit: refused from its header, before its payload is held.
    let mut server = WsConnection::new(WsRole::Server, limits);
    let header_only = &frame(true, 0x2, &[0; 1001], MASK)[..8];
    server.receive(header_only);
    let mut inbox = Inbox::default();
    drain(&mut server, &mut inbox);
    assert_eq!(inbox.errors, [WsError::TooLarge { max_bytes: 1000 }]);
    let mut out = Vec::new();
    server.take_output(&mut out);
    assert_eq!(close_code(&out), Some(1009));
    assert_eq!(server.state(), WsState::Closed);
    // Fragments each within the frame limit, together over the message limit.
    let mut server = WsConnection::new(WsRole::Server, limits);
    let mut input = frame(false, 0x2, &[1; 900], MASK);
    input.extend(frame(true, 0x0, &[2; 900], MASK));
    server.receive(&input);
    let mut inbox = Inbox::default();
    drain(&mut server, &mut inbox);
    assert_eq!(inbox.errors, [WsError::TooLarge { max_bytes: 1500 }]);
    let mut out = Vec::new();
    server.take_output(&mut out);
    assert_eq!(close_code(&out), Some(1009));
    // Our own oversized message is refused before anything is written.
    let (mut client, _) = pair(limits);
    assert_eq!(client.send(WsMessage::Binary(vec![0; 1501])), Err(WsError::MessageTooLarge { max_bytes: 1500 }));
    assert_eq!(client.send(WsMessage::Ping(vec![0; 126])), Err(WsError::MessageTooLarge { max_bytes: 125 }));
    assert_eq!(client.output_bytes(), 0);
    assert_eq!(client.state(), WsState::Open);
}

#[test]
fn invalid_utf8_closes_with_1007() {
    let mut server = WsConnection::new(WsRole::Server, WsLimits::default());
    server.receive(&frame(true, 0x1, &[0xc3, 0x28], MASK));
    let mut inbox = Inbox::default();
    drain(&mut server, &mut inbox);
    assert_eq!(inbox.errors, [WsError::InvalidUtf8]);
    let mut out = Vec::new();
    server.take_output(&mut out);
    assert_eq!(close_code(&out), Some(1007));
}

#[test]
fn close_handshake_started_by_the_client() {
    let (mut client, mut server) = pair(WsLimits::default());
    client.close(1000, "bye").unwrap();
    assert_eq!(client.state(), WsState::Closing);
    assert_eq!(client.send(WsMessage::Text("late".into())), Err(WsError::Closed));
    let (at_client, at_server) = shuttle(&mut client, &mut server, usize::MAX);
    assert_eq!(at_server.messages, [WsMessage::Close(Some((1000, "bye".into())))]);
    // The server answered and is done; it closes the TCP connection first (RFC 6455 §7.1.1).
    assert_eq!(server.state(), WsState::Closed);
    assert_eq!(at_client.messages, [WsMessage::Close(Some((1000, "bye".into())))]);
    assert!(at_client.errors.is_empty() && at_server.errors.is_empty(), "{at_client:?} {at_server:?}");
    client.peer_closed();
    let mut inbox = Inbox::default();
    drain(&mut client, &mut inbox);
    assert!(inbox.errors.is_empty(), "{inbox:?}");
    assert_eq!(client.state(), WsState::Closed);
}

#[test]
fn reserved_close_codes_are_refused() {
    let (mut client, _) = pair(WsLimits::default());
    for code in [999, 1004, 1006, 1015, 2000, 5000] {
        assert_eq!(client.close(code, ""), Err(WsError::InvalidCloseCode { code }));
    }
    assert_eq!(client.state(), WsState::Open);
    assert_eq!(client.send(WsMessage::Close(Some((4000, "app".into())))), Ok(()));
    let mut out = Vec::new();
    client.take_output(&mut out);
    assert_eq!(out[0], 0x88, "a close frame");
    assert_eq!(client.state(), WsState::Closing);
}

#[test]
fn close_handshake_started_by_the_server() {
    let (mut client, mut server) = pair(WsLimits::default());
    server.close(1001, &"é".repeat(100)).unwrap();
    let (at_client, at_server) = shuttle(&mut client, &mut server, usize::MAX);
    // The reason was cut to 123 bytes on a character boundary.
    assert_eq!(at_client.messages, [WsMessage::Close(Some((1001, "é".repeat(61))))]);
    assert_eq!(at_server.messages.len(), 1);
    assert_eq!(server.state(), WsState::Closed);
    assert!(at_client.errors.is_empty() && at_server.errors.is_empty());
}

#[test]
fn eof_without_close_is_reported() {
    let (mut client, mut server) = pair(WsLimits::default());
    client.send(WsMessage::Text("partial".into())).unwrap();
    let mut wire = Vec::new();
    client.take_output(&mut wire);
    server.receive(&wire[..wire.len() - 2]);
    server.peer_closed();
    let mut inbox = Inbox::default();
    drain(&mut server, &mut inbox);
    assert_eq!(inbox.errors, [WsError::ResetWithoutClose]);
    assert!(inbox.messages.is_empty());
    assert_eq!(server.state(), WsState::Closed);
}

#[test]
fn buffers_apply_back_pressure() {
    let limits = WsLimits { incoming_bytes_max: 100, outgoing_bytes_max: 200, ..WsLimits::default() };
    let (mut client, mut server) = pair(limits);
    assert!(client.send(WsMessage::Binary(vec![1; 300])).is_ok(), "one message over the bound is queued");
    assert_eq!(client.send(WsMessage::Binary(vec![2; 10])), Err(WsError::OutgoingFull { queued_bytes: 308 }));
    let mut wire = Vec::new();
    client.take_output(&mut wire);
    assert_eq!(server.receive(&wire), 100);
    assert!(!server.wants_read());
    assert_eq!(server.receive(&wire[100..]), 0);
    let mut rest = &wire[100..];
    let mut inbox = Inbox::default();
    for _ in 0..100 {
        drain(&mut server, &mut inbox);
        if rest.is_empty() {
            break;
        }
        let n = server.receive(rest);
        rest = &rest[n..];
    }
    drain(&mut server, &mut inbox);
    assert_eq!(inbox.messages, [WsMessage::Binary(vec![1; 300])]);
    assert!(client.send(WsMessage::Binary(vec![2; 10])).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary bytes to either role, cut anywhere: no panic, input held within its bound,
    /// and once over, the connection stays over.
    #[test]
    fn arbitrary_bytes_never_panic(
        pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20),
        server_role in any::<bool>(),
        eof in any::<bool>(),
    ) {
        let limits = WsLimits { frame_bytes_max: 512, message_bytes_max: 1024, incoming_bytes_max: 256, outgoing_bytes_max: 1024 };
        let role = if server_role { WsRole::Server } else { WsRole::Client };
        let mut conn = WsConnection::new(role, limits);
        let mut errors = 0;
        for piece in &pieces {
            let mut rest = piece.as_slice();
            for _ in 0..=rest.len() {
                let n = conn.receive(rest);
                prop_assert!(conn.pipe.unread() <= limits.incoming_bytes_max);
                rest = &rest[n..];
                for _ in 0..1000 {
                    match conn.poll_message() {
                        None => break,
                        Some(Ok(WsMessage::Binary(data))) => prop_assert!(data.len() <= limits.message_bytes_max),
                        Some(Ok(WsMessage::Text(text))) => prop_assert!(text.len() <= limits.message_bytes_max),
                        Some(Ok(_)) => {}
                        Some(Err(_)) => errors += 1,
                    }
                }
                if rest.is_empty() || n == 0 && conn.state() == WsState::Closed {
                    break;
                }
            }
            let _ = conn.send(WsMessage::Text("x".into()));
            conn.take_output(&mut Vec::new());
        }
        if eof {
            conn.peer_closed();
            while let Some(result) = conn.poll_message() {
                if result.is_err() {
                    errors += 1;
                }
            }
        }
        prop_assert!(errors <= 1, "an error is reported once");
        if errors == 1 {
            prop_assert_eq!(conn.state(), WsState::Closed);
        }
    }
}

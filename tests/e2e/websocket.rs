//! WebSockets through the real binary, with a real client (tungstenite over a TcpStream): a
//! Worker serves one with `WebSocketPair` and a `101` answer; messages go both ways, text and
//! binary, in order, also from a timer after the response; the Worker's close reaches the
//! client with its code and reason; a frame over the 1 MiB limit closes that socket with 1009
//! and nothing else; a client that vanishes is seen by the Worker as a close; a WebSocket
//! returned to a request that did not ask for one is a 500.
//!
//! Loopback only; every loop is bounded, every read has a timeout.

use std::net::TcpStream;
use std::time::Duration;

use isobar_e2e::{Isobar, TempDir};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

const WORKER: &str = r#"
let opened = 0;
let closes = [];
export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/stats") return new Response(`opened ${opened} closes ${closes.join(",")}`);
    if (url.pathname === "/bad") {
      const pair = new WebSocketPair();
      pair[1].accept();
      return new Response(null, { status: 101, webSocket: pair[0] });
    }
    if (request.headers.get("upgrade") !== "websocket") {
      return new Response("expected a WebSocket", { status: 426 });
    }
    const [client, server] = Object.values(new WebSocketPair());
    server.accept();
    opened++;
    server.send("hello");
    let count = 0;
    server.addEventListener("message", (event) => {
      count++;
      if (typeof event.data !== "string") {
        server.send(new Uint8Array(event.data).reverse());
      } else if (event.data === "close") {
        server.close(4000, "bye");
      } else if (event.data === "count") {
        server.send(`count ${count}`);
      } else if (event.data === "later") {
        setTimeout(() => server.send("timer fired"), 50);
      } else {
        server.send(`echo ${event.data}`);
      }
    });
    server.addEventListener("close", (event) => {
      closes.push(`${event.code}:${event.wasClean}`);
    });
    return new Response(null, { status: 101, webSocket: client, headers: { "x-served-by": "worker" } });
  },
};
"#;

fn start(dir: &TempDir) -> Isobar {
    let script = dir.write("ws.js", WORKER).display().to_string();
    Isobar::start(&["run", &script, "--cores", "1", "--admin", "127.0.0.1:0"])
}

fn open(isobar: &Isobar, path: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(isobar.addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let url = format!("ws://{}{path}", isobar.addr);
    let (socket, response) = tungstenite::client(url.as_str(), stream).expect("the upgrade is accepted");
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers().get("x-served-by").map(|v| v.as_bytes()), Some(&b"worker"[..]));
    socket
}

fn next_text(socket: &mut WebSocket<TcpStream>) -> String {
    match socket.read().expect("a message") {
        Message::Text(text) => text.as_str().to_owned(),
        other => panic!("expected text, got {other:?}"),
    }
}

fn stats(isobar: &Isobar) -> String {
    isobar.get("/stats").text()
}

#[test]
fn a_websocket_echoes_through_isobar_with_a_real_client() {
    let dir = TempDir::new("websocket-echo");
    let isobar = start(&dir);
    let mut socket = open(&isobar, "/chat");
    assert_eq!(next_text(&mut socket), "hello", "sent before the response, delivered after the 101");
    socket.send(Message::text("abc")).unwrap();
    assert_eq!(next_text(&mut socket), "echo abc");
    socket.send(Message::binary(vec![1u8, 2, 3, 4])).unwrap();
    assert_eq!(socket.read().unwrap(), Message::binary(vec![4u8, 3, 2, 1]));
    socket.send(Message::text("later")).unwrap();
    assert_eq!(next_text(&mut socket), "timer fired", "a timer set in a message handler fires");
    // Many messages in flight at once arrive, in order.
    for i in 0..300 {
        socket.send(Message::text(format!("m{i}"))).unwrap();
    }
    for i in 0..300 {
        assert_eq!(next_text(&mut socket), format!("echo m{i}"));
    }
    socket.send(Message::text("count")).unwrap();
    assert_eq!(next_text(&mut socket), "count 304");
    // A message of exactly the limit (1 MiB) is fine both ways.
    let mut big: Vec<u8> = (0..1u32 << 20).map(|i| i as u8).collect();
    socket.send(Message::binary(big.clone())).unwrap();
    big.reverse();
    assert_eq!(socket.read().unwrap(), Message::binary(big));
    // The Worker closes: the client sees its code and reason, and answers.
    socket.send(Message::text("close")).unwrap();
    match socket.read().unwrap() {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::Library(4000));
            assert_eq!(frame.reason.as_str(), "bye");
        }
        other => panic!("expected the Worker's close, got {other:?}"),
    }
    let _ = socket.flush();
    let end = isobar_e2e::eventually(Duration::from_secs(10), || {
        let text = stats(&isobar);
        text.contains("closes 4000:true").then_some(text)
    });
    assert!(end.is_some(), "the Worker sees the close handshake end: {}", stats(&isobar));

    let metrics = isobar_e2e::eventually(Duration::from_secs(10), || {
        let metrics = isobar.metrics();
        (metrics.sum("isobar_tenant_websocket_messages_in_total", &[]) >= 306.0).then_some(metrics)
    });
    assert!(metrics.is_some(), "messages are metered: {}", isobar.metrics().text);
}

#[test]
fn oversized_frames_and_vanished_clients_close_only_their_socket() {
    let dir = TempDir::new("websocket-limits");
    let isobar = start(&dir);
    // A frame over the 1 MiB limit: the socket closes with 1009, the Worker sees it.
    let mut big = open(&isobar, "/big");
    assert_eq!(next_text(&mut big), "hello");
    big.send(Message::binary(vec![7u8; (1 << 20) + 1])).unwrap();
    let closed = loop {
        match big.read() {
            Ok(Message::Close(frame)) => break frame.map(|f| f.code),
            Ok(_) => continue,
            Err(error) => panic!("expected a close frame, got {error}"),
        }
    };
    assert_eq!(closed, Some(CloseCode::Size));
    // A client that goes away without a close frame.
    let mut gone = open(&isobar, "/gone");
    assert_eq!(next_text(&mut gone), "hello");
    drop(gone);
    let seen = isobar_e2e::eventually(Duration::from_secs(10), || {
        let text = stats(&isobar);
        (text.contains("1009:false") && text.contains("1006:false")).then_some(text)
    });
    assert!(seen.is_some(), "the Worker sees both ends: {}", stats(&isobar));
    // The server goes on: a new socket works, and HTTP too.
    let mut again = open(&isobar, "/again");
    assert_eq!(next_text(&mut again), "hello");
    again.send(Message::text("still")).unwrap();
    assert_eq!(next_text(&mut again), "echo still");
    let plain = isobar.get("/plain");
    assert_eq!(plain.status, 426);
    // A WebSocket returned to a request that did not ask for one is the Worker's error.
    let bad = isobar.get("/bad");
    assert_eq!(bad.status, 500);
    assert!(isobar.stderr().contains("did not ask for one"), "{}", isobar.stderr());
}

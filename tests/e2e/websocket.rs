//! WebSockets through the real binary, with a real client (tungstenite over a TcpStream): a
//! Worker serves one with `WebSocketPair` and a `101` answer; messages go both ways, text and
//! binary, in order, also from a timer after the response; the Worker's close reaches the
//! client with its code and reason; a frame over the 1 MiB limit closes that socket with 1009
//! and nothing else; a client that vanishes is seen by the Worker as a close; a WebSocket
//! returned to a request that did not ask for one is a 500. A Worker also opens them (`new
//! WebSocket`, `fetch()` with `Upgrade`) to origins the tests start, relays one between a client
//! and an origin, and serves one over HTTPS; a runaway handler and a drain close sockets with 1001.
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
const describe = (data) => (typeof data === "string" ? data : `bin:${new Uint8Array(data).join(",")}`);
export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/stats") return new Response(`opened ${opened} closes ${closes.join(",")}`);
    const target = url.searchParams.get("to");
    if (url.pathname === "/client") {
      // new WebSocket(url): open, two messages each way, our close, the close event.
      const ws = new WebSocket(target, ["chat", "other"]);
      const seen = [];
      await new Promise((resolve) => {
        ws.addEventListener("open", () => {
          seen.push(`open:${ws.readyState}`);
          ws.send("ping");
          ws.send(new Uint8Array([9, 8, 7]));
        });
        ws.addEventListener("message", (event) => {
          seen.push(describe(event.data));
          if (seen.length === 3) ws.close(1000, "done");
        });
        ws.addEventListener("error", (event) => seen.push(`error:${event.message}`));
        ws.addEventListener("close", (event) => {
          seen.push(`close:${event.code}:${event.wasClean}`);
          resolve();
        });
      });
      return new Response(`${ws.protocol}|${seen.join("|")}`);
    }
    if (url.pathname === "/fetch") {
      // fetch() with Upgrade: websocket: a 101 Response whose webSocket is accepted.
      const response = await fetch(target, { headers: { Upgrade: "websocket" } });
      const ws = response.webSocket;
      ws.accept();
      ws.send("via fetch");
      const reply = await new Promise((resolve) => ws.addEventListener("message", (e) => resolve(e.data)));
      ws.close(1000);
      return new Response(`${response.status} ${reply}`);
    }
    if (url.pathname === "/refused") {
      try {
        await fetch(target, { headers: { Upgrade: "websocket" } });
        return new Response("connected?");
      } catch (error) {
        return new Response(`refused: ${error.message}`);
      }
    }
    if (url.pathname === "/passthrough") {
      // The proxy template's way: the origin's 101 Response, returned as it is.
      return fetch(new Request(target, request));
    }
    if (url.pathname === "/proxy") {
      // A Worker between a client and an origin: every message relayed both ways.
      const [client, server] = Object.values(new WebSocketPair());
      server.accept();
      const origin = new WebSocket(target);
      const early = [];
      origin.addEventListener("open", () => {
        for (const data of early) origin.send(data);
      });
      server.addEventListener("message", (event) => {
        if (origin.readyState === WebSocket.OPEN) origin.send(event.data);
        else early.push(event.data);
      });
      origin.addEventListener("message", (event) => server.send(event.data));
      server.addEventListener("close", (event) => origin.close(event.code === 1005 ? 1000 : event.code, event.reason));
      origin.addEventListener("close", (event) => server.close(event.code === 1005 ? 1000 : event.code, event.reason));
      return new Response(null, { status: 101, webSocket: client });
    }
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
      } else if (event.data === "spin") {
        for (;;) {}
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

/// A WebSocket origin on loopback: echoes text with an `origin:` prefix and binary as it is,
/// picks the `chat` subprotocol when offered, and closes when asked to. At most `connections`
/// connections, each on its own thread.
fn echo_origin(connections: usize) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                // The signature is tungstenite's `Callback`, error type included.
                #[expect(clippy::result_large_err)]
                let choose = |request: &tungstenite::handshake::server::Request,
                              mut response: tungstenite::handshake::server::Response| {
                    let offered = request.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
                    if offered.is_some_and(|list| list.split(',').any(|p| p.trim() == "chat")) {
                        response.headers_mut().insert("sec-websocket-protocol", "chat".parse().unwrap());
                    }
                    Ok(response)
                };
                let Ok(mut socket) = tungstenite::accept_hdr(stream, choose) else { return };
                for _ in 0..10_000 {
                    let reply = match socket.read() {
                        Ok(Message::Text(text)) => Message::text(format!("origin:{}", text.as_str())),
                        Ok(Message::Binary(data)) => Message::Binary(data),
                        Ok(Message::Close(_)) | Err(_) => break,
                        Ok(_) => continue,
                    };
                    if socket.send(reply).is_err() {
                        break;
                    }
                }
                // Finish the close handshake (or just go, if the connection broke).
                for _ in 0..100 {
                    if socket.flush().is_err() || socket.read().is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

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
    let logged = isobar_e2e::eventually(Duration::from_secs(10), || {
        isobar.stderr().contains("did not ask for one").then_some(())
    });
    assert!(logged.is_some(), "{}", isobar.stderr());
}

#[test]
fn a_worker_opens_websockets_to_an_origin() {
    let dir = TempDir::new("websocket-client");
    let isobar = start(&dir);
    let origin = echo_origin(8);
    let client = isobar.get(&format!("/client?to=ws://{origin}/path"));
    assert_eq!(client.status, 200, "{} {}", client.text(), isobar.stderr());
    assert_eq!(
        client.text(),
        "chat|open:1|origin:ping|bin:9,8,7|close:1000:true",
        "new WebSocket(): open, messages both ways, the subprotocol chosen, a clean close"
    );
    let fetched = isobar.get(&format!("/fetch?to=http://{origin}/"));
    assert_eq!(fetched.text(), "101 origin:via fetch", "fetch() with Upgrade: websocket");
    // Nobody listens there: a clean error, not a hang.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let refused = isobar.get(&format!("/refused?to=http://{closed}/"));
    assert!(refused.text().starts_with("refused: WebSocket connection to"), "{}", refused.text());
    // isobar's own listener is not a destination, for WebSockets as for fetch().
    let own = isobar.get(&format!("/refused?to=http://{}/stats", isobar.addr));
    assert!(own.text().contains("it is one of isobar's own listeners"), "{}", own.text());
    // An HTTP server that does not switch protocols is an error too.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut stream, _)) = listener.accept() {
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno");
        }
    });
    let plain = isobar.get(&format!("/refused?to=http://{plain_addr}/"));
    assert!(plain.text().contains("the server answered 200 instead of switching protocols (101)"), "{}", plain.text());
}

#[test]
fn a_worker_relays_a_websocket_between_a_client_and_an_origin() {
    let dir = TempDir::new("websocket-proxy");
    let isobar = start(&dir);
    let origin = echo_origin(4);
    let stream = TcpStream::connect(isobar.addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let url = format!("ws://{}/proxy?to=ws://{origin}/", isobar.addr);
    let (mut socket, _) = tungstenite::client(url.as_str(), stream).expect("the upgrade is accepted");
    for i in 0..50 {
        socket.send(Message::text(format!("m{i}"))).unwrap();
    }
    for i in 0..50 {
        assert_eq!(next_text(&mut socket), format!("origin:m{i}"), "relayed both ways, in order");
    }
    socket.send(Message::binary(vec![1u8; 70_000])).unwrap();
    assert_eq!(socket.read().unwrap(), Message::binary(vec![1u8; 70_000]));
    socket.close(None).unwrap();
    let closed = loop {
        match socket.read() {
            Ok(Message::Close(frame)) => break frame.map(|f| f.code),
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break None,
            Err(error) => panic!("{error}"),
        }
    };
    assert!(matches!(closed, Some(CloseCode::Normal) | None), "{closed:?}");
}

#[test]
fn a_runaway_handler_or_a_drain_closes_the_socket_with_1001() {
    let dir = TempDir::new("websocket-away");
    let mut isobar = start(&dir);
    // A message handler that never returns: the CPU limit stops it, the socket goes with its
    // isolate, and the server goes on.
    let mut spinning = open(&isobar, "/spin");
    assert_eq!(next_text(&mut spinning), "hello");
    spinning.send(Message::text("spin")).unwrap();
    let code = loop {
        match spinning.read() {
            Ok(Message::Close(frame)) => break frame.map(|f| f.code),
            Ok(_) => continue,
            Err(error) => panic!("expected a close frame, got {error}"),
        }
    };
    assert_eq!(code, Some(CloseCode::Away));
    let logged = isobar_e2e::eventually(Duration::from_secs(10), || {
        isobar.stderr().contains("exceeded its CPU time limit").then_some(())
    });
    assert!(logged.is_some(), "{}", isobar.stderr());
    let mut fresh = open(&isobar, "/fresh");
    assert_eq!(next_text(&mut fresh), "hello");
    fresh.send(Message::text("x")).unwrap();
    assert_eq!(next_text(&mut fresh), "echo x");
    // Shutting down: open sockets get 1001 and the process still exits.
    isobar.terminate();
    let code = loop {
        match fresh.read() {
            Ok(Message::Close(frame)) => break frame.map(|f| f.code),
            Ok(_) => continue,
            Err(error) => panic!("expected a close frame, got {error}"),
        }
    };
    assert_eq!(code, Some(CloseCode::Away));
    let _ = fresh.flush();
    assert_eq!(isobar.wait_exit(Duration::from_secs(20)), Some(0), "drained with a socket open");
}

#[test]
fn a_websocket_over_https() {
    let ca = crate::certs::Ca::new("isobar wss CA");
    let dir = TempDir::new("websocket-tls");
    let (cert, key) = ca.leaf(&["localhost"]);
    let cert = dir.write("cert.pem", &cert).display().to_string();
    let key = dir.write("key.pem", &key).display().to_string();
    let script = dir.write("ws.js", WORKER).display().to_string();
    let isobar = Isobar::start(&[
        "run",
        &script,
        "--cores",
        "1",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-listen",
        "127.0.0.1:0",
    ]);
    let https = isobar.tls.expect("isobar printed its https:// listener");
    let tcp = TcpStream::connect(https).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let session = rustls::ClientConnection::new(ca.client(), name).unwrap();
    let tls = rustls::StreamOwned::new(session, tcp);
    let (mut socket, response) = tungstenite::client("wss://localhost/secure", tls).expect("the upgrade over TLS");
    assert_eq!(response.status(), 101);
    assert_eq!(socket.read().unwrap(), Message::text("hello"));
    for i in 0..20 {
        socket.send(Message::text(format!("s{i}"))).unwrap();
    }
    for i in 0..20 {
        assert_eq!(socket.read().unwrap(), Message::text(format!("echo s{i}")), "decrypted, framed, in order");
    }
    socket.send(Message::text("close")).unwrap();
    match socket.read().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Library(4000)),
        other => panic!("expected the Worker's close, got {other:?}"),
    }
}

#[test]
fn a_fetched_websocket_returned_as_it_is_joins_the_two_connections() {
    let dir = TempDir::new("websocket-passthrough");
    let isobar = start(&dir);
    let origin = echo_origin(4);
    let stream = TcpStream::connect(isobar.addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let url = format!("ws://{}/passthrough?to=http://{origin}/", isobar.addr);
    let (mut socket, response) = tungstenite::client(url.as_str(), stream).expect("the upgrade is accepted");
    assert_eq!(response.status(), 101);
    for i in 0..30 {
        socket.send(Message::text(format!("p{i}"))).unwrap();
        socket.send(Message::binary(vec![i as u8; 1000])).unwrap();
    }
    for i in 0..30 {
        assert_eq!(next_text(&mut socket), format!("origin:p{i}"));
        assert_eq!(socket.read().unwrap(), Message::binary(vec![i as u8; 1000]));
    }
    socket.close(None).unwrap();
    for _ in 0..10 {
        match socket.read() {
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        }
    }
    // Both directions were counted as the tenant's messages, though no JavaScript ran for them.
    let metrics = isobar_e2e::eventually(Duration::from_secs(10), || {
        let metrics = isobar.metrics();
        (metrics.sum("isobar_tenant_websocket_messages_out_total", &[]) >= 120.0).then_some(metrics)
    });
    assert!(metrics.is_some(), "{}", isobar.metrics().text);
}

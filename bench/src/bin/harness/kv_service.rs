//! The "trivial local service" behind workerd's KV binding in the kv scenario: an in-memory
//! key-value store that speaks the HTTP protocol workerd's `kvNamespace` binding sends to its
//! service (src/workerd/api/kv.c++ in workerd): `GET /<key>?urlencoded=true` answers the value
//! (404 when there is none) with its metadata in `CF-KV-Metadata`, `PUT /<key>` stores the
//! body (and that header), `DELETE /<key>` removes, and `GET /?prefix=&key_count_limit=&cursor=`
//! lists as JSON. The key is the percent-encoded last path segment; the request target may be
//! absolute (`https://fake-host/<key>`) or a path.
//!
//! It runs as a process of its own (`harness kv-service --listen ADDR`, started by the kv
//! scenario on the server CPU) so its CPU time is read apart from workerd's. It is deliberately
//! the cheapest honest service: one thread, epoll, a `BTreeMap`, nothing written to disk,
//! expiration ignored. So workerd's figures are a lower bound on what a real service would
//! cost, and its puts are not durable, unlike isobar's embedded store, which fsyncs each batch.
//!
//! Everything is bounded: connections, a request's size, and the bytes the store holds; a
//! request beyond a bound is answered with an error status, never by growing.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;

use anyhow::{Context as _, Result, bail};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

/// Open connections at most (workerd opens one per concurrent KV operation).
const CONNECTIONS_MAX: usize = 4096;
/// A request's head at most.
const HEAD_BYTES_MAX: usize = 64 * 1024;
/// A request's body at most: Workers KV's value limit (25 MiB) and a little.
const BODY_BYTES_MAX: usize = 25 * 1024 * 1024 + 1024;
/// Keys and values held at most, in bytes: a benchmark's working set, not a database.
const STORE_BYTES_MAX: usize = 512 * 1024 * 1024;
/// `list` answers at most this many keys (Workers KV's limit).
const LIST_LIMIT_MAX: usize = 1000;

const LISTENER: Token = Token(usize::MAX);

struct Entry {
    value: Vec<u8>,
    metadata: Option<Vec<u8>>,
}

/// The store: keys in byte order (for `list`), and the bytes held.
#[derive(Default)]
struct Store {
    entries: BTreeMap<Vec<u8>, Entry>,
    bytes: usize,
}

impl Store {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>, metadata: Option<Vec<u8>>) -> bool {
        let size = |k: &[u8], e: &Entry| k.len() + e.value.len() + e.metadata.as_ref().map_or(0, Vec::len);
        let entry = Entry { value, metadata };
        let added = size(&key, &entry);
        let freed = self.entries.get(&key).map_or(0, |old| size(&key, old));
        if self.bytes - freed + added > STORE_BYTES_MAX {
            return false;
        }
        self.bytes = self.bytes - freed + added;
        self.entries.insert(key, entry);
        true
    }

    fn delete(&mut self, key: &[u8]) {
        if let Some(old) = self.entries.remove(key) {
            self.bytes -= key.len() + old.value.len() + old.metadata.as_ref().map_or(0, Vec::len);
        }
    }

    /// Keys from `prefix`, after `cursor`, at most `limit`; the JSON body workerd parses.
    fn list(&self, prefix: &[u8], cursor: Option<&[u8]>, limit: usize) -> Vec<u8> {
        let start = match cursor {
            Some(c) if c > prefix => std::ops::Bound::Excluded(c.to_vec()),
            _ => std::ops::Bound::Included(prefix.to_vec()),
        };
        let mut keys = Vec::new();
        let mut last = None;
        let mut more = false;
        for (key, entry) in self.entries.range((start, std::ops::Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            if keys.len() == limit {
                more = true;
                break;
            }
            let mut item = serde_json::json!({ "name": String::from_utf8_lossy(key) });
            if let Some(metadata) = &entry.metadata {
                item["metadata"] = String::from_utf8_lossy(metadata).into();
            }
            keys.push(item);
            last = Some(key.clone());
        }
        let mut body = serde_json::json!({ "keys": keys, "list_complete": !more });
        if more && let Some(last) = last {
            body["cursor"] = String::from_utf8_lossy(&last).into();
        }
        body.to_string().into_bytes()
    }
}

struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Close once `output` is written (the client asked, or the request was refused).
    closing: bool,
}

/// `harness kv-service --listen ADDR`: serves until killed (the harness's servers die with it).
pub fn main(args: &[String]) -> Result<()> {
    let listen: SocketAddr = match args {
        [flag, addr] if flag == "--listen" => addr.parse().with_context(|| format!("--listen {addr}"))?,
        _ => bail!("usage: harness kv-service --listen ADDR"),
    };
    let mut listener = TcpListener::bind(listen).with_context(|| format!("listen on {listen}"))?;
    let mut poll = Poll::new().context("epoll")?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE).context("epoll_ctl")?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut store = Store::default();
    let mut events = Events::with_capacity(1024);
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error).context("epoll_wait"),
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept(&poll, &mut listener, &mut conns, &mut free)?;
                continue;
            }
            let index = event.token().0;
            let Some(conn) = conns.get_mut(index).and_then(Option::as_mut) else { continue };
            if !serve(conn, &mut store) {
                let _ = poll.registry().deregister(&mut conn.stream);
                conns[index] = None;
                free.push(index);
            }
        }
    }
}

fn accept(poll: &Poll, listener: &mut TcpListener, conns: &mut Vec<Option<Conn>>, free: &mut Vec<usize>) -> Result<()> {
    // Bounded by the backlog: accept returns WouldBlock once it is empty.
    loop {
        let (mut stream, _) = match listener.accept() {
            Ok(pair) => pair,
            Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error).context("accept"),
        };
        let index = match free.pop() {
            Some(index) => index,
            None if conns.len() < CONNECTIONS_MAX => {
                conns.push(None);
                conns.len() - 1
            }
            // Full: the connection is dropped (closed) unserved.
            None => continue,
        };
        let _ = stream.set_nodelay(true);
        poll.registry()
            .register(&mut stream, Token(index), Interest::READABLE | Interest::WRITABLE)
            .context("epoll_ctl")?;
        conns[index] = Some(Conn { stream, input: Vec::new(), output: Vec::new(), closing: false });
    }
}

/// Reads what there is, answers every complete request, writes what it can; false when the
/// connection is done.
fn serve(conn: &mut Conn, store: &mut Store) -> bool {
    let mut chunk = [0u8; 64 * 1024];
    let mut eof = false;
    loop {
        match conn.stream.read(&mut chunk) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => conn.input.extend_from_slice(&chunk[..n]),
            Err(error) if error.kind() == ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
        if conn.input.len() > HEAD_BYTES_MAX + BODY_BYTES_MAX {
            break;
        }
    }
    while !conn.closing {
        match parse_request(&conn.input) {
            Parsed::Partial => break,
            Parsed::Invalid(status) => {
                respond(&mut conn.output, status, &[], None);
                conn.closing = true;
            }
            Parsed::Complete(request) => {
                conn.closing = request.close;
                handle(&request, store, &mut conn.output);
                let consumed = request.consumed;
                conn.input.drain(..consumed);
            }
        }
    }
    while !conn.output.is_empty() {
        match conn.stream.write(&conn.output) {
            Ok(0) => return false,
            Ok(n) => {
                conn.output.drain(..n);
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => return true,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    !(conn.closing || eof)
}

struct Request {
    method: String,
    target: String,
    metadata: Option<Vec<u8>>,
    body: Vec<u8>,
    close: bool,
    consumed: usize,
}

enum Parsed {
    Partial,
    Invalid(u16),
    Complete(Request),
}

fn parse_request(input: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let head = match request.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if input.len() > HEAD_BYTES_MAX => return Parsed::Invalid(431),
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Invalid(400),
    };
    let (mut length, mut chunked, mut close, mut metadata) = (0usize, false, false, None);
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(header.value).ok().and_then(|v| v.trim().parse::<usize>().ok()) {
                Some(n) if n <= BODY_BYTES_MAX => length = n,
                Some(_) => return Parsed::Invalid(413),
                None => return Parsed::Invalid(400),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = header.value.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = header.value.eq_ignore_ascii_case(b"close");
        } else if name.eq_ignore_ascii_case("cf-kv-metadata") {
            metadata = Some(header.value.to_vec());
        }
    }
    let method = request.method.unwrap_or("").to_string();
    let target = request.path.unwrap_or("").to_string();
    let rest = &input[head..];
    let (body, body_bytes) = if chunked {
        match dechunk(rest) {
            Ok(Some(pair)) => pair,
            Ok(None) => return Parsed::Partial,
            Err(status) => return Parsed::Invalid(status),
        }
    } else if rest.len() < length {
        return Parsed::Partial;
    } else {
        (rest[..length].to_vec(), length)
    };
    Parsed::Complete(Request { method, target, metadata, body, close, consumed: head + body_bytes })
}

/// A chunked body at the start of `rest` (no trailers): the body and the bytes it took.
fn dechunk(rest: &[u8]) -> Result<Option<(Vec<u8>, usize)>, u16> {
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        let (size_len, size) = match httparse::parse_chunk_size(&rest[at..]) {
            Ok(httparse::Status::Complete(parsed)) => parsed,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(400),
        };
        let size = usize::try_from(size).map_err(|_| 413u16)?;
        if body.len() + size > BODY_BYTES_MAX {
            return Err(413);
        }
        at += size_len;
        if rest.len() < at + size + 2 {
            return Ok(None);
        }
        if size == 0 {
            return Ok(Some((body, at + 2)));
        }
        body.extend_from_slice(&rest[at..at + size]);
        at += size + 2;
    }
}

fn handle(request: &Request, store: &mut Store, output: &mut Vec<u8>) {
    // An absolute target (`https://fake-host/key?...`) or a path (`/key?...`).
    let target = match request.target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => request.target.as_str(),
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let Some(key) = path.strip_prefix('/').map(percent_decode) else {
        return respond(output, 400, b"bad target\n", None);
    };
    match (request.method.as_str(), key.is_empty()) {
        ("GET", true) => {
            let param = |name: &str| {
                query.split('&').find_map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (k == name).then(|| percent_decode(&v.replace('+', " ")))
                })
            };
            let prefix = param("prefix").unwrap_or_default();
            let cursor = param("cursor");
            let limit = param("key_count_limit")
                .and_then(|v| String::from_utf8_lossy(&v).parse::<usize>().ok())
                .unwrap_or(LIST_LIMIT_MAX)
                .clamp(1, LIST_LIMIT_MAX);
            respond(output, 200, &store.list(&prefix, cursor.as_deref(), limit), None);
        }
        ("GET", false) => match store.entries.get(&key) {
            Some(entry) => respond(output, 200, &entry.value, entry.metadata.as_deref()),
            None => respond(output, 404, b"", None),
        },
        ("PUT", false) => {
            if store.put(key, request.body.clone(), request.metadata.clone()) {
                respond(output, 200, b"", None);
            } else {
                respond(output, 507, b"the benchmark's KV service is full\n", None);
            }
        }
        ("DELETE", false) => {
            store.delete(&key);
            respond(output, 200, b"", None);
        }
        _ => respond(output, 405, b"", None),
    }
}

fn respond(output: &mut Vec<u8>, status: u16, body: &[u8], metadata: Option<&[u8]>) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        507 => "Insufficient Storage",
        _ => "Bad Request",
    };
    output.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\n", body.len()).as_bytes());
    if let Some(metadata) = metadata {
        output.extend_from_slice(b"cf-kv-metadata: ");
        output.extend_from_slice(metadata);
        output.extend_from_slice(b"\r\n");
    }
    output.extend_from_slice(b"\r\n");
    output.extend_from_slice(body);
}

/// `%XX` sequences to bytes; anything else as it is (a bad escape stays literal).
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(store: &mut Store, raw: &[u8]) -> String {
        let Parsed::Complete(request) = parse_request(raw) else { panic!("incomplete: {raw:?}") };
        assert_eq!(request.consumed, raw.len());
        let mut output = Vec::new();
        handle(&request, store, &mut output);
        String::from_utf8(output).unwrap()
    }

    #[test]
    fn speaks_workerds_kv_protocol() {
        let mut store = Store::default();
        let put = b"PUT https://fake-host/a%2Fb?urlencoded=true HTTP/1.1\r\nhost: fake-host\r\n\
                    cf-kv-metadata: {\"n\":1}\r\ncontent-length: 3\r\n\r\nabc";
        assert!(exchange(&mut store, put).starts_with("HTTP/1.1 200 OK\r\n"));
        let got = exchange(&mut store, b"GET /a%2Fb?urlencoded=true HTTP/1.1\r\nhost: fake-host\r\n\r\n");
        assert!(got.contains("cf-kv-metadata: {\"n\":1}\r\n") && got.ends_with("\r\n\r\nabc"), "{got}");
        let missing = exchange(&mut store, b"GET /nope?urlencoded=true HTTP/1.1\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let chunked = b"PUT /c HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n2\r\nxy\r\n1\r\nz\r\n0\r\n\r\n";
        exchange(&mut store, chunked);
        assert!(exchange(&mut store, b"GET /c HTTP/1.1\r\n\r\n").ends_with("xyz"));
        let list = |store: &mut Store, target: &str| -> serde_json::Value {
            let text = exchange(store, format!("GET {target} HTTP/1.1\r\n\r\n").as_bytes());
            serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap()
        };
        let page = list(&mut store, "https://fake-host/?key_count_limit=1");
        assert_eq!((&page["keys"][0]["name"], &page["keys"][0]["metadata"]), (&"a/b".into(), &"{\"n\":1}".into()));
        assert_eq!((&page["list_complete"], &page["cursor"]), (&false.into(), &"a/b".into()));
        let page = list(&mut store, "/?cursor=a%2Fb");
        assert_eq!((&page["keys"][0]["name"], &page["list_complete"]), (&"c".into(), &true.into()));
        assert_eq!(list(&mut store, "/?prefix=c")["keys"].as_array().map(Vec::len), Some(1));
        exchange(&mut store, b"DELETE /c HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        assert!(exchange(&mut store, b"GET /c HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert_eq!(store.bytes, 3 + 3 + 7);
        assert!(matches!(parse_request(b"PUT /x HTTP/1.1\r\ncontent-length: 5\r\n\r\nab"), Parsed::Partial));
        assert!(matches!(
            parse_request(b"PUT /x HTTP/1.1\r\ncontent-length: 99999999999\r\n\r\n"),
            Parsed::Invalid(413)
        ));
    }
}

//! The walking skeleton: `isobar run` serving a Worker on every core through io_uring.

use std::collections::BTreeSet;
use std::io::Read;
use std::time::Duration;

use isobar_e2e::{Client, Isobar, run_expecting_failure};

#[test]
fn hello_example_answers() {
    let isobar = Isobar::start(&["run", "examples/hello.js"]);
    let response = isobar.get("/");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello from isobar\n");
    assert_eq!(response.header("content-type"), Some("text/plain;charset=UTF-8"));
    assert!(response.header("date").is_some(), "a date header is sent");
    assert!(response.header("x-isobar-core").is_some());
}

/// The binary loads no C++ library: V8 brings its own libc++, and the five libstdc++ symbols
/// ada refers to are isobar's own (runtime/src/api/url/libstdcxx.rs). Loading libstdc++.so cost
/// every start ~0.4 ms; a dependency that needs more of it would bring it back.
#[test]
fn the_binary_loads_no_cxx_library() {
    let isobar = Isobar::start(&["run", "examples/hello.js", "--cores", "1"]);
    // A URL that is not already in its canonical form goes through ada.
    assert_eq!(isobar.get("/a/../b/%7e?q").status, 200);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", isobar.pid())).unwrap();
    assert!(maps.contains("libc.so"), "the maps name the shared libraries:\n{maps}");
    for library in ["libstdc++", "libc++"] {
        assert!(!maps.contains(library), "{library} is mapped:\n{maps}");
    }
}

#[test]
fn echo_returns_method_url_headers_and_body() {
    let isobar = Isobar::start(&["run", "examples/echo.js"]);
    let mut client = isobar.connect();
    let response = client.request(
        "PUT",
        "/some/path?x=1&y=%20",
        &[("X-Custom", "Value 1"), ("content-type", "text/plain")],
        b"the body \xc3\xa9",
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let json = response.json();
    assert_eq!(json["method"], "PUT");
    assert_eq!(json["url"], "http://test.local/some/path?x=1&y=%20");
    assert_eq!(json["headers"]["x-custom"], "Value 1");
    assert_eq!(json["headers"]["host"], "test.local");
    assert_eq!(json["headers"]["content-length"], "11");
    assert_eq!(json["body"], "the body é");
}

#[test]
fn script_404_and_thrown_error_500_then_next_request_works() {
    let isobar = Isobar::start(&["run", "examples/echo.js"]);
    let mut client = isobar.connect();
    let missing = client.request("GET", "/missing", &[], b"");
    assert_eq!((missing.status, missing.text().as_str()), (404, "not found\n"));
    let thrown = client.request("GET", "/throw", &[], b"");
    assert_eq!(thrown.status, 500);
    // The same keep-alive connection goes on working after the 500.
    let after = client.request("GET", "/fine", &[], b"");
    assert_eq!(after.status, 200);
    assert_eq!(after.json()["method"], "GET");
    // The stack of the thrown error went to the log, with the worker's name.
    std::thread::sleep(Duration::from_millis(200));
    let log = isobar.stderr();
    assert!(log.contains("[echo] Error: thrown on purpose"), "log:\n{log}");
    assert!(log.contains("examples/echo.js:9:13"), "stack with file, line and column in log:\n{log}");
    assert!(!log.contains("Uncaught (in promise)"), "a handled rejection is not reported as unhandled:\n{log}");
}

#[test]
fn keep_alive_reuses_one_connection_for_100_requests() {
    let isobar = Isobar::start(&["run", "examples/hello.js"]);
    let mut client = isobar.connect();
    let local = client.stream().local_addr().unwrap();
    for i in 0..100 {
        let response = client.request("GET", &format!("/{i}"), &[], b"");
        assert_eq!(response.status, 200, "request {i}");
        assert_eq!(response.text(), "hello from isobar\n");
        assert_ne!(response.header("connection"), Some("close"));
    }
    assert_eq!(client.stream().local_addr().unwrap(), local, "still the same socket");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let isobar = Isobar::start(&["run", "tests/workers/slow.js"]);
    let mut client = isobar.connect();
    // The first request takes longest; answers must still come back in request order.
    let mut batch = Vec::new();
    for ms in [120, 60, 0] {
        batch.extend_from_slice(format!("GET /?ms={ms} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes());
    }
    client.send_raw(&batch);
    for ms in [120, 60, 0] {
        let response = client.read_response(false);
        assert_eq!(response.text(), format!("slept {ms}ms\n"));
    }
}

#[test]
fn two_hundred_concurrent_connections_are_all_answered_on_several_cores() {
    let isobar = Isobar::start(&["run", "examples/hello.js"]);
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // Open all 200 first so they are truly concurrent, then send on each, then read each.
    let mut clients: Vec<Client> = (0..200).map(|_| isobar.connect()).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send("GET", &format!("/c{i}"), &[], b"");
    }
    let mut cores = BTreeSet::new();
    for client in &mut clients {
        let response = client.read_response(false);
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "hello from isobar\n");
        cores.insert(response.header("x-isobar-core").expect("x-isobar-core header").to_string());
    }
    if cpus >= 2 {
        assert!(cores.len() >= 2, "all 200 connections were served by cores {cores:?}");
    }
}

#[test]
fn head_and_expect_continue_and_chunked_bodies() {
    let isobar = Isobar::start(&["run", "examples/echo.js"]);
    let mut client = isobar.connect();
    let head = client.request("HEAD", "/", &[], b"");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let length: usize = head.header("content-length").unwrap().parse().unwrap();
    assert!(length > 0, "HEAD reports the length the body would have");

    // Expect: 100-continue gets the interim response before the body is sent.
    client.send_raw(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n");
    let interim = client.read_response(false);
    assert_eq!(interim.status, 100);
    client.send_raw(b"hello");
    let done = client.read_response(false);
    assert_eq!(done.json()["body"], "hello");

    // A chunked request body.
    client.send_raw(
        b"POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    let chunked = client.read_response(false);
    assert_eq!(chunked.json()["body"], "hello world");
}

#[test]
fn malformed_request_gets_400_and_the_server_stays_up() {
    let isobar = Isobar::start(&["run", "examples/hello.js"]);
    for garbage in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nbad header line\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
    ] {
        let mut client = isobar.connect();
        client.send_raw(garbage);
        let response = client.read_response(false);
        assert_eq!(response.status, 400, "for {:?}", String::from_utf8_lossy(garbage));
        assert_eq!(response.header("connection"), Some("close"));
        assert!(client.is_closed_by_peer(Duration::from_secs(5)), "the connection is closed after a 400");
    }
    assert_eq!(isobar.get("/").status, 200, "the server still answers");
}

#[test]
fn oversized_body_gets_413() {
    let isobar = Isobar::start(&["run", "examples/echo.js", "--body-limit", "1000"]);
    let mut client = isobar.connect();
    let response = client.request("POST", "/", &[], &[b'x'; 1001]);
    assert_eq!(response.status, 413);
    // Just under the limit is fine, on a new connection.
    let ok = isobar.connect().request("POST", "/", &[], &[b'y'; 1000]);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["body"].as_str().unwrap().len(), 1000);
    // A chunked body that crosses the limit mid-stream.
    let mut chunked = isobar.connect();
    chunked.send_raw(b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3e8\r\n");
    chunked.send_raw(&[b'z'; 1000]);
    chunked.send_raw(b"\r\n1\r\nz\r\n0\r\n\r\n");
    assert_eq!(chunked.read_response(false).status, 413);
}

#[test]
fn sigterm_lets_an_in_flight_request_complete_then_exits_zero() {
    let mut isobar = Isobar::start(&["run", "tests/workers/slow.js"]);
    let mut client = isobar.connect();
    client.send("GET", "/?ms=700", &[], b"");
    std::thread::sleep(Duration::from_millis(200));
    isobar.terminate();
    let response = client.read_response(false);
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "slept 700ms\n");
    assert_eq!(response.header("connection"), Some("close"), "the drained connection is told to close");
    assert_eq!(isobar.wait_exit(Duration::from_secs(10)), Some(0), "stderr:\n{}", isobar.stderr());
}

#[test]
fn sigterm_with_idle_connections_exits_promptly() {
    let mut isobar = Isobar::start(&["run", "examples/hello.js"]);
    let mut idle = isobar.connect();
    assert_eq!(idle.request("GET", "/", &[], b"").status, 200);
    isobar.terminate();
    assert_eq!(isobar.wait_exit(Duration::from_secs(10)), Some(0));
    let mut rest = Vec::new();
    let _ = idle.stream().read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing more was sent on the idle connection");
}

#[test]
fn a_handler_that_can_never_respond_gets_500() {
    let isobar = Isobar::start(&["run", "tests/workers/hang.js"]);
    let response = isobar.get("/");
    assert_eq!(response.status, 500);
    std::thread::sleep(Duration::from_millis(200));
    assert!(isobar.stderr().contains("will never generate a response"), "{}", isobar.stderr());
}

#[test]
fn service_worker_syntax_works() {
    let isobar = Isobar::start(&["run", "examples/service-worker.js"]);
    let response = isobar.connect().request("DELETE", "/thing", &[], b"");
    assert_eq!(response.text(), "service worker saw DELETE /thing\n");
}

#[test]
fn compile_error_is_a_start_up_error_with_file_line_and_column() {
    let (code, stderr) = run_expecting_failure(&["run", "tests/workers/broken.js", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert!(stderr.contains("tests/workers/broken.js:3:15"), "stderr:\n{stderr}");
    assert!(stderr.contains("SyntaxError"), "stderr:\n{stderr}");
}

#[test]
fn bad_command_lines_are_refused_clearly() {
    let (code, stderr) = run_expecting_failure(&["run", "does/not/exist.js"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cannot read the worker script does/not/exist.js"), "{stderr}");
    let (code, stderr) = run_expecting_failure(&["run", "examples/hello.js", "--cores", "999"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--cores 999"), "{stderr}");
}

#[test]
fn cores_flag_limits_the_cores_used() {
    let isobar = Isobar::start(&["run", "examples/hello.js", "--cores", "1"]);
    let mut cores = BTreeSet::new();
    for _ in 0..20 {
        cores.insert(isobar.get("/").header("x-isobar-core").unwrap().to_string());
    }
    assert_eq!(cores.into_iter().collect::<Vec<_>>(), vec!["0".to_string()]);
}

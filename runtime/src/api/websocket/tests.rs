//! The objects' own behaviour, without a connection: a pair's two local ends, accept(), the
//! limits and checks of send() and close(), and `new WebSocket()`'s URL checks. Serving and
//! opening WebSockets over real connections are e2e tests (tests/e2e/websocket.rs).

#[test]
fn websocket_pair_semantics() {
    crate::testing::api_test("websocket/test.js", &crate::testing::Req::get("http://example.com/"));
}

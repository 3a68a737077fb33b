import { eq, ok, throws } from "./assert.js";

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

export default {
  async fetch() {
    // The globals and their shapes.
    const pair = new WebSocketPair();
    const [client, server] = Object.values(pair);
    ok(client instanceof WebSocket && server instanceof EventTarget, "pair ends are WebSockets");
    eq(Object.keys(pair), ["0", "1"], "a pair has two ends, 0 and 1");
    eq([WebSocket.CONNECTING, WebSocket.OPEN, WebSocket.CLOSING, WebSocket.CLOSED], [0, 1, 2, 3], "states");
    eq([server.readyState, server.protocol, server.extensions, server.url], [1, "", "", null], "a pair end");

    // Before accept(): no sending, no closing.
    throws(() => server.send("x"), TypeError, "send before accept");
    throws(() => server.close(), TypeError, "close before accept");

    // Two local ends talk to each other, asynchronously, in order; events wait for accept().
    server.accept();
    server.accept();
    const got = [];
    client.addEventListener("message", (e) => got.push(e.data));
    server.send("one");
    server.send(new Uint8Array([1, 2, 3]));
    await tick();
    eq(got, [], "the client end has not accepted yet");
    client.accept();
    await tick();
    eq(got.length, 2, "both delivered after accept()");
    eq(got[0], "one", "text stays text");
    ok(got[1] instanceof ArrayBuffer && new Uint8Array(got[1])[2] === 3, "binary arrives as an ArrayBuffer");

    // Messages over the 1 MiB limit are refused at send().
    throws(() => server.send(new Uint8Array((1 << 20) + 1)), RangeError, "a message over 1 MiB");
    server.send(new Uint8Array(1 << 20));

    // close(): code and reason checked as the standard says.
    throws(() => server.close(1001), DOMException, "1001 is not a code a script may send");
    throws(() => server.close(5000), DOMException, "5000 is out of range");
    throws(() => server.close(1000, "x".repeat(124)), DOMException, "a reason over 123 bytes");
    const closes = [];
    client.onclose = (e) => closes.push(["client", e.code, e.reason, e.wasClean]);
    server.addEventListener("close", (e) => closes.push(["server", e.code, e.reason, e.wasClean]));
    server.close(4001, "done");
    throws(() => server.send("late"), TypeError, "send after close");
    await tick();
    await tick();
    eq(closes.sort(), [["client", 4001, "done", true], ["server", 4001, "done", true]], "both ends see the close");
    eq([client.readyState, server.readyState], [3, 3], "both closed");

    // An end that is returned in a Response cannot be accepted, and vice versa.
    const [c2, s2] = Object.values(new WebSocketPair());
    c2.accept();
    ok(new Response(null, { status: 101, webSocket: s2 }).webSocket === s2, "Response keeps its webSocket");
    throws(() => new Response(null, { status: 101 }), RangeError, "101 without a webSocket");

    // new WebSocket(url): URL checks happen at once.
    throws(() => new WebSocket("ftp://example.com/"), DOMException, "only ws: and wss: (and http:, https:)");
    throws(() => new WebSocket("ws://example.com/#frag"), DOMException, "no fragment");
    throws(() => new WebSocket("not a url"), DOMException, "an invalid URL");
    throws(() => new WebSocket("ws://example.com/", ["bad protocol"]), DOMException, "an invalid subprotocol");
    return new Response("ok");
  },
};

import { eq, ok, throws } from "./assert.js";

const nextMessage = (port) => new Promise((resolve) => port.addEventListener("message", resolve, { once: true }));

export default {
  async fetch() {
    const { port1, port2 } = new MessageChannel();
    ok(port1 instanceof MessagePort && port1 instanceof EventTarget, "ports are EventTargets");
    throws(() => new MessagePort(), TypeError, "MessagePort is not constructible");

    // Delivery is asynchronous, in order, and the data is a clone.
    const received = [];
    port2.onmessage = (event) => received.push(event.data);
    const payload = { n: 1 };
    port1.postMessage(payload);
    port1.postMessage("second");
    payload.n = 2;
    eq(received, [], "nothing is delivered synchronously");
    await new Promise((resolve) => setTimeout(resolve, 0));
    eq(received, [{ n: 1 }, "second"], "delivered in order, cloned at post time");

    // The event (addEventListener does not start a port: start() does).
    const evented = nextMessage(port1);
    port1.start();
    port2.postMessage([1, 2]);
    const event = await evented;
    ok(event instanceof MessageEvent, "a MessageEvent");
    eq([event.type, event.data, event.origin, event.lastEventId, event.source, event.ports], ["message", [1, 2], "", "", null, []], "event fields");
    ok(Object.isFrozen(event.ports), "ports is frozen");

    // Messages wait until the port is started (addEventListener does not start it).
    const { port1: a, port2: b } = new MessageChannel();
    const got = [];
    b.addEventListener("message", (e) => got.push(e.data));
    a.postMessage("queued");
    await new Promise((resolve) => setTimeout(resolve, 0));
    eq(got, [], "not started yet");
    b.start();
    await new Promise((resolve) => setTimeout(resolve, 0));
    eq(got, ["queued"], "start() delivers the queue");

    // Transfer.
    const buffer = new Uint8Array([5, 6]).buffer;
    const transferred = nextMessage(b);
    a.postMessage({ buffer }, [buffer]);
    eq(buffer.byteLength, 0, "postMessage transfer detaches at once");
    eq([...new Uint8Array((await transferred).data.buffer)], [5, 6], "transferred bytes arrive");
    const viaOptions = nextMessage(b);
    const second = new ArrayBuffer(3);
    a.postMessage(second, { transfer: [second] });
    eq((await viaOptions).data.byteLength, 3, "transfer through the options form");

    // Errors are synchronous DataCloneErrors.
    const e = throws(() => a.postMessage(() => 1), DOMException, "posting a function");
    eq(e.name, "DataCloneError", "DataCloneError");
    throws(() => a.postMessage(), TypeError, "postMessage needs a message");

    // close(): nothing more is delivered either way.
    const closed = [];
    b.onmessage = (ev) => closed.push(ev.data);
    b.close();
    a.postMessage("after close");
    b.postMessage("from the closed port");
    await new Promise((resolve) => setTimeout(resolve, 0));
    eq(closed, [], "a closed channel delivers nothing");

    // A listener that throws is reported and the next message still arrives.
    const { port1: c, port2: d } = new MessageChannel();
    const after = [];
    let reported = 0;
    addEventListener("error", (ev) => { reported++; ev.preventDefault(); });
    d.onmessage = (ev) => {
      if (ev.data === "throw") throw new Error("listener failed");
      after.push(ev.data);
    };
    c.postMessage("throw");
    c.postMessage("next");
    await new Promise((resolve) => setTimeout(resolve, 0));
    eq([after, reported], [["next"], 1], "a throwing listener does not stop delivery");

    // A bounded queue: a port nobody starts refuses the 10001st message.
    const { port1: e1 } = new MessageChannel();
    for (let i = 0; i < 10000; i++) e1.postMessage(i);
    throws(() => e1.postMessage("one too many"), RangeError, "queue bound");
    return new Response("ok");
  },
};

import * as assert from "./assert.js";

// The assertions, recording which one ran last (see `stuck` below).
const eq = (actual, expected, what) => { step = what; assert.eq(actual, expected, what); };
const ok = (condition, what) => { step = what; assert.ok(condition, what); };
const throws = (fn, errorClass, what) => { step = what; return assert.throws(fn, errorClass, what); };
const rejects = (promise, errorClass, what) => { step = what; return assert.rejects(promise, errorClass, what); };

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

function from(items) {
  return new ReadableStream({
    start(c) {
      for (const item of items) c.enqueue(item);
      c.close();
    },
  });
}

async function collect(stream) {
  const out = [];
  for await (const chunk of stream) out.push(chunk);
  return out;
}

// A sink that records what it gets.
function recorder() {
  const log = [];
  const stream = new WritableStream({
    write(chunk) { log.push(chunk); },
    close() { log.push("<close>"); },
    abort(reason) { log.push(`<abort ${reason}>`); },
  });
  return { log, stream };
}

async function run() {
  throws(() => new TransformStream({ readableType: "bytes" }), RangeError, "readableType");
  throws(() => new TransformStream({ writableType: "bytes" }), RangeError, "writableType");
  throws(() => new TransformStream({ transform: "x" }), TypeError, "non-callable transform");
  throws(() => new TransformStreamDefaultController(), TypeError, "controller constructor is illegal");

  // Identity by default.
  const identity = new TransformStream();
  const iw = identity.writable.getWriter();
  iw.write("a");
  iw.write("b");
  iw.close();
  eq(await collect(identity.readable), ["a", "b"], "identity transform");

  // A transform and a flush; pipeThrough.
  const upper = new TransformStream({
    transform(chunk, controller) { controller.enqueue(String(chunk).toUpperCase()); },
    flush(controller) { controller.enqueue("!"); },
  });
  eq(await collect(from(["x", "y"]).pipeThrough(upper)), ["X", "Y", "!"], "pipeThrough");

  // Several chunks out of one, async transform, desiredSize.
  const split = new TransformStream({
    async transform(chunk, controller) {
      await tick();
      for (const part of chunk.split(",")) controller.enqueue(part);
    },
  });
  eq(await collect(from(["1,2", "3"]).pipeThrough(split)), ["1", "2", "3"], "split");
  let desired;
  new TransformStream({ start(c) { desired = c.desiredSize; } });
  eq(desired, 0, "readable side's default highWaterMark is 0");

  // A transform that throws errors both sides.
  const failing = new TransformStream({ transform() { throw new RangeError("nope"); } });
  const fw = failing.writable.getWriter();
  // A write waits until the readable side is read (its highWaterMark is 0).
  const failingRead = failing.readable.getReader().read();
  await rejects(fw.write(1), RangeError, "write rejects");
  await rejects(failingRead, RangeError, "readable errored");
  // terminate(): the readable closes, the writable errors.
  const term = new TransformStream({ start(c) { c.terminate(); } });
  eq(await collect(term.readable), [], "terminated readable is closed");
  await rejects(term.writable.getWriter().write(1), TypeError, "terminated writable rejects");
  // cancel of the readable side reaches the transformer's cancel and errors the writable.
  let cancelled;
  const cancellable = new TransformStream({ cancel(reason) { cancelled = reason; } });
  await cancellable.readable.cancel("enough");
  eq(cancelled, "enough", "transformer cancel");
  await rejects(cancellable.writable.getWriter().closed, undefined, "writable errored by cancel");

  // pipeTo: everything arrives, then close.
  const sink1 = recorder();
  await from([1, 2, 3]).pipeTo(sink1.stream);
  eq(sink1.log, [1, 2, 3, "<close>"], "pipeTo");
  // preventClose
  const sink2 = recorder();
  await from([1]).pipeTo(sink2.stream, { preventClose: true });
  eq(sink2.log, [1], "preventClose");
  ok(!sink2.stream.locked, "unlocked after the pipe");
  // Source error aborts the destination (unless preventAbort).
  const sink3 = recorder();
  const erroring = new ReadableStream({ start(c) { c.error("boom"); } });
  eq(await erroring.pipeTo(sink3.stream).then(() => "ok", (e) => e), "boom", "pipeTo rejects with the source error");
  eq(sink3.log, ["<abort boom>"], "destination aborted");
  const sink4 = recorder();
  await new ReadableStream({ start(c) { c.error("boom"); } }).pipeTo(sink4.stream, { preventAbort: true }).catch(() => {});
  eq(sink4.log, [], "preventAbort");
  // Destination error cancels the source (unless preventCancel).
  let sourceCancel;
  const src = new ReadableStream({ pull(c) { c.enqueue(1); }, cancel(r) { sourceCancel = r; } });
  const dest = new WritableStream({ write() { throw new EvalError("dest"); } });
  await rejects(src.pipeTo(dest), EvalError, "pipeTo rejects with the destination error");
  ok(sourceCancel instanceof EvalError, "source cancelled with it");
  // A closed destination cancels the source.
  const closedDest = new WritableStream();
  await closedDest.close();
  let closedCancel;
  await rejects(new ReadableStream({ cancel(r) { closedCancel = r; } }).pipeTo(closedDest), TypeError, "closed destination");
  ok(closedCancel instanceof TypeError, "source cancelled because the destination is closed");
  // An AbortSignal stops a pipe: the destination is aborted and the source cancelled.
  const controller = new AbortController();
  let pipeCancel;
  const endless = new ReadableStream({ pull(c) { c.enqueue("x"); return tick(); }, cancel(r) { pipeCancel = r; } });
  const sink5 = recorder();
  const piping = endless.pipeTo(sink5.stream, { signal: controller.signal });
  await tick();
  controller.abort();
  const abortError = await piping.then(() => null, (e) => e);
  ok(abortError instanceof DOMException && abortError.name === "AbortError", "pipe rejects with AbortError");
  ok(pipeCancel === abortError, "source cancelled with the signal's reason");
  ok(sink5.log.at(-1).startsWith("<abort"), "destination aborted");
  // An already-aborted signal.
  await rejects(from([1]).pipeTo(new WritableStream(), { signal: AbortSignal.abort(new SyntaxError("early")) }), SyntaxError, "aborted signal");
  // Argument checks.
  await rejects(from([1]).pipeTo({}), TypeError, "destination must be a WritableStream");
  await rejects(from([1]).pipeTo(new WritableStream(), { signal: {} }), TypeError, "signal must be an AbortSignal");
  const lockedSrc = from([1]);
  lockedSrc.getReader();
  await rejects(lockedSrc.pipeTo(new WritableStream()), TypeError, "locked source");
  const lockedDest = new WritableStream();
  lockedDest.getWriter();
  await rejects(from([1]).pipeTo(lockedDest), TypeError, "locked destination");
  throws(() => from([1]).pipeThrough({ readable: {}, writable: new WritableStream() }), TypeError, "pipeThrough needs a ReadableStream");
  throws(() => lockedSrc.pipeThrough(new TransformStream()), TypeError, "pipeThrough of a locked stream");
  // Backpressure through a pipe: a slow sink holds the source back.
  let pulled = 0;
  let releaseSink;
  const sinkGate = new Promise((resolve) => { releaseSink = resolve; });
  const counted = new ReadableStream({ pull(c) { pulled++; c.enqueue(pulled); } }, { highWaterMark: 1 });
  const slowSink = new WritableStream({ write() { return sinkGate; } }, { highWaterMark: 1 });
  const aborter = new AbortController();
  const slowPipe = counted.pipeTo(slowSink, { signal: aborter.signal });
  for (let i = 0; i < 5; i++) await tick();
  ok(pulled <= 4, `backpressure bounds the pulls (${pulled})`);
  aborter.abort();
  releaseSink();
  await slowPipe.catch(() => {});
  return new Response("ok");
}

// A test that would wait forever fails instead, naming the last assertion it reached.
let step = "start";

export default {
  fetch() {
    const stuck = new Promise((_, reject) => setTimeout(() => reject(new Error(`stuck after: ${step}`)), 4000));
    return Promise.race([run(), stuck]);
  },
};

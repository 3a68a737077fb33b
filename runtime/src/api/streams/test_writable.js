import * as assert from "./assert.js";

// The assertions, recording which one ran last (see `stuck` below).
const eq = (actual, expected, what) => { step = what; assert.eq(actual, expected, what); };
const ok = (condition, what) => { step = what; assert.ok(condition, what); };
const throws = (fn, errorClass, what) => { step = what; return assert.throws(fn, errorClass, what); };
const rejects = (promise, errorClass, what) => { step = what; return assert.rejects(promise, errorClass, what); };

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

async function run() {
  throws(() => new WritableStream(null), TypeError, "null sink");
  throws(() => new WritableStream({ type: "bytes" }), RangeError, "sink type");
  throws(() => new WritableStream({ write: 5 }), TypeError, "non-callable write");
  throws(() => new WritableStreamDefaultController(), TypeError, "controller constructor is illegal");

  // Writes reach the sink in order, one at a time.
  const written = [];
  let concurrent = 0;
  let maxConcurrent = 0;
  let closed = false;
  const ws = new WritableStream({
    async write(chunk, controller) {
      ok(controller instanceof WritableStreamDefaultController, "controller passed to write");
      concurrent++;
      maxConcurrent = Math.max(maxConcurrent, concurrent);
      await tick();
      written.push(chunk);
      concurrent--;
    },
    close() { closed = true; },
  }, { highWaterMark: 2 });
  const writer = ws.getWriter();
  ok(ws.locked, "locked");
  throws(() => ws.getWriter(), TypeError, "second writer");
  await rejects(ws.abort(), TypeError, "abort of a locked stream");
  await rejects(ws.close(), TypeError, "close of a locked stream");
  eq(writer.desiredSize, 2, "desiredSize is the highWaterMark");
  const p1 = writer.write("a");
  writer.write("b");
  eq(writer.desiredSize, 0, "two queued writes fill it");
  const ready = writer.ready;
  writer.write("c");
  eq(writer.desiredSize, -1, "negative past the mark");
  await p1;
  await writer.close();
  ok(closed, "sink closed");
  eq(written, ["a", "b", "c"], "in order");
  eq(maxConcurrent, 1, "never two writes at once");
  await ready;
  await writer.closed;
  await rejects(writer.write("late"), TypeError, "write after close");
  await rejects(writer.close(), TypeError, "close after close");
  eq(writer.desiredSize, 0, "desiredSize of a closed stream");

  // Backpressure: ready is a new, pending promise while the queue is full.
  let release;
  const gate = new Promise((resolve) => { release = resolve; });
  const slow = new WritableStream({ write() { return gate; } }, new CountQueuingStrategy({ highWaterMark: 1 }));
  const sw = slow.getWriter();
  await sw.ready;
  sw.write(1);
  let readyNow = false;
  sw.ready.then(() => { readyNow = true; });
  await tick();
  ok(!readyNow, "ready waits while the sink is busy");
  release();
  await sw.ready;
  ok(readyNow, "ready resolves when the sink catches up");

  // A sink's write error errors the stream; later writes reject with it.
  const failing = new WritableStream({ write() { throw new RangeError("disk full"); } });
  const fw = failing.getWriter();
  await rejects(fw.write("x"), RangeError, "failing write");
  await rejects(fw.write("y"), RangeError, "the stream stays errored");
  await rejects(fw.closed, RangeError, "closed rejects");
  eq(fw.desiredSize, null, "desiredSize of an errored stream");

  // abort(): the reason reaches the sink and the controller's signal; queued writes reject.
  let abortReason;
  let signalReason;
  const abortable = new WritableStream({
    start(controller) { controller.signal.addEventListener("abort", () => { signalReason = controller.signal.reason; }); },
    write() { return new Promise(() => {}); },
    abort(reason) { abortReason = reason; },
  });
  const aw = abortable.getWriter();
  aw.write("stuck");
  await tick(); // started: the write is now in flight
  const queued = aw.write("queued");
  const abortPromise = aw.abort("stop");
  eq(signalReason, "stop", "signal aborted with the reason");
  eq(await aw.ready.then(() => "resolved", (e) => e), "stop", "ready rejects at once with the reason");
  // The in-flight write never finishes, so abort (and the queued write) wait for it: the
  // standard's rule, which is why a sink should watch its signal.
  let abortDone = false;
  let queuedDone = false;
  abortPromise.then(() => { abortDone = true; }, () => { abortDone = true; });
  queued.then(() => { queuedDone = true; }, () => { queuedDone = true; });
  await tick();
  ok(!abortDone, "abort waits for the in-flight write");
  ok(!queuedDone, "so does the queued write");
  eq(abortReason, undefined, "the sink's abort waits too");

  const simple = new WritableStream({ abort(reason) { abortReason = reason; } });
  await simple.abort("why");
  eq(abortReason, "why", "abort reason reaches the sink");
  await rejects(simple.getWriter().closed, undefined, "an aborted stream is errored");

  // controller.error()
  let ctl;
  const errored = new WritableStream({ start(c) { ctl = c; } });
  ctl.error(new SyntaxError("bad"));
  await rejects(errored.getWriter().write(1), SyntaxError, "controller.error errors the stream");

  // releaseLock: the writer's promises reject, the stream can take a new writer.
  const rel = new WritableStream();
  const w1 = rel.getWriter();
  w1.releaseLock();
  await rejects(w1.closed, TypeError, "closed after release");
  await rejects(w1.ready, TypeError, "ready after release");
  await rejects(w1.write(1), TypeError, "write after release");
  throws(() => w1.desiredSize, TypeError, "desiredSize after release");
  const w2 = new WritableStreamDefaultWriter(rel);
  await w2.write("fine");
  await w2.close();

  // A size function that throws errors the stream.
  const sized = new WritableStream({}, { size() { throw new EvalError("size"); } });
  const zw = sized.getWriter();
  await rejects(zw.write(1), EvalError, "size throws");
  // close() of a stream whose start fails rejects.
  const badStart = new WritableStream({ start() { return Promise.reject(new URIError("start")); } });
  await rejects(badStart.getWriter().close(), URIError, "start rejection");
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

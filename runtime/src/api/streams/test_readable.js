import * as assert from "./assert.js";

// The assertions, recording which one ran last (see `stuck` below).
const eq = (actual, expected, what) => { step = what; assert.eq(actual, expected, what); };
const ok = (condition, what) => { step = what; assert.ok(condition, what); };
const throws = (fn, errorClass, what) => { step = what; return assert.throws(fn, errorClass, what); };
const rejects = (promise, errorClass, what) => { step = what; return assert.rejects(promise, errorClass, what); };

async function readAll(stream) {
  const reader = stream.getReader();
  const chunks = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return chunks;
    chunks.push(value);
  }
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

async function run() {
  // Construction and argument conversion.
  throws(() => new ReadableStream(null), TypeError, "null source");
  throws(() => new ReadableStream({ start: 1 }), TypeError, "non-callable start");
  throws(() => new ReadableStream({ type: "nope" }), TypeError, "bad type");
  throws(() => new ReadableStream({}, { highWaterMark: -1 }), RangeError, "negative hwm");
  throws(() => new ReadableStream({}, { highWaterMark: NaN }), RangeError, "NaN hwm");
  throws(() => new ReadableStream({ type: "bytes" }, { size() { return 1; } }), RangeError, "bytes with size");
  throws(() => new ReadableStream({ start() { throw new SyntaxError("boom"); } }), SyntaxError, "start throws");
  eq(Object.prototype.toString.call(new ReadableStream()), "[object ReadableStream]", "toStringTag");
  throws(() => new ReadableStreamDefaultController(), TypeError, "controller constructor is illegal");
  await rejects(ReadableStream.prototype.cancel.call({}), TypeError, "brand check rejects");
  throws(() => ReadableStream.prototype.getReader.call({}), TypeError, "brand check throws");

  // Reading: start, pull, queue, close.
  let pulls = 0;
  const rs = new ReadableStream({
    start(c) {
      eq(c.desiredSize, 1, "initial desiredSize");
      c.enqueue("a");
      eq(c.desiredSize, 0, "desiredSize after enqueue");
    },
    pull(c) {
      pulls++;
      if (pulls === 2) c.enqueue("b");
      if (pulls === 3) c.close();
    },
  });
  eq(await readAll(rs), ["a", "b"], "chunks in order");
  ok(pulls >= 3, "pull was called");
  eq(rs.locked, true, "readAll kept the lock");

  // Locks.
  const locked = new ReadableStream();
  const reader = locked.getReader();
  ok(locked.locked, "locked");
  throws(() => locked.getReader(), TypeError, "second reader");
  throws(() => new ReadableStreamDefaultReader(locked), TypeError, "reader constructor on a locked stream");
  await rejects(locked.cancel(), TypeError, "cancel of a locked stream");
  throws(() => locked.getReader({ mode: "byob" }), TypeError, "BYOB reader of a default stream");
  throws(() => new ReadableStream().getReader({ mode: "nope" }), TypeError, "bad mode");
  // Releasing a reader with a pending read rejects that read.
  const pending = reader.read();
  reader.releaseLock();
  await rejects(pending, TypeError, "pending read on release");
  await rejects(reader.closed, TypeError, "closed after release");
  await rejects(reader.read(), TypeError, "read after release");
  ok(!locked.locked, "unlocked after release");
  reader.releaseLock(); // a second release does nothing

  // Cancel: the reason reaches the source; pending reads end.
  let cancelReason;
  const cancellable = new ReadableStream({ cancel(reason) { cancelReason = reason; } });
  const cr = cancellable.getReader();
  const pendingRead = cr.read();
  eq(await cr.cancel("why"), undefined, "cancel resolves undefined");
  eq(cancelReason, "why", "cancel reason");
  eq(await pendingRead, { done: true }, "a pending read ends on cancel");
  await cr.closed;
  // A source whose cancel throws rejects cancel().
  await rejects(new ReadableStream({ cancel() { throw new RangeError("no"); } }).cancel(), RangeError, "cancel throws");

  // Errors.
  const failing = new ReadableStream({ start(c) { c.error(new TypeError("broken")); } });
  const fr = failing.getReader();
  const e = await rejects(fr.read(), TypeError, "read of an errored stream");
  eq(e.message, "broken", "stored error");
  await rejects(fr.closed, TypeError, "closed rejects");
  await rejects(new ReadableStream({ pull() { throw new EvalError("pull"); } }).getReader().read(), EvalError, "pull throws");
  const closedStream = new ReadableStream({ start(c) { c.close(); } });
  throws(() => { let ctl; new ReadableStream({ start(c) { ctl = c; c.close(); } }); ctl.enqueue("x"); }, TypeError, "enqueue after close");
  eq(await closedStream.getReader().read(), { done: true }, "read of a closed stream");

  // Strategies and backpressure.
  const counting = new ReadableStream({}, new CountQueuingStrategy({ highWaterMark: 3 }));
  ok(counting instanceof ReadableStream, "CountQueuingStrategy accepted");
  let ctl;
  new ReadableStream({ start(c) { ctl = c; } }, new ByteLengthQueuingStrategy({ highWaterMark: 10 }));
  ctl.enqueue(new Uint8Array(4));
  eq(ctl.desiredSize, 6, "byte length strategy");
  ctl.enqueue(new Uint8Array(8));
  eq(ctl.desiredSize, -2, "desiredSize goes negative");
  throws(() => new CountQueuingStrategy(), TypeError, "strategy needs an argument");
  throws(() => new CountQueuingStrategy({}), TypeError, "strategy needs highWaterMark");
  eq(new ByteLengthQueuingStrategy({ highWaterMark: 5 }).size(new Uint8Array(7)), 7, "size reads byteLength");
  // A size function that throws errors the stream.
  let sizeCtl;
  const badSize = new ReadableStream({ start(c) { sizeCtl = c; } }, { size() { throw new URIError("size"); } });
  throws(() => sizeCtl.enqueue(1), URIError, "size throws");
  await rejects(badSize.getReader().closed, URIError, "stream errored by size");
  let nanCtl;
  new ReadableStream({ start(c) { nanCtl = c; } }, { size() { return NaN; } });
  throws(() => nanCtl.enqueue(1), RangeError, "NaN size");

  // tee(): both branches see every chunk; cancelling both cancels the source with both reasons.
  const source = new ReadableStream({ start(c) { c.enqueue(1); c.enqueue(2); c.close(); } });
  const [t1, t2] = source.tee();
  eq(await readAll(t1), [1, 2], "tee branch 1");
  eq(await readAll(t2), [1, 2], "tee branch 2");
  let teeReason;
  const [c1, c2] = new ReadableStream({ cancel(r) { teeReason = r; } }).tee();
  const cancel1 = c1.cancel("one");
  await tick();
  eq(teeReason, undefined, "source not cancelled by one branch");
  await c2.cancel("two");
  await cancel1;
  eq(teeReason, ["one", "two"], "composite cancel reason");
  const [e1, e2] = new ReadableStream({ start(c) { c.error(new Error("tee error")); } }).tee();
  await rejects(e1.getReader().read(), Error, "tee error reaches branch 1");
  await rejects(e2.getReader().read(), Error, "tee error reaches branch 2");
  throws(() => locked.tee.call({}), TypeError, "tee brand check");

  // Async iteration.
  const iterated = [];
  for await (const chunk of new ReadableStream({ start(c) { c.enqueue("x"); c.enqueue("y"); c.close(); } })) {
    iterated.push(chunk);
  }
  eq(iterated, ["x", "y"], "for await");
  // Breaking out cancels the stream, unless preventCancel.
  let iterCancel = false;
  const broken = new ReadableStream({ start(c) { c.enqueue(1); c.enqueue(2); }, cancel() { iterCancel = true; } });
  for await (const chunk of broken) { void chunk; break; }
  ok(iterCancel, "break cancels");
  ok(!broken.locked, "break releases the lock");
  let kept = false;
  const keep = new ReadableStream({ start(c) { c.enqueue(1); c.enqueue(2); }, cancel() { kept = true; } });
  for await (const chunk of keep.values({ preventCancel: true })) { void chunk; break; }
  ok(!kept, "preventCancel");
  eq((await keep.getReader().read()).value, 2, "the stream goes on after preventCancel");
  eq(ReadableStream.prototype[Symbol.asyncIterator], ReadableStream.prototype.values, "asyncIterator is values");
  const it = new ReadableStream({ start(c) { c.error(new RangeError("iter")); } }).values();
  await rejects(it.next(), RangeError, "iteration of an errored stream");
  eq(await it.next(), { value: undefined, done: true }, "finished after the error");
  const lockedForIter = new ReadableStream();
  lockedForIter.getReader();
  throws(() => lockedForIter.values(), TypeError, "values() of a locked stream");

  // ReadableStream.from
  eq(await readAll(ReadableStream.from(["p", "q"])), ["p", "q"], "from a sync iterable");
  async function* gen() { yield 1; await tick(); yield 2; }
  eq(await readAll(ReadableStream.from(gen())), [1, 2], "from an async generator");
  eq(await readAll(ReadableStream.from([Promise.resolve("r")])), ["r"], "sync values are awaited");
  throws(() => ReadableStream.from(5), TypeError, "from a non-iterable");
  let returned;
  const iterable = { [Symbol.asyncIterator]() { return { next() { return { value: 1, done: false }; }, return(v) { returned = v; return {}; } }; } };
  await ReadableStream.from(iterable).cancel("stop");
  eq(returned, "stop", "cancel calls the iterator's return");
  await rejects(readAll(ReadableStream.from({ [Symbol.asyncIterator]() { return { next() { return 1; } }; } })), TypeError, "non-object result");

  // Primordials: a tenant's overrides of built-ins do not change a stream.
  const then = Promise.prototype.then;
  const push = Array.prototype.push;
  let hijacked = 0;
  Array.prototype.push = function (...args) { hijacked++; return push.apply(this, args); };
  try {
    const guarded = new ReadableStream({ start(c) { c.enqueue("g"); c.close(); } });
    const gr = guarded.getReader();
    eq((await gr.read()).value, "g", "read with overridden push");
    const [g1] = new ReadableStream({ start(c) { c.enqueue(1); c.close(); } }).tee();
    eq((await g1.getReader().read()).value, 1, "tee with overridden push");
  } finally {
    Array.prototype.push = push;
    Promise.prototype.then = then;
  }
  eq(hijacked, 0, "isobar's stream code never called the tenant's push");

  // A tenant's Promise.prototype.then, Array iterator and Object.prototype setters are never
  // reached by the stream machinery (pipes, tee, transforms, reading a body).
  let thenCalls = 0;
  const arrayIterator = Array.prototype[Symbol.iterator];
  Promise.prototype.then = function (...args) { thenCalls++; return then.apply(this, args); };
  Array.prototype[Symbol.iterator] = function () { throw new Error("tenant iterator"); };
  Object.defineProperty(Object.prototype, "state", { set() { throw new Error("tenant setter"); }, configurable: true });
  let text;
  let teed;
  try {
    const source = new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode("p")); c.close(); } });
    const branches = source.tee();
    const left = branches[0];
    const right = branches[1];
    const piped = left.pipeThrough(new TransformStream());
    const sink = new WritableStream();
    const done = right.pipeTo(sink);
    text = await new Response(piped).text();
    await done;
    teed = true;
  } finally {
    Promise.prototype.then = then;
    Array.prototype[Symbol.iterator] = arrayIterator;
    delete Object.prototype.state;
  }
  eq(text, "p", "a pipe, a tee and a body read with the built-ins replaced");
  ok(teed, "the other branch piped");
  eq(thenCalls, 0, "isobar's stream code never called the tenant's then");
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

import * as assert from "./assert.js";

// The assertions, recording which one ran last (see `stuck` below).
const eq = (actual, expected, what) => { step = what; assert.eq(actual, expected, what); };
const ok = (condition, what) => { step = what; assert.ok(condition, what); };
const throws = (fn, errorClass, what) => { step = what; return assert.throws(fn, errorClass, what); };
const rejects = (promise, errorClass, what) => { step = what; return assert.rejects(promise, errorClass, what); };

// A byte stream that serves `data` through BYOB requests when it can, enqueue otherwise.
function byteSource(data, options = {}) {
  let offset = 0;
  return new ReadableStream({
    type: "bytes",
    autoAllocateChunkSize: options.autoAllocateChunkSize,
    pull(c) {
      if (offset >= data.length) {
        c.close();
        if (c.byobRequest) c.byobRequest.respond(0);
        return;
      }
      const request = c.byobRequest;
      if (request) {
        const n = Math.min(request.view.byteLength, options.step ?? Infinity, data.length - offset);
        request.view.set(data.subarray(offset, offset + n));
        offset += n;
        request.respond(n);
      } else {
        const n = Math.min(options.step ?? Infinity, data.length - offset);
        c.enqueue(data.slice(offset, offset + n));
        offset += n;
      }
    },
  });
}

async function run() {
  const data = new Uint8Array(100).map((_, i) => i);

  // A default reader on a byte stream gets Uint8Arrays.
  const chunks = [];
  const dr = byteSource(data, { step: 30 }).getReader();
  for (;;) {
    const { value, done } = await dr.read();
    if (done) break;
    ok(value instanceof Uint8Array, "default reader chunks are Uint8Arrays");
    chunks.push(...value);
  }
  eq(chunks.length, 100, "every byte read");

  // autoAllocateChunkSize gives default reads a BYOB request.
  let sawRequest = false;
  const auto = new ReadableStream({
    type: "bytes",
    autoAllocateChunkSize: 16,
    pull(c) {
      sawRequest = c.byobRequest !== null;
      c.byobRequest.view[0] = 42;
      c.byobRequest.respond(1);
    },
  });
  const autoRead = await auto.getReader().read();
  ok(sawRequest, "auto-allocated BYOB request");
  eq([...autoRead.value], [42], "auto-allocated chunk holds what was written");
  eq(autoRead.value.buffer.byteLength, 16, "of the allocated size");
  throws(() => new ReadableStream({ type: "bytes", autoAllocateChunkSize: 0 }), TypeError, "autoAllocateChunkSize 0");

  // BYOB reader: the view's buffer is transferred, the result fills it.
  const br = byteSource(data, { step: 7 }).getReader({ mode: "byob" });
  ok(br instanceof ReadableStreamBYOBReader, "BYOB reader");
  const buffer = new ArrayBuffer(10);
  const first = await br.read(new Uint8Array(buffer));
  eq(buffer.byteLength, 0, "the view's buffer was detached");
  eq(first.value.byteLength, 7, "a read gives what the source responded");
  eq(first.value.buffer.byteLength, 10, "into the same memory, transferred");
  eq([...first.value], [0, 1, 2, 3, 4, 5, 6], "bytes");
  // readAtLeast / read({ min }) wait for at least that much.
  const least = await br.readAtLeast(9, new Uint8Array(12));
  ok(least.value.byteLength >= 9, "readAtLeast filled at least 9");
  eq(least.value[0], 7, "continuing where the last read stopped");
  const withMin = await br.read(new Uint8Array(12), { min: 10 });
  ok(withMin.value.byteLength >= 10, "read({ min }) filled at least 10");
  // Multi-byte views: elements are whole.
  const u16 = await br.read(new Uint16Array(3));
  ok(u16.value instanceof Uint16Array, "a Uint16Array view comes back as one");
  // Errors of read(view).
  await rejects(br.read(new Uint8Array(0)), TypeError, "empty view");
  await rejects(br.read(new Uint8Array(4), { min: 0 }), TypeError, "min 0");
  await rejects(br.read(new Uint8Array(4), { min: 5 }), RangeError, "min beyond the view (standard: RangeError)");
  await rejects(br.readAtLeast(5, new Uint8Array(4)), TypeError, "readAtLeast beyond the view (workerd: TypeError)");
  await rejects(br.readAtLeast(0, new Uint8Array(4)), TypeError, "readAtLeast 0");
  await rejects(br.read("nope"), TypeError, "not a view");
  const detachedView = new Uint8Array(8);
  detachedView.buffer.transfer();
  await rejects(br.read(detachedView), TypeError, "detached buffer");
  // Reading to the end: done with an empty view of the caller's type.
  let rest = 0;
  for (;;) {
    const { value, done } = await br.read(new Uint8Array(64));
    if (done) {
      ok(value instanceof Uint8Array && value.byteLength === 0, "done carries an empty view");
      break;
    }
    rest += value.byteLength;
  }
  ok(rest > 0, "read to the end");
  await br.closed;

  // Releasing a BYOB reader with a pending read rejects it.
  const slow = new ReadableStream({ type: "bytes" });
  const sr = slow.getReader({ mode: "byob" });
  const pendingRead = sr.read(new Uint8Array(4));
  sr.releaseLock();
  await rejects(pendingRead, TypeError, "pending BYOB read rejected on release");
  // The stream can be read again with a new reader.
  const again = slow.getReader();
  ok(again instanceof ReadableStreamDefaultReader, "reacquired");

  // Controller errors for wrong chunks.
  let ctl;
  const wrong = new ReadableStream({ type: "bytes", start(c) { ctl = c; } });
  throws(() => ctl.enqueue("text"), TypeError, "a string chunk in a byte stream");
  throws(() => ctl.enqueue(new Uint8Array(0)), TypeError, "an empty chunk");
  throws(() => ctl.enqueue({}), TypeError, "an object chunk");
  const chunk = new Uint8Array([1, 2, 3]);
  ctl.enqueue(chunk);
  eq(chunk.byteLength, 0, "enqueue transfers (detaches) the chunk's buffer");
  throws(() => ctl.enqueue(chunk), TypeError, "a detached chunk");
  eq(ctl.desiredSize, -3, "byte stream desiredSize counts bytes (hwm 0)");
  ctl.close();
  throws(() => ctl.close(), TypeError, "close twice");
  throws(() => ctl.enqueue(new Uint8Array(1)), TypeError, "enqueue after close");
  const wr = wrong.getReader();
  eq([...(await wr.read()).value], [1, 2, 3], "queued bytes survive close");
  eq((await wr.read()).done, true, "then done");

  // BYOB request errors.
  let request;
  const byob = new ReadableStream({ type: "bytes", pull(c) { request = c.byobRequest; } });
  const byobReader = byob.getReader({ mode: "byob" });
  const r1 = byobReader.read(new Uint8Array(4));
  await new Promise((resolve) => setTimeout(resolve, 0));
  ok(request !== null, "a BYOB request exists");
  throws(() => request.respond(5), RangeError, "respond beyond the view");
  throws(() => request.respondWithNewView(new Uint8Array(8)), RangeError, "respondWithNewView with a buffer of another size");
  const view = request.view;
  view[0] = 9;
  request.respondWithNewView(new Uint8Array(view.buffer, view.byteOffset, 1));
  eq([...(await r1).value], [9], "respondWithNewView");
  throws(() => request.respond(1), TypeError, "a used request is invalidated");
  eq(request.view, null, "its view is gone");

  // Byte stream tee: both branches get the bytes; BYOB reads work on a branch.
  const [b1, b2] = byteSource(data, { step: 40 }).tee();
  const branchReader = b1.getReader({ mode: "byob" });
  const fromBranch = await branchReader.read(new Uint8Array(100));
  ok(fromBranch.value.byteLength > 0, "BYOB read of a tee branch");
  eq(fromBranch.value[0], 0, "first byte");
  let total2 = 0;
  for await (const piece of b2) total2 += piece.byteLength;
  eq(total2, 100, "the other branch sees every byte");

  // Cancel of a byte stream with a pending BYOB read resolves it as done.
  const cancelMe = new ReadableStream({ type: "bytes" });
  const cr = cancelMe.getReader({ mode: "byob" });
  const pending = cr.read(new Uint8Array(2));
  await cr.cancel("bye");
  eq((await pending).done, true, "pending BYOB read done on cancel");
  eq((await pending).value, undefined, "with no view");
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

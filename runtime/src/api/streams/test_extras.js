import * as assert from "./assert.js";

// The assertions, recording which one ran last (see `stuck` below).
const eq = (actual, expected, what) => { step = what; assert.eq(actual, expected, what); };
const ok = (condition, what) => { step = what; assert.ok(condition, what); };
const throws = (fn, errorClass, what) => { step = what; return assert.throws(fn, errorClass, what); };
const rejects = (promise, errorClass, what) => { step = what; return assert.rejects(promise, errorClass, what); };

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

async function run() {
  // IdentityTransformStream: a TransformStream whose readable side is a byte stream.
  const its = new IdentityTransformStream();
  ok(its instanceof TransformStream, "IdentityTransformStream extends TransformStream");
  eq(Object.prototype.toString.call(its), "[object IdentityTransformStream]", "toStringTag");
  const writer = its.writable.getWriter();
  const reader = its.readable.getReader({ mode: "byob" });
  // A write finishes only when a reader has taken its bytes.
  let writeDone = false;
  const w1 = writer.write(new Uint8Array([1, 2, 3, 4, 5])).then(() => { writeDone = true; });
  await tick();
  ok(!writeDone, "the write waits for a reader");
  const r1 = await reader.read(new Uint8Array(3));
  eq([...r1.value], [1, 2, 3], "BYOB read of part of a write");
  const r2 = await reader.read(new Uint8Array(8));
  eq([...r2.value], [4, 5], "the rest");
  await w1;
  ok(writeDone, "the write finished once read");
  // Strings are written as UTF-8; ArrayBuffers are accepted; the writer keeps its buffer.
  const mine = new Uint8Array([9, 9]);
  writer.write("é");
  const r3 = await reader.read(new Uint8Array(8));
  eq([...r3.value], [0xc3, 0xa9], "a string is UTF-8");
  writer.write(mine);
  const r4 = await reader.readAtLeast(2, new Uint8Array(8));
  eq([...r4.value], [9, 9], "readAtLeast on an identity stream");
  eq(mine.byteLength, 2, "the writer's buffer was copied, not taken");
  // A non-byte chunk is a TypeError.
  await rejects(writer.write({}), TypeError, "an object chunk");
  // After the error both sides are errored.
  await rejects(reader.read(new Uint8Array(1)), TypeError, "readable errored too");

  // Close reaches a pending read.
  const its2 = new IdentityTransformStream();
  const reader2 = its2.readable.getReader();
  const pendingRead = reader2.read();
  await its2.writable.getWriter().close();
  eq((await pendingRead).done, true, "close ends a pending read");

  // A cancelled reader errors the writer.
  const its3 = new IdentityTransformStream();
  const w3 = its3.writable.getWriter();
  const stuck = w3.write(new Uint8Array([1]));
  await its3.readable.cancel(new RangeError("gone"));
  await rejects(stuck, RangeError, "a waiting write fails when the reader cancels");
  await rejects(w3.write(new Uint8Array([2])), RangeError, "later writes fail too");

  // An abort reaches a pending read and frees a waiting write.
  const its4 = new IdentityTransformStream();
  const reader4 = its4.readable.getReader();
  const w4 = its4.writable.getWriter();
  const read4 = reader4.read();
  await w4.abort(new URIError("abort"));
  await rejects(read4, URIError, "abort errors the readable side");

  // highWaterMark: bytes written and not yet read count against it (workerd's behaviour).
  const its5 = new IdentityTransformStream({ highWaterMark: 10 });
  const w5 = its5.writable.getWriter();
  const r5 = its5.readable.getReader();
  eq(w5.desiredSize, 10, "desiredSize starts at the highWaterMark");
  w5.write(new Uint8Array(1));
  eq(w5.desiredSize, 9, "one byte pending");
  w5.write(new Uint8Array(9));
  eq(w5.desiredSize, 0, "ten bytes pending");
  await r5.read();
  await tick();
  eq(w5.desiredSize, 1, "one chunk read");
  await r5.read();
  await tick();
  eq(w5.desiredSize, 10, "all read");
  // Without one, no backpressure is reported.
  const its6 = new IdentityTransformStream();
  const w6 = its6.writable.getWriter();
  w6.write(new Uint8Array(100));
  eq(w6.desiredSize, 1, "desiredSize stays 1 without a highWaterMark");

  // FixedLengthStream
  throws(() => new FixedLengthStream(), TypeError, "needs a length");
  throws(() => new FixedLengthStream(-1), TypeError, "negative length");
  throws(() => new FixedLengthStream(2 ** 53), TypeError, "length past 2^53");
  const fixed = new FixedLengthStream(4);
  ok(fixed instanceof IdentityTransformStream, "FixedLengthStream extends IdentityTransformStream");
  const fw = fixed.writable.getWriter();
  const fr = fixed.readable.getReader();
  fw.write(new Uint8Array([1, 2]));
  fw.write(new Uint8Array([3, 4]));
  const closing = fw.close();
  const got = [];
  for (;;) {
    const { value, done } = await fr.read();
    if (done) break;
    got.push(...value);
  }
  await closing;
  eq(got, [1, 2, 3, 4], "exactly its length");
  // Too many bytes.
  const tooMany = new FixedLengthStream(3);
  const tw = tooMany.writable.getWriter();
  const e1 = await rejects(tw.write(new Uint8Array(4)), TypeError, "too many bytes");
  eq(e1.message, "Attempt to write too many bytes through a FixedLengthStream.", "workerd's message");
  await rejects(tooMany.readable.getReader().read(), TypeError, "the readable side is errored");
  // Too few bytes.
  const tooFew = new FixedLengthStream(3);
  const tfw = tooFew.writable.getWriter();
  const tfr = tooFew.readable.getReader();
  tfw.write(new Uint8Array(1));
  await tfr.read();
  const e2 = await rejects(tfw.close(), TypeError, "too few bytes");
  eq(e2.message, "FixedLengthStream did not see all expected bytes before close().", "workerd's message");
  await rejects(tfr.read(), TypeError, "the reader sees the error");
  // Its readable side as a Response body.
  const body = new FixedLengthStream(5);
  const bw = body.writable.getWriter();
  bw.write(new TextEncoder().encode("hello"));
  bw.close();
  eq(await new Response(body.readable).text(), "hello", "a FixedLengthStream as a body");
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

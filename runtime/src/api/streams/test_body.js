import * as assert from "./assert.js";

// The assertions, recording which one ran last (see `stuck` below).
const eq = (actual, expected, what) => { step = what; assert.eq(actual, expected, what); };
const ok = (condition, what) => { step = what; assert.ok(condition, what); };
const throws = (fn, errorClass, what) => { step = what; return assert.throws(fn, errorClass, what); };
const rejects = (promise, errorClass, what) => { step = what; return assert.rejects(promise, errorClass, what); };

function streamOf(...parts) {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const part of parts) c.enqueue(typeof part === "string" ? encoder.encode(part) : part);
      c.close();
    },
  });
}

async function run(request) {
  // A request body read as a stream.
  ok(request.body instanceof ReadableStream, "request.body is a ReadableStream");
  eq(request.body, request.body, "the same stream each time");
  ok(!request.bodyUsed, "not used yet");
  const reader = request.body.getReader();
  ok(!request.bodyUsed, "getReader alone does not use the body");
  const pieces = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    ok(value instanceof Uint8Array, "body chunks are Uint8Arrays");
    pieces.push(new TextDecoder().decode(value));
  }
  eq(pieces.join(""), "uploaded body", "request body bytes");
  ok(request.bodyUsed, "bodyUsed after reading the stream");
  await rejects(request.text(), TypeError, "body used twice");
  // The body stream is a byte stream: BYOB readers work.
  const byob = new Response("bytes here").body.getReader({ mode: "byob" });
  const part = await byob.read(new Uint8Array(5));
  eq(new TextDecoder().decode(part.value), "bytes", "BYOB read of a body");

  // Responses made from streams.
  eq(await new Response(streamOf("hello, ", "world")).text(), "hello, world", "Response(stream).text()");
  eq(await new Response(streamOf('{"a":', "1}")).json(), { a: 1 }, "Response(stream).json()");
  const buffer = await new Response(streamOf("abc")).arrayBuffer();
  ok(buffer instanceof ArrayBuffer && buffer.byteLength === 3, "arrayBuffer()");
  eq([...(await new Response(streamOf("xy")).bytes())], [120, 121], "bytes()");
  const streamed = new Response(streamOf("s"));
  const sbody = streamed.body;
  ok(sbody instanceof ReadableStream, "body of a stream response is the stream");
  eq(await streamed.text(), "s", "text() of it");
  ok(streamed.bodyUsed, "used");
  await rejects(streamed.text(), TypeError, "used twice");
  // A stream body that is locked or disturbed cannot make a Response.
  const locked = streamOf("x");
  locked.getReader();
  throws(() => new Response(locked), TypeError, "locked stream body");
  const disturbed = streamOf("x", "y");
  const dr = disturbed.getReader();
  await dr.read();
  dr.releaseLock();
  throws(() => new Response(disturbed), TypeError, "disturbed stream body");
  // A locked body cannot be read.
  const lockedResponse = new Response(streamOf("z"));
  lockedResponse.body.getReader();
  await rejects(lockedResponse.text(), TypeError, "text() of a locked body");
  // Chunks that are not bytes fail the read.
  await rejects(new Response(new ReadableStream({ start(c) { c.enqueue("str"); c.close(); } })).text(), TypeError, "non-byte chunk");
  // An erroring stream rejects text() with its error.
  await rejects(new Response(new ReadableStream({ start(c) { c.error(new RangeError("bad")); } })).text(), RangeError, "errored body");

  // Reading a whole body is bounded: past 128 MiB it is a RangeError and the stream is
  // cancelled (the same 1 MiB chunk over and over, so the test itself allocates little).
  const mib = new Uint8Array(1 << 20);
  let sent = 0;
  let cancelledWith;
  const endless = new ReadableStream({
    pull(c) { sent++; c.enqueue(mib); },
    cancel(reason) { cancelledWith = reason; },
  });
  await rejects(new Response(endless).arrayBuffer(), RangeError, "a body past the read limit");
  ok(cancelledWith instanceof RangeError, "the stream was cancelled with the RangeError");
  ok(sent <= 130, `reading stopped at the limit (${sent} MiB sent)`);

  // clone() of a stream body: both read the same bytes.
  const original = new Response(streamOf("twice"));
  const copy = original.clone();
  eq(await original.text(), "twice", "original after clone");
  eq(await copy.text(), "twice", "clone");
  const lockedClone = new Response(streamOf("x"));
  lockedClone.body.getReader();
  throws(() => lockedClone.clone(), TypeError, "clone of a locked body");
  // clone() of a bytes body, read through streams.
  const bytesResponse = new Response("abc");
  const bytesCopy = bytesResponse.clone();
  eq(await new Response(bytesResponse.body).text(), "abc", "a body stream as another body");
  eq(await bytesCopy.text(), "abc", "its clone");

  // A Request with a stream body.
  const upload = new Request("http://example.com/", { method: "POST", body: streamOf("posted"), duplex: "half" });
  ok(upload.body instanceof ReadableStream, "request.body of a stream request");
  eq(await upload.text(), "posted", "request stream body text()");
  ok(upload.bodyUsed, "bodyUsed");
  const clonedRequest = new Request("http://example.com/", { method: "PUT", body: streamOf("cloned") }).clone();
  eq(await clonedRequest.text(), "cloned", "a cloned stream request");

  // An empty body's stream is closed; a null body has none.
  eq(new Response(null).body, null, "null body");
  eq((await new Response("").body.getReader().read()).done, true, "empty body stream is closed");
  // pipeThrough a body.
  const upper = new TransformStream({
    transform(chunk, c) { c.enqueue(new TextEncoder().encode(new TextDecoder().decode(chunk).toUpperCase())); },
  });
  eq(await new Response(new Response("shout").body.pipeThrough(upper)).text(), "SHOUT", "body through a transform");
  return new Response("ok");
}

// A test that would wait forever fails instead, naming the last assertion it reached.
let step = "start";

export default {
  fetch(request) {
    const stuck = new Promise((_, reject) => setTimeout(() => reject(new Error(`stuck after: ${step}`)), 4000));
    return Promise.race([run(request), stuck]);
  },
};

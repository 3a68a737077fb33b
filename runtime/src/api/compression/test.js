import * as assert from "./assert.js";

// The assertions, recording which one ran last (see `stuck` below).
const eq = (actual, expected, what) => { step = what; assert.eq(actual, expected, what); };
const ok = (condition, what) => { step = what; assert.ok(condition, what); };
const throws = (fn, errorClass, what) => { step = what; return assert.throws(fn, errorClass, what); };
const rejects = (promise, errorClass, what) => { step = what; return assert.rejects(promise, errorClass, what); };

async function bytesOf(stream) {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function streamOf(...chunks) {
  return new ReadableStream({
    start(c) {
      for (const chunk of chunks) c.enqueue(chunk);
      c.close();
    },
  });
}

// `mib` MiB of zeros, as the same 1 MiB chunk over and over (no big allocation).
function zeroStream(mib) {
  const chunk = new Uint8Array(1 << 20);
  let left = mib;
  return new ReadableStream({
    pull(c) {
      if (left-- > 0) c.enqueue(chunk);
      else c.close();
    },
  });
}

async function compress(format, bytes) {
  return bytesOf(streamOf(bytes).pipeThrough(new CompressionStream(format)));
}

async function decompress(format, ...chunks) {
  return bytesOf(streamOf(...chunks).pipeThrough(new DecompressionStream(format)));
}

async function run() {
  throws(() => new CompressionStream("brotli"), TypeError, "unknown format");
  throws(() => new DecompressionStream("GZIP"), TypeError, "formats are case-sensitive");
  throws(() => new CompressionStream(), TypeError, "a format is required");
  const cs = new CompressionStream("gzip");
  ok(cs.readable instanceof ReadableStream && cs.writable instanceof WritableStream, "readable and writable");
  eq(Object.prototype.toString.call(cs), "[object CompressionStream]", "toStringTag");

  const text = new TextEncoder().encode("Hello, compression streams! ".repeat(1000));
  for (const format of ["gzip", "deflate", "deflate-raw"]) {
    const packed = await compress(format, text);
    ok(packed.byteLength < text.byteLength / 10, `${format} compresses`);
    const unpacked = await decompress(format, packed);
    eq(unpacked.byteLength, text.byteLength, `${format} round trip length`);
    eq(new TextDecoder().decode(unpacked), new TextDecoder().decode(text), `${format} round trip`);
    // Fed one byte at a time, the output is the same.
    const pieces = [];
    for (let i = 0; i < packed.byteLength; i++) pieces.push(packed.slice(i, i + 1));
    eq((await decompress(format, ...pieces)).byteLength, text.byteLength, `${format} byte by byte`);
  }
  // The formats' magic: gzip 1f 8b, zlib 78.
  const gz = await compress("gzip", text);
  eq([gz[0], gz[1]], [0x1f, 0x8b], "gzip header");
  eq((await compress("deflate", text))[0], 0x78, "zlib header");
  // Empty input still makes a valid stream.
  eq((await decompress("gzip", await compress("gzip", new Uint8Array(0)))).byteLength, 0, "empty round trip");
  // ArrayBuffer and other views are accepted.
  eq((await decompress("gzip", gz.buffer)).byteLength, text.byteLength, "an ArrayBuffer chunk");

  // Errors: truncated, corrupt, trailing garbage, wrong chunk types.
  const truncated = await rejects(decompress("gzip", gz.slice(0, gz.byteLength - 4)), TypeError, "truncated gzip");
  ok(/incomplete data/.test(truncated.message), `truncated message: ${truncated.message}`);
  const corrupt = gz.slice();
  corrupt[20] ^= 0xff;
  await rejects(decompress("gzip", corrupt), TypeError, "corrupt gzip");
  await rejects(decompress("gzip", new TextEncoder().encode("not gzip at all")), TypeError, "not gzip");
  const trailing = await rejects(decompress("gzip", gz, new Uint8Array([0])), TypeError, "trailing garbage");
  ok(/Trailing/.test(trailing.message), `trailing message: ${trailing.message}`);
  await rejects(decompress("gzip", gz, gz), TypeError, "a second gzip member is trailing data");
  const zlib = await compress("deflate", text);
  await rejects(decompress("deflate", zlib.slice(0, 10)), TypeError, "truncated deflate");
  await rejects(decompress("deflate", zlib, new Uint8Array([1])), TypeError, "trailing after deflate");
  await rejects(decompress("deflate-raw", zlib), TypeError, "zlib data is not raw deflate");
  await rejects(compress("gzip", "a string"), TypeError, "a string chunk");
  await rejects(decompress("gzip", 42), TypeError, "a number chunk");

  // A bomb: a few KiB of input, 64 MiB of output. The reader gets it in bounded pieces, and the
  // decompressor waits for the reader (it never runs ahead and fills memory).
  const bomb = await bytesOf(zeroStream(16).pipeThrough(new CompressionStream("gzip")));
  ok(bomb.byteLength < 100 << 10, `the bomb is small (${bomb.byteLength})`);
  const ds = new DecompressionStream("gzip");
  const writer = ds.writable.getWriter();
  writer.write(bomb);
  writer.close();
  const reader = ds.readable.getReader();
  let total = 0;
  let largest = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    total += value.byteLength;
    largest = Math.max(largest, value.byteLength);
  }
  eq(total, 16 << 20, "all of the bomb, read piece by piece");
  ok(largest <= 64 << 10, `pieces are at most 64 KiB (${largest})`);
  // A reader that stops reading: the decompressor stops too.
  const paused = new DecompressionStream("gzip");
  const pw = paused.writable.getWriter();
  const writeDone = pw.write(bomb);
  const pr = paused.readable.getReader();
  await pr.read();
  await new Promise((resolve) => setTimeout(resolve, 10));
  let finished = false;
  writeDone.then(() => { finished = true; }, () => { finished = true; });
  await new Promise((resolve) => setTimeout(resolve, 0));
  ok(!finished, "the write waits while nobody reads");
  await pr.cancel("enough");
  await rejects(writeDone, undefined, "cancelling the reader fails the write");
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

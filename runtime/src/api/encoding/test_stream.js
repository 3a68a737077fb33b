import * as assert from "./assert.js";

// The assertions, recording which one ran last (see `stuck` below).
const eq = (actual, expected, what) => { step = what; assert.eq(actual, expected, what); };
const ok = (condition, what) => { step = what; assert.ok(condition, what); };
const throws = (fn, errorClass, what) => { step = what; return assert.throws(fn, errorClass, what); };
const rejects = (promise, errorClass, what) => { step = what; return assert.rejects(promise, errorClass, what); };

async function collect(stream) {
  const out = [];
  for await (const chunk of stream) out.push(chunk);
  return out;
}

function streamOf(...chunks) {
  return new ReadableStream({
    start(c) {
      for (const chunk of chunks) c.enqueue(chunk);
      c.close();
    },
  });
}

async function run() {
  const encoder = new TextEncoderStream();
  eq(encoder.encoding, "utf-8", "encoding");
  eq(Object.prototype.toString.call(encoder), "[object TextEncoderStream]", "toStringTag");
  const encoded = await collect(streamOf("a", "é", "").pipeThrough(encoder));
  eq(encoded.map((c) => [...c]), [[0x61], [0xc3, 0xa9]], "one Uint8Array per non-empty chunk");
  ok(encoded[0] instanceof Uint8Array, "Uint8Array chunks");
  // A surrogate pair split across chunks is one character.
  const pair = await collect(streamOf("\ud83d", "\ude00").pipeThrough(new TextEncoderStream()));
  eq(pair.flatMap((c) => [...c]), [0xf0, 0x9f, 0x98, 0x80], "split surrogate pair");
  // A lone high surrogate at the end is U+FFFD.
  const lone = await collect(streamOf("x\ud83d").pipeThrough(new TextEncoderStream()));
  eq(lone.flatMap((c) => [...c]), [0x78, 0xef, 0xbf, 0xbd], "lone surrogate at the end");
  // Non-strings are converted with String().
  const numbers = await collect(streamOf(12).pipeThrough(new TextEncoderStream()));
  eq(numbers.flatMap((c) => [...c]), [0x31, 0x32], "numbers become strings");

  const decoder = new TextDecoderStream();
  eq([decoder.encoding, decoder.fatal, decoder.ignoreBOM], ["utf-8", false, false], "decoder defaults");
  // A character split across chunks.
  const euro = [0xe2, 0x82, 0xac];
  const decoded = await collect(streamOf(new Uint8Array(euro.slice(0, 1)), new Uint8Array(euro.slice(1))).pipeThrough(decoder));
  eq(decoded.join(""), "€", "split character");
  // BOM handling.
  const bom = new Uint8Array([0xef, 0xbb, 0xbf, 0x68, 0x69]);
  eq((await collect(streamOf(bom).pipeThrough(new TextDecoderStream()))).join(""), "hi", "BOM removed");
  eq((await collect(streamOf(bom).pipeThrough(new TextDecoderStream("utf-8", { ignoreBOM: true })))).join(""), "\ufeffhi", "ignoreBOM keeps it");
  // Legacy encodings and labels.
  const latin = new TextDecoderStream("latin1");
  eq(latin.encoding, "windows-1252", "label to name");
  eq((await collect(streamOf(new Uint8Array([0xe9])).pipeThrough(latin))).join(""), "é", "windows-1252");
  throws(() => new TextDecoderStream("nope"), RangeError, "unknown label");
  // Invalid input: replacement, or a TypeError when fatal.
  eq((await collect(streamOf(new Uint8Array([0xff])).pipeThrough(new TextDecoderStream()))).join(""), "\ufffd", "replacement");
  await rejects(collect(streamOf(new Uint8Array([0xff])).pipeThrough(new TextDecoderStream("utf-8", { fatal: true }))), TypeError, "fatal");
  // An incomplete character at the end is an error when fatal, U+FFFD otherwise.
  eq((await collect(streamOf(new Uint8Array([0xe2, 0x82])).pipeThrough(new TextDecoderStream()))).join(""), "\ufffd", "truncated at the end");
  await rejects(collect(streamOf(new Uint8Array([0xe2])).pipeThrough(new TextDecoderStream("utf-8", { fatal: true }))), TypeError, "fatal truncation");
  // Chunks must be BufferSources.
  await rejects(collect(streamOf("text").pipeThrough(new TextDecoderStream())), TypeError, "a string chunk");
  // Round trip through both, and through a body.
  const round = await collect(streamOf("one ", "two").pipeThrough(new TextEncoderStream()).pipeThrough(new TextDecoderStream()));
  eq(round.join(""), "one two", "round trip");
  eq((await collect(new Response("from a body").body.pipeThrough(new TextDecoderStream()))).join(""), "from a body", "a body decoded");
  // Many streams in a row do not run out of decoder resources (each is freed when it ends).
  for (let i = 0; i < 300; i++) {
    await collect(streamOf(new Uint8Array([0x61])).pipeThrough(new TextDecoderStream("utf-16le")));
  }
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

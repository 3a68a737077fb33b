// crypto.DigestStream: a WritableStream whose `digest` resolves with the hash of what was written.
// WritableStream is another API area; without it this answers "skipped: ..." (the Rust test prints
// the note) after checking that construction fails with a clear TypeError.
import { eq, ok } from "./assert.js";

const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
const text = (s) => new TextEncoder().encode(s);

async function digestOf(algorithm, chunks, options) {
  const stream = new crypto.DigestStream(algorithm, options);
  const writer = stream.getWriter();
  for (const chunk of chunks) await writer.write(chunk);
  await writer.close();
  // bytesWritten is a BigInt, which JSON (and so eq) cannot show: compared as a string.
  ok(typeof stream.bytesWritten === "bigint", "bytesWritten is a BigInt");
  return { digest: hex(await stream.digest), bytes: String(stream.bytesWritten) };
}

async function rejectsWith(promise, check, what) {
  try {
    await promise;
  } catch (e) {
    ok(check(e), `${what}: rejected with ${e}`);
    return;
  }
  throw new Error(`${what}: did not reject`);
}

export default {
  async fetch() {
    if (typeof WritableStream !== "function") {
      let error;
      try {
        new crypto.DigestStream("SHA-256");
      } catch (e) {
        error = e;
      }
      ok(error instanceof TypeError && /WritableStream/.test(error.message), "a clear TypeError without WritableStream");
      return new Response("skipped: this build has no WritableStream (the streams area), so DigestStream cannot be made");
    }

    const stream = new crypto.DigestStream("SHA-256");
    ok(stream instanceof WritableStream, "a WritableStream");
    ok(stream instanceof crypto.DigestStream, "a DigestStream");
    eq(Object.getPrototypeOf(crypto.DigestStream), WritableStream, "extends WritableStream");
    eq(Object.prototype.toString.call(stream), "[object DigestStream]", "toStringTag");
    ok(stream.digest === stream.digest, "digest is one promise");
    ok(stream.bytesWritten === 0n, "bytesWritten starts at 0n");

    // FIPS 180-2: SHA-256("abc"), written in pieces of different kinds.
    const abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    eq(await digestOf("SHA-256", [text("a"), "b", new DataView(text("xcx").buffer, 1, 1)]), { digest: abc, bytes: "3" }, "chunks of every kind");
    eq(await digestOf({ name: "sha-256" }, [text("abc").buffer]), { digest: abc, bytes: "3" }, "an algorithm object, any case");
    eq((await digestOf("MD5", ["abc"])).digest, "900150983cd24fb0d6963f7d28e17f72", "MD5");
    eq((await digestOf("SHA-1", [])).digest, "da39a3ee5e6b4b0d3255bfef95601890afd80709", "nothing written");
    eq((await digestOf("SHA-512", [new Uint32Array([1, 2, 3])])).bytes, "12", "typed arrays count bytes");
    eq((await digestOf("SHA-256", ["\u00e9"])).bytes, "2", "strings are UTF-8");
    // A lone surrogate is hashed as its three WTF-8 bytes, as workerd does; with toWellFormed it
    // is U+FFFD, and a pair split between writes is joined.
    const wtf8 = await digestOf("MD5", ["\ud800"]);
    eq(wtf8.bytes, "3", "a lone surrogate is three bytes");
    ok(wtf8.digest !== (await digestOf("MD5", [text("\ud800")])).digest, "not TextEncoder's U+FFFD by default");
    eq((await digestOf("MD5", ["\ud800"], { toWellFormed: true })).digest, (await digestOf("MD5", [text("\ud800")])).digest,
      "toWellFormed matches TextEncoder");
    eq((await digestOf("MD5", ["a\ud83d", "\ude00b"], { toWellFormed: true })).digest,
      (await digestOf("MD5", [text("a\ud83d\ude00b")])).digest, "a split pair is joined");

    // Errors: unknown algorithms throw at construction; bad chunks reject the write; abort rejects
    // the digest with the reason.
    let unknown;
    try {
      new crypto.DigestStream("SHA-3");
    } catch (e) {
      unknown = e;
    }
    eq(unknown?.name, "NotSupportedError", "an unknown digest");
    let primitive;
    try {
      new crypto.DigestStream("MD5", 1);
    } catch (e) {
      primitive = e;
    }
    ok(primitive instanceof TypeError, "options that are not an object");
    const bad = new crypto.DigestStream("MD5").getWriter();
    await rejectsWith(bad.write(123), (e) => e instanceof TypeError && /byte stream/.test(e.message), "a number chunk");
    const aborted = new crypto.DigestStream("MD5");
    const reason = new Error("boom");
    await aborted.getWriter().abort(reason);
    await rejectsWith(aborted.digest, (e) => e === reason, "abort rejects digest");
    let brand;
    try {
      Object.create(crypto.DigestStream.prototype).digest;
    } catch (e) {
      brand = e;
    }
    ok(brand instanceof TypeError, "the digest getter is brand-checked");

    if (typeof Symbol.dispose === "symbol") {
      const disposed = new crypto.DigestStream("MD5");
      disposed[Symbol.dispose]();
      await rejectsWith(disposed.digest, (e) => /disposed/.test(e.message), "dispose rejects digest");
      const writer = disposed.getWriter();
      await writer.write(new Uint8Array(0));
      await rejectsWith(writer.write(new Uint8Array(1)), (e) => /disposed/.test(e.message), "writing after dispose");
    }

    // A ReadableStream piped into a DigestStream (pipeTo checks its destination's brand).
    const piped = new crypto.DigestStream("SHA-256");
    await new ReadableStream({ start(controller) { controller.enqueue(text("ab")); controller.enqueue(text("c")); controller.close(); } })
      .pipeTo(piped);
    eq(hex(await piped.digest), abc, "pipeTo a DigestStream");

    class Mine extends crypto.DigestStream {
      constructor() {
        super("SHA-256");
        this.tag = "mine";
      }
    }
    const mine = new Mine();
    const writer = mine.getWriter();
    await writer.write("abc");
    await writer.close();
    eq([mine.tag, hex(await mine.digest)], ["mine", abc], "subclassable");
    return new Response("ok");
  },
};

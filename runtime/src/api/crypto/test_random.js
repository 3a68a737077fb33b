// crypto.getRandomValues and crypto.randomUUID (unchanged by WebCrypto), and the shape of crypto.
import { eq, ok, throws } from "./assert.js";

export default {
  async fetch() {
    const a = crypto.getRandomValues(new Uint8Array(32));
    const b = crypto.getRandomValues(new Uint8Array(32));
    ok(a.some((x, i) => x !== b[i]), "two 32-byte draws differ");
    const u32 = new Uint32Array(4);
    eq(crypto.getRandomValues(u32) === u32, true, "returns its argument");
    eq(crypto.getRandomValues(new Uint8Array(65536)).length, 65536, "65536 bytes allowed");
    eq(throws(() => crypto.getRandomValues(new Uint8Array(65537)), DOMException, "over the quota").name,
      "QuotaExceededError", "over 65536 bytes");
    eq(throws(() => crypto.getRandomValues(new Float64Array(2)), DOMException, "floats").name,
      "TypeMismatchError", "float arrays");

    const uuid = crypto.randomUUID();
    ok(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(uuid), `v4 UUID: ${uuid}`);
    ok(crypto.randomUUID() !== uuid, "two UUIDs differ");

    // crypto.subtle is one SubtleCrypto, and neither it nor CryptoKey can be constructed.
    ok(crypto.subtle instanceof SubtleCrypto, "crypto.subtle is a SubtleCrypto");
    ok(crypto.subtle === crypto.subtle, "the same object every time");
    eq(Object.prototype.toString.call(crypto.subtle), "[object SubtleCrypto]", "toStringTag");
    throws(() => new SubtleCrypto(), TypeError, "new SubtleCrypto");
    throws(() => new CryptoKey(), TypeError, "new CryptoKey");
    eq(crypto.subtle.encrypt.length, 3, "encrypt.length");
    eq(crypto.subtle.unwrapKey.length, 7, "unwrapKey.length");
    eq(crypto.subtle.deriveBits.length, 2, "deriveBits.length");
    ok(Object.keys(SubtleCrypto.prototype).includes("digest"), "operations are enumerable");
    eq(typeof crypto.DigestStream, "function", "crypto.DigestStream");
    return new Response("ok");
  },
};

// The errors WebCrypto names, through the JS API: every one rejects the promise (nothing throws
// synchronously), with the DOMException the engine names or a TypeError, and argument conversion
// follows Web IDL (dictionary members read in order, BufferSources copied when read).
import { eq, ok } from "./assert.js";

const subtle = crypto.subtle;
const text = (s) => new TextEncoder().encode(s);

// Runs `call` (which must return a promise, not throw) and returns the rejection's name.
async function failure(call, what) {
  let promise;
  try {
    promise = call();
  } catch (e) {
    throw new Error(`${what}: threw synchronously (${e}) instead of rejecting`);
  }
  ok(promise instanceof Promise, `${what}: returns a promise`);
  try {
    await promise;
  } catch (e) {
    if (e instanceof DOMException) return e.name;
    if (e instanceof TypeError) return "TypeError";
    throw new Error(`${what}: rejected with ${e}, not a DOMException or TypeError`);
  }
  throw new Error(`${what}: did not reject`);
}

async function expectFailure(expected, call, what) {
  eq(await failure(call, what), expected, what);
}

async function usageAndAlgorithmErrors() {
  const aes = await subtle.generateKey({ name: "AES-GCM", length: 128 }, false, ["encrypt"]);
  const iv = new Uint8Array(12);
  await expectFailure("InvalidAccessError", () => subtle.decrypt({ name: "AES-GCM", iv }, aes, new Uint8Array(32)),
    "decrypt with an encrypt-only key");
  await expectFailure("InvalidAccessError", () => subtle.encrypt({ name: "AES-CBC", iv: new Uint8Array(16) }, aes, text("x")),
    "a key of another algorithm");
  await expectFailure("InvalidAccessError", () => subtle.exportKey("raw", aes), "exporting a non-extractable key");
  const hmac = await subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, true, ["verify"]);
  await expectFailure("InvalidAccessError", () => subtle.sign("HMAC", hmac, text("x")), "sign with a verify-only key");
  const kek = await subtle.generateKey({ name: "AES-KW", length: 128 }, false, ["wrapKey"]);
  await expectFailure("InvalidAccessError", () => subtle.unwrapKey("raw", new Uint8Array(24), kek, "AES-KW", "AES-GCM", true, ["encrypt"]),
    "unwrap with a wrap-only key");

  await expectFailure("NotSupportedError", () => subtle.digest("SHA-3", text("x")), "unknown digest");
  await expectFailure("NotSupportedError", () => subtle.digest({ name: "ſha-1" }, text("x")), "names match ASCII case-insensitively only");
  await expectFailure("NotSupportedError", () => subtle.encrypt("HMAC", hmac, text("x")), "HMAC cannot encrypt");
  await expectFailure("NotSupportedError", () => subtle.generateKey({ name: "HMAC", hash: "SHA-999" }, true, ["sign"]), "unknown hash");
  await expectFailure("NotSupportedError", () => subtle.generateKey({ name: "ECDSA", namedCurve: "P-521" }, true, ["sign"]), "P-521");
  await expectFailure("NotSupportedError", () => subtle.importKey("pem", new Uint8Array(1), "AES-GCM", true, ["encrypt"]), "unknown format");
  await expectFailure("NotSupportedError", () => subtle.deriveKey({ name: "HKDF", hash: "SHA-256", salt: new Uint8Array(), info: new Uint8Array() },
    aes, { name: "ECDSA", namedCurve: "P-256" }, true, ["sign"]), "deriving an ECDSA key");

  await expectFailure("SyntaxError", () => subtle.generateKey({ name: "AES-GCM", length: 128 }, true, ["sign"]), "a usage AES does not have");
  await expectFailure("SyntaxError", () => subtle.generateKey({ name: "AES-GCM", length: 128 }, true, []), "a secret key with no usages");
  await expectFailure("SyntaxError", () => subtle.generateKey({ name: "AES-GCM", length: 128 }, true, ["Encrypt"]), "an unknown usage");
}

async function lengthErrors() {
  await expectFailure("OperationError", () => subtle.generateKey({ name: "AES-CBC", length: 100 }, true, ["encrypt"]), "AES length 100");
  await expectFailure("DataError", () => subtle.importKey("raw", new Uint8Array(15), "AES-CBC", true, ["encrypt"]), "a 15-byte AES key");
  const cbc = await subtle.generateKey({ name: "AES-CBC", length: 128 }, false, ["encrypt", "decrypt"]);
  await expectFailure("OperationError", () => subtle.encrypt({ name: "AES-CBC", iv: new Uint8Array(8) }, cbc, text("x")), "an 8-byte CBC iv");
  await expectFailure("OperationError", () => subtle.decrypt({ name: "AES-CBC", iv: new Uint8Array(16) }, cbc, new Uint8Array(15)),
    "CBC ciphertext not a whole number of blocks");
  const gcm = await subtle.generateKey({ name: "AES-GCM", length: 128 }, false, ["encrypt", "decrypt"]);
  await expectFailure("OperationError", () => subtle.encrypt({ name: "AES-GCM", iv: new Uint8Array(12), tagLength: 100 }, gcm, text("x")),
    "a 100-bit GCM tag");
  const sealed = new Uint8Array(await subtle.encrypt({ name: "AES-GCM", iv: new Uint8Array(12) }, gcm, text("payload")));
  sealed[0] ^= 1;
  await expectFailure("OperationError", () => subtle.decrypt({ name: "AES-GCM", iv: new Uint8Array(12) }, gcm, sealed), "a forged GCM message");
  const ctr = await subtle.generateKey({ name: "AES-CTR", length: 128 }, false, ["encrypt"]);
  await expectFailure("OperationError", () => subtle.encrypt({ name: "AES-CTR", counter: new Uint8Array(16), length: 0 }, ctr, text("x")),
    "a zero-bit CTR counter");
  await expectFailure("TypeError", () => subtle.encrypt({ name: "AES-CTR", counter: new Uint8Array(16), length: 256 }, ctr, text("x")),
    "a CTR length beyond an octet ([EnforceRange])");
  const hkdf = await subtle.importKey("raw", new Uint8Array(16), "HKDF", false, ["deriveBits"]);
  await expectFailure("OperationError", () => subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: new Uint8Array(), info: new Uint8Array() },
    hkdf, 12), "HKDF bits not a multiple of 8");
  await expectFailure("OperationError", () => subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: new Uint8Array(), info: new Uint8Array() },
    hkdf, 256 * 32 * 8), "more HKDF output than 255 hashes");
  const pbkdf2 = await subtle.importKey("raw", text("pw"), "PBKDF2", false, ["deriveBits"]);
  await expectFailure("NotSupportedError", () => subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt: text("s"), iterations: 100001 },
    pbkdf2, 256), "more PBKDF2 iterations than the cap");
  // RSA generation is refused above 4096 bits, at once (it could not be interrupted).
  await expectFailure("OperationError", () => subtle.generateKey(
    { name: "RSA-PSS", modulusLength: 8192, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }, true, ["sign"]),
    "RSA-8192 generation");
  await expectFailure("OperationError", () => subtle.generateKey(
    { name: "RSA-PSS", modulusLength: 2048, publicExponent: new Uint8Array([7]), hash: "SHA-256" }, true, ["sign"]),
    "an RSA exponent other than 3 or 65537");
}

async function jwkErrors() {
  const hmac = { name: "HMAC", hash: "SHA-256" };
  await expectFailure("DataError", () => subtle.importKey("jwk", { kty: "oct", k: "!!!" }, hmac, true, ["sign"]), "bad base64url");
  await expectFailure("DataError", () => subtle.importKey("jwk", { kty: "RSA", k: "AAAA" }, hmac, true, ["sign"]), "the wrong kty");
  await expectFailure("DataError", () => subtle.importKey("jwk", { k: "AAAA" }, hmac, true, ["sign"]), "no kty");
  await expectFailure("DataError", () => subtle.importKey("jwk", { kty: "oct", k: "AAAA", ext: false }, hmac, true, ["sign"]),
    "ext false but extractable");
  await expectFailure("DataError", () => subtle.importKey("jwk", { kty: "oct", k: "AAAA", key_ops: ["verify"] }, hmac, true, ["sign"]),
    "key_ops without the usage");
  await expectFailure("DataError", () => subtle.importKey("jwk", { kty: "oct", k: "AAAA", alg: "HS512" }, hmac, true, ["sign"]),
    "alg of another hash");
  await expectFailure("DataError", () => subtle.importKey("jwk", { kty: "oct", k: "AAAA", key_ops: new Array(65).fill("sign") }, hmac, true, ["sign"]),
    "a key_ops list longer than any real one");
  await expectFailure("DataError", () => subtle.importKey("jwk", { kty: "EC", crv: "P-256", x: "AAAA", y: "AAAA" },
    { name: "ECDSA", namedCurve: "P-256" }, true, ["verify"]), "an EC point that is not on the curve");
  await expectFailure("TypeError", () => subtle.importKey("jwk", new Uint8Array(4), hmac, true, ["sign"]), "jwk format with bytes");
  await expectFailure("TypeError", () => subtle.importKey("raw", { kty: "oct", k: "AAAA" }, hmac, true, ["sign"]), "raw format with a JWK");
  await expectFailure("TypeError", () => subtle.importKey("raw", "bytes", hmac, true, ["sign"]), "a string is neither");
  const aes = await subtle.generateKey({ name: "AES-KW", length: 128 }, false, ["wrapKey", "unwrapKey"]);
  const notJson = await subtle.wrapKey("raw", await subtle.importKey("raw", new Uint8Array(16), "AES-CBC", true, ["encrypt"]), aes, "AES-KW");
  await expectFailure("DataError", () => subtle.unwrapKey("jwk", notJson, aes, "AES-KW", "AES-CBC", true, ["encrypt"]),
    "unwrapping bytes that are not JWK JSON");
}

async function argumentErrors() {
  const key = await subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  await expectFailure("TypeError", () => subtle.digest("SHA-256"), "too few arguments");
  await expectFailure("TypeError", () => subtle.digest("SHA-256", "not bytes"), "data that is not a BufferSource");
  await expectFailure("TypeError", () => subtle.sign("HMAC", { type: "secret" }, text("x")), "a key that is not a CryptoKey");
  await expectFailure("TypeError", () => subtle.digest({}, text("x")), "an algorithm without name");
  await expectFailure("TypeError", () => subtle.digest(Symbol("SHA-256"), text("x")), "a Symbol algorithm");
  await expectFailure("TypeError", () => subtle.encrypt({ name: "AES-GCM" }, key, text("x")), "a missing required member");
  await expectFailure("TypeError", () => subtle.generateKey({ name: "AES-GCM", length: NaN }, true, ["encrypt"]), "[EnforceRange] NaN");
  await expectFailure("TypeError", () => subtle.generateKey({ name: "RSA-PSS", modulusLength: 1024, publicExponent: [1, 0, 1], hash: "SHA-256" },
    true, ["sign"]), "publicExponent not a Uint8Array");
  await expectFailure("TypeError", () => subtle.deriveBits({ name: "ECDH", public: {} }, key, 8), "public not a CryptoKey");
  await expectFailure("TypeError", () => subtle.generateKey({ name: "AES-GCM", length: 128 }, true, "encrypt"), "usages not a sequence");
  await expectFailure("TypeError", () => subtle.digest.call({}, "SHA-256", text("x")), "a method called on another object");
  let threw;
  try {
    subtle.timingSafeEqual(text("ab"), text("abc"));
  } catch (e) {
    threw = e;
  }
  ok(threw instanceof TypeError, "timingSafeEqual of different lengths throws a TypeError");
  ok(String(threw.message).length > 0, "with a message");
}

async function webIdlOrder() {
  // Dictionary members are read in Web IDL order: `name`, then (converting to the registered
  // dictionary) `name` again and each member sorted by name; `hash` is normalized afterwards.
  const reads = [];
  const watch = (object) => new Proxy(object, { get(target, key) { reads.push(String(key)); return target[key]; } });
  const key = await subtle.generateKey({ name: "AES-GCM", length: 128 }, false, ["encrypt", "decrypt"]);
  await subtle.encrypt(watch({ name: "AES-GCM", iv: new Uint8Array(12), tagLength: 128, additionalData: new Uint8Array(1) }), key, text("x"));
  eq(reads, ["name", "name", "additionalData", "iv", "tagLength"], "AesGcmParams member order");
  reads.length = 0;
  await subtle.generateKey(watch({ name: "HMAC", hash: watch({ name: "SHA-256" }), length: 256 }), false, ["sign"]);
  eq(reads, ["name", "name", "hash", "length", "name"], "HmacKeyGenParams order, hash normalized last");

  // BufferSources are copied when read: changing the buffer afterwards changes nothing.
  const data = new Uint8Array([1, 2, 3]);
  const iv = new Uint8Array(12);
  const sealed = await subtle.encrypt({ name: "AES-GCM", get iv() { data.fill(9); return iv; } }, key, data);
  const opened = new Uint8Array(await subtle.decrypt({ name: "AES-GCM", iv }, key, sealed));
  eq([...opened], [1, 2, 3], "data was copied before the algorithm's getters ran");

  // hash as a string or an object, in any case; names come back canonical.
  const a = await subtle.importKey("raw", new Uint8Array(16), { name: "hmac", hash: "sha-256" }, false, ["sign"]);
  const b = await subtle.importKey("raw", new Uint8Array(16), { name: "HMAC", hash: { name: "SHA-256" } }, false, ["sign"]);
  eq([a.algorithm.name, a.algorithm.hash], [b.algorithm.name, b.algorithm.hash], "hash as string or object");
  eq(a.algorithm.hash, { name: "SHA-256" }, "canonical hash name");
}

async function boundsAndHostileScripts() {
  const hmac = { name: "HMAC", hash: "SHA-256" };
  // JWK members are copied into Rust, so each has a bound no real key comes near.
  await expectFailure("DataError", () => subtle.importKey("jwk", { kty: "oct", k: "A".repeat(2 << 20) }, hmac, true, ["sign"]),
    "a 2 MiB JWK member");
  await expectFailure("DataError", () => subtle.importKey("jwk", { kty: "oct", k: "AAAA", key_ops: ["sign", "x".repeat(10000)] }, hmac, true, ["sign"]),
    "a 10 kB key_ops entry");
  await expectFailure("SyntaxError", () => subtle.generateKey(hmac, true, ["sign", "s".repeat(1 << 20)]), "a 1 MiB usage");

  // A detached buffer's copy is empty (the spec's "get a copy of the bytes").
  if (typeof ArrayBuffer.prototype.transfer === "function") {
    const buffer = new Uint8Array([1, 2, 3]).buffer;
    const view = new DataView(buffer);
    buffer.transfer();
    const digest = new Uint8Array(await subtle.digest("SHA-256", buffer));
    eq(digest[0], 0xe3, "SHA-256 of a detached buffer is SHA-256 of nothing");
    eq(new Uint8Array(await subtle.digest("SHA-256", view))[0], 0xe3, "and of a DataView over it");
  }

  // A script that replaces built-ins isobar's code might use changes nothing: copies look up no
  // species or constructor, and normalized dictionaries have no prototype to inherit an `iv` from.
  // (Object.prototype.then is another matter: resolving the method's promise with a key or a JWK
  // looks it up, as the spec's promise resolution does everywhere.)
  const poison = () => { throw new Error("isobar ran a script's replacement"); };
  Object.defineProperty(ArrayBuffer.prototype, "constructor", { get: poison, configurable: true });
  Object.defineProperty(Uint8Array.prototype, "constructor", { get: poison, configurable: true });
  Object.defineProperty(Object.prototype, "iv", { get: poison, configurable: true });
  const savedSlice = ArrayBuffer.prototype.slice;
  ArrayBuffer.prototype.slice = poison;
  try {
    const key = await subtle.importKey("raw", new Uint8Array(16), "AES-CBC", true, ["encrypt"]);
    eq(new Uint8Array(await subtle.digest("SHA-256", new Uint8Array(0)))[0], 0xe3, "digest with built-ins replaced");
    eq(key.algorithm.name, "AES-CBC", "keys with built-ins replaced");
    eq((await subtle.encrypt({ name: "AES-CBC", iv: new Uint8Array(16) }, key, new Uint8Array(3))).byteLength, 16,
      "encrypt with built-ins replaced");
  } finally {
    ArrayBuffer.prototype.slice = savedSlice;
    delete ArrayBuffer.prototype.constructor;
    delete Uint8Array.prototype.constructor;
    delete Object.prototype.iv;
  }
}

export default {
  async fetch() {
    await usageAndAlgorithmErrors();
    await lengthErrors();
    await jwkErrors();
    await argumentErrors();
    await webIdlOrder();
    await boundsAndHostileScripts();
    return new Response("ok");
  },
};

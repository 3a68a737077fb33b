// crypto.subtle through the JS API: every algorithm round trips (generate, use, reverse), and
// known answers from the RFCs and FIPS documents give the same bytes as the standards.
import { eq, ok } from "./assert.js";

const subtle = crypto.subtle;
const text = (s) => new TextEncoder().encode(s);
const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
const unhex = (s) => new Uint8Array(s.match(/../g).map((b) => parseInt(b, 16)));
const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

async function knownAnswers() {
  // FIPS 180-2 appendices and RFC 1321 A.5: the digests of "abc", names in any case.
  const abc = text("abc");
  eq(hex(await subtle.digest("SHA-1", abc)), "a9993e364706816aba3e25717850c26c9cd0d89d", "SHA-1(abc)");
  eq(hex(await subtle.digest("sha-256", abc)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "SHA-256(abc)");
  eq(hex(await subtle.digest({ name: "SHA-384" }, abc)),
    "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7", "SHA-384(abc)");
  eq(hex(await subtle.digest("SHA-512", abc.buffer)),
    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
    "SHA-512(abc) of an ArrayBuffer");
  eq(hex(await subtle.digest("MD5", abc)), "900150983cd24fb0d6963f7d28e17f72", "MD5(abc)");
  eq(hex(await subtle.digest("SHA-256", new DataView(text("xxabcxx").buffer, 2, 3))),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "a DataView's bytes only");
  ok((await subtle.digest("SHA-256", abc)) instanceof ArrayBuffer, "digest resolves with an ArrayBuffer");

  // RFC 4231 test case 1: HMAC with a key of 20 0x0b bytes over "Hi There".
  const hmacKey = await subtle.importKey("raw", new Uint8Array(20).fill(0x0b), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
  const mac = await subtle.sign("HMAC", hmacKey, text("Hi There"));
  eq(hex(mac), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", "HMAC-SHA-256 RFC 4231 case 1");
  const hmac512 = await subtle.importKey("raw", new Uint8Array(20).fill(0x0b), { name: "HMAC", hash: { name: "SHA-512" } }, false, ["sign"]);
  eq(hex(await subtle.sign({ name: "HMAC" }, hmac512, text("Hi There"))),
    "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
    "HMAC-SHA-512 RFC 4231 case 1");
  eq(await subtle.verify("HMAC", hmacKey, mac, text("Hi There")), true, "HMAC verifies");
  eq(await subtle.verify("HMAC", hmacKey, mac, text("Hi there")), false, "HMAC of other data does not");

  // RFC 6070 case 1: PBKDF2-HMAC-SHA-1("password", "salt", 1 iteration, 20 bytes).
  const password = await subtle.importKey("raw", text("password"), "PBKDF2", false, ["deriveBits"]);
  eq(hex(await subtle.deriveBits({ name: "PBKDF2", hash: "SHA-1", salt: text("salt"), iterations: 1 }, password, 160)),
    "0c60c80f961f0e71f3a9b524af6012062fe037a6", "PBKDF2 RFC 6070 case 1");

  // RFC 5869 test case 1: HKDF-SHA-256.
  const ikm = await subtle.importKey("raw", new Uint8Array(22).fill(0x0b), "HKDF", false, ["deriveBits"]);
  const okm = await subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: unhex("000102030405060708090a0b0c"), info: unhex("f0f1f2f3f4f5f6f7f8f9") }, ikm, 42 * 8);
  eq(hex(okm), "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865", "HKDF RFC 5869 case 1");

  // RFC 3394 section 4.1: AES-KW of a 128-bit key with a 128-bit KEK.
  const kek = await subtle.importKey("raw", unhex("000102030405060708090a0b0c0d0e0f"), "AES-KW", false, ["wrapKey", "unwrapKey"]);
  const keyData = await subtle.importKey("raw", unhex("00112233445566778899aabbccddeeff"), "AES-CBC", true, ["encrypt"]);
  const wrapped = await subtle.wrapKey("raw", keyData, kek, "AES-KW");
  eq(hex(wrapped), "1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5", "AES-KW RFC 3394 4.1");
  const unwrapped = await subtle.unwrapKey("raw", wrapped, kek, "AES-KW", "AES-CBC", true, ["decrypt"]);
  eq(hex(await subtle.exportKey("raw", unwrapped)), "00112233445566778899aabbccddeeff", "AES-KW unwraps");

  // RFC 8032 section 7.1 test 1: Ed25519 over the empty message, the key imported as a JWK.
  const seed = unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
  const edPublic = unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  const edKey = await subtle.importKey("jwk", { kty: "OKP", crv: "Ed25519", d: b64url(seed), x: b64url(edPublic) }, "Ed25519", false, ["sign"]);
  const edSignature = await subtle.sign("Ed25519", edKey, new Uint8Array(0));
  eq(hex(edSignature),
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    "Ed25519 RFC 8032 test 1");
  const edVerifier = await subtle.importKey("raw", edPublic, { name: "Ed25519" }, true, ["verify"]);
  eq(await subtle.verify("Ed25519", edVerifier, edSignature, new Uint8Array(0)), true, "Ed25519 verifies");

  // RFC 7748 section 6.1: X25519 between Alice and Bob.
  const alice = await subtle.importKey("jwk", {
    kty: "OKP", crv: "X25519",
    d: b64url(unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")),
    x: b64url(unhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")),
  }, "X25519", false, ["deriveBits"]);
  const bob = await subtle.importKey("raw", unhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"), "X25519", true, []);
  eq(hex(await subtle.deriveBits({ name: "X25519", public: bob }, alice, 256)),
    "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742", "X25519 RFC 7748 6.1");
}

async function aesRoundTrips() {
  const data = text("attack at dawn, and bring snacks");
  for (const [name, params] of [
    ["AES-CTR", { counter: new Uint8Array(16), length: 64 }],
    ["AES-CBC", { iv: crypto.getRandomValues(new Uint8Array(16)) }],
    ["AES-GCM", { iv: crypto.getRandomValues(new Uint8Array(12)), additionalData: text("header"), tagLength: 96 }],
  ]) {
    for (const length of [128, 192, 256]) {
      const key = await subtle.generateKey({ name, length }, true, ["encrypt", "decrypt"]);
      eq([key.type, key.algorithm.name, key.algorithm.length], ["secret", name, length], `${name}-${length} key`);
      const algorithm = { name, ...params };
      const ciphertext = await subtle.encrypt(algorithm, key, data);
      ok(hex(ciphertext) !== hex(data), `${name} changes the data`);
      eq(hex(await subtle.decrypt(algorithm, key, ciphertext)), hex(data), `${name}-${length} round trip`);
    }
  }
  // GCM's tag is 12 bytes when asked for 96 bits.
  const gcm = await subtle.generateKey({ name: "AES-GCM", length: 128 }, false, ["encrypt"]);
  const sealed = await subtle.encrypt({ name: "AES-GCM", iv: new Uint8Array(12), tagLength: 96 }, gcm, new Uint8Array(5));
  eq(sealed.byteLength, 5 + 12, "AES-GCM output is the data and the tag");
}

async function hmacRoundTrips() {
  for (const hash of ["SHA-1", "SHA-256", "SHA-384", "SHA-512"]) {
    const key = await subtle.generateKey({ name: "HMAC", hash }, true, ["sign", "verify"]);
    eq([key.algorithm.name, key.algorithm.hash.name], ["HMAC", hash], `HMAC ${hash} algorithm`);
    eq(key.algorithm.length, hash === "SHA-384" || hash === "SHA-512" ? 1024 : 512, `HMAC ${hash} default length`);
    const signature = await subtle.sign("HMAC", key, text("message"));
    eq(await subtle.verify("HMAC", key, signature, text("message")), true, `HMAC ${hash} verifies`);
    const tampered = new Uint8Array(signature);
    tampered[0] ^= 1;
    eq(await subtle.verify("HMAC", key, tampered, text("message")), false, `HMAC ${hash} rejects a changed MAC`);
  }
}

async function rsaRoundTrips() {
  const rsa = (name) => ({ name, modulusLength: 1024, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" });
  const pkcs1 = await subtle.generateKey(rsa("RSASSA-PKCS1-v1_5"), true, ["sign", "verify"]);
  eq(Object.keys(pkcs1), ["privateKey", "publicKey"], "a CryptoKeyPair");
  eq([pkcs1.publicKey.type, pkcs1.privateKey.type], ["public", "private"], "key types");
  eq(pkcs1.publicKey.usages, ["verify"], "the public key takes the public usages");
  eq(pkcs1.privateKey.usages, ["sign"], "the private key the private ones");
  eq(pkcs1.publicKey.extractable, true, "public keys are always extractable");
  eq(pkcs1.privateKey.algorithm.modulusLength, 1024, "modulusLength");
  eq([...pkcs1.privateKey.algorithm.publicExponent], [1, 0, 1], "publicExponent");
  eq(pkcs1.privateKey.algorithm.hash, { name: "SHA-256" }, "hash");
  const signature = await subtle.sign("RSASSA-PKCS1-v1_5", pkcs1.privateKey, text("message"));
  eq(signature.byteLength, 128, "an RSA-1024 signature is 128 bytes");
  eq(await subtle.verify("RSASSA-PKCS1-v1_5", pkcs1.publicKey, signature, text("message")), true, "PKCS#1 v1.5 verifies");
  eq(await subtle.verify("RSASSA-PKCS1-v1_5", pkcs1.publicKey, signature, text("massage")), false, "and not other data");

  const pss = await subtle.generateKey(rsa("RSA-PSS"), false, ["sign", "verify"]);
  const pssSignature = await subtle.sign({ name: "RSA-PSS", saltLength: 32 }, pss.privateKey, text("message"));
  eq(await subtle.verify({ name: "RSA-PSS", saltLength: 32 }, pss.publicKey, pssSignature, text("message")), true, "PSS verifies");

  const oaep = await subtle.generateKey(rsa("RSA-OAEP"), true, ["encrypt", "decrypt", "wrapKey", "unwrapKey"]);
  const label = text("label");
  const ciphertext = await subtle.encrypt({ name: "RSA-OAEP", label }, oaep.publicKey, text("secret"));
  eq(new TextDecoder().decode(await subtle.decrypt({ name: "RSA-OAEP", label }, oaep.privateKey, ciphertext)), "secret", "OAEP round trip");

  // Wrapping an AES key with RSA-OAEP (raw: a JWK is longer than RSA-1024 OAEP can take), and as a
  // JWK with AES-GCM; then unwrapping both.
  const aes = await subtle.generateKey({ name: "AES-GCM", length: 256 }, true, ["encrypt", "decrypt"]);
  const wrapped = await subtle.wrapKey("raw", aes, oaep.publicKey, { name: "RSA-OAEP" });
  const back = await subtle.unwrapKey("raw", wrapped, oaep.privateKey, "RSA-OAEP", "AES-GCM", true, ["decrypt"]);
  eq(hex(await subtle.exportKey("raw", back)), hex(await subtle.exportKey("raw", aes)), "wrapKey/unwrapKey RSA-OAEP round trip");
  const gcm = await subtle.generateKey({ name: "AES-GCM", length: 128 }, false, ["wrapKey", "unwrapKey"]);
  const iv = new Uint8Array(12);
  const wrappedJwk = await subtle.wrapKey("jwk", aes, gcm, { name: "AES-GCM", iv });
  const backJwk = await subtle.unwrapKey("jwk", wrappedJwk, gcm, { name: "AES-GCM", iv }, { name: "AES-GCM" }, true, ["encrypt"]);
  eq(hex(await subtle.exportKey("raw", backJwk)), hex(await subtle.exportKey("raw", aes)), "wrapKey/unwrapKey jwk round trip");
  eq(backJwk.usages, ["encrypt"], "the unwrapped key takes the usages asked for");
}

async function ecRoundTrips() {
  for (const namedCurve of ["P-256", "P-384"]) {
    const pair = await subtle.generateKey({ name: "ECDSA", namedCurve }, true, ["sign", "verify"]);
    eq(pair.privateKey.algorithm, { name: "ECDSA", namedCurve }, `ECDSA ${namedCurve} algorithm`);
    for (const hash of ["SHA-256", "SHA-384"]) {
      const signature = await subtle.sign({ name: "ECDSA", hash }, pair.privateKey, text("message"));
      eq(signature.byteLength, namedCurve === "P-256" ? 64 : 96, "ECDSA signatures are r || s");
      eq(await subtle.verify({ name: "ECDSA", hash }, pair.publicKey, signature, text("message")), true, `ECDSA ${namedCurve} ${hash}`);
    }
    const a = await subtle.generateKey({ name: "ECDH", namedCurve }, false, ["deriveBits", "deriveKey"]);
    const b = await subtle.generateKey({ name: "ECDH", namedCurve }, false, ["deriveBits"]);
    eq(a.publicKey.usages, [], "ECDH public keys have no usages");
    const ab = await subtle.deriveBits({ name: "ECDH", public: b.publicKey }, a.privateKey, null);
    const ba = await subtle.deriveBits({ name: "ECDH", public: a.publicKey }, b.privateKey);
    eq(ab.byteLength, namedCurve === "P-256" ? 32 : 48, "ECDH with no length gives the whole secret");
    eq(hex(ab), hex(ba), `ECDH ${namedCurve} agrees`);
    const shared = await subtle.deriveKey({ name: "ECDH", public: b.publicKey }, a.privateKey, { name: "AES-GCM", length: 128 }, true, ["encrypt"]);
    eq(hex(await subtle.exportKey("raw", shared)), hex(ab).slice(0, 32), "deriveKey takes the first bits");
  }
}

async function curve25519RoundTrips() {
  const ed = await subtle.generateKey("Ed25519", true, ["sign", "verify"]);
  eq(ed.privateKey.algorithm, { name: "Ed25519" }, "Ed25519 algorithm");
  const signature = await subtle.sign({ name: "Ed25519" }, ed.privateKey, text("message"));
  eq(await subtle.verify("Ed25519", ed.publicKey, signature, text("message")), true, "Ed25519 verifies");
  eq(await subtle.verify("Ed25519", ed.publicKey, signature, text("messages")), false, "and not other data");

  const a = await subtle.generateKey({ name: "X25519" }, true, ["deriveBits"]);
  const b = await subtle.generateKey("X25519", true, ["deriveBits"]);
  eq(hex(await subtle.deriveBits({ name: "X25519", public: b.publicKey }, a.privateKey, 256)),
    hex(await subtle.deriveBits({ name: "X25519", public: a.publicKey }, b.privateKey, 256)), "X25519 agrees");
}

async function kdfRoundTrips() {
  const password = await subtle.importKey("raw", text("correct horse"), { name: "PBKDF2" }, false, ["deriveKey", "deriveBits"]);
  eq([password.type, password.extractable, password.algorithm.name], ["secret", false, "PBKDF2"], "a PBKDF2 key");
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const params = { name: "PBKDF2", hash: "SHA-256", salt, iterations: 1000 };
  const aes = await subtle.deriveKey(params, password, { name: "AES-GCM", length: 256 }, true, ["encrypt", "decrypt"]);
  eq(aes.algorithm, { name: "AES-GCM", length: 256 }, "derived AES key");
  eq(hex(await subtle.exportKey("raw", aes)), hex(await subtle.deriveBits(params, password, 256)), "deriveKey = deriveBits");
  const hmac = await subtle.deriveKey(params, password, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  eq(hmac.algorithm.length, 512, "derived HMAC key takes the hash's block length");

  const ikm = await subtle.importKey("raw", crypto.getRandomValues(new Uint8Array(32)), "HKDF", false, ["deriveKey"]);
  const hkdf = { name: "HKDF", hash: "SHA-384", salt: new Uint8Array(0), info: text("context") };
  const key = await subtle.deriveKey(hkdf, ikm, { name: "AES-CBC", length: 128 }, false, ["encrypt", "decrypt"]);
  const iv = new Uint8Array(16);
  const ciphertext = await subtle.encrypt({ name: "AES-CBC", iv }, key, text("derived"));
  eq(new TextDecoder().decode(await subtle.decrypt({ name: "AES-CBC", iv }, key, ciphertext)), "derived", "an HKDF-derived key works");
}

async function timingSafeEqual() {
  eq(subtle.timingSafeEqual(text("abc"), text("abc")), true, "equal buffers");
  eq(subtle.timingSafeEqual(text("abc"), text("abd")), false, "different buffers");
  eq(subtle.timingSafeEqual(new Uint8Array(0), new ArrayBuffer(0)), true, "empty buffers");
}

export default {
  async fetch() {
    await knownAnswers();
    await aesRoundTrips();
    await hmacRoundTrips();
    await rsaRoundTrips();
    await ecRoundTrips();
    await curve25519RoundTrips();
    await kdfRoundTrips();
    await timingSafeEqual();
    return new Response("ok");
  },
};

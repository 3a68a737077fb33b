// importKey/exportKey in every format the engine supports (raw, pkcs8, spki, jwk as objects), and
// what a CryptoKey reports: type, extractable, a cached algorithm object, cached usages.
import { eq, ok } from "./assert.js";

const subtle = crypto.subtle;
const text = (s) => new TextEncoder().encode(s);
const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");

// Exports `key` in `format`, imports it back with `algorithm`, and exports again: the same bytes
// (or the same JWK) must come out.
async function reimport(format, key, algorithm, usages) {
  const exported = await subtle.exportKey(format, key);
  const imported = await subtle.importKey(format, exported, algorithm, true, usages);
  const again = await subtle.exportKey(format, imported);
  if (format === "jwk") eq(again, exported, `${algorithm.name ?? algorithm} jwk round trip`);
  else eq(hex(again), hex(exported), `${algorithm.name ?? algorithm} ${format} round trip`);
  return imported;
}

async function secretKeys() {
  const raw = crypto.getRandomValues(new Uint8Array(32));
  const aes = await subtle.importKey("raw", raw, "aes-gcm", true, ["encrypt", "decrypt"]);
  eq(aes.algorithm, { name: "AES-GCM", length: 256 }, "names come back in the spec's casing");
  eq(hex(await subtle.exportKey("raw", aes)), hex(raw), "raw export gives the bytes back");
  const jwk = await subtle.exportKey("jwk", aes);
  eq(Object.keys(jwk), ["alg", "ext", "k", "key_ops", "kty"], "JWK members in dictionary order");
  eq([jwk.kty, jwk.alg, jwk.ext, jwk.key_ops], ["oct", "A256GCM", true, ["encrypt", "decrypt"]], "AES JWK");
  await reimport("jwk", aes, "AES-GCM", ["encrypt", "decrypt"]);
  for (const [name, alg] of [["AES-CBC", "A128CBC"], ["AES-CTR", "A128CTR"], ["AES-KW", "A128KW"]]) {
    const usages = name === "AES-KW" ? ["wrapKey"] : ["encrypt"];
    const key = await subtle.generateKey({ name, length: 128 }, true, usages);
    eq((await subtle.exportKey("jwk", key)).alg, alg, `${name} JWK alg`);
    await reimport("raw", key, name, usages);
    await reimport("jwk", key, { name }, usages);
  }

  const hmac = await subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-384" }, true, ["sign"]);
  eq(hmac.algorithm, { name: "HMAC", hash: { name: "SHA-384" }, length: 256 }, "HMAC length from the key data");
  const hmacJwk = await subtle.exportKey("jwk", hmac);
  eq(hmacJwk.alg, "HS384", "HMAC JWK alg");
  await reimport("jwk", hmac, { name: "HMAC", hash: "SHA-384" }, ["sign"]);
  // A JWK given as a plain object with extra members imports; `key_ops` may allow more usages.
  const fromObject = await subtle.importKey("jwk", { ...hmacJwk, extra: "ignored", key_ops: ["sign", "verify"] },
    { name: "HMAC", hash: { name: "SHA-384" } }, false, ["verify"]);
  eq([fromObject.extractable, fromObject.usages], [false, ["verify"]], "JWK import with a subset of key_ops");

  for (const name of ["PBKDF2", "HKDF"]) {
    const key = await subtle.importKey("raw", text("secret"), name, false, ["deriveBits"]);
    eq([key.type, key.algorithm], ["secret", { name }], `${name} key`);
  }
}

async function asymmetricKeys() {
  for (const name of ["RSASSA-PKCS1-v1_5", "RSA-PSS", "RSA-OAEP"]) {
    const usages = name === "RSA-OAEP" ? [["encrypt"], ["decrypt"]] : [["verify"], ["sign"]];
    const pair = await subtle.generateKey(
      { name, modulusLength: 1024, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-384" }, true, [...usages[0], ...usages[1]]);
    const algorithm = { name, hash: "SHA-384" };
    await reimport("spki", pair.publicKey, algorithm, usages[0]);
    await reimport("pkcs8", pair.privateKey, algorithm, usages[1]);
    const publicJwk = await subtle.exportKey("jwk", pair.publicKey);
    eq([publicJwk.kty, publicJwk.e, publicJwk.d], ["RSA", "AQAB", undefined], `${name} public JWK`);
    eq(publicJwk.alg, { "RSASSA-PKCS1-v1_5": "RS384", "RSA-PSS": "PS384", "RSA-OAEP": "RSA-OAEP-384" }[name], `${name} JWK alg`);
    const privateJwk = await subtle.exportKey("jwk", pair.privateKey);
    eq(Object.keys(privateJwk), ["alg", "d", "dp", "dq", "e", "ext", "key_ops", "kty", "n", "p", "q", "qi"], "RSA JWK members");
    await reimport("jwk", pair.privateKey, algorithm, usages[1]);
  }

  for (const namedCurve of ["P-256", "P-384"]) {
    for (const name of ["ECDSA", "ECDH"]) {
      const usages = name === "ECDSA" ? [["verify"], ["sign"]] : [[], ["deriveBits"]];
      const pair = await subtle.generateKey({ name, namedCurve }, true, [...usages[0], ...usages[1]]);
      const algorithm = { name, namedCurve };
      const raw = await reimport("raw", pair.publicKey, algorithm, usages[0]);
      eq(raw.type, "public", "raw EC import is a public key");
      eq((await subtle.exportKey("raw", pair.publicKey)).byteLength, namedCurve === "P-256" ? 65 : 97, "uncompressed point");
      await reimport("spki", pair.publicKey, algorithm, usages[0]);
      await reimport("pkcs8", pair.privateKey, algorithm, usages[1]);
      await reimport("jwk", pair.privateKey, algorithm, usages[1]);
      const jwk = await subtle.exportKey("jwk", pair.publicKey);
      eq([jwk.kty, jwk.crv, typeof jwk.x, typeof jwk.y, jwk.d], ["EC", namedCurve, "string", "string", undefined], "EC public JWK");
    }
  }

  for (const name of ["Ed25519", "X25519"]) {
    const usages = name === "Ed25519" ? [["verify"], ["sign"]] : [[], ["deriveBits"]];
    const pair = await subtle.generateKey(name, true, [...usages[0], ...usages[1]]);
    await reimport("raw", pair.publicKey, name, usages[0]);
    await reimport("spki", pair.publicKey, name, usages[0]);
    await reimport("pkcs8", pair.privateKey, { name }, usages[1]);
    await reimport("jwk", pair.privateKey, name, usages[1]);
    const jwk = await subtle.exportKey("jwk", pair.publicKey);
    eq([jwk.kty, jwk.crv], ["OKP", name], `${name} JWK`);
  }
}

async function keyAttributes() {
  const pair = await subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify", "sign"]);
  const key = pair.privateKey;
  ok(key instanceof CryptoKey, "a CryptoKey");
  eq(Object.prototype.toString.call(key), "[object CryptoKey]", "toStringTag");
  eq([key.type, key.extractable, key.usages], ["private", false, ["sign"]], "private key attributes, usages deduplicated");
  ok(key.algorithm === key.algorithm, "algorithm is the same object each time");
  ok(key.usages === key.usages, "usages is the same array each time");
  ok(pair.publicKey.algorithm !== key.algorithm, "each key has its own algorithm object");
  key.algorithm.namedCurve = "changed by the script";
  eq(key.algorithm.namedCurve, "changed by the script", "the cached object is the script's to change");
  const signature = await subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, text("m"));
  eq(await subtle.verify({ name: "ECDSA", hash: "SHA-256" }, pair.publicKey, signature, text("m")), true,
    "changing algorithm does not change the key");
  ok(Object.keys(CryptoKey.prototype).includes("algorithm"), "attributes are enumerable");
  let threw = false;
  try {
    Object.getOwnPropertyDescriptor(CryptoKey.prototype, "type").get.call({});
  } catch (e) {
    threw = e instanceof TypeError;
  }
  ok(threw, "a getter on a non-key is a TypeError");
}

export default {
  async fetch() {
    await secretKeys();
    await asymmetricKeys();
    await keyAttributes();
    return new Response("ok");
  },
};

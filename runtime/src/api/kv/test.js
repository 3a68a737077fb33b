// KVNamespace against a real embedded store (api/kv/tests.rs drives the store and its clock).
// Each path is one phase; the Rust side moves the store's clock between phases.
import { eq, ok, rejects } from "./assert.js";

async function semantics(kv) {
  eq(kv.constructor.name, "KVNamespace", "env.KV is a KVNamespace");
  eq(typeof globalThis.KVNamespace, "undefined", "not a global, as in workerd");
  eq(Object.prototype.toString.call(kv), "[object KVNamespace]", "tag");
  let threw = false;
  try { new kv.constructor(); } catch (e) { threw = e instanceof TypeError; }
  ok(threw, "KVNamespace cannot be constructed by scripts");

  eq(await kv.get("missing"), null, "a missing key");
  eq(await kv.getWithMetadata("missing"), { value: null, metadata: null, cacheStatus: null }, "missing with metadata");
  eq(await kv.put("text", "héllo"), undefined, "put resolves with undefined");
  eq(await kv.get("text"), "héllo", "text is the default type");
  eq(await kv.get("text", "text"), "héllo", "text");
  eq(await kv.get("text", { type: "text", cacheTtl: 60 }), "héllo", "options object with cacheTtl");
  const buffer = await kv.get("text", "arrayBuffer");
  ok(buffer instanceof ArrayBuffer, "arrayBuffer gives an ArrayBuffer");
  eq(buffer.byteLength, 6, "UTF-8 bytes");
  const stream = await kv.get("text", "stream");
  ok(stream instanceof ReadableStream, "stream gives a ReadableStream");
  eq(await new Response(stream).text(), "héllo", "the stream's bytes");

  await kv.put("json", JSON.stringify({ a: [1, 2], b: "c" }));
  eq(await kv.get("json", "json"), { a: [1, 2], b: "c" }, "json");
  eq(await kv.get("json", { type: "json" }), { a: [1, 2], b: "c" }, "json in options");
  await rejects(kv.get("text", "json"), SyntaxError, "json of a non-JSON value");
  const badType = await rejects(kv.get("text", "blob"), TypeError, "unknown type");
  ok(badType.message.startsWith("Unknown response type."), badType.message);

  await kv.put("bytes", new Uint8Array([0, 1, 255]));
  eq([...new Uint8Array(await kv.get("bytes", "arrayBuffer"))], [0, 1, 255], "a Uint8Array value");
  await kv.put("buffer", new Uint16Array([1]).buffer);
  eq([...new Uint8Array(await kv.get("buffer", "arrayBuffer"))], [1, 0], "an ArrayBuffer value");
  await kv.put("view", new DataView(new Uint8Array([9, 8, 7]).buffer, 1, 2));
  eq([...new Uint8Array(await kv.get("view", "arrayBuffer"))], [8, 7], "a DataView's bytes only");
  const body = new ReadableStream({
    start(c) {
      c.enqueue(new TextEncoder().encode("str"));
      c.enqueue(new TextEncoder().encode("eamed"));
      c.close();
    },
  });
  await kv.put("streamed", body);
  eq(await kv.get("streamed"), "streamed", "a ReadableStream value is read fully");
  const valueError = await rejects(kv.put("k", 42), TypeError, "a number is not a value");
  ok(valueError.message.includes("accepts only strings"), valueError.message);
  await rejects(kv.put("k", {}), TypeError, "an object is not a value");

  await kv.put("meta", "v", { metadata: { owner: "me", n: 1 } });
  eq(await kv.getWithMetadata("meta"), { value: "v", metadata: { owner: "me", n: 1 }, cacheStatus: null }, "metadata");
  eq(await kv.getWithMetadata("meta", "arrayBuffer").then((r) => r.value.byteLength), 1, "typed value with metadata");
  await kv.put("meta", "w");
  eq((await kv.getWithMetadata("meta")).metadata, null, "a put without metadata clears it");

  await kv.put("gone", "x");
  eq(await kv.delete("gone"), undefined, "delete resolves with undefined");
  eq(await kv.get("gone"), null, "deleted");
  await kv.delete("never-there");

  eq(await kv.get(42), null, "keys are converted to strings");
  await kv.put(42, "n");
  eq(await kv.get("42"), "n", "a number key is its string");

  // Other tenants' and other bindings' keys are apart (KV2 is another namespace).
  eq(await kv.get("text"), "héllo", "still there");
}

async function expirePut(kv) {
  await kv.put("ttl", "soon", { expirationTtl: 60 });
  await kv.put("abs", "later", { expiration: Math.floor(Date.now() / 1000) + 3600, metadata: "m" });
  const page = await kv.list({ prefix: "abs" });
  eq(page.keys.length, 1, "listed");
  ok(page.keys[0].expiration >= Math.floor(Date.now() / 1000) + 3599, "list shows the expiration");
  eq(page.keys[0].metadata, "m", "list shows the metadata");
  eq(await kv.get("ttl"), "soon", "not expired yet");
}

async function expireCheck(kv) {
  eq(await kv.get("ttl"), null, "expired after the store's clock passed 60 s");
  eq(await kv.get("abs"), "later", "the absolute expiration is an hour away");
  eq((await kv.list({ prefix: "ttl" })).keys.length, 0, "expired keys are not listed");
}

async function listing(kv) {
  const count = 2500;
  const pending = [];
  for (let i = 0; i < count; i++) {
    pending.push(kv.put(`item:${String(i).padStart(5, "0")}`, "v", i % 500 === 0 ? { metadata: { i } } : undefined));
    if (pending.length === 500) {
      await Promise.all(pending);
      pending.length = 0;
    }
  }
  await Promise.all(pending);
  await kv.put("other", "x");
  const names = [];
  let cursor;
  let pages = 0;
  for (;;) {
    const page = await kv.list({ prefix: "item:", cursor });
    pages++;
    ok(page.keys.length <= 1000, "at most 1000 keys a page");
    eq(page.cacheStatus, null, "cacheStatus");
    for (const key of page.keys) names.push(key.name);
    if (page.list_complete) {
      ok(!("cursor" in page), "a complete page has no cursor");
      break;
    }
    ok(typeof page.cursor === "string" && page.cursor.length > 0, "an incomplete page has a cursor");
    cursor = page.cursor;
    ok(pages < 10, "list terminates");
  }
  eq(names.length, count, "every key once");
  const sorted = [...names].sort();
  eq(names, sorted, "lexicographic order");
  eq(new Set(names).size, count, "no duplicates");

  const small = await kv.list({ prefix: "item:", limit: 3 });
  eq(small.keys.map((k) => k.name), ["item:00000", "item:00001", "item:00002"], "limit");
  eq(small.keys[0].metadata, { i: 0 }, "metadata in list");
  ok(!("metadata" in small.keys[1]), "no metadata key without metadata");
  ok(!("expiration" in small.keys[1]), "no expiration key without expiration");
  eq(small.list_complete, false, "more to come");
  const next = await kv.list({ prefix: "item:", limit: 2, cursor: small.cursor });
  eq(next.keys.map((k) => k.name), ["item:00003", "item:00004"], "the cursor continues after the page");
  const all = await kv.list();
  eq(all.keys.length, 1000, "the default limit is 1000");
}

async function limits(kv) {
  const isPlainError = (e) => e.constructor === Error;
  let e = await rejects(kv.get(""), TypeError, "empty key");
  eq(e.message, "Key name cannot be empty.", "empty key message");
  e = await rejects(kv.put(".", "v"), TypeError, "dot key");
  ok(e.message.includes("not allowed"), e.message);
  await rejects(kv.delete(".."), TypeError, "dot-dot key");
  eq(await kv.get("..."), null, "three dots is a key");
  await kv.put("k".repeat(512), "max key");
  eq(await kv.get("k".repeat(512)), "max key", "a 512-byte key");
  e = await rejects(kv.get("k".repeat(513)), Error, "513-byte key");
  ok(isPlainError(e) && e.message.includes("414") && e.message.includes("513"), e.message);
  await rejects(kv.delete("k".repeat(513)), Error, "513-byte key on delete");
  e = await rejects(kv.put("é".repeat(257), "v"), Error, "514 bytes of UTF-8");
  ok(e.message.includes("514"), e.message);

  const big = new Uint8Array(25 * 1024 * 1024 + 1);
  e = await rejects(kv.put("big", big), Error, "value over 25 MiB");
  ok(isPlainError(e) && e.message.includes("413") && e.message.includes("26214401"), e.message);
  const bigStream = new ReadableStream({
    pull(c) { c.enqueue(new Uint8Array(1024 * 1024)); },
  });
  e = await rejects(kv.put("big", bigStream), Error, "a stream over 25 MiB");
  ok(e.message.includes("413"), e.message);
  await kv.put("max", big.subarray(1));
  eq((await kv.get("max", "arrayBuffer")).byteLength, 25 * 1024 * 1024, "exactly 25 MiB is allowed");

  e = await rejects(kv.put("m", "v", { metadata: "x".repeat(1023) }), Error, "metadata over 1024 bytes");
  ok(e.message.includes("metadata length of 1025"), e.message);
  await kv.put("m", "v", { metadata: "x".repeat(1022) });
  await rejects(kv.put("m", "v", { metadata: 1n }), TypeError, "metadata JSON cannot hold");

  e = await rejects(kv.put("t", "v", { expirationTtl: 59 }), Error, "expirationTtl under 60");
  ok(e.message.includes("Expiration TTL must be at least 60"), e.message);
  e = await rejects(kv.put("t", "v", { expiration: Math.floor(Date.now() / 1000) + 10 }), Error, "expiration too soon");
  ok(e.message.includes("at least 60 seconds in the future"), e.message);
  await rejects(kv.put("t", "v", { expirationTtl: NaN }), TypeError, "NaN TTL");
  e = await rejects(kv.get("k", { cacheTtl: 10 }), Error, "cacheTtl under 30");
  ok(e.message.includes("Cache TTL"), e.message);

  e = await rejects(kv.list({ limit: 0 }), Error, "limit 0");
  ok(e.message.includes("between 1 and 1000"), e.message);
  await rejects(kv.list({ limit: 1001 }), Error, "limit 1001");
  await rejects(kv.list({ prefix: "p".repeat(513) }), Error, "prefix over 512 bytes");
  await rejects(kv.list({ cursor: "not a cursor!" }), Error, "a cursor that is not ours");
}

async function concurrent(kv) {
  // Many operations in flight at once, in one turn; each settles with its own answer.
  const keys = [];
  for (let i = 0; i < 200; i++) keys.push(`c${i}`);
  await Promise.all(keys.map((k) => kv.put(k, k.toUpperCase())));
  const values = await Promise.all(keys.map((k) => kv.get(k)));
  eq(values, keys.map((k) => k.toUpperCase()), "every get answered with its own value");
}

export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    const phases = {
      "/semantics": semantics,
      "/expire-put": expirePut,
      "/expire-check": expireCheck,
      "/list": listing,
      "/limits": limits,
      "/concurrent": concurrent,
    };
    await phases[path](env.KV);
    return new Response("ok");
  },
};

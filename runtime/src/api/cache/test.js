// The Cache API against a real cache store (api/cache/tests.rs drives the store and its clock,
// and runs this script as two tenants). Each path is one phase.
import { eq, ok, rejects, throws } from "./assert.js";

const BASE = "https://cache.test";
const fresh = (body, headers = {}, status = 200) =>
  new Response(body, { status, headers: { "cache-control": "max-age=60", ...headers } });
const isPlainError = (e) => e.constructor === Error;

async function shapes() {
  ok(typeof caches === "object" && caches !== null, "caches is a global");
  ok(caches instanceof CacheStorage, "caches is a CacheStorage");
  ok(caches.default instanceof Cache, "caches.default is a Cache");
  eq(caches.default === caches.default, true, "caches.default is one object");
  eq(Object.prototype.toString.call(caches), "[object CacheStorage]", "CacheStorage tag");
  eq(Object.prototype.toString.call(caches.default), "[object Cache]", "Cache tag");
  eq(Object.keys(globalThis).includes("caches"), false, "not enumerable");
  throws(() => new Cache(), TypeError, "Cache cannot be constructed");
  throws(() => new CacheStorage(), TypeError, "CacheStorage cannot be constructed");
  const named = await caches.open("assets");
  ok(named instanceof Cache && named !== caches.default, "open() gives a Cache");
  // Not implemented, as in workerd: a plain Error, thrown at once.
  let e = throws(() => caches.default.add("https://x.test/"), Error, "add");
  ok(isPlainError(e) && e.message === "Failed to execute 'add' on 'Cache': the method is not implemented.", e.message);
  throws(() => caches.default.keys(), Error, "keys");
  throws(() => caches.default.matchAll(), Error, "matchAll");
  e = throws(() => caches.has("x"), Error, "CacheStorage.has");
  ok(e.message.includes("'has' on 'CacheStorage'"), e.message);
  throws(() => caches.match("https://x.test/"), Error, "CacheStorage.match");
  // Names: shorter than 1024 bytes.
  await caches.open("n".repeat(1023));
  e = await rejects(caches.open("n".repeat(1024)), TypeError, "a 1024-byte name");
  eq(e.message, "Cache name is too long.", "name message");
  await rejects(caches.open("é".repeat(512)), TypeError, "1024 bytes of UTF-8");
  await rejects(caches.open("n".repeat(10_000_000)), TypeError, "a huge name");
  const objectName = await caches.open({ toString: () => "from-object" });
  ok(objectName instanceof Cache, "the name is converted to a string");
  // structuredClone refuses host objects.
  throws(() => structuredClone(caches.default), DOMException, "a Cache is not cloneable");
}

async function semantics() {
  const cache = caches.default;
  const url = `${BASE}/page`;
  eq(await cache.match(url), undefined, "a miss is undefined");
  const response = fresh("hello", { "x-a": "1" });
  eq(await cache.put(url, response), undefined, "put resolves with undefined");
  eq(response.bodyUsed, true, "put consumes the response body");

  const hit = await cache.match(url);
  ok(hit instanceof Response, "a hit is a Response");
  eq(hit.status, 200, "status");
  eq(await hit.text(), "hello", "body");
  eq(hit.headers.get("cf-cache-status"), "HIT", "cf-cache-status");
  eq(hit.headers.get("x-a"), "1", "stored header");
  eq(hit.headers.get("content-type"), "text/plain;charset=UTF-8", "the implied content type was stored");
  eq(hit.type, "default", "type");
  throws(() => hit.headers.set("x-b", "2"), TypeError, "the headers of a cached response are immutable");
  const again = await cache.match(url);
  eq(await again.text(), "hello", "every match gets its own body");
  eq((await cache.match(new Request(url))).status, 200, "a Request as the key");
  eq((await cache.match(new URL(url))).status, 200, "a URL object as the key");
  eq((await cache.match(`${url}?q=1`)), undefined, "the query is part of the key");
  eq((await cache.match("HTTPS://CACHE.TEST/page")).status, 200, "keys are normalised URLs");

  // Stream bodies are read whole; statuses and headers are kept.
  const stream = new ReadableStream({
    start(c) {
      c.enqueue(new TextEncoder().encode("str"));
      c.enqueue(new TextEncoder().encode("eamed"));
      c.close();
    },
  });
  await cache.put(`${BASE}/stream`, fresh(stream));
  eq(await (await cache.match(`${BASE}/stream`)).text(), "streamed", "a stream body");
  await cache.put(`${BASE}/missing`, fresh("gone", {}, 404));
  eq((await cache.match(`${BASE}/missing`)).status, 404, "a 404 is kept with its status");
  await cache.put(`${BASE}/empty`, fresh(null, {}, 204));
  const empty = await cache.match(`${BASE}/empty`);
  eq([empty.status, empty.body], [204, null], "a null-body status has no body");
  await cache.put(`${BASE}/bytes`, fresh(new Uint8Array([0, 1, 255])));
  eq([...new Uint8Array(await (await cache.match(`${BASE}/bytes`)).arrayBuffer())], [0, 1, 255], "bytes");
  await cache.put(`${BASE}/page`, fresh("replaced"));
  eq(await (await cache.match(url)).text(), "replaced", "put replaces");

  // What put refuses: TypeErrors, before the body is read.
  let e = await rejects(cache.put(new Request(url, { method: "POST", body: "x" }), fresh("p")), TypeError, "POST");
  eq(e.message, "Cannot cache response to non-GET request.", "non-GET message");
  const partial = fresh("part", {}, 206);
  e = await rejects(cache.put(url, partial), TypeError, "206");
  eq(e.message, "Cannot cache response to a range request (206 Partial Content).", "206 message");
  eq(partial.bodyUsed, false, "a refused put leaves the body");
  e = await rejects(cache.put(url, fresh("v", { vary: "Accept, *" })), TypeError, "Vary *");
  eq(e.message, "Cannot cache response with 'Vary: *' header.", "Vary message");
  e = await rejects(cache.put(url, Response.error()), TypeError, "an error response");
  eq(e.message, "Cache is unable to store an error response", "error response message");
  e = await rejects(cache.put(url, "not a response"), TypeError, "not a Response");
  ok(e.message.includes("parameter 2 is not of type 'Response'"), e.message);
  await rejects(cache.put(url, { status: 200, headers: {} }), TypeError, "a Response look-alike");
  const used = fresh("u");
  await used.text();
  e = await rejects(cache.put(url, used), TypeError, "a used body");
  ok(e.message.startsWith("Body has already been used"), e.message);
  e = await rejects(cache.match("not a url"), TypeError, "a relative URL");
  eq(e.message, "Invalid URL. Cache API keys must be fully-qualified, valid URLs.", "URL message");
  await rejects(cache.put("ftp://cache.test/x", fresh("f")), TypeError, "an ftp: URL");
  eq(await (await cache.match(url)).text(), "replaced", "nothing above changed the entry");

  // What put accepts but does not store, as Workers does.
  const notModified = new Response(null, { status: 304, headers: { "cache-control": "max-age=60" } });
  eq(await cache.put(`${BASE}/304`, notModified), undefined, "a 304 put resolves");
  eq(await cache.match(`${BASE}/304`), undefined, "a 304 is not stored");
  await cache.put(`${BASE}/no-store`, new Response("n", { headers: { "cache-control": "no-store" } }));
  eq(await cache.match(`${BASE}/no-store`), undefined, "no-store");
  await cache.put(`${BASE}/private`, new Response("p", { headers: { "cache-control": "private, max-age=60" } }));
  eq(await cache.match(`${BASE}/private`), undefined, "private");
  await cache.put(`${BASE}/cookie`, fresh("c", { "set-cookie": "session=1" }));
  eq(await cache.match(`${BASE}/cookie`), undefined, "Set-Cookie");
  await cache.put(`${BASE}/cookie`, new Response("c", {
    headers: { "cache-control": "private=Set-Cookie, max-age=60", "set-cookie": "session=1" },
  }));
  const cookieless = await cache.match(`${BASE}/cookie`);
  eq([await cookieless.text(), cookieless.headers.get("set-cookie")], ["c", null], "private=Set-Cookie drops it");
  // Vary other than * is stored but not honoured, as on Workers.
  await cache.put(`${BASE}/vary`, fresh("v", { vary: "Accept" }));
  const varied = await cache.match(new Request(`${BASE}/vary`, { headers: { accept: "image/png" } }));
  eq([varied.status, varied.headers.get("vary")], [200, "Accept"], "Vary is not part of the key");

  // Methods: match and delete answer undefined/false for non-GET unless ignoreMethod.
  const post = new Request(url, { method: "POST" });
  eq(await cache.match(post), undefined, "a POST matches nothing");
  eq((await cache.match(post, { ignoreMethod: true })).status, 200, "ignoreMethod");
  eq(await cache.delete(post), false, "a POST deletes nothing");
  eq((await cache.match(url)).status, 200, "still there");
  e = await rejects(cache.match(url, { ignoreSearch: true }), Error, "ignoreSearch");
  ok(isPlainError(e) && e.message === "The 'ignoreSearch' field on 'CacheQueryOptions' is not implemented.", e.message);
  await rejects(cache.delete(url, { ignoreVary: true }), Error, "ignoreVary");
  await rejects(cache.match(url, "options"), TypeError, "options must be an object");
  eq((await cache.match(url, { ignoreSearch: undefined })).status, 200, "an undefined field is absent");
  eq(await cache.delete(post, { ignoreMethod: true }), true, "delete with ignoreMethod");
  eq(await cache.match(url), undefined, "deleted");
  await cache.put(url, fresh("back"));
  eq(await cache.delete(url), true, "delete says it removed a fresh entry");
  eq(await cache.delete(url), false, "and false once it is gone");

  // Named caches are apart from each other and from caches.default.
  await caches.default.put(`${BASE}/shared`, fresh("default"));
  const named = await caches.open("default");
  eq(await named.match(`${BASE}/shared`), undefined, "open('default') is not caches.default");
  await named.put(`${BASE}/shared`, fresh("named"));
  eq(await (await (await caches.open("default")).match(`${BASE}/shared`)).text(), "named", "the same name, the same cache");
  eq(await (await caches.default.match(`${BASE}/shared`)).text(), "default", "caches.default kept its own");
  eq(await (await caches.open("other")).match(`${BASE}/shared`), undefined, "another name, another cache");
}

async function expirePut() {
  await caches.default.put(`${BASE}/ttl`, new Response("short", { headers: { "cache-control": "max-age=60" } }));
  await caches.default.put(`${BASE}/long`, new Response("long", { headers: { "cache-control": "max-age=600, s-maxage=3600" } }));
  eq(await (await caches.default.match(`${BASE}/ttl`)).text(), "short", "fresh");
}

async function expireCheck() {
  eq(await caches.default.match(`${BASE}/ttl`), undefined, "expired after the store's clock passed max-age");
  eq(await caches.default.delete(`${BASE}/ttl`), false, "an expired entry is not deleted");
  eq(await (await caches.default.match(`${BASE}/long`)).text(), "long", "s-maxage wins and has not passed");
}

async function tenantPut() {
  await caches.default.put(`${BASE}/mine`, fresh("tenant a"));
  await (await caches.open("named")).put(`${BASE}/mine`, fresh("tenant a, named"));
  eq(await (await caches.default.match(`${BASE}/mine`)).text(), "tenant a", "stored");
}

async function tenantCheck() {
  eq(await caches.default.match(`${BASE}/mine`), undefined, "another tenant's entry is not seen");
  eq(await (await caches.open("named")).match(`${BASE}/mine`), undefined, "nor in a cache of the same name");
  eq(await caches.default.delete(`${BASE}/mine`, { ignoreMethod: true }), false, "nor deleted");
}

async function tenantStill() {
  eq(await (await caches.default.match(`${BASE}/mine`)).text(), "tenant a", "the owner still has it");
}

async function hostile() {
  const cache = caches.default;
  // Over the store's entry limit (1 MiB in this test): an Error, and the cache still works.
  let e = await rejects(cache.put(`${BASE}/big`, fresh(new Uint8Array(2 * 1024 * 1024))), Error, "a body over the limit");
  ok(isPlainError(e) && e.message.includes("at most 1048576 bytes per entry"), e.message);
  // A body that never ends is read up to isobar's bound and no further.
  const chunk = new Uint8Array(1024 * 1024);
  const endless = new ReadableStream({ pull(c) { c.enqueue(chunk); } });
  e = await rejects(cache.put(`${BASE}/endless`, fresh(endless)), Error, "an endless body");
  ok(e instanceof RangeError, `${e.constructor.name}: ${e.message}`);
  eq(await cache.match(`${BASE}/endless`), undefined, "nothing stored");
  // A key longer than the cache keeps.
  e = await rejects(cache.match(`${BASE}/${"k".repeat(20000)}`), TypeError, "a 20 KB URL");
  ok(e.message.startsWith("Invalid URL"), e.message);
  await rejects(cache.put(`${BASE}/${"k".repeat(20000)}`, fresh("x")), TypeError, "put with a 20 KB URL");
  // Odd but valid keys.
  const odd = [`${BASE}/é/%00/${"x".repeat(1000)}`, `${BASE}/?a=1&a=2#fragment`, "http://[::1]:8080/v6", `${BASE}/\u{1F600}`];
  for (const key of odd) await cache.put(key, fresh(key));
  for (const key of odd) eq(await (await cache.match(key)).text(), key, `odd key ${key.slice(0, 40)}`);
  // Odd arguments.
  for (const bad of [undefined, null, 42, {}, Symbol("s")]) {
    await rejects(cache.match(bad), TypeError, `match(${String(bad)})`);
  }
  await rejects(Cache.prototype.match.call({}, `${BASE}/x`), TypeError, "match on a non-Cache");
  const weird = new Response("w", { headers: { "cache-control": "max-age=60", "x-bytes": "\u00ff\u00e9" } });
  await cache.put(`${BASE}/latin1`, weird);
  eq((await cache.match(`${BASE}/latin1`)).headers.get("x-bytes"), "\u00ff\u00e9", "header bytes round-trip");
  // As many headers as a response may send (cache-control, content-type and 998 more), and one
  // more is a TypeError.
  const many = new Headers({ "cache-control": "max-age=60" });
  for (let i = 0; i < 998; i++) many.append(`x-h${i}`, String(i));
  await cache.put(`${BASE}/headers`, new Response("h", { headers: many }));
  eq((await cache.match(`${BASE}/headers`)).headers.get("x-h997"), "997", "a thousand headers");
  many.append("x-one-more", "1");
  e = await rejects(cache.put(`${BASE}/headers`, new Response("h", { headers: many })), TypeError, "1001 headers");
  ok(e.message.includes("1001 headers"), e.message);
  // Many calls at once: more than a core keeps in flight are refused with an Error, not queued.
  const calls = [];
  for (let i = 0; i < 1500; i++) calls.push(cache.match(`${BASE}/m${i}`));
  const settled = await Promise.allSettled(calls);
  const refused = settled.filter((s) => s.status === "rejected");
  ok(refused.length > 0 && refused.length < 1500, `some refused (${refused.length})`);
  ok(refused.every((s) => isPlainError(s.reason) && s.reason.message.includes("in flight")), refused[0]?.reason?.message);
  // Many puts, then the cache still answers.
  const puts = [];
  for (let i = 0; i < 300; i++) puts.push(cache.put(`${BASE}/p${i}`, fresh(`v${i}`)));
  await Promise.all(puts);
  eq(await (await cache.match(`${BASE}/p299`)).text(), "v299", "the cache still works");
}

export default {
  async fetch(request) {
    const path = new URL(request.url).pathname;
    const phases = {
      "/shapes": shapes,
      "/semantics": semantics,
      "/expire-put": expirePut,
      "/expire-check": expireCheck,
      "/tenant-put": tenantPut,
      "/tenant-check": tenantCheck,
      "/tenant-still": tenantStill,
      "/hostile": hostile,
    };
    await phases[path]();
    return new Response("ok");
  },
};

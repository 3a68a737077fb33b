import { eq, ok, throws, rejects } from "./assert.js";

export default {
  async fetch(request, env, ctx) {
    // Request
    eq(request.method, "POST", "method");
    eq(request.url, "http://example.com/path?q=1", "url");
    eq(await request.json(), { hello: "world" }, "json body");
    ok(request.bodyUsed, "bodyUsed after reading");
    await rejects(request.text(), TypeError, "second read");
    ok(typeof ctx.waitUntil === "function", "ctx.waitUntil");

    const r = new Request("https://x.test/a", { method: "put", headers: { "X-Y": "z" }, body: "data" });
    eq(r.method, "PUT", "method normalisation");
    eq(r.headers.get("content-type"), "text/plain;charset=UTF-8", "string body content type");
    eq(await r.clone().text(), "data", "clone keeps body");
    eq(await r.arrayBuffer().then((b) => new Uint8Array(b).length), 4, "arrayBuffer");
    throws(() => new Request("https://x.test", { method: "GET", body: "x" }), TypeError, "GET with body");
    throws(() => new Request("/relative"), TypeError, "relative URL without base");
    throws(() => new Request(r), TypeError, "Request from a Request whose body was read");
    const copy = new Request(new Request("https://x.test/a", { headers: { "X-Y": "z" } }), { method: "POST" });
    eq(copy.url, "https://x.test/a", "Request from Request keeps url");
    eq(copy.headers.get("x-y"), "z", "Request from Request keeps headers");

    // Response
    const res = new Response("hi", { status: 201, statusText: "Made", headers: { "x-a": "b" } });
    eq([res.status, res.statusText, res.ok], [201, "Made", true], "status fields");
    eq(res.headers.get("content-type"), "text/plain;charset=UTF-8", "default content type");
    eq(await res.text(), "hi", "text");
    throws(() => new Response("x", { status: 99 }), RangeError, "status below 200");
    throws(() => new Response("x", { status: 204 }), TypeError, "body with null-body status");
    const json = Response.json({ a: [1, 2] }, { status: 202 });
    eq(json.headers.get("content-type"), "application/json", "Response.json content type");
    eq(await json.json(), { a: [1, 2] }, "Response.json body");
    const redirect = Response.redirect("https://x.test/b", 301);
    eq([redirect.status, redirect.headers.get("location")], [301, "https://x.test/b"], "redirect");
    throws(() => Response.redirect("https://x.test/b", 200), RangeError, "redirect status");
    eq(Response.error().type, "error", "Response.error");
    const bytes = new Response(new Uint8Array([104, 105]));
    eq(await bytes.text(), "hi", "bytes body");
    eq(await new Response(null).text(), "", "null body");
    const clone = res.clone === undefined ? null : new Response("c").clone();
    eq(await clone.text(), "c", "clone");
    return new Response("ok");
  },
};

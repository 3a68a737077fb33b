import { eq, ok, throws } from "./assert.js";

export default {
  async fetch(request) {
    const h = new Headers({ "Content-Type": "text/plain", "X-B": " padded \t" });
    eq(h.get("content-type"), "text/plain", "case-insensitive get");
    eq(h.get("CONTENT-TYPE"), "text/plain", "upper-case get");
    eq(h.get("x-b"), "padded", "values are trimmed");
    h.append("X-A", "1");
    h.append("x-a", "2");
    eq(h.get("x-a"), "1, 2", "appended values combine");
    eq([...h.keys()], ["content-type", "x-a", "x-b"], "iteration is sorted and lower-case");
    h.set("x-a", "3");
    eq(h.get("x-a"), "3", "set replaces all values");
    ok(h.has("X-A"), "has");
    h.delete("x-a");
    ok(!h.has("x-a"), "delete");
    h.append("Set-Cookie", "a=1");
    h.append("Set-Cookie", "b=2");
    eq(h.getSetCookie(), ["a=1", "b=2"], "set-cookie stays separate");
    eq([...h].filter(([k]) => k === "set-cookie").length, 2, "set-cookie iterates separately");
    throws(() => h.set("bad name", "x"), TypeError, "invalid name");
    throws(() => h.set("x", "a\nb"), TypeError, "newline in value");
    throws(() => h.set("x", "\u0100"), TypeError, "non-ByteString value");
    const copy = new Headers(h);
    copy.set("content-type", "x/y");
    eq(h.get("content-type"), "text/plain", "copy is independent");
    const fromPairs = new Headers([["a", "1"], ["b", "2"]]);
    eq(Object.fromEntries(fromPairs), { a: "1", b: "2" }, "pairs init");
    const seen = [];
    fromPairs.forEach((v, k) => seen.push(k + "=" + v));
    eq(seen, ["a=1", "b=2"], "forEach");

    // The incoming request's headers are immutable, as in Workers.
    eq(request.headers.get("x-test"), "yes", "incoming header");
    throws(() => request.headers.set("x-test", "no"), TypeError, "immutable request headers");
    eq(Object.prototype.toString.call(h), "[object Headers]", "toStringTag");
    return new Response("ok");
  },
};

import { eq, ok, throws } from "./assert.js";

export default {
  async fetch() {
    const t = new EventTarget();
    const seen = [];
    const listener = (e) => seen.push(e.type);
    t.addEventListener("x", listener);
    t.addEventListener("x", listener); // a duplicate is ignored
    t.addEventListener("x", () => seen.push("once"), { once: true });
    t.dispatchEvent(new Event("x"));
    t.dispatchEvent(new Event("x"));
    eq(seen, ["x", "once", "x"], "listeners");
    const c = new AbortController();
    let aborted = 0;
    c.signal.addEventListener("abort", () => aborted++);
    c.abort();
    c.abort();
    ok(c.signal.aborted, "aborted");
    eq(aborted, 1, "abort fires once");
    eq(c.signal.reason.name, "AbortError", "default reason");
    throws(() => c.signal.throwIfAborted(), DOMException, "throwIfAborted");
    throws(() => new AbortSignal(), TypeError, "AbortSignal is not constructible");
    const e = new DOMException("m", "NotFoundError");
    eq([e.name, e.code, e.message], ["NotFoundError", 8, "m"], "DOMException");
    ok(e instanceof Error, "DOMException is an Error");
    return new Response("ok");
  },
};

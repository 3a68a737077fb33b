import { eq, ok, throws } from "./assert.js";

export default {
  async fetch() {
    const p = new URLPattern({ pathname: "/books/:id(\\d+)" });
    eq([p.protocol, p.hostname, p.pathname, p.hasRegExpGroups], ["*", "*", "/books/:id(\\d+)", true], "components");
    ok(p.test("https://example.com/books/123"), "test matches");
    ok(!p.test("https://example.com/books/abc"), "custom group filters");
    const r = p.exec("https://example.com/books/42?x=1");
    eq(r.pathname, { input: "/books/42", groups: { id: "42" } }, "exec groups");
    eq(r.inputs, ["https://example.com/books/42?x=1"], "exec inputs");
    eq(r.search.input, "x=1", "search input");

    const s = new URLPattern("https://:sub.example.com/*");
    eq([s.protocol, s.username, s.hostname, s.port, s.pathname, s.search, s.hash], ["https", "*", ":sub.example.com", "", "/*", "*", "*"], "constructor string components");
    const viaInit = s.exec({ protocol: "https", hostname: "api.example.com", pathname: "/v1/x" });
    ok(viaInit !== null, "init input matches");
    eq(viaInit.hostname.groups, { sub: "api" }, "init input groups");
    const withBase = new URLPattern("/a/:b", "https://h.test");
    eq([withBase.protocol, withBase.hostname, withBase.pathname], ["https", "h.test", "/a/:b"], "base URL fills components");
    const baseMatch = withBase.exec("/a/c", "https://h.test");
    ok(baseMatch !== null, "relative input with a base matches");
    eq(baseMatch.pathname.groups, { b: "c" }, "base URL");
    ok(new URLPattern({ pathname: "/CaSe" }, { ignoreCase: true }).test({ pathname: "/case" }), "ignoreCase");
    ok(!new URLPattern({ pathname: "/CaSe" }).test({ pathname: "/case" }), "case-sensitive by default");
    // JavaScript regular-expression syntax in groups (lookahead), run by V8.
    ok(new URLPattern({ pathname: "/(foo(?=bar).*)" }).test({ pathname: "/foobar" }), "lookahead group");
    eq(new URLPattern({ pathname: "/:__proto__" }).exec({ pathname: "/x" }).pathname.groups.__proto__, "x", "a group named __proto__");
    const optional = new URLPattern({ pathname: "/x/:a?" }).exec({ pathname: "/x" });
    ok(optional !== null && "a" in optional.pathname.groups && optional.pathname.groups.a === undefined, "unmatched optional group");

    // Errors
    throws(() => new URLPattern("/no-base"), TypeError, "a relative pattern without a base");
    throws(() => new URLPattern({ pathname: "/(" }), TypeError, "unbalanced group");
    throws(() => new URLPattern({ pathname: "/(a" }), TypeError, "unterminated regexp");
    throws(() => new URLPattern({ pathname: "/([)" }), TypeError, "invalid regexp is a TypeError");
    throws(() => new URLPattern({ pathname: "/x" }, "https://base.test"), TypeError, "init with a base URL");
    throws(() => p.test({ pathname: "/" }, "https://base.test"), TypeError, "match init with a base URL");
    eq(p.exec("not a url"), null, "an invalid URL input matches nothing");
    throws(() => new URLPattern({ pathname: "/x" }, 5), TypeError, "options must be an object");
    throws(() => new URLPattern("/" + "a".repeat(70 << 10), "https://h.test"), RangeError, "oversized pattern");
    return new Response("ok");
  },
};

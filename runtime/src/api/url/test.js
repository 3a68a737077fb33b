import { eq, ok, throws } from "./assert.js";

export default {
  async fetch() {
    const u = new URL("https://user:pw@Example.COM:8443/a/../b/%7Efoo?x=1&y=two#frag");
    eq(u.href, "https://user:pw@example.com:8443/b/%7Efoo?x=1&y=two#frag", "href normalised (percent-escapes kept)");
    eq([u.protocol, u.username, u.password, u.host, u.hostname, u.port], ["https:", "user", "pw", "example.com:8443", "example.com", "8443"], "parts");
    eq([u.pathname, u.search, u.hash, u.origin], ["/b/%7Efoo", "?x=1&y=two", "#frag", "https://example.com:8443"], "more parts");
    eq(u.searchParams.get("y"), "two", "searchParams.get");
    u.searchParams.append("z", "a b");
    eq(u.search, "?x=1&y=two&z=a+b", "searchParams write-through");
    u.pathname = "/c d";
    eq(u.pathname, "/c%20d", "pathname setter encodes");
    u.port = "443";
    eq(u.port, "", "default port elided");
    eq(new URL("../x?y", "http://h/a/b/c").href, "http://h/a/x?y", "relative resolution");
    throws(() => new URL("no scheme"), TypeError, "invalid URL");
    ok(URL.canParse("http://x"), "canParse true");
    ok(!URL.canParse("::"), "canParse false");
    eq(String(new URL("http://[::1]:80/")), "http://[::1]/", "IPv6 host");
    eq(new URL("http://xn--nxasmq6b.com/").hostname, "xn--nxasmq6b.com", "punycode kept");
    eq(new URL("http://ÉXAMPLE.com/").hostname, "xn--xample-9ua.com", "IDNA");
    const p = new URLSearchParams("a=1&b=%20x&a=2");
    eq(p.getAll("a"), ["1", "2"], "getAll");
    eq(p.get("b"), " x", "percent-decoding");
    p.sort();
    eq(p.toString(), "a=1&a=2&b=+x", "sort + serialise");
    eq([...new URLSearchParams({ k: "v" })], [["k", "v"]], "record init");
    eq(new URLSearchParams([["é", "&"]]).toString(), "%C3%A9=%26", "encoding");
    eq(JSON.stringify({ u: new URL("http://a/") }), '{"u":"http://a/"}', "toJSON");
    return new Response("ok");
  },
};

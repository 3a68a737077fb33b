import { eq, ok, throws, rejects } from "./assert.js";

const multipart = (boundary, body) =>
  new Response(body, { headers: { "content-type": `multipart/form-data; boundary=${boundary}` } });

export default {
  async fetch() {
    // The FormData API.
    const fd = new FormData();
    fd.append("a", "1");
    fd.append("b", new Blob(["blob"], { type: "text/x" }));
    fd.append("c", new File(["file"], "orig.txt", { lastModified: 5 }), "renamed.txt");
    fd.append("a", 2);
    fd.append("s\ud800", "v\udc00");
    eq(fd.get("a"), "1", "get returns the first");
    eq(fd.getAll("a"), ["1", "2"], "getAll, values stringified");
    eq(fd.get("missing"), null, "get of a missing name");
    ok(fd.has("b") && !fd.has("z"), "has");
    const b = fd.get("b");
    ok(b instanceof File, "a Blob becomes a File");
    eq([b.name, b.type, await b.text()], ["blob", "text/x", "blob"], "Blob entry defaults");
    const c = fd.get("c");
    eq([c.name, c.lastModified, await c.text()], ["renamed.txt", 5, "file"], "filename renames a File");
    eq(fd.get("s\ufffd"), "v\ufffd", "names and values are USVStrings");
    fd.set("a", "3");
    eq(fd.getAll("a"), ["3"], "set replaces all");
    eq([...fd.keys()], ["a", "b", "c", "s\ufffd"], "set keeps the first position");
    fd.delete("b");
    eq([...fd.keys()], ["a", "c", "s\ufffd"], "delete");
    const seen = [];
    fd.forEach((value, key, owner) => seen.push([key, typeof value, owner === fd]));
    eq(seen, [["a", "string", true], ["c", "object", true], ["s\ufffd", "string", true]], "forEach");
    eq([...fd].map(([k]) => k), ["a", "c", "s\ufffd"], "iterable");
    eq(Object.prototype.toString.call(fd.entries()), "[object FormData Iterator]", "iterator tag");
    const it = fd.keys();
    fd.append("late", "x");
    eq([...it], ["a", "c", "s\ufffd", "late"], "iterators are live");
    throws(() => fd.append("x"), TypeError, "append needs two arguments");
    throws(() => fd.append("x", "string", "filename"), TypeError, "a filename needs a Blob");
    fd.append("u", new Blob(["u"]), undefined);
    eq(fd.get("u").name, "blob", "an undefined filename is no filename");
    fd.delete("u");
    throws(() => new FormData({}), TypeError, "no form element");
    throws(() => FormData.prototype.get.call({}, "a"), TypeError, "brand check");

    // A script's Array species is never consulted by FormData's own bookkeeping.
    const savedConstructor = Object.getOwnPropertyDescriptor(Array.prototype, "constructor");
    let speciesCalled = false;
    Object.defineProperty(Array.prototype, "constructor", {
      value: { [Symbol.species]: function () { speciesCalled = true; return []; } }, configurable: true, writable: true,
    });
    try {
      const t = new FormData();
      t.append("a", "1");
      t.append("b", "2");
      t.append("a", "3");
      t.delete("b");
      t.set("a", "4");
      eq(t.getAll("a"), ["4"], "delete and set with a replaced Array species");
    } finally {
      Object.defineProperty(Array.prototype, "constructor", savedConstructor);
    }
    ok(!speciesCalled, "the replaced species was never called");

    // Serialisation: new Response(formData) is multipart/form-data with a random boundary.
    const out = new FormData();
    out.append("text", "line1\nline2");
    out.append("quote\"name", "v");
    out.append("up", new File([new Uint8Array([0, 255])], "x\".bin"));
    const res = new Response(out);
    const type = res.headers.get("content-type");
    const match = /^multipart\/form-data; boundary=(.+)$/.exec(type);
    ok(match !== null, `content type ${type}`);
    const other = new Response(out).headers.get("content-type");
    ok(other !== type, "each serialisation has a fresh boundary");
    const body = await res.clone().text();
    ok(body.includes('name="text"\r\n\r\nline1\r\nline2\r\n'), "newlines normalised to CRLF");
    ok(body.includes('name="quote%22name"'), "quote escaped in a name");
    ok(body.includes('filename="x%22.bin"\r\nContent-Type: application/octet-stream'), "file part");
    const back = await res.formData();
    eq(back.get("text"), "line1\r\nline2", "round trip of text");
    eq(back.get("quote%22name"), "v", "escaped names stay escaped (as in browsers)");
    const file = back.get("up");
    eq([file.name, [...await file.bytes()]], ["x%22.bin", [0, 255]], "round trip of a file");
    const request = new Request("https://x.test/", { method: "POST", body: out });
    ok(request.headers.get("content-type").startsWith("multipart/form-data; boundary="), "Request body");
    eq((await request.formData()).get("text"), "line1\r\nline2", "request.formData()");

    // urlencoded
    const form = await new Response("a=1&b=%C3%A9+x&a=2", { headers: { "content-type": "application/x-www-form-urlencoded" } }).formData();
    eq([...form], [["a", "1"], ["b", "é x"], ["a", "2"]], "urlencoded parse");
    const params = new Response(new URLSearchParams({ k: "v w" }));
    eq(params.headers.get("content-type"), "application/x-www-form-urlencoded;charset=UTF-8", "URLSearchParams body type");
    eq((await params.formData()).get("k"), "v w", "URLSearchParams round trip");

    // Error paths: every one a TypeError that says why.
    const why = async (response, pattern, what) => {
      const e = await rejects(response.formData(), TypeError, what);
      ok(pattern.test(e.message), `${what}: ${e.message}`);
    };
    await why(new Response("x"), /Content-Type/, "a text/plain body");
    await why(new Response("x", { headers: { "content-type": "application/json" } }), /can parse only/, "wrong type");
    await why(new Response("x", { headers: { "content-type": "multipart/form-data" } }), /boundary/, "no boundary");
    await why(multipart('""', "x"), /boundary/, "empty boundary");
    await why(multipart("b".repeat(71), "x"), /1 to 70/, "boundary too long");
    await why(multipart("B", "no boundary here"), /malformed/, "body without the boundary");
    await why(multipart("B", '--B\r\nContent-Disposition: form-data; name="a"\r\n\r\ntruncated'), /malformed/, "truncated");
    await why(multipart("B", "--B\r\nContent-Disposition: form-data\r\n\r\nx\r\n--B--"), /name/, "part without a name");
    await why(multipart("B", "--B\r\nContent-Disposition form-data\r\n\r\nx\r\n--B--"), /malformed|name/, "bad header line");
    const many = '--B\r\nContent-Disposition: form-data; name="p"\r\n\r\nx\r\n'.repeat(10001) + "--B--";
    await why(multipart("B", many), /more than 10000/, "oversized FormData: too many parts");
    const bigHeader = `--B\r\nContent-Disposition: form-data; name="a"\r\nX-Pad: ${"p".repeat(17000)}\r\n\r\nx\r\n--B--`;
    await why(multipart("B", bigHeader), /headers are larger/, "oversized part headers");
    const tooManyPairs = Array.from({ length: 10001 }, (_, i) => `k${i}=v`).join("&");
    await why(new Response(tooManyPairs, { headers: { "content-type": "application/x-www-form-urlencoded" } }), /more than 10000/, "oversized urlencoded form");
    return new Response("ok");
  },
};

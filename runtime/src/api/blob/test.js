import { eq, ok, throws, rejects } from "./assert.js";

export default {
  async fetch() {
    // Parts: strings (UTF-8), buffers (copied), Blobs; type lower-cased.
    const buffer = new Uint8Array([1, 2, 3]);
    const b = new Blob(["hé", buffer, new Blob(["!"])], { type: "Text/Plain" });
    buffer[0] = 9;
    eq(b.size, 7, "size counts UTF-8 bytes");
    eq(b.type, "text/plain", "type lower-cased");
    eq([...await b.bytes()], [0x68, 0xc3, 0xa9, 1, 2, 3, 0x21], "bytes (the buffer was copied at construction)");
    eq(await new Blob(["a\ud800b"]).text(), "a\ufffdb", "lone surrogates become U+FFFD");
    eq(new Blob([], { type: "a/b\u00e9" }).type, "", "non-ASCII type is dropped");
    eq(new Blob().size, 0, "no parts");
    eq(await new Blob([new DataView(new Uint8Array([7, 8]).buffer, 1)]).bytes().then((x) => [...x]), [8], "DataView part");
    eq(await new Blob([{ toString: () => "obj" }, 42]).text(), "obj42", "other parts are stringified");
    eq(await new Blob(["a\r\nb\rc\n"], { endings: "native" }).text(), "a\nb\nc\n", "native endings");
    eq(await new Blob(["a\r\nb"], { endings: "transparent" }).text(), "a\r\nb", "transparent endings");
    throws(() => new Blob(["x"], { endings: "windows" }), TypeError, "bad endings");
    throws(() => new Blob("abc"), TypeError, "a string is not a sequence");
    throws(() => new Blob(5), TypeError, "a number is not a sequence");
    throws(() => new Blob(["x"], 5), TypeError, "options must be an object");
    throws(() => new Blob([Symbol("s")]), TypeError, "a symbol part");

    // Readers get copies: mutating one never changes the Blob.
    const bytes = await b.bytes();
    bytes[0] = 0;
    eq((await b.bytes())[0], 0x68, "bytes() is a copy");
    const ab = await b.arrayBuffer();
    ok(ab instanceof ArrayBuffer && ab.byteLength === 7, "arrayBuffer");
    eq(await b.text(), "hé\u0001\u0002\u0003!", "text");
    eq(await new Blob([new Uint8Array([0xef, 0xbb, 0xbf, 0x41])]).text(), "A", "text() drops a BOM");

    // slice: negative, clamped, swapped, typed.
    const s = new Blob(["0123456789"]);
    eq(await s.slice(2, 5).text(), "234", "slice");
    eq(await s.slice(-3).text(), "789", "negative start");
    eq(await s.slice(-100, 2).text(), "01", "clamped start");
    eq(await s.slice(5, 2).text(), "", "end before start");
    eq(await s.slice(0, 1e20).text(), "0123456789", "huge end");
    eq(await s.slice(1.5, 3.5).text(), "23", "half to even rounding ([Clamp])");
    eq(s.slice(0, 1, "X/Y").type, "x/y", "slice type");
    eq(s.slice().type, "", "slice drops the type");
    eq(await s.slice(2, 8).slice(1, 3).text(), "34", "slice of a slice");

    // File
    const f = new File(["data"], "a\ud800.txt", { type: "text/x", lastModified: 1234.9 });
    ok(f instanceof Blob, "File is a Blob");
    eq([f.name, f.type, f.size, f.lastModified], ["a\ufffd.txt", "text/x", 4, 1234], "File fields");
    eq(typeof new File([], "x").lastModified, "number", "default lastModified");
    eq(f.webkitRelativePath, "", "webkitRelativePath");
    throws(() => new File(["x"]), TypeError, "File needs a name");
    eq(Object.prototype.toString.call(f), "[object File]", "toStringTag");

    // Brand checks
    await rejects(Blob.prototype.text.call({}), TypeError, "text() on a non-Blob rejects");
    throws(() => Object.getOwnPropertyDescriptor(Blob.prototype, "size").get.call({}), TypeError, "size on a non-Blob");
    throws(() => new Blob([new ArrayBuffer(1)], { get type() { throw new RangeError("boom"); } }), RangeError, "a throwing getter propagates");

    // Bodies
    const res = new Response(new Blob(["body"], { type: "text/x-body" }));
    eq(res.headers.get("content-type"), "text/x-body", "Blob body sets the content type");
    eq(await res.text(), "body", "Blob body");
    eq(new Response(new Blob(["x"])).headers.get("content-type"), null, "untyped Blob sets no content type");
    const req = new Request("https://x.test/", { method: "POST", body: new File(["up"], "f.txt") });
    eq(await req.text(), "up", "File request body");
    const blob = await new Response("abc", { headers: { "content-type": "text/a;charset=UTF-8" } }).blob();
    ok(blob instanceof Blob, "body.blob()");
    eq([blob.type, await blob.text()], ["text/a;charset=UTF-8", "abc"], "body.blob() type and content");

    // stream(): a ReadableStream once streams exist, a clear TypeError until then.
    if (typeof ReadableStream === "function") {
      const reader = new Blob(["stream me"]).stream().getReader();
      let text = "";
      for (let r = await reader.read(); !r.done; r = await reader.read()) text += new TextDecoder().decode(r.value);
      eq(text, "stream me", "stream()");
    } else {
      const e = throws(() => new Blob(["x"]).stream(), TypeError, "stream() without streams");
      ok(/ReadableStream/.test(e.message), "stream() error names ReadableStream");
    }

    // Immutable under a tenant's tampering with built-ins.
    const saved = Uint8Array.prototype.subarray;
    Uint8Array.prototype.subarray = () => { throw new Error("tampered"); };
    try {
      eq(await new Blob(["xyz"]).slice(1).text(), "yz", "slice ignores a replaced subarray");
    } finally {
      Uint8Array.prototype.subarray = saved;
    }
    return new Response("ok");
  },
};

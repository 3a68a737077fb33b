import { eq, ok, throws } from "./assert.js";

export default {
  async fetch() {
    // What V8's serializer keeps: types, cycles, shared references.
    const date = new Date(5);
    const source = { n: 1, s: "x", big: 10n, nested: [1, { deep: true }], date, re: /a+/gi, map: new Map([[1, "one"]]), set: new Set(["s"]), err: new RangeError("bad") };
    source.self = source;
    source.twice = [source.nested, source.nested];
    const copy = structuredClone(source);
    ok(copy !== source && copy.self === copy, "cycles are kept");
    ok(copy.twice[0] === copy.twice[1] && copy.twice[0] !== source.nested, "shared references are kept");
    eq([copy.n, copy.s, copy.big === 10n, copy.nested], [1, "x", true, [1, { deep: true }]], "values");
    ok(copy.date instanceof Date && copy.date.getTime() === 5, "Date");
    ok(copy.re instanceof RegExp && copy.re.source === "a+" && copy.re.flags === "gi", "RegExp");
    eq([...copy.map], [[1, "one"]], "Map");
    eq([...copy.set], ["s"], "Set");
    ok(copy.err instanceof RangeError && copy.err.message === "bad", "Error");
    eq(structuredClone(undefined), undefined, "undefined");
    const many = Array.from({ length: 100000 }, (_, i) => ({ i }));
    const manyCopy = structuredClone(many);
    ok(manyCopy.length === 100000 && manyCopy[99999].i === 99999, "a large graph");
    eq(structuredClone("s"), "s", "a primitive");

    // Typed arrays are copied; transfer moves the memory and detaches the original.
    const bytes = new Uint8Array([1, 2, 3]);
    const copied = structuredClone(bytes);
    copied[0] = 9;
    eq(bytes[0], 1, "a clone is a copy");
    const moved = structuredClone({ view: bytes }, { transfer: [bytes.buffer] });
    eq([...moved.view], [1, 2, 3], "transferred contents");
    eq(bytes.buffer.byteLength, 0, "the transferred buffer is detached");
    ok(bytes.buffer.detached, "detached flag");
    const buffer = new ArrayBuffer(4);
    const alone = structuredClone(buffer, { transfer: [buffer] });
    ok(alone.byteLength === 4 && buffer.byteLength === 0, "transfer of the value itself");

    // DataCloneError for what cannot be cloned.
    const dataCloneError = (value, what, options) => {
      const e = throws(() => structuredClone(value, options), DOMException, what);
      eq([e.name, e.code], ["DataCloneError", 25], `${what}: a DataCloneError`);
      return e;
    };
    dataCloneError(() => 1, "a function");
    dataCloneError({ f() {} }, "a method inside an object");
    dataCloneError(Symbol("s"), "a symbol");
    dataCloneError({ s: Symbol.iterator }, "a symbol inside an object");
    dataCloneError(new WeakMap(), "a WeakMap");
    dataCloneError(new Request("https://x.test/"), "a Request (native class)");
    dataCloneError(new Headers(), "Headers");
    dataCloneError(new FormData(), "FormData");
    dataCloneError(new URL("https://x.test/"), "URL");
    dataCloneError(new AbortController().signal, "an AbortSignal (EventTarget)");
    dataCloneError(new MessageChannel().port1, "a MessagePort");
    const port = new MessageChannel().port1;
    dataCloneError(port, "transferring a port", { transfer: [port] });
    const twice = new ArrayBuffer(1);
    dataCloneError(twice, "a buffer listed twice", { transfer: [twice, twice] });
    const detached = new ArrayBuffer(1);
    structuredClone(detached, { transfer: [detached] });
    dataCloneError(detached, "a detached buffer", { transfer: [detached] });
    dataCloneError(1, "a non-buffer in the transfer list", { transfer: [{}] });
    // A failed clone transfers nothing.
    const kept = new ArrayBuffer(2);
    dataCloneError({ kept, f: () => 1 }, "a failure", { transfer: [kept] });
    eq(kept.byteLength, 2, "a failed clone leaves the transfer list alone");

    throws(() => structuredClone(), TypeError, "no argument");
    throws(() => structuredClone(1, { transfer: 5 }), TypeError, "transfer must be a sequence");
    throws(() => structuredClone(1, { transfer: [1] }), TypeError, "transfer items must be objects");
    // A getter that throws: its exception, not a DataCloneError.
    throws(() => structuredClone({ get x() { throw new RangeError("getter"); } }), RangeError, "a throwing getter");

    // Blob and File are serializable.
    const blob = structuredClone(new Blob(["blob data"], { type: "text/b" }));
    ok(blob instanceof Blob, "a Blob clones to a Blob");
    eq([blob.type, await blob.text()], ["text/b", "blob data"], "Blob contents");
    const file = structuredClone({ f: new File(["f"], "name.txt", { type: "t/f", lastModified: 42 }) }).f;
    ok(file instanceof File, "a File clones to a File");
    eq([file.name, file.type, file.lastModified, await file.text()], ["name.txt", "t/f", 42, "f"], "File fields");
    const sliced = structuredClone(new Blob(["0123456789"]).slice(3, 5));
    eq(await sliced.text(), "34", "a slice clones only its bytes");

    // Tampering with built-ins does not change what isobar does.
    const savedPush = Array.prototype.push;
    Array.prototype.push = () => { throw new Error("tampered"); };
    try {
      eq(structuredClone([1, 2]), [1, 2], "clone with a replaced Array.prototype.push");
    } finally {
      Array.prototype.push = savedPush;
    }
    return new Response("ok");
  },
};

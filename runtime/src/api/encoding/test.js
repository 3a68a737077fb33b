import { eq, ok, throws } from "./assert.js";

export default {
  async fetch() {
    const enc = new TextEncoder();
    eq([...enc.encode("é€")], [0xc3, 0xa9, 0xe2, 0x82, 0xac], "encode");
    eq([...enc.encode("\ud800")], [0xef, 0xbf, 0xbd], "lone surrogate becomes U+FFFD");
    const dest = new Uint8Array(4);
    eq(enc.encodeInto("aé€", dest), { read: 2, written: 3 }, "encodeInto stops at a whole character");
    eq([...dest], [0x61, 0xc3, 0xa9, 0], "encodeInto bytes");
    const dec = new TextDecoder();
    eq(dec.encoding, "utf-8", "default encoding");
    eq(dec.decode(new Uint8Array([0xef, 0xbb, 0xbf, 0x68, 0x69])), "hi", "BOM stripped");
    eq(dec.decode(new Uint8Array([0xff])), "\ufffd", "replacement");
    throws(() => new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array([0xff])), TypeError, "fatal");
    // Streaming: a character split across chunks.
    const s = new TextDecoder();
    eq(s.decode(new Uint8Array([0xe2, 0x82]), { stream: true }) + s.decode(new Uint8Array([0xac])), "€", "streaming");
    eq(new TextDecoder("latin1").decode(new Uint8Array([0xe9])), "é", "windows-1252 via label latin1");
    eq(new TextDecoder("latin1").encoding, "windows-1252", "label maps to canonical name");
    throws(() => new TextDecoder("nope"), RangeError, "unknown label");
    eq(btoa("hello"), "aGVsbG8=", "btoa");
    eq(atob("aGVs bG8"), "hello", "atob forgiving");
    throws(() => btoa("€"), DOMException, "btoa non-latin1");
    throws(() => atob("a"), DOMException, "atob bad length");
    const u = crypto.randomUUID();
    ok(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(u), "randomUUID format");
    const r = crypto.getRandomValues(new Uint32Array(8));
    ok(r.some((x) => x !== 0), "getRandomValues filled");
    throws(() => crypto.getRandomValues(new Uint8Array(65537)), DOMException, "quota");
    return new Response("ok");
  },
};

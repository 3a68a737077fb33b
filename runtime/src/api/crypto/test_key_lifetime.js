// Keys made and dropped: each holds Rust memory (a resource-table entry) until it is collected.
// `?count=N` makes N keys and drops them; `&keep=1` keeps them (on globalThis) until a request
// with `?release=1`. The Rust tests look at the resource table in between.
export default {
  async fetch(request) {
    const params = new URL(request.url).searchParams;
    if (params.has("release")) {
      globalThis.keptKeys = undefined;
      return new Response("ok");
    }
    const count = Number(params.get("count"));
    const keep = params.has("keep");
    const kept = [];
    for (let i = 0; i < count; i++) {
      const key = await crypto.subtle.importKey("raw", new Uint8Array(16), "AES-GCM", false, ["encrypt"]);
      if (keep) kept.push(key);
    }
    if (keep) globalThis.keptKeys = kept;
    return new Response("ok");
  },
};

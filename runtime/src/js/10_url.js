// URL and URLSearchParams, as the WHATWG URL Standard defines them. Parsing and serialisation
// are done in Rust by the `url` crate (a WHATWG-conformant parser); this file is the JS face.
(function (ops, internals, global) {
  "use strict";
  const { defineHidden, webClass, inspectSymbol } = internals;

  // Indexes into the component array the urlParse/urlSet ops return.
  const HREF = 0, PROTOCOL = 1, USERNAME = 2, PASSWORD = 3, HOST = 4, HOSTNAME = 5, PORT = 6,
    PATHNAME = 7, SEARCH = 8, HASH = 9, ORIGIN = 10;
  // Setter numbers understood by ops.urlSet.
  const SET = { href: 0, protocol: 1, username: 2, password: 3, host: 4, hostname: 5, port: 6, pathname: 7, search: 8, hash: 9 };

  const searchParamsOwner = new WeakMap();

  class URL {
    #c;
    #searchParams = null;
    constructor(url, base = undefined) {
      if (arguments.length === 0) throw new TypeError("URL: 1 argument required");
      const c = ops.urlParse(String(url), base === undefined ? undefined : String(base));
      if (c === undefined) {
        throw new TypeError(`Invalid URL: ${String(url)}${base === undefined ? "" : ` (base ${String(base)})`}`);
      }
      this.#c = c;
    }
    static canParse(url, base = undefined) {
      return ops.urlParse(String(url), base === undefined ? undefined : String(base)) !== undefined;
    }
    static parse(url, base = undefined) {
      try { return new URL(url, base); } catch { return null; }
    }
    #set(which, value) {
      const c = ops.urlSet(this.#c[HREF], which, String(value));
      if (c === undefined) {
        if (which === SET.href) throw new TypeError(`Invalid URL: ${String(value)}`);
        return;
      }
      this.#c = c;
      if (this.#searchParams !== null && which !== SET.hash) internals.updateSearchParams(this.#searchParams, this.#c[SEARCH]);
    }
    get href() { return this.#c[HREF]; }
    set href(v) { this.#set(SET.href, v); }
    get origin() { return this.#c[ORIGIN]; }
    get protocol() { return this.#c[PROTOCOL]; }
    set protocol(v) { this.#set(SET.protocol, v); }
    get username() { return this.#c[USERNAME]; }
    set username(v) { this.#set(SET.username, v); }
    get password() { return this.#c[PASSWORD]; }
    set password(v) { this.#set(SET.password, v); }
    get host() { return this.#c[HOST]; }
    set host(v) { this.#set(SET.host, v); }
    get hostname() { return this.#c[HOSTNAME]; }
    set hostname(v) { this.#set(SET.hostname, v); }
    get port() { return this.#c[PORT]; }
    set port(v) { this.#set(SET.port, v); }
    get pathname() { return this.#c[PATHNAME]; }
    set pathname(v) { this.#set(SET.pathname, v); }
    get search() { return this.#c[SEARCH]; }
    set search(v) { this.#set(SET.search, v); }
    get hash() { return this.#c[HASH]; }
    set hash(v) { this.#set(SET.hash, v); }
    get searchParams() {
      if (this.#searchParams === null) {
        this.#searchParams = new URLSearchParams(this.#c[SEARCH]);
        searchParamsOwner.set(this.#searchParams, (query) => {
          this.#c = ops.urlSet(this.#c[HREF], SET.search, query) ?? this.#c;
        });
      }
      return this.#searchParams;
    }
    toString() { return this.#c[HREF]; }
    toJSON() { return this.#c[HREF]; }
    [inspectSymbol]() { return `URL { href: ${JSON.stringify(this.#c[HREF])} }`; }
  }
  webClass(URL, "URL");

  class URLSearchParams {
    #list = [];
    constructor(init = undefined) {
      if (init === undefined || init === null) return;
      if (typeof init === "object" || typeof init === "function") {
        if (init instanceof URLSearchParams) {
          this.#list = init.#list.map(([k, v]) => [k, v]);
        } else if (typeof init[Symbol.iterator] === "function") {
          for (const pair of init) {
            const p = [...pair];
            if (p.length !== 2) throw new TypeError("URLSearchParams: each pair must have exactly two items");
            this.#list.push([String(p[0]), String(p[1])]);
          }
        } else {
          for (const key of Object.keys(init)) this.#list.push([key, String(init[key])]);
        }
        return;
      }
      let s = String(init);
      if (s.startsWith("?")) s = s.slice(1);
      this.#list = pairs(ops.formDecode(s));
    }
    static _update(params, query) {
      let s = query.startsWith("?") ? query.slice(1) : query;
      params.#list = pairs(ops.formDecode(s));
    }
    #changed() {
      const owner = searchParamsOwner.get(this);
      if (owner !== undefined) owner(this.toString());
    }
    get size() { return this.#list.length; }
    append(name, value) { this.#list.push([String(name), String(value)]); this.#changed(); }
    delete(name, value = undefined) {
      const n = String(name);
      const v = value === undefined ? undefined : String(value);
      this.#list = this.#list.filter(([k, x]) => !(k === n && (v === undefined || x === v)));
      this.#changed();
    }
    get(name) {
      const n = String(name);
      const e = this.#list.find(([k]) => k === n);
      return e === undefined ? null : e[1];
    }
    getAll(name) {
      const n = String(name);
      return this.#list.filter(([k]) => k === n).map(([, v]) => v);
    }
    has(name, value = undefined) {
      const n = String(name);
      const v = value === undefined ? undefined : String(value);
      return this.#list.some(([k, x]) => k === n && (v === undefined || x === v));
    }
    set(name, value) {
      const n = String(name), v = String(value);
      const i = this.#list.findIndex(([k]) => k === n);
      if (i < 0) {
        this.#list.push([n, v]);
      } else {
        this.#list[i][1] = v;
        this.#list = this.#list.filter(([k], j) => j <= i || k !== n);
      }
      this.#changed();
    }
    sort() {
      // A stable sort by UTF-16 code units, as the standard asks.
      this.#list = this.#list.map((e, i) => [e, i]).sort((a, b) => (a[0][0] < b[0][0] ? -1 : a[0][0] > b[0][0] ? 1 : a[1] - b[1])).map(([e]) => e);
      this.#changed();
    }
    forEach(callback, thisArg = undefined) {
      for (let i = 0; i < this.#list.length; i++) {
        const [k, v] = this.#list[i];
        callback.call(thisArg, v, k, this);
      }
    }
    *entries() { for (let i = 0; i < this.#list.length; i++) yield [this.#list[i][0], this.#list[i][1]]; }
    *keys() { for (let i = 0; i < this.#list.length; i++) yield this.#list[i][0]; }
    *values() { for (let i = 0; i < this.#list.length; i++) yield this.#list[i][1]; }
    [Symbol.iterator]() { return this.entries(); }
    toString() {
      const flat = [];
      for (const [k, v] of this.#list) flat.push(k, v);
      return ops.formEncode(flat);
    }
    [inspectSymbol](inspect) { return `URLSearchParams { ${this.#list.map(([k, v]) => `${inspect(k)} => ${inspect(v)}`).join(", ")} }`; }
  }
  internals.updateSearchParams = URLSearchParams._update;
  delete URLSearchParams._update;
  webClass(URLSearchParams, "URLSearchParams");

  function pairs(flat) {
    const out = [];
    for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i], flat[i + 1]]);
    return out;
  }

  defineHidden(global, "URL", URL);
  defineHidden(global, "URLSearchParams", URLSearchParams);
  internals.URLSearchParams = URLSearchParams;
})

// URL and URLSearchParams, as the WHATWG URL Standard defines them. Parsing and serialisation
// are done in Rust (url/mod.rs: ada for URLs, the `url` crate's form_urlencoded for query
// strings); this file is the JS face.
(function (ops, internals, global, primordials) {
  "use strict";
  const { defineHidden, webClass, inspectSymbol } = internals;

  // The urlParse/urlSet ops return the URL's components as an object with the names of the
  // URL attributes (href, origin, protocol, ...); urlSet takes the attribute's name.

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
      const c = ops.urlSet(this.#c.href, which, String(value));
      if (c === undefined) {
        if (which === "href") throw new TypeError(`Invalid URL: ${String(value)}`);
        return;
      }
      this.#c = c;
      if (this.#searchParams !== null && which !== "hash") internals.updateSearchParams(this.#searchParams, this.#c.search);
    }
    get href() { return this.#c.href; }
    set href(v) { this.#set("href", v); }
    get origin() { return this.#c.origin; }
    get protocol() { return this.#c.protocol; }
    set protocol(v) { this.#set("protocol", v); }
    get username() { return this.#c.username; }
    set username(v) { this.#set("username", v); }
    get password() { return this.#c.password; }
    set password(v) { this.#set("password", v); }
    get host() { return this.#c.host; }
    set host(v) { this.#set("host", v); }
    get hostname() { return this.#c.hostname; }
    set hostname(v) { this.#set("hostname", v); }
    get port() { return this.#c.port; }
    set port(v) { this.#set("port", v); }
    get pathname() { return this.#c.pathname; }
    set pathname(v) { this.#set("pathname", v); }
    get search() { return this.#c.search; }
    set search(v) { this.#set("search", v); }
    get hash() { return this.#c.hash; }
    set hash(v) { this.#set("hash", v); }
    get searchParams() {
      if (this.#searchParams === null) {
        this.#searchParams = new URLSearchParams(this.#c.search);
        searchParamsOwner.set(this.#searchParams, (query) => {
          this.#c = ops.urlSet(this.#c.href, "search", query) ?? this.#c;
        });
      }
      return this.#searchParams;
    }
    toString() { return this.#c.href; }
    toJSON() { return this.#c.href; }
    [inspectSymbol]() { return `URL { href: ${JSON.stringify(this.#c.href)} }`; }
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

  // `new Response(searchParams)`: the serialised query, typed as a form.
  internals.bodyExtractors ??= [];
  const toStringOfParams = URLSearchParams.prototype.toString;
  primordials.ArrayPrototypePush(internals.bodyExtractors, function extractSearchParams(init) {
    if (!(init instanceof URLSearchParams)) return undefined;
    return [primordials.FunctionPrototypeCall(toStringOfParams, init), "application/x-www-form-urlencoded;charset=UTF-8"];
  });
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

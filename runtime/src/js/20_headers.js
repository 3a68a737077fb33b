// Headers, as the Fetch Standard defines them: case-insensitive names, combined values,
// sorted iteration, `set-cookie` kept apart, and guards that make a request's headers immutable.
(function (ops, internals, global) {
  "use strict";
  const { defineHidden, webClass, inspectSymbol, toByteString } = internals;

  const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
  const LEADING_WS = /^[\t\n\r ]+/;
  const TRAILING_WS = /[\t\n\r ]+$/;
  const FORBIDDEN_IN_VALUE = /[\0\r\n]/;

  function normalizeName(name) {
    const n = String(name);
    if (!TOKEN.test(n)) throw new TypeError(`Invalid header name: ${JSON.stringify(n)}`);
    return n.toLowerCase();
  }
  function normalizeValue(value) {
    const v = toByteString(value, "Header value").replace(LEADING_WS, "").replace(TRAILING_WS, "");
    if (FORBIDDEN_IN_VALUE.test(v)) throw new TypeError(`Invalid header value: ${JSON.stringify(v)}`);
    return v;
  }

  // Guards of the Fetch Standard that isobar uses.
  const NONE = 0, IMMUTABLE = 1;

  class Headers {
    // An ordered list of [lower-case name, value]; repeated names stay separate entries.
    #list = [];
    #guard = NONE;

    constructor(init = undefined) {
      if (init === undefined || init === null) return;
      if (typeof init !== "object" && typeof init !== "function") {
        throw new TypeError("Headers: the init argument must be an object, an array of pairs or a Headers");
      }
      if (init instanceof Headers) {
        this.#list = init.#list.map(([k, v]) => [k, v]);
      } else if (typeof init[Symbol.iterator] === "function") {
        for (const pair of init) {
          if (typeof pair !== "object" || pair === null || typeof pair[Symbol.iterator] !== "function") {
            throw new TypeError("Headers: each item of the init sequence must be a [name, value] pair");
          }
          const p = [...pair];
          if (p.length !== 2) throw new TypeError("Headers: each item of the init sequence must have exactly two items");
          this.#list.push([normalizeName(p[0]), normalizeValue(p[1])]);
        }
      } else {
        for (const key of Object.keys(init)) this.#list.push([normalizeName(key), normalizeValue(init[key])]);
      }
    }

    #mutable() {
      if (this.#guard === IMMUTABLE) throw new TypeError("Can't modify immutable headers.");
    }

    append(name, value) {
      this.#mutable();
      this.#list.push([normalizeName(name), normalizeValue(value)]);
    }
    delete(name) {
      this.#mutable();
      const n = normalizeName(name);
      this.#list = this.#list.filter(([k]) => k !== n);
    }
    get(name) {
      const n = normalizeName(name);
      let out = null;
      for (let i = 0; i < this.#list.length; i++) {
        const e = this.#list[i];
        if (e[0] === n) out = out === null ? e[1] : `${out}, ${e[1]}`;
      }
      return out;
    }
    getAll(name) {
      // workerd keeps getAll for set-cookie only; it is the one header that cannot be combined.
      const n = normalizeName(name);
      if (n !== "set-cookie") throw new TypeError("getAll() can only be used with the header name \"Set-Cookie\".");
      return this.getSetCookie();
    }
    getSetCookie() {
      const out = [];
      for (const [k, v] of this.#list) if (k === "set-cookie") out.push(v);
      return out;
    }
    has(name) {
      const n = normalizeName(name);
      return this.#list.some(([k]) => k === n);
    }
    set(name, value) {
      this.#mutable();
      const n = normalizeName(name);
      const v = normalizeValue(value);
      const i = this.#list.findIndex(([k]) => k === n);
      if (i < 0) {
        this.#list.push([n, v]);
      } else {
        this.#list[i] = [n, v];
        this.#list = this.#list.filter(([k], j) => j <= i || k !== n);
      }
    }
    // The sorted and combined view the standard iterates over.
    #sorted() {
      const names = [...new Set(this.#list.map(([k]) => k))].sort();
      const out = [];
      for (const n of names) {
        if (n === "set-cookie") {
          for (const v of this.getSetCookie()) out.push([n, v]);
        } else {
          out.push([n, this.get(n)]);
        }
      }
      return out;
    }
    forEach(callback, thisArg = undefined) {
      for (const [k, v] of this.#sorted()) callback.call(thisArg, v, k, this);
    }
    *entries() { yield* this.#sorted(); }
    *keys() { for (const [k] of this.#sorted()) yield k; }
    *values() { for (const [, v] of this.#sorted()) yield v; }
    [Symbol.iterator]() { return this.entries(); }
    [inspectSymbol](inspect) {
      return `Headers { ${this.#sorted().map(([k, v]) => `${inspect(k)}: ${inspect(v)}`).join(", ")} }`;
    }

    // Internal constructors and accessors for isobar's own scripts (removed from the class below).
    static _fromTrustedFlat(flat, guard) {
      const h = new Headers();
      for (let i = 0; i + 1 < flat.length; i += 2) h.#list.push([flat[i], flat[i + 1]]);
      h.#guard = guard;
      return h;
    }
    static _toFlat(h) {
      const out = [];
      for (let i = 0; i < h.#list.length; i++) out.push(h.#list[i][0], h.#list[i][1]);
      return out;
    }
    static _setGuard(h, guard) { h.#guard = guard; }
    static _setIfAbsent(h, name, value) {
      if (!h.#list.some(([k]) => k === name)) h.#list.push([name, value]);
    }
  }
  internals.headersFromTrustedFlat = Headers._fromTrustedFlat;
  internals.headersToFlat = Headers._toFlat;
  internals.headersSetGuard = Headers._setGuard;
  internals.headersSetIfAbsent = Headers._setIfAbsent;
  delete Headers._fromTrustedFlat;
  delete Headers._toFlat;
  delete Headers._setGuard;
  delete Headers._setIfAbsent;
  internals.HEADERS_NONE = NONE;
  internals.HEADERS_IMMUTABLE = IMMUTABLE;
  internals.Headers = Headers;
  webClass(Headers, "Headers");
  defineHidden(global, "Headers", Headers);
})

// Request and Response with their shared Body methods, as the Fetch Standard and Cloudflare
// Workers define them. Bodies are held whole (a string or a Uint8Array); streams come later.
(function (ops, internals, global) {
  "use strict";
  const { defineHidden, webClass, inspectSymbol, Headers, bytesOf } = internals;
  const PromiseResolve = Promise.resolve.bind(Promise);
  const PromiseReject = Promise.reject.bind(Promise);

  // Turns a BodyInit into what isobar stores (null, a string or a Uint8Array) and the
  // content type it implies, as the standard's "extract a body" does.
  function extractBody(init) {
    if (init === undefined || init === null) return [null, null];
    if (typeof init === "string") return [init, "text/plain;charset=UTF-8"];
    if (init instanceof ArrayBuffer) return [new Uint8Array(init.slice(0)), null];
    if (ArrayBuffer.isView(init)) return [bytesOf(init).slice(), null];
    if (init instanceof internals.URLSearchParams) return [init.toString(), "application/x-www-form-urlencoded;charset=UTF-8"];
    if (typeof init === "object" && typeof init.getReader === "function") {
      throw new TypeError("ReadableStream bodies are not supported by isobar yet; pass a string or bytes");
    }
    // Any other value converts to a string, as Web IDL's union conversion does.
    return [String(init), "text/plain;charset=UTF-8"];
  }

  function bodyText(body) {
    if (body === null) return "";
    if (typeof body === "string") return body;
    return internals.decodeUtf8(body);
  }
  function bodyBytes(body) {
    if (body === null) return new Uint8Array(0);
    if (typeof body === "string") return internals.encodeUtf8(body);
    return body.slice();
  }

  // The Body mixin: every method reads the body once.
  class Body {
    #body = null;
    #used = false;
    static _init(target, body) { target.#body = body; }
    static _peek(target) { return target.#body; }
    static _take(target, what) {
      if (target.#used) throw new TypeError(`${what}: body has already been used. It can only be used once. Use tee() first if you need to read it twice.`);
      if (target.#body !== null) target.#used = true;
      return target.#body;
    }
    get bodyUsed() { return this.#used; }
    text() {
      try { return PromiseResolve(bodyText(takeBody(this, "text()"))); } catch (e) { return PromiseReject(e); }
    }
    arrayBuffer() {
      try { return PromiseResolve(bodyBytes(takeBody(this, "arrayBuffer()")).buffer); } catch (e) { return PromiseReject(e); }
    }
    bytes() {
      try { return PromiseResolve(bodyBytes(takeBody(this, "bytes()"))); } catch (e) { return PromiseReject(e); }
    }
    json() {
      try { return PromiseResolve(JSON.parse(bodyText(takeBody(this, "json()")))); } catch (e) { return PromiseReject(e); }
    }
  }
  const initBody = Body._init;
  const peekBody = Body._peek;
  const takeBody = Body._take;
  delete Body._init;
  delete Body._peek;
  delete Body._take;

  const METHOD_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
  const NORMALIZED_METHODS = new Set(["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"]);
  function normalizeMethod(m) {
    const s = String(m);
    if (!METHOD_TOKEN.test(s)) throw new TypeError(`Invalid HTTP method: ${JSON.stringify(s)}`);
    const upper = s.toUpperCase();
    if (upper === "CONNECT" || upper === "TRACE" || upper === "TRACK") throw new TypeError(`Forbidden HTTP method: ${s}`);
    return NORMALIZED_METHODS.has(upper) ? upper : s;
  }

  // A sentinel input the constructor accepts only from isobar itself: the server already built
  // the URL of an incoming request, so parsing it again would be wasted work.
  const INCOMING = Symbol("incoming");

  class Request extends Body {
    #method = "GET";
    #url = "";
    #headers = null;
    #flatHeaders = null; // incoming requests build their Headers lazily, on first use
    #redirect = "follow";
    #signal = null;
    #cf = undefined;

    constructor(input, init = {}) {
      super();
      if (input === INCOMING) return;
      if (arguments.length === 0) throw new TypeError("Request: 1 argument required");
      if (init === null || init === undefined) init = {};
      let body = null;
      if (input instanceof Request) {
        this.#method = input.#method;
        this.#url = input.#url;
        this.#headers = new Headers(input.headers);
        this.#redirect = input.#redirect;
        this.#cf = input.#cf;
        this.#signal = input.#signal;
        body = peekBody(input);
        if (init.body === undefined && body !== null) takeBody(input, "new Request()");
      } else {
        const url = input instanceof URL ? input : new URL(String(input));
        this.#url = url.href;
      }
      if (init.method !== undefined) this.#method = normalizeMethod(init.method);
      if (init.headers !== undefined) this.#headers = new Headers(init.headers);
      if (this.#headers === null) this.#headers = new Headers();
      if (init.redirect !== undefined) {
        const r = String(init.redirect);
        if (r !== "follow" && r !== "manual" && r !== "error") throw new TypeError(`Invalid redirect mode: ${r}`);
        this.#redirect = r;
      }
      if (init.signal !== undefined) this.#signal = init.signal;
      if (init.cf !== undefined) this.#cf = init.cf;
      if (init.body !== undefined) {
        const [b, type] = extractBody(init.body);
        body = b;
        if (type !== null) internals.headersSetIfAbsent(this.#headers, "content-type", type);
      }
      if (body !== null && (this.#method === "GET" || this.#method === "HEAD")) {
        throw new TypeError("Request with a GET or HEAD method cannot have a body.");
      }
      initBody(this, body);
    }

    get method() { return this.#method; }
    get url() { return this.#url; }
    get headers() {
      if (this.#headers === null) {
        this.#headers = internals.headersFromTrustedFlat(this.#flatHeaders, internals.HEADERS_IMMUTABLE);
        this.#flatHeaders = null;
      }
      return this.#headers;
    }
    get redirect() { return this.#redirect; }
    get signal() { return this.#signal ?? (this.#signal = new AbortController().signal); }
    get cf() { return this.#cf; }
    get keepalive() { return false; }
    get integrity() { return ""; }
    get body() { return null; }
    clone() {
      if (this.bodyUsed) throw new TypeError("clone(): the body has already been used");
      return new Request(this.url, {
        method: this.#method, headers: this.headers, body: peekBody(this) ?? undefined,
        redirect: this.#redirect, signal: this.#signal ?? undefined, cf: this.#cf,
      });
    }
    [inspectSymbol](inspect) {
      return `Request { method: ${inspect(this.#method)}, url: ${inspect(this.#url)}, headers: ${inspect(this.headers)} }`;
    }

    // The incoming request of an HTTP event: headers stay a flat array until asked for.
    static _fromWire(method, url, flat, body) {
      const r = new Request(INCOMING, undefined);
      r.#method = method;
      r.#url = url;
      r.#headers = null;
      r.#flatHeaders = flat;
      initBody(r, body);
      return r;
    }
  }
  internals.requestFromWire = Request._fromWire;
  delete Request._fromWire;
  webClass(Request, "Request");

  const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);
  const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308]);
  const REASON = /^[\t\x20-\x7e\x80-\xff]*$/;

  class Response extends Body {
    #status = 200;
    #statusText = "";
    #headers;
    #type = "default";
    #url = "";
    #redirected = false;

    constructor(body = null, init = {}) {
      super();
      if (init === null || init === undefined) init = {};
      if (typeof init !== "object") throw new TypeError("Response: the init argument must be an object");
      if (init.status !== undefined) {
        const s = Number(init.status);
        // workerd accepts 101 for WebSocket upgrades; otherwise the standard's 200..599 range.
        if (!Number.isInteger(s) || s < 200 || s > 599) {
          if (!(s === 101 && init.webSocket)) throw new RangeError(`Responses may only be constructed with status codes in the range 200 to 599, inclusive. (got ${init.status})`);
        }
        this.#status = s;
      }
      if (init.statusText !== undefined) {
        const t = String(init.statusText);
        if (!REASON.test(t)) throw new TypeError(`Invalid statusText: ${JSON.stringify(t)}`);
        this.#statusText = t;
      }
      this.#headers = new Headers(init.headers);
      const [b, type] = extractBody(body);
      if (b !== null && NULL_BODY_STATUS.has(this.#status)) {
        throw new TypeError(`Response with null body status ${this.#status} cannot have a body.`);
      }
      if (type !== null) internals.headersSetIfAbsent(this.#headers, "content-type", type);
      initBody(this, b);
    }

    static json(data, init = {}) {
      const text = JSON.stringify(data);
      if (text === undefined) throw new TypeError("Response.json: the value cannot be converted to JSON");
      const r = new Response(text, init);
      r.#headers.set("content-type", "application/json");
      return r;
    }
    static redirect(url, status = 302) {
      const s = Number(status);
      if (!REDIRECT_STATUS.has(s)) throw new RangeError(`Invalid redirect status: ${status}`);
      const href = new URL(String(url)).href;
      const r = new Response(null, { status: s, headers: { location: href } });
      internals.headersSetGuard(r.#headers, internals.HEADERS_IMMUTABLE);
      return r;
    }
    static error() {
      const r = new Response(null, { status: 200 });
      r.#status = 0;
      r.#type = "error";
      internals.headersSetGuard(r.#headers, internals.HEADERS_IMMUTABLE);
      return r;
    }

    get status() { return this.#status; }
    get statusText() { return this.#statusText; }
    get ok() { return this.#status >= 200 && this.#status <= 299; }
    get headers() { return this.#headers; }
    get type() { return this.#type; }
    get url() { return this.#url; }
    get redirected() { return this.#redirected; }
    get body() { return null; }
    get webSocket() { return null; }
    clone() {
      if (this.bodyUsed) throw new TypeError("clone(): the body has already been used");
      const r = new Response(null, { status: this.#status === 0 ? 200 : this.#status, statusText: this.#statusText, headers: this.#headers });
      r.#status = this.#status;
      r.#type = this.#type;
      r.#url = this.#url;
      initBody(r, peekBody(this));
      return r;
    }
    [inspectSymbol](inspect) {
      return `Response { status: ${this.#status}, statusText: ${inspect(this.#statusText)}, headers: ${inspect(this.#headers)} }`;
    }

    // What the HTTP server writes: [status, statusText, flat headers, body].
    static _toWire(r) {
      return [r.#status, r.#statusText, internals.headersToFlat(r.#headers), takeBody(r, "respond")];
    }
  }
  internals.responseToWire = Response._toWire;
  delete Response._toWire;
  internals.Response = Response;
  internals.Request = Request;
  webClass(Response, "Response");

  defineHidden(global, "Request", Request);
  defineHidden(global, "Response", Response);
})

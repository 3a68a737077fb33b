// WebSocket and WebSocketPair, as workerd has them: a Worker serves a WebSocket by making a pair,
// accepting one end and returning the other in a `101` Response; it opens one with
// `new WebSocket(url)` or `fetch()` with `Upgrade: websocket`. The framing is the core's
// (netstack/src/websocket.rs); this file is the objects, their states and their events.
//
// Each end is local until it is bound to a connection: two local ends of a pair talk to each
// other inside the isolate (a message is delivered as an event in a later microtask). Returning
// an end in a Response binds its peer to the client's connection (`hooks.bindWebSocket`, called
// by the core while it reads the Response): from then on the peer's sends go to the core by id
// (`ops.wsSend`, `ops.wsClose`), and the core's events come back through `hooks.webSocketEvent`.
(function (ops, internals, global, primordials) {
  "use strict";
  const {
    ArrayPrototypePush, ObjectDefineProperty, PromisePrototypeThen, PromiseResolve, RangeError: RangeErrorCtor,
    SafeMap, SafeWeakMap, String: StringCtor, TypeError: TypeErrorCtor, Uint8Array: Uint8ArrayCtor,
  } = primordials;
  const { webClass, hooks, defineHidden, DOMException, newList, listPush, listShift, listTake } = internals;
  // Captured at bootstrap, before any script can replace the globals.
  const { MessageEvent, ErrorEvent, TextEncoder, URL } = global;
  const token = {};

  const CONNECTING = 0;
  const OPEN = 1;
  const CLOSING = 2;
  const CLOSED = 3;
  // Workers' limit on one message, both ways.
  const MESSAGE_BYTES_MAX = 1024 * 1024;
  // Events a local end holds until it is accepted.
  const QUEUED_EVENTS_MAX = 4096;

  const encoder = new TextEncoder();

  // Core-bound ends by id.
  const bound = new SafeMap();
  let lastId = 0;

  class CloseEvent extends internals.Event {
    #code; #reason; #wasClean;
    constructor(type, init = undefined) {
      super(type, init);
      this.#code = (init?.code ?? 0) & 0xffff;
      this.#reason = init?.reason === undefined ? "" : StringCtor(init.reason);
      this.#wasClean = !!init?.wasClean;
    }
    get code() { return this.#code; }
    get reason() { return this.#reason; }
    get wasClean() { return this.#wasClean; }
  }
  webClass(CloseEvent, "CloseEvent");

  class WebSocket extends internals.EventTarget {
    #state = OPEN;
    // accept() was called (or the end is a client's own, which needs none).
    #accepted = false;
    // The end was returned in a Response: its peer is bound to the connection.
    #coupled = false;
    // The other end of a local pair, until one of them is bound.
    #peer = null;
    // The core's id once bound to a connection.
    #id = 0;
    // Events not yet delivered (all of them until accept()), and whether a delivery is scheduled.
    #queue = newList();
    #scheduled = false;
    #url = null;
    #protocol = "";
    #binaryType = "arraybuffer";
    #closeSent = false;

    constructor(url, protocols = undefined) {
      super();
      if (url === token) return;
      // new WebSocket(url[, protocols]): a client socket, opened by the core.
      const parsed = parseUrl(url);
      const list = protocols === undefined ? [] : typeof protocols === "string" ? [protocols] : [...protocols];
      for (const p of list) {
        if (typeof p !== "string" || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(p)) {
          throw new DOMException(`Failed to construct 'WebSocket': invalid subprotocol ${StringCtor(p)}`, "SyntaxError");
        }
      }
      this.#url = parsed;
      this.#state = CONNECTING;
      this.#accepted = true;
      const id = ++lastId;
      this.#id = id;
      bound.set(id, this);
      const promise = ops.wsConnect(id, httpUrl(parsed), list.join(", "), []);
      promise.then(
        (reply) => {
          if (this.#state !== CONNECTING) return;
          this.#protocol = reply[0];
          this.#state = OPEN;
          this.#fire(new internals.Event("open"));
        },
        (error) => {
          bound.delete(id);
          if (this.#state === CLOSED) return;
          this.#state = CLOSED;
          this.#fire(new ErrorEvent("error", { message: error.message, error }));
          this.#fire(new CloseEvent("close", { code: 1006, reason: "", wasClean: false }));
        },
      );
    }

    static #pair() {
      const a = new WebSocket(token);
      const b = new WebSocket(token);
      a.#peer = b;
      b.#peer = a;
      return [a, b];
    }

    // fetch() with `Upgrade: websocket`: the Response (101) of the server's accepted
    // handshake, whose `webSocket` must be accepted before use. Registered before the
    // handshake ends, so no message that follows it is missed.
    static async #fetch(request) {
      const ws = new WebSocket(token);
      const id = ++lastId;
      ws.#id = id;
      ws.#url = parseUrl(request.url);
      bound.set(id, ws);
      const pairs = [];
      for (const pair of request.headers) ArrayPrototypePush(pairs, pair);
      const protocols = request.headers.get("sec-websocket-protocol") ?? "";
      let reply;
      try {
        reply = await ops.wsConnect(id, request.url, protocols, pairs);
      } catch (error) {
        bound.delete(id);
        throw error;
      }
      ws.#protocol = reply[0];
      return new internals.Response(null, { status: 101, statusText: reply[2], headers: reply[3], webSocket: ws });
    }

    // Binds the peer of `client` (returned in a 101 Response) to a connection: the core's id.
    static #bind(client) {
      if (!(#peer in client)) throw new TypeErrorCtor("webSocket must be a WebSocket");
      if (client.#coupled) throw new TypeErrorCtor("This WebSocket was already returned in a Response.");
      if (client.#accepted) throw new TypeErrorCtor("Can't return a WebSocket in a Response after calling accept() on it.");
      if (client.#id !== 0 && client.#peer === null) {
        // A socket fetch() opened, returned as it is: the core joins the client's connection
        // to it, and messages pass between them without entering the isolate.
        const id = ++lastId;
        const origin = client.#id;
        bound.delete(origin);
        client.#coupled = true;
        client.#state = CLOSED;
        const arrived = listTake(client.#queue);
        for (let node = arrived.head; node !== null; node = node.next) {
          const event = node.value;
          if (event.type === "message") ops.wsSend(id, toWire(event.data));
          else if (event.type === "close") ops.wsClose(id, event.code >= 3000 || event.code === 1000 ? event.code : 1000, event.reason);
        }
        return [id, origin];
      }
      const server = client.#peer;
      if (server === null || client.#id !== 0) {
        throw new TypeErrorCtor("Only one end of a WebSocketPair can be returned in a Response.");
      }
      const id = ++lastId;
      client.#coupled = true;
      client.#peer = null;
      client.#state = CLOSED;
      server.#peer = null;
      server.#id = id;
      bound.set(id, server);
      // What the server end sent before the response goes out first, in order.
      const sent = listTake(client.#queue);
      for (let node = sent.head; node !== null; node = node.next) {
        const event = node.value;
        if (event.type === "message") ops.wsSend(id, toWire(event.data));
        else if (event.type === "close") ops.wsClose(id, event.code, event.reason);
      }
      return [id, 0];
    }

    // An event from the core for the end bound as `id`.
    static #coreEvent(id, kind, a, b) {
      const ws = bound.get(id);
      if (ws === undefined) return;
      if (kind === 1 || kind === 2) {
        // CONNECTING: a message right behind the handshake, delivered after `open`.
        if (ws.#state === CLOSED) return;
        let data = a;
        if (kind === 2) data = ws.#binaryType === "blob" ? new internals.Blob([a]) : bytesToBuffer(a);
        ws.#receive(new MessageEvent("message", { data }));
      } else if (kind === 3) {
        bound.delete(id);
        if (ws.#state === CLOSED) return;
        ws.#state = CLOSED;
        if (!b) ws.#receive(new ErrorEvent("error", { message: a.reason }));
        ws.#receive(new CloseEvent("close", { code: a.code, reason: a.reason, wasClean: b }));
      }
    }

    // An event for this end: now if accepted, else when accept() is called.
    #receive(event) {
      if (this.#queue.size >= QUEUED_EVENTS_MAX) {
        // An end nobody accepts cannot hold without bound what its peer sends.
        if (this.#id !== 0) ops.wsClose(this.#id, 1011, "too many messages before accept()");
        return;
      }
      listPush(this.#queue, event);
      this.#schedule();
    }

    #schedule() {
      if (!this.#accepted || this.#coupled || this.#scheduled || this.#queue.size === 0) return;
      this.#scheduled = true;
      PromisePrototypeThen(PromiseResolve(), () => {
        this.#scheduled = false;
        // One event per microtask: listeners may close or send in between.
        if (this.#queue.size === 0) return;
        const event = listShift(this.#queue);
        try {
          this.#fire(event);
        } finally {
          this.#schedule();
        }
      });
    }

    #fire(event) {
      if (event.type === "close") this.#state = CLOSED;
      internals.dispatchEvent(this, event, true);
    }

    accept() {
      if (this.#coupled) throw new TypeErrorCtor("Can't accept() a WebSocket that was already used in a response.");
      if (this.#accepted) {
        if (this.#url !== null) throw new TypeErrorCtor("Websockets obtained from the 'new WebSocket()' constructor cannot call accept");
        return;
      }
      this.#accepted = true;
      this.#schedule();
    }

    send(message) {
      if (!this.#accepted) {
        throw new TypeErrorCtor("You must call accept() on this WebSocket before sending messages.");
      }
      if (this.#state === CONNECTING) throw new DOMException("The WebSocket is still connecting.", "InvalidStateError");
      if (this.#closeSent || this.#state === CLOSED) throw new TypeErrorCtor("Can't call WebSocket send() after close().");
      let data;
      if (typeof message === "string") {
        data = message;
      } else if (internals.isBufferSource(message)) {
        data = internals.copyBytes(message, "WebSocket.send");
      } else if (internals.isBlob(message)) {
        throw new TypeErrorCtor("WebSocket send() does not take a Blob here: send its arrayBuffer()");
      } else {
        data = StringCtor(message);
      }
      const size = typeof data === "string" ? encoder.encode(data).length : data.byteLength;
      if (size > MESSAGE_BYTES_MAX) {
        throw new RangeErrorCtor(`WebSocket message is too large: ${size} bytes (the limit is ${MESSAGE_BYTES_MAX})`);
      }
      if (this.#id !== 0) {
        ops.wsSend(this.#id, data);
      } else if (this.#peer !== null) {
        this.#peer.#receive(new MessageEvent("message", { data: typeof data === "string" ? data : data.buffer }));
      }
    }

    close(code = undefined, reason = undefined) {
      if (code !== undefined) {
        code = internals.enforceRange(code, 0, 65535, "WebSocket.close");
        if (code !== 1000 && (code < 3000 || code > 4999)) {
          throw new DOMException(`Invalid WebSocket close code: ${code}`, "InvalidAccessError");
        }
      }
      reason = reason === undefined ? "" : StringCtor(reason);
      if (encoder.encode(reason).length > 123) {
        throw new DOMException("The WebSocket close reason is longer than 123 bytes.", "SyntaxError");
      }
      if (!this.#accepted) throw new TypeErrorCtor("You must call accept() on this WebSocket before closing it.");
      if (this.#closeSent || this.#state === CLOSED) return;
      this.#closeSent = true;
      if (this.#state === OPEN) this.#state = CLOSING;
      const wireCode = code === undefined ? 1005 : code;
      if (this.#id !== 0) {
        ops.wsClose(this.#id, wireCode === 1005 ? 1000 : wireCode, reason);
      } else if (this.#peer !== null) {
        const peer = this.#peer;
        peer.#receive(new CloseEvent("close", { code: wireCode, reason, wasClean: true }));
        // The close handshake between two local ends is over at once.
        this.#state = CLOSED;
        PromisePrototypeThen(PromiseResolve(), () => {
          this.#fire(new CloseEvent("close", { code: wireCode, reason, wasClean: true }));
        });
      }
    }

    get readyState() { return this.#state; }
    get url() { return this.#url; }
    get protocol() { return this.#protocol; }
    get extensions() { return ""; }
    get bufferedAmount() { return 0; }
    get binaryType() { return this.#binaryType; }
    set binaryType(value) {
      if (value === "arraybuffer" || value === "blob") this.#binaryType = value;
    }

    static {
      internals.webSocketPair = () => WebSocket.#pair();
      internals.fetchWebSocket = (request) => WebSocket.#fetch(request);
      hooks.bindWebSocket = (client) => WebSocket.#bind(client);
      hooks.webSocketEvent = (id, kind, a, b) => WebSocket.#coreEvent(id, kind, a, b);
    }
  }
  for (const [name, value] of [["CONNECTING", CONNECTING], ["OPEN", OPEN], ["CLOSING", CLOSING], ["CLOSED", CLOSED]]) {
    ObjectDefineProperty(WebSocket, name, { value, enumerable: true });
    ObjectDefineProperty(WebSocket.prototype, name, { value, enumerable: true });
  }
  for (const name of ["open", "message", "close", "error"]) {
    const handlers = new SafeWeakMap();
    ObjectDefineProperty(WebSocket.prototype, "on" + name, {
      get() { return handlers.get(this) ?? null; },
      set(listener) {
        const old = handlers.get(this);
        if (old !== undefined) this.removeEventListener(name, old);
        if (typeof listener === "function") {
          handlers.set(this, listener);
          this.addEventListener(name, listener);
        } else {
          handlers.delete(this);
        }
      },
      configurable: true,
      enumerable: true,
    });
  }
  webClass(WebSocket, "WebSocket");

  class WebSocketPair {
    constructor() {
      const [client, server] = internals.webSocketPair();
      ObjectDefineProperty(this, 0, { value: client, enumerable: true });
      ObjectDefineProperty(this, 1, { value: server, enumerable: true });
    }
  }
  webClass(WebSocketPair, "WebSocketPair");

  // A ws:/wss:/http:/https: URL, as a WebSocket's `url` (ws/wss).
  function parseUrl(url) {
    let parsed;
    try {
      parsed = new URL(StringCtor(url));
    } catch {
      throw new DOMException(`Failed to construct 'WebSocket': the URL '${StringCtor(url)}' is invalid.`, "SyntaxError");
    }
    if (parsed.protocol === "http:") parsed.protocol = "ws:";
    else if (parsed.protocol === "https:") parsed.protocol = "wss:";
    if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
      throw new DOMException(`Failed to construct 'WebSocket': the URL's scheme must be 'ws' or 'wss'; '${parsed.protocol}' is not allowed.`, "SyntaxError");
    }
    if (parsed.hash !== "") {
      throw new DOMException("Failed to construct 'WebSocket': the URL contains a fragment identifier.", "SyntaxError");
    }
    return parsed.href;
  }

  // The http(s) URL the upgrade request goes to.
  function httpUrl(wsUrl) {
    return wsUrl.startsWith("wss:") ? "https:" + wsUrl.slice(4) : "http:" + wsUrl.slice(3);
  }

  function bytesToBuffer(bytes) {
    if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes.buffer;
    return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  }

  // What a queued local message becomes on the wire.
  function toWire(data) {
    return typeof data === "string" ? data : new Uint8ArrayCtor(data);
  }

  internals.WebSocket = WebSocket;
  defineHidden(global, "WebSocket", WebSocket);
  defineHidden(global, "WebSocketPair", WebSocketPair);
  defineHidden(global, "CloseEvent", CloseEvent);
})

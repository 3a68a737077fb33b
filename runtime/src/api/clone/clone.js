// structuredClone(), MessageChannel, MessagePort and MessageEvent (HTML standard), on V8's
// serializer (clone/mod.rs).
(function (ops, internals, global, primordials) {
  "use strict";
  const {
    ArrayPrototypePush, ObjectFreeze, ObjectPrototypeToString,
    PromisePrototypeThen, PromiseResolve, String: StringCtor, StringPrototypeSlice, SymbolIterator,
    TypeError: TypeErrorCtor, RangeError: RangeErrorCtor,
  } = primordials;
  const { defineHidden, webClass, token, DOMException, Event, EventTarget, newList, listPush, listShift } = internals;

  // ---------------------------------------------------------------------------------------------
  // Host objects: isobar's classes written in JS. An instance of one of these (or of a subclass)
  // is never copied as a plain object: Blob and File are serializable, the others throw.
  const hostPrototypes = [];
  for (const ctor of [internals.Blob, internals.FormData, Event, EventTarget]) {
    ArrayPrototypePush(hostPrototypes, ctor.prototype);
  }
  // Other areas' classes, as far as they are loaded before this file (it is bootstrapped late).
  // Read once, here, before any tenant code exists.
  for (const name of [
    "URL", "URLSearchParams", "URLPattern", "AbortController", "TextEncoder", "TextDecoder", "Crypto",
    "SubtleCrypto", "CryptoKey", "DigestStream", "ReadableStream", "ReadableStreamDefaultReader",
    "ReadableStreamBYOBReader", "ReadableStreamDefaultController", "ReadableByteStreamController",
    "WritableStream", "WritableStreamDefaultWriter", "TransformStream", "IdentityTransformStream",
    "FixedLengthStream", "CompressionStream", "DecompressionStream", "TextEncoderStream",
    "TextDecoderStream", "WebSocket", "Cache", "CacheStorage",
  ]) {
    const ctor = global[name];
    if (typeof ctor === "function" && ctor.prototype !== undefined) ArrayPrototypePush(hostPrototypes, ctor.prototype);
  }
  // (MessagePort and MessageChannel are added below, once they exist.)

  const dataCloneError = (message) => new DOMException(message, "DataCloneError");

  // The clone of a host object, made while serialising (V8 runs no JavaScript while it
  // deserialises). A Blob is immutable, so its clone shares its bytes.
  function hostClone(object) {
    if (internals.isBlob(object)) {
      const bytes = internals.blobBytes(object);
      const type = internals.blobType(object);
      if (internals.isFile(object)) {
        return internals.newFile(bytes, type, internals.fileName(object), internals.fileLastModified(object));
      }
      return internals.newBlob(bytes, type);
    }
    // "[object FormData]" -> "FormData"
    const name = StringPrototypeSlice(ObjectPrototypeToString(object), 8, -1);
    throw dataCloneError(`${name} object could not be cloned.`);
  }

  // sequence<object> transfer -> the list of ArrayBuffers to transfer. A MessagePort in it is a
  // DataCloneError: isobar does not transfer ports (docs/compat.md).
  function readTransferList(transfer, what) {
    if (transfer === null || (typeof transfer !== "object" && typeof transfer !== "function") || typeof transfer[SymbolIterator] !== "function") {
      throw new TypeErrorCtor(`${what}: the transfer list must be a sequence of objects`);
    }
    const list = [];
    for (const item of transfer) {
      if (item === null || (typeof item !== "object" && typeof item !== "function")) {
        throw new TypeErrorCtor(`${what}: every item of the transfer list must be an object`);
      }
      if (isPort(item)) throw dataCloneError(`${what}: transferring a MessagePort is not supported`);
      ArrayPrototypePush(list, item);
    }
    return list;
  }

  // StructuredSerializeOptions { sequence<object> transfer = [] }
  function readOptions(options, what) {
    if (options === undefined || options === null) return [];
    if (typeof options !== "object" && typeof options !== "function") {
      throw new TypeErrorCtor(`${what}: the options argument must be an object`);
    }
    const transfer = options.transfer;
    return transfer === undefined ? [] : readTransferList(transfer, what);
  }

  // [data, transferred ArrayBuffers, host object clones]
  const serialize = (value, transfer) => ops.cloneSerialize(value, transfer, hostPrototypes, hostClone);
  const deserialize = (serialized) => ops.cloneDeserialize(serialized[0], serialized[1], serialized[2]);

  defineHidden(global, "structuredClone", function structuredClone(value, options = undefined) {
    if (arguments.length === 0) throw new TypeErrorCtor("structuredClone: 1 argument required, but only 0 present.");
    return deserialize(serialize(value, readOptions(options, "structuredClone")));
  });

  // ---------------------------------------------------------------------------------------------
  // MessageEvent

  class MessageEvent extends Event {
    #data; #origin; #lastEventId; #source; #ports;
    constructor(type, init = undefined) {
      super(type, init);
      this.#data = init?.data ?? null;
      this.#origin = init?.origin === undefined ? "" : StringCtor(init.origin);
      this.#lastEventId = init?.lastEventId === undefined ? "" : StringCtor(init.lastEventId);
      this.#source = init?.source ?? null;
      const ports = [];
      if (init?.ports !== undefined) {
        for (const port of init.ports) {
          if (!isPort(port)) throw new TypeErrorCtor("MessageEvent: init.ports must contain only MessagePorts");
          ArrayPrototypePush(ports, port);
        }
      }
      this.#ports = ObjectFreeze(ports);
    }
    get data() { return this.#data; }
    get origin() { return this.#origin; }
    get lastEventId() { return this.#lastEventId; }
    get source() { return this.#source; }
    get ports() { return this.#ports; }
  }
  webClass(MessageEvent, "MessageEvent");

  // ---------------------------------------------------------------------------------------------
  // MessageChannel and MessagePort. Both ends live in this isolate; a message is serialised when
  // it is posted and deserialised when it is delivered, one microtask per message, in order.

  // Messages one port may hold before it is started (or while its handlers run behind): a
  // script posting in a loop to a port nobody reads gets a RangeError, not an unbounded queue.
  const QUEUED_MESSAGES_MAX = 10000;
  let entangle, disentangle, isPort, enqueue, schedule, deliver;

  class MessagePort extends EventTarget {
    // #queue holds the messages not yet delivered.
    #partner = null; #started = false; #closed = false; #queue = newList(); #scheduled = false;
    #onmessage = null; #onmessageerror = null;
    constructor(key) {
      super();
      if (key !== token) throw new TypeErrorCtor("Illegal constructor");
    }
    postMessage(message, transferOrOptions = undefined) {
      if (arguments.length === 0) throw new TypeErrorCtor("MessagePort.postMessage: 1 argument required, but only 0 present.");
      // Overloads: (message, sequence<object> transfer) or (message, StructuredSerializeOptions).
      const transfer = transferOrOptions !== null && typeof transferOrOptions === "object" && typeof transferOrOptions[SymbolIterator] === "function"
        ? readTransferList(transferOrOptions, "MessagePort.postMessage")
        : readOptions(transferOrOptions, "MessagePort.postMessage");
      // Serialised even when nobody will receive it: errors and transfers happen regardless.
      const serialized = serialize(message, transfer);
      const target = this.#partner;
      if (target === null || this.#closed) return;
      enqueue(target, serialized);
    }
    start() {
      if (this.#started || this.#closed) return;
      this.#started = true;
      schedule(this);
    }
    close() {
      this.#closed = true;
      this.#queue = newList();
      const partner = this.#partner;
      this.#partner = null;
      if (partner !== null) disentangle(partner);
    }
    get onmessage() { return this.#onmessage; }
    set onmessage(handler) {
      if (this.#onmessage !== null) this.removeEventListener("message", this.#onmessage);
      this.#onmessage = typeof handler === "function" ? handler : null;
      if (this.#onmessage !== null) this.addEventListener("message", this.#onmessage);
      // Setting onmessage starts the port, as the HTML standard says.
      this.start();
    }
    get onmessageerror() { return this.#onmessageerror; }
    set onmessageerror(handler) {
      if (this.#onmessageerror !== null) this.removeEventListener("messageerror", this.#onmessageerror);
      this.#onmessageerror = typeof handler === "function" ? handler : null;
      if (this.#onmessageerror !== null) this.addEventListener("messageerror", this.#onmessageerror);
    }
    // Private-state helpers for the functions below, made in a static block so that nothing
    // but this file can reach them.
    static {
      entangle = (a, b) => { a.#partner = b; b.#partner = a; };
      disentangle = (port) => { port.#partner = null; };
      isPort = (value) => value !== null && typeof value === "object" && #queue in value;
      enqueue = (port, serialized) => {
        if (port.#closed) return;
        if (port.#queue.size >= QUEUED_MESSAGES_MAX) {
          throw new RangeErrorCtor(`MessagePort.postMessage: the receiving port already holds ${QUEUED_MESSAGES_MAX} undelivered messages`);
        }
        listPush(port.#queue, serialized);
        schedule(port);
      };
      // Queues one delivery if the port is started and has a message waiting.
      schedule = (port) => {
        if (!port.#started || port.#closed || port.#scheduled || port.#queue.size === 0) return;
        port.#scheduled = true;
        PromisePrototypeThen(PromiseResolve(), () => deliver(port));
      };
      // Delivers the next message: a `message` event, or `messageerror` if it cannot be read.
      deliver = (port) => {
        port.#scheduled = false;
        if (port.#closed || port.#queue.size === 0) return;
        const serialized = listShift(port.#queue);
        let data;
        try {
          data = deserialize(serialized);
        } catch {
          try {
            internals.dispatchEvent(port, new MessageEvent("messageerror"), true);
          } finally {
            schedule(port);
          }
          return;
        }
        try {
          internals.dispatchEvent(port, new MessageEvent("message", { data }), true);
        } finally {
          schedule(port);
        }
      };
    }
  }
  webClass(MessagePort, "MessagePort");

  class MessageChannel {
    #port1; #port2;
    constructor() {
      this.#port1 = new MessagePort(token);
      this.#port2 = new MessagePort(token);
      entangle(this.#port1, this.#port2);
    }
    get port1() { return this.#port1; }
    get port2() { return this.#port2; }
  }
  webClass(MessageChannel, "MessageChannel");
  ArrayPrototypePush(hostPrototypes, MessagePort.prototype, MessageChannel.prototype, MessageEvent.prototype);

  internals.structuredSerialize = serialize;
  internals.structuredDeserialize = deserialize;
  defineHidden(global, "MessageEvent", MessageEvent);
  defineHidden(global, "MessagePort", MessagePort);
  defineHidden(global, "MessageChannel", MessageChannel);
})

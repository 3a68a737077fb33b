// KVNamespace: the Workers KV binding on `env` (api/kv/mod.rs has the ops; the core carries
// them out on the tenant's store). Arguments are converted here the way workerd converts them;
// limits (key and value sizes, expiration, metadata) are checked by the store's glue, so their
// errors are the same whichever backend runs. Every method returns a promise: an argument error
// is a rejection, as in workerd, whose methods return promises.
(function (ops, internals, global, primordials) {
  "use strict";
  const {
    ArrayBufferIsView, ArrayBufferPrototypeGetByteLength, ArrayPrototypePush, JSONParse, JSONStringify, MathFloor,
    NumberIsFinite, String: StringCtor, TypeError: TypeErrorCtor,
    TypedArrayPrototypeGetByteLength, TypedArrayPrototypeGetSymbolToStringTag, TypedArrayPrototypeSet,
    Uint8Array: Uint8ArrayCtor, Error: ErrorCtor,
  } = primordials;
  const { hooks, webClass } = internals;
  const S = internals.streams;

  // Workers' largest value; a stream given to put() is read up to this and no further.
  const VALUE_BYTES_MAX = 25 * 1024 * 1024;
  const LIST_LIMIT_MAX = 1000;
  const TYPES = "Possible types are \"text\", \"arrayBuffer\", \"json\", and \"stream\".";
  const CONSTRUCT = {};

  function optionsObject(value, what) {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== "object" && typeof value !== "function") {
      throw new TypeErrorCtor(`${what}: options must be an object`);
    }
    return value;
  }

  // `get(key, "json")` or `get(key, {type, cacheTtl})`: [type, cacheTtl or undefined].
  function getOptions(options) {
    let type = "text";
    let cacheTtl;
    if (typeof options === "string") {
      type = options;
    } else if (options !== undefined && options !== null) {
      optionsObject(options, "KV GET");
      if (options.type !== undefined) type = StringCtor(options.type);
      if (options.cacheTtl !== undefined) cacheTtl = seconds(options.cacheTtl, "cacheTtl");
    }
    if (type !== "text" && type !== "json" && type !== "arrayBuffer" && type !== "stream") {
      throw new TypeErrorCtor(`Unknown response type. ${TYPES}`);
    }
    return [type, cacheTtl];
  }

  // A count of seconds: a finite number, floored, never negative (negative is refused by the
  // store's limits as "too short").
  function seconds(value, what) {
    const n = +value;
    if (!NumberIsFinite(n)) throw new TypeErrorCtor(`KV: ${what} must be a finite number`);
    return n < 0 ? 0 : MathFloor(n);
  }

  function decodeValue(bytes, type) {
    if (type === "text") return internals.decodeUtf8(bytes);
    if (type === "json") return JSONParse(internals.decodeUtf8(bytes));
    if (type === "arrayBuffer") return S.viewInfo(bytes).buffer;
    return internals.streamFromBytes(bytes);
  }

  function decodeMetadata(text) {
    return text === null || text === undefined ? null : JSONParse(text);
  }

  // A put() value as bytes: strings, ArrayBuffers and views at once, streams read fully (at
  // most VALUE_BYTES_MAX + 1 bytes are kept: one more is enough for the store to say it is
  // too large).
  async function valueBytes(value) {
    if (typeof value === "string") return internals.encodeUtf8(value);
    if (ArrayBufferIsView(value)) return value;
    if (value !== null && typeof value === "object" && isArrayBuffer(value)) return new Uint8ArrayCtor(value);
    if (internals.isReadableStream(value)) return await readStream(value);
    throw new TypeErrorCtor("KV put() accepts only strings, ArrayBuffers, ArrayBufferViews, and ReadableStreams as values.");
  }

  function isArrayBuffer(value) {
    try {
      ArrayBufferPrototypeGetByteLength(value);
      return true;
    } catch {
      return false;
    }
  }

  function readStream(stream) {
    const r = S.readableRecordOf(stream);
    if (S.isReadableStreamLocked(r)) {
      throw new TypeErrorCtor("This ReadableStream is currently locked to a reader.");
    }
    const reader = S.acquireReadableStreamDefaultReader(r);
    const result = S.newPromise();
    const chunks = [];
    let total = 0;
    function next() {
      S.readableStreamDefaultReaderRead(reader, {
        __proto__: null,
        chunkSteps: (chunk) => {
          if (!ArrayBufferIsView(chunk)) {
            S.markHandled(S.readableStreamCancel(r, undefined));
            result.reject(new TypeErrorCtor("KV put(): a value stream's chunks must be ArrayBufferViews"));
            return;
          }
          total += TypedArrayPrototypeGetByteLength(chunk);
          if (total > VALUE_BYTES_MAX) {
            const error = new ErrorCtor(
              `KV PUT failed: 413 value length of ${total} bytes exceeds limit of ${VALUE_BYTES_MAX}.`);
            S.markHandled(S.readableStreamCancel(r, error));
            result.reject(error);
            return;
          }
          ArrayPrototypePush(chunks, chunk);
          // Each read is a new microtask turn: a stream of many chunks does not deepen the stack.
          next();
        },
        closeSteps: () => {
          const out = new Uint8ArrayCtor(total);
          let at = 0;
          for (let i = 0; i < chunks.length; i++) {
            const chunk = chunks[i];
            const view = TypedArrayPrototypeGetSymbolToStringTag(chunk) === "Uint8Array"
              ? chunk
              : S.cloneAsUint8Array(chunk);
            TypedArrayPrototypeSet(out, view, at);
            at += TypedArrayPrototypeGetByteLength(view);
          }
          result.resolve(out);
        },
        errorSteps: (e) => result.reject(e),
      });
    }
    next();
    return result.promise;
  }

  class KVNamespace {
    #binding;

    constructor(key, binding) {
      if (key !== CONSTRUCT) throw new TypeErrorCtor("Illegal constructor");
      this.#binding = binding;
    }

    async get(key, options) {
      const parsed = getOptions(options);
      const found = await ops.kvGet(this.#binding, StringCtor(key), parsed[1]);
      if (found === null) return null;
      return decodeValue(found[0], parsed[0]);
    }

    async getWithMetadata(key, options) {
      const parsed = getOptions(options);
      const found = await ops.kvGet(this.#binding, StringCtor(key), parsed[1]);
      if (found === null) return { value: null, metadata: null, cacheStatus: null };
      return { value: decodeValue(found[0], parsed[0]), metadata: decodeMetadata(found[1]), cacheStatus: null };
    }

    async put(key, value, options) {
      const name = StringCtor(key);
      options = optionsObject(options, "KV PUT");
      let expiration;
      let expirationTtl;
      let metadata = null;
      if (options !== undefined) {
        if (options.expiration !== undefined && options.expiration !== null) {
          expiration = seconds(options.expiration, "expiration");
        }
        if (options.expirationTtl !== undefined && options.expirationTtl !== null) {
          expirationTtl = seconds(options.expirationTtl, "expirationTtl");
        }
        if (options.metadata !== undefined && options.metadata !== null) {
          metadata = JSONStringify(options.metadata);
          if (metadata === undefined) throw new TypeErrorCtor("KV PUT failed: metadata must be serializable to JSON");
        }
      }
      const bytes = await valueBytes(value);
      await ops.kvPut(this.#binding, name, bytes, expiration, expirationTtl, metadata);
    }

    async delete(key) {
      await ops.kvDelete(this.#binding, StringCtor(key));
    }

    async list(options) {
      options = optionsObject(options, "KV LIST");
      let prefix = "";
      let limit = LIST_LIMIT_MAX;
      let cursor = null;
      if (options !== undefined) {
        if (options.prefix !== undefined && options.prefix !== null) prefix = StringCtor(options.prefix);
        if (options.limit !== undefined && options.limit !== null) {
          const n = +options.limit;
          if (!NumberIsFinite(n)) throw new TypeErrorCtor("KV LIST failed: limit must be a finite number");
          limit = MathFloor(n);
        }
        if (options.cursor !== undefined && options.cursor !== null && options.cursor !== "") {
          cursor = StringCtor(options.cursor);
        }
      }
      // [complete, cursor or null, names, expirations (undefined when none), metadata texts].
      const page = await ops.kvList(this.#binding, prefix, limit, cursor);
      const names = page[2];
      const expirations = page[3];
      const metadatas = page[4];
      const keys = [];
      for (let i = 0; i < names.length; i++) {
        const entry = { name: names[i] };
        if (expirations[i] !== undefined) entry.expiration = expirations[i];
        if (metadatas[i] !== null) entry.metadata = JSONParse(metadatas[i]);
        ArrayPrototypePush(keys, entry);
      }
      const result = { keys, list_complete: page[0] };
      if (!page[0]) result.cursor = page[1];
      result.cacheStatus = null;
      return result;
    }
  }
  webClass(KVNamespace, "KVNamespace");

  // The binding object for `env`: `binding` is the index of the tenant's KV binding.
  hooks.kvNamespace = (binding) => new KVNamespace(CONSTRUCT, binding);
})

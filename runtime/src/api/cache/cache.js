// Cache and CacheStorage: the Workers Cache API, `caches.default` and `await caches.open(name)`
// (api/cache/mod.rs has the ops; the core carries them to the host's cache store, in the
// tenant's own key space). `caches` is a global of every Worker, as in workerd: there is no
// binding to configure. Methods that return a promise reject rather than throw (workerd's
// capture_async_api_throws); what workerd does not implement throws its "not implemented" Error.
(function (ops, internals, global, primordials) {
  "use strict";
  const { Error: ErrorCtor, String: StringCtor, TypeError: TypeErrorCtor, uncurryThis } = primordials;
  const { defineHidden, webClass } = internals;

  // Response.prototype.bytes as it was at start-up: reads any body (string, bytes, a stream or a
  // subrequest's) whole, within the bound every whole read has, and marks it used.
  const ResponsePrototypeBytes = uncurryThis(internals.Response.prototype.bytes);
  // workerd refuses names of 1024 bytes and more (they travel in a header to its cache).
  const NAME_BYTES_MAX = 1023;
  const UNIMPLEMENTED_OPTIONS = ["ignoreSearch", "ignoreVary", "cacheName"];
  const CONSTRUCT = {};

  function unimplemented(method, type) {
    return new ErrorCtor(`Failed to execute '${method}' on '${type}': the method is not implemented.`);
  }

  // CacheQueryOptions: only ignoreMethod is implemented; workerd refuses a value for the others
  // (a key that is undefined is as good as absent).
  function ignoreMethodOf(options, method) {
    if (options === undefined || options === null) return false;
    if (typeof options !== "object" && typeof options !== "function") {
      throw new TypeErrorCtor(`Failed to execute '${method}' on 'Cache': parameter 2 is not of type 'CacheQueryOptions'.`);
    }
    const ignoreMethod = options.ignoreMethod;
    for (let i = 0; i < UNIMPLEMENTED_OPTIONS.length; i++) {
      const field = UNIMPLEMENTED_OPTIONS[i];
      if (options[field] !== undefined) {
        throw new ErrorCtor(`The '${field}' field on 'CacheQueryOptions' is not implemented.`);
      }
    }
    return !!ignoreMethod;
  }

  class Cache {
    // null for caches.default, the name otherwise: caches.open("default") is another cache.
    #name;

    constructor(key, name) {
      if (key !== CONSTRUCT) throw new TypeErrorCtor("Illegal constructor");
      this.#name = name;
    }

    async match(request, options) {
      const ignoreMethod = ignoreMethodOf(options, "match");
      return await ops.cacheMatch(this.#name, request, ignoreMethod);
    }

    async put(request, response) {
      const name = this.#name;
      // Request, Response and their state are checked before the body is read, as workerd does.
      const url = ops.cachePutCheck(request, response);
      if (url === null) return;
      const bytes = await ResponsePrototypeBytes(response);
      await ops.cachePut(name, url, response, bytes);
    }

    async delete(request, options) {
      const ignoreMethod = ignoreMethodOf(options, "delete");
      return await ops.cacheDelete(this.#name, request, ignoreMethod);
    }

    add() { throw unimplemented("add", "Cache"); }
    addAll() { throw unimplemented("addAll", "Cache"); }
    matchAll() { throw unimplemented("matchAll", "Cache"); }
    keys() { throw unimplemented("keys", "Cache"); }
  }
  webClass(Cache, "Cache");

  class CacheStorage {
    #default;

    constructor(key) {
      if (key !== CONSTRUCT) throw new TypeErrorCtor("Illegal constructor");
      this.#default = new Cache(CONSTRUCT, null);
    }

    get default() {
      return this.#default;
    }

    async open(cacheName) {
      const name = StringCtor(cacheName);
      // Every UTF-16 unit is at least one byte of UTF-8: a long string is refused unencoded.
      if (name.length > NAME_BYTES_MAX || internals.encodeUtf8(name).length > NAME_BYTES_MAX) {
        throw new TypeErrorCtor("Cache name is too long.");
      }
      return new Cache(CONSTRUCT, name);
    }

    match() { throw unimplemented("match", "CacheStorage"); }
    has() { throw unimplemented("has", "CacheStorage"); }
    delete() { throw unimplemented("delete", "CacheStorage"); }
    keys() { throw unimplemented("keys", "CacheStorage"); }
  }
  webClass(CacheStorage, "CacheStorage");

  defineHidden(global, "Cache", Cache);
  defineHidden(global, "CacheStorage", CacheStorage);
  defineHidden(global, "caches", new CacheStorage(CONSTRUCT));
})

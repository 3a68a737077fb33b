// Fetcher: a service binding on `env` (api/service/mod.rs has the op; the core hands the request
// to the other tenant's isolate on the same core). `fetch()` takes what the global fetch() takes;
// the request body is read whole before the call, and the response arrives whole.
(function (ops, internals, global, primordials) {
  "use strict";
  const { TypeError: TypeErrorCtor, Uint8Array: Uint8ArrayCtor } = primordials;
  const { hooks, webClass } = internals;
  const CONSTRUCT = {};

  // Statuses whose responses have no body.
  function nullBodyStatus(status) {
    return status === 101 || status === 204 || status === 205 || status === 304;
  }

  class Fetcher {
    #binding;

    constructor(key, binding) {
      if (key !== CONSTRUCT) throw new TypeErrorCtor("Illegal constructor");
      this.#binding = binding;
    }

    async fetch(input, init = undefined) {
      const request = new internals.Request(input, init);
      const body = request.body === null ? null : new Uint8ArrayCtor(await request.arrayBuffer());
      const reply = await ops.serviceFetch(this.#binding, request, body);
      const status = reply[0];
      return new internals.Response(nullBodyStatus(status) ? null : reply[3], {
        status,
        statusText: reply[1],
        headers: reply[2],
      });
    }
  }
  webClass(Fetcher, "Fetcher");

  // The binding object for `env`: `binding` is the index of the tenant's service binding.
  hooks.serviceBinding = (binding) => new Fetcher(CONSTRUCT, binding);
})

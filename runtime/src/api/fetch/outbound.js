// fetch(): subrequests through the core (api/fetch/outbound.rs, runtime/src/outbound). The
// origin's body stays native until a script reads it: then it becomes a byte stream whose pulls
// are bodyRead ops. Redirects are followed here, with the Fetch Standard's rules.
(function (ops, internals, global, primordials) {
  "use strict";
  const {
    PromisePrototypeThen, PromiseReject, SafeSet, String: StringCtor, TypeError: TypeErrorCtor,
    TypedArrayPrototypeGetByteLength,
  } = primordials;
  const { hooks, defineHidden } = internals;
  const S = internals.streams;

  // A byte stream over a subrequest's body: each pull reads the next piece from the core.
  hooks.streamFromSource = function streamFromSource(source) {
    const r = S.createReadableByteStream(
      S.noop,
      (c) => PromisePrototypeThen(ops.bodyRead(source), (chunk) => {
        if (chunk === null) {
          S.readableByteStreamControllerClose(c);
          const request = c.byobRequest;
          if (request !== null && request !== undefined) request.respond(0);
        } else if (TypedArrayPrototypeGetByteLength(chunk) > 0) {
          S.readableByteStreamControllerEnqueue(c, chunk);
        }
      }),
      () => {
        ops.bodyCancel(source);
        return S.resolvedUndefined;
      },
      0,
    );
    return r.obj;
  };

  // A reader for a script's stream that is the handler's response body (the core reads it).
  hooks.streamReader = function streamReader(stream) {
    const r = S.readableRecordOf(stream);
    if (r === undefined) throw new TypeErrorCtor("the response body is not a ReadableStream");
    if (S.isReadableStreamLocked(r)) throw new TypeErrorCtor("the response body's ReadableStream is locked to a reader");
    return S.acquireReadableStreamDefaultReader(r);
  };
  // The next chunk of such a reader: a Uint8Array, or null at the end; a chunk that is not a
  // Uint8Array rejects (and the response is cut).
  hooks.readChunk = function readChunk(reader) {
    const result = S.newPromise();
    S.readableStreamDefaultReaderRead(reader, {
      __proto__: null,
      chunkSteps: (chunk) => {
        if (primordials.TypedArrayPrototypeGetSymbolToStringTag(chunk) !== "Uint8Array") {
          result.reject(new TypeErrorCtor("a response body stream's chunks must be Uint8Arrays"));
        } else {
          result.resolve(chunk);
        }
      },
      closeSteps: () => result.resolve(null),
      errorSteps: (e) => result.reject(e),
    });
    return result.promise;
  };
  hooks.streamKnownLength = (stream) => internals.streamKnownLength(stream);

  const REDIRECT_STATUS = new SafeSet();
  REDIRECT_STATUS.add(301); REDIRECT_STATUS.add(302); REDIRECT_STATUS.add(303); REDIRECT_STATUS.add(307); REDIRECT_STATUS.add(308);
  const REDIRECTS_MAX = 20;

  function abortError(signal) {
    return signal.reason !== undefined ? signal.reason : new internals.DOMException("The operation was aborted.", "AbortError");
  }

  // Sends one request: resolves with the origin's Response (redirects not followed).
  function send(request, signal) {
    const started = ops.fetchStart(request);
    const key = started[0];
    let promise = started[1];
    const streamed = started[2];
    if (signal !== null) {
      const onAbort = () => ops.fetchAbort(key);
      signal.addEventListener("abort", onAbort, { once: true });
      promise = PromisePrototypeThen(promise, (response) => response, (error) => {
        throw signal.aborted ? abortError(signal) : error;
      });
    }
    if (streamed) upload(key, request.body);
    return promise;
  }

  // Feeds a stream body to the core, one chunk at a time (each write resolves when taken).
  function upload(key, stream) {
    const reader = S.acquireReadableStreamDefaultReader(S.readableRecordOf(stream));
    function next() {
      S.readableStreamDefaultReaderRead(reader, {
        __proto__: null,
        chunkSteps: (chunk) => {
          PromisePrototypeThen(ops.fetchWrite(key, chunk), next, () => ops.fetchAbort(key));
        },
        closeSteps: () => ops.fetchFinish(key),
        errorSteps: () => ops.fetchAbort(key),
      });
    }
    next();
  }

  async function fetch(input, init = undefined) {
    let request = new internals.Request(input, init);
    const signal = request.signal;
    if (signal.aborted) throw abortError(signal);
    // A WebSocket handshake (api/websocket): the Response's `webSocket` is the client end.
    const upgrade = request.headers.get("upgrade");
    if (upgrade !== null && upgrade.trim().toLowerCase() === "websocket") return internals.fetchWebSocket(request);
    const mode = request.redirect;
    for (let hops = 0; ; hops++) {
      const response = await send(request, signal);
      if (hops > 0) ops.fetchRedirected(response);
      if (!REDIRECT_STATUS.has(response.status) || mode === "manual") return response;
      const location = response.headers.get("location");
      if (location === null) return response;
      if (mode === "error") {
        response.body?.cancel();
        throw new TypeErrorCtor(`fetch: redirected to ${location} with redirect mode "error"`);
      }
      if (hops >= REDIRECTS_MAX) {
        response.body?.cancel();
        throw new TypeErrorCtor(`fetch: more than ${REDIRECTS_MAX} redirects`);
      }
      let next;
      try {
        next = new URL(location, request.url).href;
      } catch {
        throw new TypeErrorCtor(`fetch: the redirect location ${StringCtor(location)} is not a valid URL`);
      }
      response.body?.cancel();
      // The standard's rules: 303 (any method but HEAD) and 301/302 after POST become GET without
      // a body; a stream body cannot be sent twice.
      let method = request.method;
      let bodyInit = undefined;
      const status = response.status;
      const headers = new internals.Headers(request.headers);
      if ((status === 303 && method !== "GET" && method !== "HEAD") || ((status === 301 || status === 302) && method === "POST")) {
        method = "GET";
        headers.delete("content-type");
        headers.delete("content-length");
        headers.delete("content-encoding");
        headers.delete("content-language");
        headers.delete("content-location");
      } else if (ops.fetchBodyKind(request) === "stream") {
        throw new TypeErrorCtor("fetch: cannot follow a redirect with a streamed request body");
      } else if (ops.fetchBodyKind(request) === "bytes") {
        bodyInit = await request.arrayBuffer();
      }
      // Credentials do not follow to another origin.
      if (new URL(next).origin !== new URL(request.url).origin) {
        headers.delete("authorization");
        headers.delete("cookie");
        headers.delete("proxy-authorization");
      }
      request = new internals.Request(next, { method, headers, body: bodyInit, redirect: mode, signal, cf: request.cf });
    }
  }
  defineHidden(global, "fetch", fetch);
  internals.fetch = fetch;
  void PromiseReject;
})

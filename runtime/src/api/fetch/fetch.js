// The JavaScript side of the Fetch classes (which are native): what Rust cannot do without
// running the script's own code - iterating a HeadersInit sequence, extracting Blob, FormData,
// URLSearchParams and stream bodies, and reading stream bodies - registered as hooks.
(function (ops, internals, global, primordials) {
  "use strict";
  const {
    ArrayPrototypePush, ArrayPrototypeValues, PromisePrototypeThen, PromiseResolve, String: StringCtor,
    TypeError: TypeErrorCtor, Uint8Array: Uint8ArrayCtor, JSONParse, ArrayBufferPrototypeSlice,
    TypedArrayPrototypeGetBuffer, TypedArrayPrototypeGetByteOffset, TypedArrayPrototypeGetByteLength,
  } = primordials;
  const { hooks } = internals;

  internals.Headers = global.Headers;
  internals.Request = global.Request;
  internals.Response = global.Response;

  // sequence<sequence<ByteString>> -> [name, value, name, value, ...]
  hooks.headerPairs = function headerPairs(init) {
    const flat = [];
    for (const pair of init) {
      if (pair === null || (typeof pair !== "object" && typeof pair !== "function") || typeof pair[Symbol.iterator] !== "function") {
        throw new TypeErrorCtor("Headers: each item of the init sequence must be a [name, value] pair");
      }
      const items = [];
      for (const item of pair) {
        if (items.length === 2) throw new TypeErrorCtor("Headers: each item of the init sequence must have exactly two items");
        ArrayPrototypePush(items, item);
      }
      if (items.length !== 2) throw new TypeErrorCtor("Headers: each item of the init sequence must have exactly two items");
      ArrayPrototypePush(flat, items[0], items[1]);
    }
    return flat;
  };

  // Array.prototype.values as it was at start-up, for Headers' iterators.
  hooks.arrayValues = function arrayValues() { return ArrayPrototypeValues(this); };

  internals.bodyExtractors ??= [];

  // BodyInit kinds other than string and BufferSource -> [body, contentType | null]
  hooks.extractBody = function extractBody(init) {
    // Each API area that defines a BodyInit kind (URLSearchParams, Blob, FormData, ReadableStream) pushes an
    // extractor `(init) => [body, contentType | null] | undefined` onto this list, whichever
    // file loads first creating it.
    const extractors = internals.bodyExtractors;
    for (let i = 0; i < extractors.length; i++) {
      const extracted = extractors[i](init);
      if (extracted !== undefined) return extracted;
    }
    if (internals.extractBodyMore !== undefined) {
      const extracted = internals.extractBodyMore(init);
      if (extracted !== undefined) return extracted;
    }
    // Any other object converts to a string, as Web IDL's union conversion does.
    return [StringCtor(init), "text/plain;charset=UTF-8"];
  };

  // The streams code replaces these when it is loaded (api/streams); without streams a body
  // can only be a string or bytes.
  hooks.streamFromBody = function streamFromBody(body) {
    if (internals.streamFromBytes !== undefined) return internals.streamFromBytes(body);
    return null;
  };
  hooks.streamDisturbed = function streamDisturbed(stream) {
    return internals.streamDisturbed !== undefined ? internals.streamDisturbed(stream) : false;
  };
  hooks.teeStream = function teeStream(stream) {
    if (internals.teeStream !== undefined) return internals.teeStream(stream);
    throw new TypeErrorCtor("clone(): stream bodies cannot be cloned in this build");
  };
  hooks.consumeStream = function consumeStream(stream, kind, contentType) {
    if (internals.readAllBytes === undefined) {
      return primordials.PromiseReject(new TypeErrorCtor("stream bodies are not supported in this build"));
    }
    return PromisePrototypeThen(internals.readAllBytes(stream), (bytes) => convertBytes(bytes, kind, contentType));
  };
  function convertBytes(bytes, kind, contentType) {
    switch (kind) {
      case "text": return internals.decodeUtf8(bytes);
      case "json": return JSONParse(internals.decodeUtf8(bytes));
      case "bytes": return bytes;
      case "arrayBuffer": {
        const buffer = TypedArrayPrototypeGetBuffer(bytes);
        const offset = TypedArrayPrototypeGetByteOffset(bytes);
        return ArrayBufferPrototypeSlice(buffer, offset, offset + TypedArrayPrototypeGetByteLength(bytes));
      }
      case "blob": return hooks.makeBlob(bytes, contentType);
      case "formData": return hooks.parseFormData(bytes, contentType);
    }
    throw new TypeErrorCtor(`unknown body kind ${kind}`);
  }
  // These two answer a rejected promise rather than throwing: body.rs resolves the body
  // method's promise with what they return, and a parse error must reject it.
  hooks.makeBlob = function makeBlob(bytes, contentType) {
    try {
      if (internals.makeBlob !== undefined) return internals.makeBlob(bytes, contentType);
      throw new TypeErrorCtor("blob(): Blob is not available in this build");
    } catch (error) {
      return primordials.PromiseReject(error);
    }
  };
  hooks.parseFormData = function parseFormData(bytes, contentType) {
    try {
      if (internals.parseFormData !== undefined) return internals.parseFormData(bytes, contentType);
      throw new TypeErrorCtor("formData(): FormData is not available in this build");
    } catch (error) {
      return primordials.PromiseReject(error);
    }
  };
  hooks.isAbortSignal = (value) => value instanceof internals.AbortSignal;
  hooks.newAbortSignal = () => new internals.AbortController().signal;
  void PromiseResolve;
  void Uint8ArrayCtor;
})

// CompressionStream and DecompressionStream (the WHATWG Compression Standard): transform
// streams whose codec is a Rust resource (mod.rs). Output comes out in pieces of at most
// OUTPUT_BYTES, each enqueued only once the readable side wants more, so decompressing a bomb
// never holds more than a piece or two at a time unless the reader keeps them.
(function (ops, internals, global, primordials) {
  "use strict";
  const { SafeFinalizationRegistry, String: StringCtor, TypedArrayPrototypeGetByteLength, TypedArrayPrototypeSlice,
    TypeError: TypeErrorCtor } = primordials;
  const { defineHidden, webClass, bytesOf } = internals;
  const S = internals.streams;

  // The largest piece of output one step hands to the reader.
  const OUTPUT_BYTES = 64 << 10;
  const FORMATS = { __proto__: null, "gzip": true, "deflate": true, "deflate-raw": true };

  // A codec's Rust state is freed when its stream finishes, fails or is cancelled; this frees
  // it when a stream a script abandoned half-way is collected.
  const registry = new SafeFinalizationRegistry((id) => ops.compressionFree(id));

  function format(value, what) {
    const name = StringCtor(value);
    if (FORMATS[name] !== true) {
      throw new TypeErrorCtor(`${what}: The compression format must be either 'deflate', 'deflate-raw' or 'gzip'.`);
    }
    return name;
  }

  function free(state) {
    if (state.id === 0) return;
    ops.compressionFree(state.id);
    registry.unregister(state);
    state.id = 0;
  }

  // Feeds `input` (or, when `finish`, the end of the data) through the codec and enqueues the
  // output piece by piece, waiting for the reader between pieces.
  async function pump(state, t, input, finish) {
    try {
      let offset = 0;
      const length = input === undefined ? 0 : TypedArrayPrototypeGetByteLength(input);
      for (;;) {
        if (state.output === undefined) state.output = new S.Uint8Array(OUTPUT_BYTES);
        const counts = ops.compressionRun(state.id, input, offset, state.output, finish);
        offset += counts[0];
        const written = counts[1];
        if (written > 0) {
          S.transformEnqueue(t, TypedArrayPrototypeSlice(state.output, 0, written));
          const ready = S.transformReady(t);
          if (ready !== undefined) await ready;
        }
        if (written < OUTPUT_BYTES && offset >= length) break;
        if (state.id === 0) {
          // The reader cancelled while this waited: the write fails with the cancel reason.
          const writable = t.writable;
          throw writable.state === "erroring" || writable.state === "errored"
            ? writable.storedError
            : new TypeErrorCtor("The stream was cancelled");
        }
      }
      if (finish) free(state);
    } catch (e) {
      // The op already freed a codec that failed; a failed enqueue (the reader cancelled, the
      // buffer budget ran out) frees it here.
      if (state.id !== 0) free(state);
      throw e;
    }
  }

  function newCodecStream(name, decompress, what) {
    const state = { __proto__: null, id: ops.compressionNew(name, decompress), output: undefined };
    registry.register(state, state.id, state);
    return S.newTransformStream(
      (chunk, t) => {
        if (state.id === 0) throw new TypeErrorCtor(`${what}: the stream has already failed`);
        return pump(state, t, bytesOf(chunk, `${what}: each chunk`), false);
      },
      (t) => (state.id === 0 ? undefined : pump(state, t, undefined, true)),
      () => free(state),
    );
  }

  class CompressionStream {
    #t;
    constructor(format_) {
      if (arguments.length === 0) throw new TypeErrorCtor("CompressionStream: 1 argument required");
      this.#t = newCodecStream(format(format_, "CompressionStream"), false, "CompressionStream");
    }
    get readable() { return S.streamObject(this.#t.readable); }
    get writable() { return S.writableStreamObject(this.#t.writable); }
  }
  webClass(CompressionStream, "CompressionStream");

  class DecompressionStream {
    #t;
    constructor(format_) {
      if (arguments.length === 0) throw new TypeErrorCtor("DecompressionStream: 1 argument required");
      this.#t = newCodecStream(format(format_, "DecompressionStream"), true, "DecompressionStream");
    }
    get readable() { return S.streamObject(this.#t.readable); }
    get writable() { return S.writableStreamObject(this.#t.writable); }
  }
  webClass(DecompressionStream, "DecompressionStream");

  defineHidden(global, "CompressionStream", CompressionStream);
  defineHidden(global, "DecompressionStream", DecompressionStream);
})

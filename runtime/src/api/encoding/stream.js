// TextEncoderStream and TextDecoderStream (the Encoding Standard's stream classes), on the
// same ops as TextEncoder and TextDecoder: a streaming decoder's state is a Rust resource,
// freed when its stream ends, fails or is cancelled, or when an abandoned one is collected.
(function (ops, internals, global, primordials) {
  "use strict";
  const {
    Boolean: BooleanCtor, RangeError: RangeErrorCtor, SafeFinalizationRegistry, String: StringCtor,
    StringPrototypeCharCodeAt, StringPrototypeSlice, TypeError: TypeErrorCtor, Uint8Array: Uint8ArrayCtor,
  } = primordials;
  const { defineHidden, webClass, bytesOf } = internals;
  const S = internals.streams;

  class TextEncoderStream {
    #t;
    constructor() {
      // A high surrogate at the end of a chunk waits for the next chunk's low surrogate.
      let pendingHighSurrogate = "";
      this.#t = S.newTransformStream((chunk, t) => {
        let text = pendingHighSurrogate + StringCtor(chunk);
        pendingHighSurrogate = "";
        const last = text.length - 1;
        if (last >= 0) {
          const code = StringPrototypeCharCodeAt(text, last);
          if (code >= 0xd800 && code <= 0xdbff) {
            pendingHighSurrogate = StringPrototypeSlice(text, last);
            text = StringPrototypeSlice(text, 0, last);
          }
        }
        if (text.length > 0) S.transformEnqueue(t, ops.encodeUtf8(text));
      }, (t) => {
        // A lone high surrogate at the very end is U+FFFD, as TextEncoder writes it.
        if (pendingHighSurrogate !== "") S.transformEnqueue(t, new Uint8ArrayCtor([0xef, 0xbf, 0xbd]));
      });
    }
    get encoding() {
      void this.#t; // brand check
      return "utf-8";
    }
    get readable() { return S.streamObject(this.#t.readable); }
    get writable() { return S.writableStreamObject(this.#t.writable); }
  }
  webClass(TextEncoderStream, "TextEncoderStream");

  const decoderRegistry = new SafeFinalizationRegistry((id) => ops.decoderFree(id));

  class TextDecoderStream {
    #t; #encoding; #fatal; #ignoreBOM;
    constructor(label = "utf-8", options = undefined) {
      const encoding = ops.encodingForLabel(StringCtor(label));
      if (encoding === undefined) {
        throw new RangeErrorCtor(`TextDecoderStream: the encoding label "${StringCtor(label)}" is not supported`);
      }
      if (options !== undefined && options !== null && typeof options !== "object" && typeof options !== "function") {
        throw new TypeErrorCtor("TextDecoderStream: options must be an object");
      }
      const fatal = BooleanCtor(options?.fatal);
      const ignoreBOM = BooleanCtor(options?.ignoreBOM);
      this.#encoding = encoding;
      this.#fatal = fatal;
      this.#ignoreBOM = ignoreBOM;
      // The decoder's Rust state, made on the first chunk; id 0 when there is none.
      const state = { __proto__: null, id: 0 };
      const free = () => {
        if (state.id === 0) return;
        ops.decoderFree(state.id);
        decoderRegistry.unregister(state);
        state.id = 0;
      };
      const decode = (t, bytes, last) => {
        if (state.id === 0) {
          state.id = ops.decoderNew(encoding, fatal, ignoreBOM);
          decoderRegistry.register(state, state.id, state);
        }
        const text = ops.decoderDecode(state.id, bytes, !last);
        if (last || text === undefined) {
          // The op closed the Rust side: the last call of a stream, or a fatal error.
          decoderRegistry.unregister(state);
          state.id = 0;
        }
        if (text === undefined) throw new TypeErrorCtor(`TextDecoderStream: the input is not valid ${encoding}`);
        if (text.length > 0) S.transformEnqueue(t, text);
      };
      this.#t = S.newTransformStream(
        (chunk, t) => decode(t, bytesOf(chunk, "TextDecoderStream: each chunk"), false),
        (t) => decode(t, new Uint8ArrayCtor(0), true),
        free,
      );
    }
    get encoding() { return this.#encoding; }
    get fatal() { return this.#fatal; }
    get ignoreBOM() { return this.#ignoreBOM; }
    get readable() { return S.streamObject(this.#t.readable); }
    get writable() { return S.writableStreamObject(this.#t.writable); }
  }
  webClass(TextDecoderStream, "TextDecoderStream");

  defineHidden(global, "TextEncoderStream", TextEncoderStream);
  defineHidden(global, "TextDecoderStream", TextDecoderStream);
})

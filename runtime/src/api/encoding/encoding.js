// TextEncoder and TextDecoder (every WHATWG encoding label, through encoding_rs), atob and btoa.
(function (ops, internals, global, primordials) {
  "use strict";
  const { Boolean: BooleanCtor, SafeFinalizationRegistry, String: StringCtor, TypeError: TypeErrorCtor, RangeError: RangeErrorCtor, Uint8Array: Uint8ArrayCtor } = primordials;
  const { defineHidden, webClass, bytesOf } = internals;

  class TextEncoder {
    get encoding() { return "utf-8"; }
    encode(input = "") {
      return ops.encodeUtf8(StringCtor(input));
    }
    encodeInto(source, destination) {
      if (!(destination instanceof Uint8ArrayCtor)) {
        throw new TypeErrorCtor("TextEncoder.encodeInto: destination must be a Uint8Array");
      }
      return ops.encodeUtf8Into(StringCtor(source), destination);
    }
  }
  webClass(TextEncoder, "TextEncoder");

  // A streaming decoder's state lives in Rust; this frees it when its TextDecoder is collected.
  const decoderRegistry = new SafeFinalizationRegistry((id) => ops.decoderFree(id));

  class TextDecoder {
    #encoding; #fatal; #ignoreBOM; #state;
    constructor(label = "utf-8", options = undefined) {
      const encoding = ops.encodingForLabel(StringCtor(label));
      if (encoding === undefined) {
        throw new RangeErrorCtor(`TextDecoder: the encoding label "${StringCtor(label)}" is not supported`);
      }
      this.#encoding = encoding;
      this.#fatal = BooleanCtor(options?.fatal);
      this.#ignoreBOM = BooleanCtor(options?.ignoreBOM);
      this.#state = 0;
    }
    get encoding() { return this.#encoding; }
    get fatal() { return this.#fatal; }
    get ignoreBOM() { return this.#ignoreBOM; }
    decode(input = undefined, options = undefined) {
      const bytes = input === undefined ? new Uint8ArrayCtor(0) : bytesOf(input, "TextDecoder.decode");
      const stream = BooleanCtor(options?.stream);
      if (!stream && this.#state === 0 && this.#encoding === "utf-8") {
        const s = ops.decodeUtf8(bytes, this.#fatal, this.#ignoreBOM);
        if (s === undefined) throw new TypeErrorCtor("TextDecoder.decode: the input is not valid utf-8");
        return s;
      }
      // Streaming (or a legacy encoding): the decoder state lives in Rust between calls.
      if (this.#state === 0) {
        this.#state = ops.decoderNew(this.#encoding, this.#fatal, this.#ignoreBOM);
        decoderRegistry.register(this, this.#state, this);
      }
      const s = ops.decoderDecode(this.#state, bytes, stream);
      if (!stream || s === undefined) {
        // The last call of a stream, or a fatal error, closes the Rust side of it.
        decoderRegistry.unregister(this);
        this.#state = 0;
      }
      if (s === undefined) throw new TypeErrorCtor(`TextDecoder.decode: the input is not valid ${this.#encoding}`);
      return s;
    }
  }
  webClass(TextDecoder, "TextDecoder");
  defineHidden(global, "TextEncoder", TextEncoder);
  defineHidden(global, "TextDecoder", TextDecoder);
  internals.encodeUtf8 = (s) => ops.encodeUtf8(s);
  internals.decodeUtf8 = (bytes) => ops.decodeUtf8(bytes, false, false);

  defineHidden(global, "btoa", function btoa(data) {
    if (arguments.length === 0) throw new TypeErrorCtor("btoa: 1 argument required, but only 0 present.");
    const out = ops.btoa(StringCtor(data));
    if (out === undefined) {
      throw new internals.DOMException("btoa: the string contains characters outside of the Latin1 range", "InvalidCharacterError");
    }
    return out;
  });
  defineHidden(global, "atob", function atob(data) {
    if (arguments.length === 0) throw new TypeErrorCtor("atob: 1 argument required, but only 0 present.");
    const out = ops.atob(StringCtor(data));
    if (out === undefined) {
      throw new internals.DOMException("atob: the string to be decoded is not correctly encoded", "InvalidCharacterError");
    }
    return out;
  });
})

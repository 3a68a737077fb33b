// crypto: getRandomValues and randomUUID (crypto.subtle is added by the WebCrypto files).
(function (ops, internals, global, primordials) {
  "use strict";
  const { ArrayBufferIsView, TypedArrayPrototypeGetByteLength, TypedArrayPrototypeGetSymbolToStringTag } = primordials;
  const { defineHidden, webClass } = internals;

  // The integer typed arrays getRandomValues accepts (not floats, not DataView).
  const INTEGER_ARRAYS = new primordials.SafeSet();
  for (const name of ["Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array", "Uint16Array", "Int32Array", "Uint32Array", "BigInt64Array", "BigUint64Array"]) {
    INTEGER_ARRAYS.add(name);
  }

  class Crypto {
    constructor(key) {
      if (key !== internals.token) throw new TypeError("Illegal constructor");
    }
    getRandomValues(array) {
      if (!ArrayBufferIsView(array) || !INTEGER_ARRAYS.has(TypedArrayPrototypeGetSymbolToStringTag(array))) {
        throw new internals.DOMException("getRandomValues: the argument must be an integer TypedArray", "TypeMismatchError");
      }
      const length = TypedArrayPrototypeGetByteLength(array);
      if (length > 65536) {
        throw new internals.DOMException(`getRandomValues: ${length} bytes requested; the limit is 65536`, "QuotaExceededError");
      }
      ops.randomFill(array);
      return array;
    }
    randomUUID() {
      return ops.randomUuid();
    }
  }
  webClass(Crypto, "Crypto");
  const crypto = new Crypto(internals.token);
  internals.crypto = crypto;
  defineHidden(global, "Crypto", Crypto);
  defineHidden(global, "crypto", crypto);
})

// crypto.subtle (SubtleCrypto), CryptoKey, crypto.DigestStream, as the Web Cryptography spec and
// workerd define them. This file is WebCrypto's Web IDL layer: it converts arguments (BufferSources
// copied, sequences read, dictionaries read member by member in Web IDL's order) and runs the
// spec's "normalize an algorithm"; the engine in Rust (isobar-crypto, reached through subtle.rs)
// does every check and every operation after that. Every SubtleCrypto method returns a promise,
// and every error, argument conversion included, rejects it.
(function (ops, internals, global, primordials) {
  "use strict";
  const {
    ArrayBufferIsView, ArrayBufferPrototypeGetByteLength, DataViewPrototypeGetBuffer, DataViewPrototypeGetByteLength,
    DataViewPrototypeGetByteOffset, TypedArrayPrototypeGetBuffer, TypedArrayPrototypeGetByteLength,
    TypedArrayPrototypeGetByteOffset, TypedArrayPrototypeSet, Uint8Array: Uint8ArrayCtor,
    ArrayPrototypePush, BigInt: BigIntCtor, Boolean: BooleanCtor, MathTrunc, Number: NumberCtor, NumberIsFinite,
    ObjectDefineProperty, ObjectGetOwnPropertyDescriptor, ObjectGetPrototypeOf, ObjectSetPrototypeOf,
    PromiseWithResolvers, ReflectConstruct, SafeFinalizationRegistry, SafeWeakMap, String: StringCtor,
    StringPrototypeCharCodeAt, StringPrototypeSlice, StringPrototypeToWellFormed, SymbolDispose,
    TypeError: TypeErrorCtor, TypedArrayPrototypeGetSymbolToStringTag, markPromiseHandled,
  } = primordials;
  const { defineHidden, webClass, DOMException } = internals;

  function isObject(value) {
    return (typeof value === "object" && value !== null) || typeof value === "function";
  }

  // Web IDL DOMString: String(value), except that a Symbol is a TypeError.
  function toDOMString(value, what) {
    if (typeof value === "symbol") throw new TypeErrorCtor(`${what}: cannot convert a Symbol to a string`);
    return StringCtor(value);
  }

  // Web IDL [EnforceRange] integers of `max` at most.
  function enforceRange(value, max, what) {
    if (typeof value === "bigint" || typeof value === "symbol") {
      throw new TypeErrorCtor(`${what} is not a number`);
    }
    const n = NumberCtor(value);
    if (!NumberIsFinite(n)) throw new TypeErrorCtor(`${what} is not a finite number`);
    const i = MathTrunc(n);
    if (i < 0 || i > max) throw new TypeErrorCtor(`${what} is outside the range 0 to ${max}`);
    return i + 0; // never -0, which Rust would not read as an unsigned integer
  }

  function isArrayBuffer(value) {
    try {
      ArrayBufferPrototypeGetByteLength(value); // the getter's brand check (SharedArrayBuffer fails it too)
      return true;
    } catch {
      return false;
    }
  }

  function isBufferSource(value) {
    return ArrayBufferIsView(value) || isArrayBuffer(value);
  }

  // The spec's "get a copy of the bytes held by the buffer source", or a TypeError. Only captured
  // intrinsics run (no species lookup, no getter a script could replace), and the copy is an
  // ordinary Uint8Array, counted against the isolate's ArrayBuffer budget. A detached buffer's
  // copy is empty.
  function copyBufferSource(value, what) {
    let buffer, offset, length;
    if (ArrayBufferIsView(value)) {
      if (TypedArrayPrototypeGetSymbolToStringTag(value) !== undefined) {
        buffer = TypedArrayPrototypeGetBuffer(value);
        offset = TypedArrayPrototypeGetByteOffset(value);
        length = TypedArrayPrototypeGetByteLength(value);
      } else {
        buffer = DataViewPrototypeGetBuffer(value);
        try {
          offset = DataViewPrototypeGetByteOffset(value);
          length = DataViewPrototypeGetByteLength(value);
        } catch {
          length = 0; // a DataView over a detached buffer
        }
      }
    } else if (isArrayBuffer(value)) {
      buffer = value;
      offset = 0;
      length = ArrayBufferPrototypeGetByteLength(value);
    } else {
      throw new TypeErrorCtor(`${what} is not of type 'BufferSource'`);
    }
    const copy = new Uint8ArrayCtor(length);
    if (length > 0) TypedArrayPrototypeSet(copy, new Uint8ArrayCtor(buffer, offset, length));
    return copy;
  }

  function requireArguments(count, required, method) {
    if (count < required) {
      throw new TypeErrorCtor(
        `Failed to execute '${method}' on 'SubtleCrypto': ${required} arguments required, but only ${count} present.`);
    }
  }

  function parameter(method, position) {
    return `Failed to execute '${method}' on 'SubtleCrypto': parameter ${position}`;
  }

  // Web IDL sequence<DOMString>. The sequence is the script's own iterable, so iterating it with
  // its own iterator is what the standard asks (not a tenant override of isobar's arrays).
  function toStringSequence(value, what) {
    if (!isObject(value)) throw new TypeErrorCtor(`${what} is not a sequence`);
    const out = [];
    for (const item of value) ArrayPrototypePush(out, toDOMString(item, what));
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // CryptoKey: the key material stays in Rust (an id into the isolate's resource table, freed when
  // the object is collected); `algorithm` and `usages` are made on first use and then always the
  // same objects, as the spec's [[algorithm_cached]] and [[usages_cached]] are.

  const keyRegistry = new SafeFinalizationRegistry((id) => ops.cryptoKeyFree(id));
  let keyIdOf, keyInfo, bindKey;

  // A key is made in two steps: an empty CryptoKey first (Rust keeps a weak handle to it beside
  // the key material), then bound to the id the op returns. Only bound keys reach the script.
  class CryptoKey {
    #id = 0; #info;
    constructor(token) {
      if (token !== internals.token) throw new TypeErrorCtor("Illegal constructor");
    }
    get type() { return keyInfo(this)[0]; }
    get extractable() { return keyInfo(this)[1]; }
    get algorithm() { return keyInfo(this)[2]; }
    get usages() { return keyInfo(this)[3]; }
    static {
      keyIdOf = (value) => (isObject(value) && #id in value && value.#id !== 0 ? value.#id : undefined);
      keyInfo = (key) => {
        if (!isObject(key) || !(#id in key)) throw new TypeErrorCtor("Illegal invocation");
        if (key.#info === undefined) key.#info = ops.cryptoKeyInfo(key.#id);
        return key.#info;
      };
      bindKey = (key, id) => {
        key.#id = id;
        keyRegistry.register(key, id);
        return key;
      };
    }
  }
  webClass(CryptoKey, "CryptoKey");

  function newKey() {
    return new CryptoKey(internals.token);
  }

  // What generateKey's op returns: one key's id (owned by `first`), or [publicId, privateId] for a
  // CryptoKeyPair (owned by `first` and `second`).
  function bindKeyOrPair(result, first, second) {
    if (typeof result === "number") return bindKey(first, result);
    return { privateKey: bindKey(second, result[1]), publicKey: bindKey(first, result[0]) };
  }

  function requireKey(value, method, position) {
    const id = keyIdOf(value);
    if (id === undefined) throw new TypeErrorCtor(`${parameter(method, position)} is not of type 'CryptoKey'.`);
    return id;
  }

  // ---------------------------------------------------------------------------------------------
  // Normalizing an algorithm (WebCrypto section 18.4).

  // The types of dictionary members, and a flag for the required ones.
  const BUFFER = 1, HASH = 2, KEY = 3, STRING = 4, OCTET = 5, UNSIGNED_SHORT = 6, UNSIGNED_LONG = 7;
  const BIG_INTEGER = 8, REQUIRED = 16, TYPE = 15;
  const RANGE_MAX = [0, 0, 0, 0, 0, 0xff, 0xffff, 0xffffffff];

  // Each parameter dictionary as [member, type, ...] after `name`, in the order Web IDL reads them:
  // an inherited dictionary's members first, each dictionary's own sorted by name.
  const ALGORITHM = [];
  const AES_CTR_PARAMS = ["counter", BUFFER | REQUIRED, "length", OCTET | REQUIRED];
  const AES_CBC_PARAMS = ["iv", BUFFER | REQUIRED];
  const AES_GCM_PARAMS = ["additionalData", BUFFER, "iv", BUFFER | REQUIRED, "tagLength", OCTET];
  const RSA_OAEP_PARAMS = ["label", BUFFER];
  const RSA_PSS_PARAMS = ["saltLength", UNSIGNED_LONG | REQUIRED];
  const ECDSA_PARAMS = ["hash", HASH | REQUIRED];
  const RSA_HASHED_KEY_GEN_PARAMS = [
    "modulusLength", UNSIGNED_LONG | REQUIRED, "publicExponent", BIG_INTEGER | REQUIRED, "hash", HASH | REQUIRED,
  ];
  const EC_KEY_GEN_PARAMS = ["namedCurve", STRING | REQUIRED];
  const AES_KEY_GEN_PARAMS = ["length", UNSIGNED_SHORT | REQUIRED];
  const HMAC_KEY_GEN_PARAMS = ["hash", HASH | REQUIRED, "length", UNSIGNED_LONG];
  const RSA_HASHED_IMPORT_PARAMS = ["hash", HASH | REQUIRED];
  const EC_KEY_IMPORT_PARAMS = ["namedCurve", STRING | REQUIRED];
  const HMAC_IMPORT_PARAMS = ["hash", HASH | REQUIRED, "length", UNSIGNED_LONG];
  const AES_DERIVED_KEY_PARAMS = ["length", UNSIGNED_SHORT | REQUIRED];
  const HKDF_PARAMS = ["hash", HASH | REQUIRED, "info", BUFFER | REQUIRED, "salt", BUFFER | REQUIRED];
  const PBKDF2_PARAMS = ["hash", HASH | REQUIRED, "iterations", UNSIGNED_LONG | REQUIRED, "salt", BUFFER | REQUIRED];
  const ECDH_KEY_DERIVE_PARAMS = ["public", KEY | REQUIRED];

  // The registered algorithms per operation (decrypt shares encrypt's, verify sign's, unwrapKey
  // wrapKey's), as [canonical name, dictionary, ...]. MD5 is a Workers addition.
  const REGISTERED = {
    __proto__: null,
    digest: ["SHA-1", ALGORITHM, "SHA-256", ALGORITHM, "SHA-384", ALGORITHM, "SHA-512", ALGORITHM, "MD5", ALGORITHM],
    encrypt: ["RSA-OAEP", RSA_OAEP_PARAMS, "AES-CTR", AES_CTR_PARAMS, "AES-CBC", AES_CBC_PARAMS, "AES-GCM", AES_GCM_PARAMS],
    sign: ["RSASSA-PKCS1-v1_5", ALGORITHM, "RSA-PSS", RSA_PSS_PARAMS, "ECDSA", ECDSA_PARAMS, "HMAC", ALGORITHM, "Ed25519", ALGORITHM],
    generateKey: [
      "RSASSA-PKCS1-v1_5", RSA_HASHED_KEY_GEN_PARAMS, "RSA-PSS", RSA_HASHED_KEY_GEN_PARAMS,
      "RSA-OAEP", RSA_HASHED_KEY_GEN_PARAMS, "ECDSA", EC_KEY_GEN_PARAMS, "ECDH", EC_KEY_GEN_PARAMS,
      "AES-CTR", AES_KEY_GEN_PARAMS, "AES-CBC", AES_KEY_GEN_PARAMS, "AES-GCM", AES_KEY_GEN_PARAMS,
      "AES-KW", AES_KEY_GEN_PARAMS, "HMAC", HMAC_KEY_GEN_PARAMS, "Ed25519", ALGORITHM, "X25519", ALGORITHM,
    ],
    importKey: [
      "RSASSA-PKCS1-v1_5", RSA_HASHED_IMPORT_PARAMS, "RSA-PSS", RSA_HASHED_IMPORT_PARAMS,
      "RSA-OAEP", RSA_HASHED_IMPORT_PARAMS, "ECDSA", EC_KEY_IMPORT_PARAMS, "ECDH", EC_KEY_IMPORT_PARAMS,
      "AES-CTR", ALGORITHM, "AES-CBC", ALGORITHM, "AES-GCM", ALGORITHM, "AES-KW", ALGORITHM,
      "HMAC", HMAC_IMPORT_PARAMS, "PBKDF2", ALGORITHM, "HKDF", ALGORITHM, "Ed25519", ALGORITHM, "X25519", ALGORITHM,
    ],
    deriveBits: [
      "ECDH", ECDH_KEY_DERIVE_PARAMS, "X25519", ECDH_KEY_DERIVE_PARAMS, "HKDF", HKDF_PARAMS, "PBKDF2", PBKDF2_PARAMS,
    ],
    "get key length": [
      "AES-CTR", AES_DERIVED_KEY_PARAMS, "AES-CBC", AES_DERIVED_KEY_PARAMS, "AES-GCM", AES_DERIVED_KEY_PARAMS,
      "AES-KW", AES_DERIVED_KEY_PARAMS, "HMAC", HMAC_IMPORT_PARAMS, "HKDF", ALGORITHM, "PBKDF2", ALGORITHM,
    ],
    wrapKey: ["AES-KW", ALGORITHM],
  };

  // The spec's "ASCII case-insensitive match" (not toUpperCase, which maps U+017F, the long s, to "S").
  function asciiCaseInsensitiveEqual(a, b) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) {
      let x = StringPrototypeCharCodeAt(a, i), y = StringPrototypeCharCodeAt(b, i);
      if (x >= 0x61 && x <= 0x7a) x -= 0x20;
      if (y >= 0x61 && y <= 0x7a) y -= 0x20;
      if (x !== y) return false;
    }
    return true;
  }

  // The registered [canonical name, dictionary] for `name` under `op`, or undefined.
  function lookUp(op, name) {
    const registered = REGISTERED[op];
    for (let i = 0; i < registered.length; i += 2) {
      if (asciiCaseInsensitiveEqual(registered[i], name)) return [registered[i], registered[i + 1]];
    }
    return undefined;
  }

  // Web IDL's conversion of AlgorithmIdentifier, `(object or DOMString)`.
  function toAlgorithmIdentifier(value, what) {
    return isObject(value) ? value : toDOMString(value, what);
  }

  // Normalizes `algorithm` (an object or a string) for `op`, trying `fallbackOp`'s registrations
  // when `op` has none of that name (wrapKey falls back to encrypt). The result is a null-prototype
  // object of plain values: strings, integers, Uint8Array copies, a key id for `public`, the hash's
  // canonical name for `hash`.
  function normalize(algorithm, op, fallbackOp = undefined) {
    // A string is shorthand for { name: string }.
    const dictionary = isObject(algorithm) ? algorithm : { __proto__: null, name: algorithm };
    const nameValue = dictionary.name;
    if (nameValue === undefined) throw new TypeErrorCtor("Missing field \"name\" in \"algorithm\".");
    const name = toDOMString(nameValue, "algorithm.name");
    const registered = lookUp(op, name) ?? (fallbackOp === undefined ? undefined : lookUp(fallbackOp, name));
    if (registered === undefined) {
      throw new DOMException(`Unrecognized or unimplemented algorithm "${name}" for ${op}.`, "NotSupportedError");
    }
    const members = registered[1];
    const normalized = { __proto__: null, name: registered[0] };
    if (members.length === 0) return normalized;
    // Converting to the registered dictionary reads every member again, `name` first.
    if (dictionary.name === undefined) throw new TypeErrorCtor("Missing field \"name\" in \"algorithm\".");
    let hash;
    for (let i = 0; i < members.length; i += 2) {
      const member = members[i];
      const type = members[i + 1];
      const value = dictionary[member];
      if (value === undefined) {
        if (type & REQUIRED) throw new TypeErrorCtor(`Missing field "${member}" in "algorithm".`);
        continue;
      }
      const what = `algorithm.${member}`;
      switch (type & TYPE) {
        case BUFFER:
          normalized[member] = copyBufferSource(value, what);
          break;
        case BIG_INTEGER:
          if (TypedArrayPrototypeGetSymbolToStringTag(value) !== "Uint8Array") {
            throw new TypeErrorCtor(`${what} is not of type 'Uint8Array'`);
          }
          normalized[member] = copyBufferSource(value, what);
          break;
        case HASH:
          hash = toAlgorithmIdentifier(value, what);
          break;
        case KEY: {
          const id = keyIdOf(value);
          if (id === undefined) throw new TypeErrorCtor(`${what} is not of type 'CryptoKey'`);
          normalized[member] = id;
          break;
        }
        case STRING:
          normalized[member] = toDOMString(value, what);
          break;
        default:
          normalized[member] = enforceRange(value, RANGE_MAX[type & TYPE], what);
      }
    }
    // A HashAlgorithmIdentifier member is normalized as a digest once the dictionary is read.
    if (hash !== undefined) normalized.hash = normalize(hash, "digest").name;
    return normalized;
  }

  // ---------------------------------------------------------------------------------------------
  // JsonWebKey

  const JWK_STRING = 1, JWK_BOOLEAN = 2, JWK_STRINGS = 3, JWK_PRIMES = 4;
  // The JsonWebKey dictionary's members, sorted as Web IDL reads them.
  const JWK_MEMBERS = [
    "alg", JWK_STRING, "crv", JWK_STRING, "d", JWK_STRING, "dp", JWK_STRING, "dq", JWK_STRING, "e", JWK_STRING,
    "ext", JWK_BOOLEAN, "k", JWK_STRING, "key_ops", JWK_STRINGS, "kty", JWK_STRING, "n", JWK_STRING,
    "oth", JWK_PRIMES, "p", JWK_STRING, "q", JWK_STRING, "qi", JWK_STRING, "use", JWK_STRING, "x", JWK_STRING,
    "y", JWK_STRING,
  ];

  // RsaOtherPrimesInfo's members, sorted.
  const PRIME_MEMBERS = ["d", "r", "t"];

  // Web IDL's conversion of a JsonWebKey dictionary into a null-prototype object of plain values.
  function toJsonWebKey(value) {
    const jwk = { __proto__: null };
    if (value === undefined || value === null) return jwk;
    for (let i = 0; i < JWK_MEMBERS.length; i += 2) {
      const member = JWK_MEMBERS[i];
      const item = value[member];
      if (item === undefined) continue;
      const what = `JsonWebKey.${member}`;
      switch (JWK_MEMBERS[i + 1]) {
        case JWK_STRING: jwk[member] = toDOMString(item, what); break;
        case JWK_BOOLEAN: jwk[member] = BooleanCtor(item); break;
        case JWK_STRINGS: jwk[member] = toStringSequence(item, what); break;
        default: {
          if (!isObject(item)) throw new TypeErrorCtor(`${what} is not a sequence`);
          const primes = [];
          for (const prime of item) {
            if (prime !== undefined && prime !== null && !isObject(prime)) {
              throw new TypeErrorCtor(`${what} must hold RsaOtherPrimesInfo dictionaries`);
            }
            const info = { __proto__: null };
            for (let j = 0; j < PRIME_MEMBERS.length; j++) {
              const key = PRIME_MEMBERS[j];
              const part = prime?.[key];
              if (part !== undefined) info[key] = toDOMString(part, `${what}.${key}`);
            }
            ArrayPrototypePush(primes, info);
          }
          jwk[member] = primes;
        }
      }
    }
    return jwk;
  }

  // ---------------------------------------------------------------------------------------------
  // SubtleCrypto

  let subtle;

  function checkCall(self, count, required, method) {
    if (self !== subtle) throw new TypeErrorCtor("Illegal invocation");
    requireArguments(count, required, method);
  }

  class SubtleCrypto {
    constructor(token) {
      if (token !== internals.token) throw new TypeErrorCtor("Illegal constructor");
    }

    async encrypt(algorithm, key, data) {
      checkCall(this, arguments.length, 3, "encrypt");
      algorithm = toAlgorithmIdentifier(algorithm, "encrypt");
      const keyId = requireKey(key, "encrypt", 2);
      const bytes = copyBufferSource(data, parameter("encrypt", 3));
      return ops.subtleEncrypt(normalize(algorithm, "encrypt"), keyId, bytes, false);
    }

    async decrypt(algorithm, key, data) {
      checkCall(this, arguments.length, 3, "decrypt");
      algorithm = toAlgorithmIdentifier(algorithm, "decrypt");
      const keyId = requireKey(key, "decrypt", 2);
      const bytes = copyBufferSource(data, parameter("decrypt", 3));
      return ops.subtleEncrypt(normalize(algorithm, "encrypt"), keyId, bytes, true);
    }

    async sign(algorithm, key, data) {
      checkCall(this, arguments.length, 3, "sign");
      algorithm = toAlgorithmIdentifier(algorithm, "sign");
      const keyId = requireKey(key, "sign", 2);
      const bytes = copyBufferSource(data, parameter("sign", 3));
      return ops.subtleSign(normalize(algorithm, "sign"), keyId, bytes);
    }

    async verify(algorithm, key, signature, data) {
      checkCall(this, arguments.length, 4, "verify");
      algorithm = toAlgorithmIdentifier(algorithm, "verify");
      const keyId = requireKey(key, "verify", 2);
      const signatureBytes = copyBufferSource(signature, parameter("verify", 3));
      const bytes = copyBufferSource(data, parameter("verify", 4));
      return ops.subtleVerify(normalize(algorithm, "sign"), keyId, signatureBytes, bytes);
    }

    async digest(algorithm, data) {
      checkCall(this, arguments.length, 2, "digest");
      algorithm = toAlgorithmIdentifier(algorithm, "digest");
      const bytes = copyBufferSource(data, parameter("digest", 2));
      return ops.subtleDigest(normalize(algorithm, "digest").name, bytes);
    }

    async generateKey(algorithm, extractable, keyUsages) {
      checkCall(this, arguments.length, 3, "generateKey");
      algorithm = toAlgorithmIdentifier(algorithm, "generateKey");
      extractable = BooleanCtor(extractable);
      const usages = toStringSequence(keyUsages, parameter("generateKey", 3));
      const first = newKey(), second = newKey();
      const result = ops.subtleGenerateKey(normalize(algorithm, "generateKey"), extractable, usages, first, second);
      return bindKeyOrPair(result, first, second);
    }

    async deriveKey(algorithm, baseKey, derivedKeyType, extractable, keyUsages) {
      checkCall(this, arguments.length, 5, "deriveKey");
      algorithm = toAlgorithmIdentifier(algorithm, "deriveKey");
      const keyId = requireKey(baseKey, "deriveKey", 2);
      derivedKeyType = toAlgorithmIdentifier(derivedKeyType, "deriveKey");
      extractable = BooleanCtor(extractable);
      const usages = toStringSequence(keyUsages, parameter("deriveKey", 5));
      const normalized = normalize(algorithm, "deriveBits");
      const derived = normalize(derivedKeyType, "importKey");
      const length = normalize(derivedKeyType, "get key length").length;
      if (length !== undefined) derived.length = length;
      const key = newKey();
      return bindKey(key, ops.subtleDeriveKey(normalized, keyId, derived, extractable, usages, key));
    }

    async deriveBits(algorithm, baseKey, length = null) {
      checkCall(this, arguments.length, 2, "deriveBits");
      algorithm = toAlgorithmIdentifier(algorithm, "deriveBits");
      const keyId = requireKey(baseKey, "deriveBits", 2);
      // `optional unsigned long? length = null`: Web IDL's modular conversion, no range check.
      if (length !== null) {
        if (typeof length === "bigint") throw new TypeErrorCtor(`${parameter("deriveBits", 3)} is not a number.`);
        length = NumberCtor(length) >>> 0;
      }
      return ops.subtleDeriveBits(normalize(algorithm, "deriveBits"), keyId, length);
    }

    async importKey(format, keyData, algorithm, extractable, keyUsages) {
      checkCall(this, arguments.length, 5, "importKey");
      format = toDOMString(format, parameter("importKey", 1));
      // (BufferSource or JsonWebKey): bytes are copied; null, undefined and objects are a JWK.
      let data;
      if (isBufferSource(keyData)) {
        data = copyBufferSource(keyData, parameter("importKey", 2));
      } else if (keyData === undefined || keyData === null || isObject(keyData)) {
        data = toJsonWebKey(keyData);
      } else {
        throw new TypeErrorCtor(`${parameter("importKey", 2)} is not of type '(ArrayBuffer or ArrayBufferView or JsonWebKey)'.`);
      }
      algorithm = toAlgorithmIdentifier(algorithm, "importKey");
      extractable = BooleanCtor(extractable);
      const usages = toStringSequence(keyUsages, parameter("importKey", 5));
      const key = newKey();
      return bindKey(key, ops.subtleImportKey(format, data, normalize(algorithm, "importKey"), extractable, usages, key));
    }

    async exportKey(format, key) {
      checkCall(this, arguments.length, 2, "exportKey");
      format = toDOMString(format, parameter("exportKey", 1));
      return ops.subtleExportKey(format, requireKey(key, "exportKey", 2));
    }

    async wrapKey(format, key, wrappingKey, wrapAlgorithm) {
      checkCall(this, arguments.length, 4, "wrapKey");
      format = toDOMString(format, parameter("wrapKey", 1));
      const keyId = requireKey(key, "wrapKey", 2);
      const wrappingKeyId = requireKey(wrappingKey, "wrapKey", 3);
      wrapAlgorithm = toAlgorithmIdentifier(wrapAlgorithm, "wrapKey");
      return ops.subtleWrapKey(format, keyId, wrappingKeyId, normalize(wrapAlgorithm, "wrapKey", "encrypt"));
    }

    async unwrapKey(format, wrappedKey, unwrappingKey, unwrapAlgorithm, unwrappedKeyAlgorithm, extractable, keyUsages) {
      checkCall(this, arguments.length, 7, "unwrapKey");
      format = toDOMString(format, parameter("unwrapKey", 1));
      const wrapped = copyBufferSource(wrappedKey, parameter("unwrapKey", 2));
      const keyId = requireKey(unwrappingKey, "unwrapKey", 3);
      unwrapAlgorithm = toAlgorithmIdentifier(unwrapAlgorithm, "unwrapKey");
      unwrappedKeyAlgorithm = toAlgorithmIdentifier(unwrappedKeyAlgorithm, "unwrapKey");
      extractable = BooleanCtor(extractable);
      const usages = toStringSequence(keyUsages, parameter("unwrapKey", 7));
      const normalized = normalize(unwrapAlgorithm, "wrapKey", "encrypt");
      const imported = normalize(unwrappedKeyAlgorithm, "importKey");
      const key = newKey();
      return bindKey(key, ops.subtleUnwrapKey(format, wrapped, keyId, normalized, imported, extractable, usages, key));
    }

    // A Workers extension: synchronous, and a TypeError for buffers of different lengths.
    timingSafeEqual(a, b) {
      if (this !== subtle) throw new TypeErrorCtor("Illegal invocation");
      requireArguments(arguments.length, 2, "timingSafeEqual");
      return ops.subtleTimingSafeEqual(a, b);
    }
  }
  webClass(SubtleCrypto, "SubtleCrypto");
  subtle = new SubtleCrypto(internals.token);

  // Web IDL makes operations and attributes enumerable; class syntax does not.
  function makeEnumerable(prototype, names) {
    for (let i = 0; i < names.length; i++) {
      const descriptor = ObjectGetOwnPropertyDescriptor(prototype, names[i]);
      descriptor.enumerable = true;
      ObjectDefineProperty(prototype, names[i], descriptor);
    }
  }
  makeEnumerable(SubtleCrypto.prototype, [
    "encrypt", "decrypt", "sign", "verify", "digest", "generateKey", "deriveKey", "deriveBits", "importKey",
    "exportKey", "wrapKey", "unwrapKey", "timingSafeEqual",
  ]);
  makeEnumerable(CryptoKey.prototype, ["type", "extractable", "algorithm", "usages"]);

  // ---------------------------------------------------------------------------------------------
  // crypto.DigestStream (a Workers extension): a WritableStream whose `digest` promise resolves
  // with the hash of everything written once the stream closes. Streams are their own API area,
  // so WritableStream is looked up when the first DigestStream is made (or now, if it is loaded).

  const CHUNK_ERROR =
    "DigestStream is a byte stream but received an object of non-ArrayBuffer/ArrayBufferView/string type on its writable side.";
  const DISPOSED = "The DigestStream was disposed.";
  const digestStates = new SafeWeakMap();
  const digestRegistry = new SafeFinalizationRegistry((id) => ops.digestStreamFree(id));
  let WritableStreamClass;

  function writableStreamClass() {
    if (WritableStreamClass !== undefined) return WritableStreamClass;
    const found = internals.WritableStream ?? global.WritableStream;
    if (typeof found !== "function") {
      throw new TypeErrorCtor("crypto.DigestStream: this isobar has no WritableStream to build it on");
    }
    WritableStreamClass = found;
    ObjectSetPrototypeOf(DigestStream, found);
    ObjectSetPrototypeOf(DigestStream.prototype, found.prototype);
    return found;
  }

  function digestState(stream) {
    const state = isObject(stream) ? digestStates.get(stream) : undefined;
    if (state === undefined) throw new TypeErrorCtor("Illegal invocation");
    return state;
  }

  // Frees the Rust state and settles `digest` (with bytes, or rejected with `reason`).
  function digestSettle(state, stream, digest, reason) {
    if (state.id !== 0) ops.digestStreamFree(state.id);
    state.id = 0;
    state.finished = true;
    digestRegistry.unregister(stream);
    if (digest !== undefined) state.resolve(digest);
    else state.reject(reason);
  }

  function digestWrite(state, chunk) {
    if (state.toWellFormed) {
      if (typeof chunk === "string") {
        // Text split between writes: a lead surrogate at the end waits for its trail.
        let text = state.lead + chunk;
        state.lead = "";
        const last = text.length > 0 ? StringPrototypeCharCodeAt(text, text.length - 1) : 0;
        if (last >= 0xd800 && last <= 0xdbff) {
          state.lead = StringPrototypeSlice(text, text.length - 1);
          text = StringPrototypeSlice(text, 0, text.length - 1);
        }
        chunk = StringPrototypeToWellFormed(text);
      } else if (state.lead !== "") {
        state.lead = "";
        state.bytes += BigIntCtor(ops.digestStreamWrite(state.id, "\ufffd"));
      }
    }
    const written = ops.digestStreamWrite(state.disposed ? 0 : state.id, chunk);
    state.bytes += BigIntCtor(written);
  }

  class DigestStream {
    constructor(algorithm, options = undefined) {
      const WritableStream = writableStreamClass();
      if (options !== undefined && options !== null && !isObject(options)) {
        throw new TypeErrorCtor("Failed to construct 'DigestStream': constructor parameter 2 is not of type 'Options'.");
      }
      const toWellFormed = options === undefined || options === null ? false : BooleanCtor(options.toWellFormed);
      const name = isObject(algorithm) ? toDOMString(algorithm.name, "algorithm.name") : toDOMString(algorithm, "algorithm");
      const id = ops.digestStreamNew(name);
      const { promise, resolve, reject } = PromiseWithResolvers();
      markPromiseHandled(promise);
      const state = { id, promise, resolve, reject, bytes: 0n, toWellFormed, lead: "", finished: false, disposed: false };
      let stream;
      const sink = {
        __proto__: null,
        write(chunk) {
          digestWrite(state, chunk);
        },
        close() {
          if (state.disposed) throw new DOMException(DISPOSED, "InvalidStateError");
          if (state.lead !== "") {
            state.lead = "";
            state.bytes += BigIntCtor(ops.digestStreamWrite(state.id, "\ufffd"));
          }
          const digest = ops.digestStreamFinish(state.id);
          state.id = 0;
          digestSettle(state, stream, digest, undefined);
        },
        abort(reason) {
          if (!state.finished) digestSettle(state, stream, undefined, reason);
        },
      };
      stream = ReflectConstruct(WritableStream, [sink], new.target);
      digestStates.set(stream, state);
      digestRegistry.register(stream, id, stream);
      return stream;
    }
    get digest() { return digestState(this).promise; }
    get bytesWritten() { return digestState(this).bytes; }
  }
  if (SymbolDispose !== undefined) {
    ObjectDefineProperty(DigestStream.prototype, SymbolDispose, {
      value: function dispose() {
        const state = digestState(this);
        if (state.finished) return;
        state.disposed = true;
        digestSettle(state, this, undefined, new DOMException(DISPOSED, "InvalidStateError"));
      },
      writable: true, configurable: true, enumerable: false,
    });
  }
  webClass(DigestStream, "DigestStream");
  makeEnumerable(DigestStream.prototype, ["digest", "bytesWritten"]);
  if (internals.WritableStream !== undefined) writableStreamClass();

  // ---------------------------------------------------------------------------------------------
  // Installing: crypto.subtle, crypto.DigestStream, and the SubtleCrypto and CryptoKey globals.

  const cryptoPrototype = ObjectGetPrototypeOf(internals.crypto);
  // An accessor written as one so that its function is named "get subtle", as Web IDL's are.
  const subtleAttribute = ObjectGetOwnPropertyDescriptor({
    get subtle() {
      if (this !== internals.crypto) throw new TypeErrorCtor("Illegal invocation");
      return subtle;
    },
  }, "subtle");
  ObjectDefineProperty(cryptoPrototype, "subtle", { get: subtleAttribute.get, enumerable: true, configurable: true });
  defineHidden(cryptoPrototype, "DigestStream", DigestStream);
  defineHidden(global, "SubtleCrypto", SubtleCrypto);
  defineHidden(global, "CryptoKey", CryptoKey);
  internals.CryptoKey = CryptoKey;
})

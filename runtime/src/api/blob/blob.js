// Blob and File, as the File API standard defines them and workerd exposes them.
//
// A Blob's bytes are one Uint8Array that isobar never hands out and never changes: every reader
// (text(), arrayBuffer(), bytes(), stream(), a body made from the Blob) gets its own copy, and
// slice() makes a view of the same memory, so a Blob is immutable and slicing costs nothing. The
// bytes live in an ArrayBuffer, so they count against the isolate's memory limit like any other.
(function (ops, internals, global, primordials) {
  "use strict";
  const {
    MathMax, MathMin, MathAbs, MathFloor, NumberIsNaN,
    Number: NumberCtor, ObjectDefineProperty, StringPrototypeCharCodeAt,
    StringPrototypeToLowerCase, StringPrototypeToWellFormed, StringPrototypeSlice, SymbolIterator,
    TypeError: TypeErrorCtor, RangeError: RangeErrorCtor, TypedArrayPrototypeGetBuffer,
    TypedArrayPrototypeGetByteLength, TypedArrayPrototypeGetByteOffset, TypedArrayPrototypeSet,
    Uint8Array: Uint8ArrayCtor, ArrayPrototypePush,
    PromiseResolve, PromiseReject,
  } = primordials;
  const { defineHidden, webClass, token } = internals;

  // The largest Blob isobar makes (the same cap as one body or one op buffer): beyond it the
  // constructor throws a RangeError instead of asking V8 for a buffer it may not be allowed.
  const BLOB_BYTES_MAX = 128 * 1024 * 1024;
  // How much of a Blob one chunk of its stream() carries.
  const STREAM_CHUNK_BYTES = 64 * 1024;
  const EMPTY = new Uint8ArrayCtor(0);

  // Web IDL DOMString: ToString, which throws for a Symbol (String(symbol) would not).
  const toDOMString = (value) => `${value}`;
  // Web IDL USVString: a DOMString whose lone surrogates become U+FFFD.
  const toUSVString = (value) => StringPrototypeToWellFormed(toDOMString(value));
  internals.toDOMString = toDOMString;
  internals.toUSVString = toUSVString;

  // The `type` of a Blob: lower-cased if every character is printable ASCII, else "".
  function normalizeType(value) {
    const s = toDOMString(value);
    for (let i = 0; i < s.length; i++) {
      const c = StringPrototypeCharCodeAt(s, i);
      if (c < 0x20 || c > 0x7e) return "";
    }
    return StringPrototypeToLowerCase(s);
  }

  // The BlobPropertyBag / FilePropertyBag dictionary: members read in Web IDL's (alphabetical)
  // order, each converted as it is read.
  function readOptions(options, what, withLastModified) {
    if (options !== undefined && options !== null && typeof options !== "object" && typeof options !== "function") {
      throw new TypeErrorCtor(`${what}: the options argument must be an object`);
    }
    let endings = "transparent", lastModified, type = "";
    if (options !== undefined && options !== null) {
      const e = options.endings;
      if (e !== undefined) {
        endings = toDOMString(e);
        if (endings !== "transparent" && endings !== "native") {
          throw new TypeErrorCtor(`${what}: options.endings must be "transparent" or "native", not "${endings}"`);
        }
      }
      if (withLastModified) {
        const l = options.lastModified;
        if (l !== undefined) lastModified = toLongLong(l);
      }
      const t = options.type;
      if (t !== undefined) type = toDOMString(t);
    }
    return { endings, lastModified, type: normalizeType(type) };
  }

  // Web IDL `long long` (no [Clamp], no [EnforceRange]): modulo 2^64 into the signed range,
  // which for every value a script can write as a Number is just truncation.
  function toLongLong(value) {
    const n = NumberCtor(value);
    if (NumberIsNaN(n) || n === Infinity || n === -Infinity) return 0;
    const t = n < 0 ? -MathFloor(-n) : MathFloor(n);
    return t === 0 ? 0 : t;
  }

  // Web IDL `[Clamp] long long`: clamped to the safe range, rounded half to even.
  function toClampedLongLong(value) {
    let n = NumberCtor(value);
    if (NumberIsNaN(n)) return 0;
    n = MathMin(MathMax(n, -9007199254740991), 9007199254740991);
    const floor = MathFloor(n);
    const diff = n - floor;
    let r = floor;
    if (diff > 0.5 || (diff === 0.5 && MathAbs(floor % 2) === 1)) r = floor + 1;
    return r === 0 ? 0 : r;
  }

  // Converts the blobParts sequence: each item as a Blob, a BufferSource (copied now, as the
  // standard says) or a USVString, in the order the iterator gives them.
  function readParts(parts, what) {
    const out = [];
    if (parts === undefined) return out;
    if (parts === null || (typeof parts !== "object" && typeof parts !== "function")) {
      throw new TypeErrorCtor(`${what}: the first argument must be a sequence (an array or another iterable)`);
    }
    if (typeof parts[SymbolIterator] !== "function") {
      throw new TypeErrorCtor(`${what}: the first argument is not iterable`);
    }
    for (const part of parts) {
      if (isBlob(part)) ArrayPrototypePush(out, blobBytes(part));
      else if (internals.isBufferSource(part)) ArrayPrototypePush(out, copyOf(internals.bytesOf(part, what)));
      else ArrayPrototypePush(out, toUSVString(part));
    }
    return out;
  }

  // "native" line endings on Linux: every CRLF and lone CR becomes LF.
  function nativeEndings(s) {
    let out = "", from = 0;
    for (let i = 0; i < s.length; i++) {
      if (StringPrototypeCharCodeAt(s, i) !== 0x0d) continue;
      out += StringPrototypeSlice(s, from, i) + "\n";
      if (StringPrototypeCharCodeAt(s, i + 1) === 0x0a) i++;
      from = i + 1;
    }
    return from === 0 ? s : out + StringPrototypeSlice(s, from);
  }

  // A view of bytes [from, to) of `bytes` (no copy). Built with the constructor rather than
  // `subarray`, which would consult a species constructor a script can replace.
  function viewOf(bytes, from, to) {
    return new Uint8ArrayCtor(TypedArrayPrototypeGetBuffer(bytes), TypedArrayPrototypeGetByteOffset(bytes) + from, to - from);
  }
  // A copy of `bytes` in a new buffer of exactly its length (again without species lookups).
  function copyOf(bytes) {
    const copy = new Uint8ArrayCtor(TypedArrayPrototypeGetByteLength(bytes));
    TypedArrayPrototypeSet(copy, bytes);
    return copy;
  }
  internals.copyOfBytes = copyOf;

  // Concatenates converted parts into one new Uint8Array.
  function joinParts(parts, endings, what) {
    const chunks = [];
    let total = 0;
    for (let i = 0; i < parts.length; i++) {
      let part = parts[i];
      if (typeof part === "string") {
        if (endings === "native") part = nativeEndings(part);
        part = internals.encodeUtf8(part);
      }
      total += TypedArrayPrototypeGetByteLength(part);
      if (total > BLOB_BYTES_MAX) {
        throw new RangeErrorCtor(`${what}: the Blob would be larger than the ${BLOB_BYTES_MAX} bytes allowed`);
      }
      ArrayPrototypePush(chunks, part);
    }
    if (chunks.length === 0) return EMPTY;
    if (chunks.length === 1) return chunks[0];
    const bytes = new Uint8ArrayCtor(total);
    let offset = 0;
    for (let i = 0; i < chunks.length; i++) {
      TypedArrayPrototypeSet(bytes, chunks[i], offset);
      offset += TypedArrayPrototypeGetByteLength(chunks[i]);
    }
    return bytes;
  }

  // A copy of `bytes` as a new ArrayBuffer.
  const copyToArrayBuffer = (bytes) => TypedArrayPrototypeGetBuffer(copyOf(bytes));

  class Blob {
    #bytes; #type;
    constructor(blobParts = undefined, options = undefined) {
      if (blobParts === token) {
        // isobar's own: options is { bytes, type }, the bytes already owned by this Blob.
        this.#bytes = options.bytes;
        this.#type = options.type;
        return;
      }
      const parts = readParts(blobParts, "Blob");
      const { endings, type } = readOptions(options, "Blob", false);
      this.#bytes = joinParts(parts, endings, "Blob");
      this.#type = type;
    }
    get size() { return TypedArrayPrototypeGetByteLength(this.#bytes); }
    get type() { return this.#type; }
    slice(start = undefined, end = undefined, contentType = undefined) {
      const size = TypedArrayPrototypeGetByteLength(this.#bytes);
      let from = start === undefined ? 0 : toClampedLongLong(start);
      let to = end === undefined ? size : toClampedLongLong(end);
      from = from < 0 ? MathMax(size + from, 0) : MathMin(from, size);
      to = to < 0 ? MathMax(size + to, 0) : MathMin(to, size);
      const type = contentType === undefined ? "" : normalizeType(contentType);
      const bytes = to > from ? viewOf(this.#bytes, from, to) : EMPTY;
      return new Blob(token, { bytes, type });
    }
    text() {
      try {
        return PromiseResolve(internals.decodeUtf8(this.#bytes));
      } catch (error) {
        return PromiseReject(error);
      }
    }
    arrayBuffer() {
      try {
        return PromiseResolve(copyToArrayBuffer(this.#bytes));
      } catch (error) {
        return PromiseReject(error);
      }
    }
    bytes() {
      try {
        return PromiseResolve(copyOf(this.#bytes));
      } catch (error) {
        return PromiseReject(error);
      }
    }
    stream() {
      const bytes = this.#bytes;
      // The streams code may be loaded after this file (or not at all): look it up now.
      if (internals.streamFromBytes !== undefined) return internals.streamFromBytes(copyOf(bytes));
      const ReadableStream = internals.ReadableStream ?? global.ReadableStream;
      if (typeof ReadableStream !== "function") {
        throw new TypeErrorCtor("Blob.stream(): ReadableStream is not available in this build");
      }
      let offset = 0;
      return new ReadableStream({
        type: "bytes",
        pull(controller) {
          const size = TypedArrayPrototypeGetByteLength(bytes);
          if (offset >= size) {
            controller.close();
            return;
          }
          const end = MathMin(offset + STREAM_CHUNK_BYTES, size);
          // A copy: a byte stream transfers the chunk's buffer, which must not be the Blob's.
          controller.enqueue(copyOf(viewOf(bytes, offset, end)));
          offset = end;
          if (offset >= size) controller.close();
        },
      });
    }
    static _bytes(blob) { return blob.#bytes; }
    static _type(blob) { return blob.#type; }
    static _is(value) { return value !== null && typeof value === "object" && #bytes in value; }
  }
  const blobBytes = Blob._bytes;
  const blobType = Blob._type;
  const isBlob = Blob._is;
  delete Blob._bytes;
  delete Blob._type;
  delete Blob._is;
  webClass(Blob, "Blob");

  class File extends Blob {
    #name; #lastModified;
    constructor(fileBits, fileName, options = undefined) {
      if (fileBits === token) {
        // isobar's own: fileName is { bytes, type, name, lastModified }.
        super(token, fileName);
        this.#name = fileName.name;
        this.#lastModified = fileName.lastModified;
        return;
      }
      if (arguments.length < 2) {
        throw new TypeErrorCtor(`File: 2 arguments required, but only ${arguments.length} present.`);
      }
      const parts = readParts(fileBits, "File");
      const name = toUSVString(fileName);
      const { endings, lastModified, type } = readOptions(options, "File", true);
      super(token, { bytes: joinParts(parts, endings, "File"), type });
      this.#name = name;
      this.#lastModified = lastModified === undefined ? ops.now() : lastModified;
    }
    get name() { return this.#name; }
    get lastModified() { return this.#lastModified; }
    static _is(value) { return value !== null && typeof value === "object" && #name in value; }
    static _name(file) { return file.#name; }
    static _lastModified(file) { return file.#lastModified; }
  }
  const isFile = File._is;
  internals.fileName = File._name;
  internals.fileLastModified = File._lastModified;
  delete File._is;
  delete File._name;
  delete File._lastModified;
  webClass(File, "File");
  // `webkitRelativePath` is always "" outside a browser's file picker.
  ObjectDefineProperty(File.prototype, "webkitRelativePath", { get() { return ""; }, configurable: true });

  // A Blob or File over `bytes`, which the new object owns (isobar's callers pass copies).
  function newBlob(bytes, type) { return new Blob(token, { bytes, type }); }
  function newFile(bytes, type, name, lastModified) {
    return new File(token, { bytes, type, name, lastModified: lastModified ?? ops.now() });
  }

  internals.Blob = Blob;
  internals.File = File;
  internals.isBlob = isBlob;
  internals.isFile = isFile;
  internals.blobBytes = blobBytes;
  internals.blobType = blobType;
  internals.newBlob = newBlob;
  internals.newFile = newFile;

  // Body.blob(): a Blob of the body's bytes, typed with the body's Content-Type as it is (as
  // workerd does), or "" without one.
  internals.makeBlob = function makeBlob(bytes, contentType) {
    return newBlob(bytes, typeof contentType === "string" ? contentTypeOf(contentType) : "");
  };
  // A header value made into a Blob type: kept as written when it is printable ASCII.
  function contentTypeOf(value) {
    for (let i = 0; i < value.length; i++) {
      const c = StringPrototypeCharCodeAt(value, i);
      if (c < 0x20 || c > 0x7e) return "";
    }
    return value;
  }

  // `new Response(blob)` / `new Request(url, { body: blob })`: a copy of the bytes (a body's
  // stream may transfer its buffer, which must never be the Blob's), and the Blob's type.
  internals.bodyExtractors ??= [];
  ArrayPrototypePush(internals.bodyExtractors, function extractBlob(init) {
    if (!isBlob(init)) return undefined;
    const type = blobType(init);
    return [copyOf(blobBytes(init)), type === "" ? null : type];
  });

  defineHidden(global, "Blob", Blob);
  defineHidden(global, "File", File);
})

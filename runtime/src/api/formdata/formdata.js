// FormData (XMLHttpRequest standard), and the two form encodings bodies use: multipart/form-data
// and application/x-www-form-urlencoded, parsed and serialised in Rust (formdata/mod.rs).
(function (ops, internals, global, primordials) {
  "use strict";
  const {
    ArrayPrototypePush, FunctionPrototypeCall, ObjectCreate, ObjectDefineProperty,
    SymbolIterator, SymbolToStringTag, TypeError: TypeErrorCtor, IteratorPrototype,
  } = primordials;
  const { defineHidden, webClass, toUSVString, isBlob, isFile, newFile, blobBytes, blobType } = internals;

  // The entry value FormData keeps: a string, or a File (a Blob is made a File named "blob", and
  // a filename given with it renames it), as "create an entry" says. `argc` picks the overload:
  // with three arguments only (name, Blob, filename) applies; an undefined filename counts as
  // not given, as for any optional argument.
  function entryValue(value, filename, argc, what) {
    if (isBlob(value)) {
      if (filename !== undefined) {
        const lastModified = isFile(value) ? internals.fileLastModified(value) : undefined;
        return newFile(blobBytes(value), blobType(value), toUSVString(filename), lastModified);
      }
      if (isFile(value)) return value;
      return newFile(blobBytes(value), blobType(value), "blob");
    }
    if (argc > 2) {
      throw new TypeErrorCtor(`${what}: parameter 2 is not of type 'Blob' (a filename is only allowed with a Blob)`);
    }
    return toUSVString(value);
  }

  // Removes the entries named `name` from index `from` on, in place (live iterators walk the same
  // array), without Array.prototype.splice, which would consult a species a script can replace.
  function removeAfter(entries, name, from) {
    let kept = from;
    for (let i = from; i < entries.length; i++) {
      if (entries[i][0] !== name) entries[kept++] = entries[i];
    }
    entries.length = kept;
  }

  class FormData {
    // Entries as [name, value] pairs in a plain array that only this class touches.
    #entries = [];
    constructor(form = undefined, submitter = undefined) {
      if (form !== undefined) {
        throw new TypeErrorCtor("FormData: there are no HTML forms here; construct it with no arguments");
      }
      void submitter;
    }
    append(name, value, filename = undefined) {
      if (arguments.length < 2) throw new TypeErrorCtor(`FormData.append: 2 arguments required, but only ${arguments.length} present.`);
      const n = toUSVString(name);
      ArrayPrototypePush(this.#entries, [n, entryValue(value, filename, arguments.length, "FormData.append")]);
    }
    delete(name) {
      if (arguments.length < 1) throw new TypeErrorCtor("FormData.delete: 1 argument required, but only 0 present.");
      removeAfter(this.#entries, toUSVString(name), 0);
    }
    get(name) {
      if (arguments.length < 1) throw new TypeErrorCtor("FormData.get: 1 argument required, but only 0 present.");
      const n = toUSVString(name);
      const entries = this.#entries;
      for (let i = 0; i < entries.length; i++) {
        if (entries[i][0] === n) return entries[i][1];
      }
      return null;
    }
    getAll(name) {
      if (arguments.length < 1) throw new TypeErrorCtor("FormData.getAll: 1 argument required, but only 0 present.");
      const n = toUSVString(name);
      const out = [];
      const entries = this.#entries;
      for (let i = 0; i < entries.length; i++) {
        if (entries[i][0] === n) ArrayPrototypePush(out, entries[i][1]);
      }
      return out;
    }
    has(name) {
      if (arguments.length < 1) throw new TypeErrorCtor("FormData.has: 1 argument required, but only 0 present.");
      const n = toUSVString(name);
      const entries = this.#entries;
      for (let i = 0; i < entries.length; i++) {
        if (entries[i][0] === n) return true;
      }
      return false;
    }
    set(name, value, filename = undefined) {
      if (arguments.length < 2) throw new TypeErrorCtor(`FormData.set: 2 arguments required, but only ${arguments.length} present.`);
      const n = toUSVString(name);
      const entry = [n, entryValue(value, filename, arguments.length, "FormData.set")];
      const entries = this.#entries;
      let first = -1;
      for (let i = 0; i < entries.length; i++) {
        if (entries[i][0] === n) { first = i; break; }
      }
      if (first < 0) {
        ArrayPrototypePush(entries, entry);
        return;
      }
      entries[first] = entry;
      removeAfter(entries, n, first + 1);
    }
    forEach(callback, thisArg = undefined) {
      if (typeof callback !== "function") throw new TypeErrorCtor("FormData.forEach: the callback must be a function");
      const entries = this.#entries;
      // Live, as Web IDL's iterable forEach: entries added during the walk are visited.
      for (let i = 0; i < entries.length; i++) {
        FunctionPrototypeCall(callback, thisArg, entries[i][1], entries[i][0], this);
      }
    }
    entries() { return newIterator(this.#entries, ITER_ENTRIES); }
    keys() { return newIterator(this.#entries, ITER_KEYS); }
    values() { return newIterator(this.#entries, ITER_VALUES); }
    static _entries(formData) { return formData.#entries; }
    static _is(value) { return value !== null && typeof value === "object" && #entries in value; }
  }
  const entriesOf = FormData._entries;
  const isFormData = FormData._is;
  delete FormData._entries;
  delete FormData._is;
  ObjectDefineProperty(FormData.prototype, SymbolIterator, {
    value: FormData.prototype.entries, writable: true, configurable: true, enumerable: false,
  });
  webClass(FormData, "FormData");

  // The "FormData Iterator": live over the entry list, as Web IDL's pair iterators are.
  const ITER_ENTRIES = 0, ITER_KEYS = 1, ITER_VALUES = 2;
  const iteratorState = new primordials.SafeWeakMap();
  const FormDataIteratorPrototype = ObjectCreate(IteratorPrototype);
  defineHidden(FormDataIteratorPrototype, "next", function next() {
    const state = iteratorState.get(this);
    if (state === undefined) throw new TypeErrorCtor("next: Illegal invocation");
    const entries = state.entries;
    if (state.index >= entries.length) return { value: undefined, done: true };
    const entry = entries[state.index++];
    const value = state.kind === ITER_KEYS ? entry[0] : state.kind === ITER_VALUES ? entry[1] : [entry[0], entry[1]];
    return { value, done: false };
  });
  ObjectDefineProperty(FormDataIteratorPrototype, SymbolToStringTag, { value: "FormData Iterator", configurable: true });
  function newIterator(entries, kind) {
    const iterator = ObjectCreate(FormDataIteratorPrototype);
    iteratorState.set(iterator, { entries, kind, index: 0 });
    return iterator;
  }

  // [name, value, filename | undefined, type | undefined, ...] for the serialiser.
  function flatten(formData) {
    const entries = entriesOf(formData);
    const flat = [];
    for (let i = 0; i < entries.length; i++) {
      const value = entries[i][1];
      if (typeof value === "string") {
        ArrayPrototypePush(flat, entries[i][0], value, undefined, undefined);
      } else {
        ArrayPrototypePush(flat, entries[i][0], blobBytes(value), internals.fileName(value), blobType(value));
      }
    }
    return flat;
  }

  // `new Response(formData)`: multipart/form-data with a fresh random boundary.
  internals.bodyExtractors ??= [];
  ArrayPrototypePush(internals.bodyExtractors, function extractFormData(init) {
    if (!isFormData(init)) return undefined;
    // [contentType, bytes]
    const encoded = ops.formDataSerialize(flatten(init));
    return [encoded[1], encoded[0]];
  });

  // Body.formData(): the body's bytes parsed as its Content-Type says.
  internals.parseFormData = function parseFormData(bytes, contentType) {
    if (typeof contentType !== "string") {
      throw new TypeErrorCtor("formData(): the body has no Content-Type; it must be multipart/form-data or application/x-www-form-urlencoded");
    }
    // [name, value, filename | undefined, type | undefined, ...]; a file's value is its bytes.
    const flat = ops.formDataParse(bytes, contentType);
    const formData = new FormData();
    const entries = entriesOf(formData);
    const now = ops.now();
    for (let i = 0; i + 3 < flat.length; i += 4) {
      const value = flat[i + 2] === undefined ? flat[i + 1] : newFile(flat[i + 1], flat[i + 3] ?? "", flat[i + 2], now);
      ArrayPrototypePush(entries, [flat[i], value]);
    }
    return formData;
  };

  internals.FormData = FormData;
  internals.isFormData = isFormData;
  defineHidden(global, "FormData", FormData);
})

// The Web IDL conventions every other API file builds on: how classes, constants and globals
// are installed, and the conversions Web IDL applies to arguments (ByteString, [EnforceRange],
// BufferSource, dictionaries). Loaded first, after the primordials.
(function (ops, internals, global, primordials) {
  "use strict";
  const {
    ArrayBufferIsView, ArrayBufferPrototypeGetByteLength, ArrayBufferPrototypeSlice, MathTrunc, NumberIsFinite,
    Number: NumberCtor, ObjectDefineProperty, RangeError: RangeErrorCtor, String: StringCtor,
    StringPrototypeCharCodeAt, SymbolToStringTag, TypeError: TypeErrorCtor, TypedArrayPrototypeGetBuffer,
    TypedArrayPrototypeGetByteLength, TypedArrayPrototypeGetByteOffset, TypedArrayPrototypeSlice, Uint8Array: Uint8ArrayCtor,
    DataViewPrototypeGetBuffer, DataViewPrototypeGetByteOffset, DataViewPrototypeGetByteLength,
    ArrayBuffer: ArrayBufferCtor, SharedArrayBuffer: SharedArrayBufferCtor,
  } = primordials;

  // A value only isobar's own scripts hold: constructors that tenants may not call check it.
  internals.token = Symbol("isobar.internal");

  // A FIFO list (the Streams standard's lists of chunks and requests, MessagePort's and a
  // WebSocket's queued events): a linked list, so that taking from the front is O(1), a queue
  // holds nothing after it is emptied, and no array method a tenant could replace is involved.
  internals.newList = () => ({ __proto__: null, head: null, tail: null, size: 0 });
  internals.listPush = (list, value) => {
    const node = { __proto__: null, value, next: null };
    if (list.tail === null) list.head = node;
    else list.tail.next = node;
    list.tail = node;
    list.size++;
  };
  internals.listShift = (list) => {
    const node = list.head;
    list.head = node.next;
    if (list.head === null) list.tail = null;
    list.size--;
    return node.value;
  };
  internals.listPeek = (list) => list.head.value;
  // Empties `list` and returns what it held, as a list to walk.
  internals.listTake = (list) => {
    const taken = { __proto__: null, head: list.head, tail: list.tail, size: list.size };
    list.head = null;
    list.tail = null;
    list.size = 0;
    return taken;
  };

  // Installs `value` on `target` the way Web IDL does: writable, configurable, not enumerable.
  function defineHidden(target, name, value) {
    ObjectDefineProperty(target, name, { value, writable: true, configurable: true, enumerable: false });
  }
  internals.defineHidden = defineHidden;

  // Gives a class the `[object Name]` tag, like the classes of a browser or workerd.
  function webClass(ctor, name) {
    ObjectDefineProperty(ctor.prototype, SymbolToStringTag, { value: name, configurable: true });
    return ctor;
  }
  internals.webClass = webClass;

  // Web IDL ByteString: every character must fit in a byte.
  function toByteString(value, what) {
    const s = StringCtor(value);
    for (let i = 0; i < s.length; i++) {
      if (StringPrototypeCharCodeAt(s, i) > 255) {
        throw new TypeErrorCtor(`${what}: character at index ${i} has a value above 255`);
      }
    }
    return s;
  }
  internals.toByteString = toByteString;

  // Web IDL [EnforceRange] integer conversion.
  function enforceRange(value, min, max, what) {
    const n = NumberCtor(value);
    if (!NumberIsFinite(n)) throw new TypeErrorCtor(`${what}: ${StringCtor(value)} is not a finite number`);
    const i = MathTrunc(n);
    if (i < min || i > max) throw new TypeErrorCtor(`${what}: ${i} is outside the range ${min} to ${max}`);
    return i;
  }
  internals.enforceRange = enforceRange;

  // A BufferSource (ArrayBuffer or view) as a Uint8Array over the same memory.
  function bytesOf(input, what) {
    if (input instanceof ArrayBufferCtor) return new Uint8ArrayCtor(input);
    if (ArrayBufferIsView(input)) {
      if (input instanceof DataView) {
        return new Uint8ArrayCtor(DataViewPrototypeGetBuffer(input), DataViewPrototypeGetByteOffset(input), DataViewPrototypeGetByteLength(input));
      }
      return new Uint8ArrayCtor(TypedArrayPrototypeGetBuffer(input), TypedArrayPrototypeGetByteOffset(input), TypedArrayPrototypeGetByteLength(input));
    }
    if (SharedArrayBufferCtor !== undefined && input instanceof SharedArrayBufferCtor) return new Uint8ArrayCtor(input);
    throw new TypeErrorCtor(`${what}: expected an ArrayBuffer or an ArrayBufferView`);
  }
  internals.bytesOf = bytesOf;

  // A copy of a BufferSource's bytes (what "get a copy of the bytes held by the buffer source" says).
  internals.copyBytes = (input, what) => TypedArrayPrototypeSlice(bytesOf(input, what));

  internals.isBufferSource = (value) => value instanceof ArrayBufferCtor || ArrayBufferIsView(value);
  internals.RangeError = RangeErrorCtor;
  internals.arrayBufferByteLength = ArrayBufferPrototypeGetByteLength;
  internals.arrayBufferSlice = ArrayBufferPrototypeSlice;
})

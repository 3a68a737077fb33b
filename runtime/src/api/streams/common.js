// What every part of the Streams Standard shares: promise reactions that never report a
// rejection the standard does not cause, the queue-with-sizes, the Web IDL conversions of
// strategies and callbacks, the queuing strategies, and the helpers for ArrayBuffers and views
// that byte streams transfer and copy. The other stream files (readable.js, writable.js,
// transform.js, body.js) find these, and each other's abstract operations, on
// `internals.streams`, which tenant code never reaches.
(function (ops, internals, global, primordials) {
  "use strict";
  const {
    ArrayBuffer: ArrayBufferCtor, ArrayBufferIsView, ArrayBufferPrototypeGetByteLength, ArrayBufferPrototypeGetDetached,
    ArrayBufferPrototypeSlice, ArrayBufferPrototypeTransfer, BigInt64Array, BigUint64Array, Boolean: BooleanCtor,
    DataView: DataViewCtor, DataViewPrototypeGetBuffer, DataViewPrototypeGetByteLength, DataViewPrototypeGetByteOffset,
    Float32Array, Float64Array, FunctionPrototypeCall, Int16Array, Int32Array, Int8Array, MathMin, NumberIsNaN,
    Number: NumberCtor, ObjectDefineProperty, PromisePrototypeThen, PromiseReject, PromiseResolve, PromiseWithResolvers,
    RangeError: RangeErrorCtor, ReflectApply, String: StringCtor, TypeError: TypeErrorCtor,
    TypedArrayPrototypeGetBuffer, TypedArrayPrototypeGetByteLength, TypedArrayPrototypeGetByteOffset,
    TypedArrayPrototypeGetLength, TypedArrayPrototypeGetSymbolToStringTag, TypedArrayPrototypeSet, Uint16Array,
    Uint32Array, Uint8Array: Uint8ArrayCtor, Uint8ClampedArray, markPromiseHandled,
  } = primordials;
  const { defineHidden, webClass, newList, listPush, listShift } = internals;

  const S = { __proto__: null };
  internals.streams = S;

  // -----------------------------------------------------------------------------------------
  // Promises. "Upon fulfillment/rejection" reactions are chained through the captured `then`,
  // and the promise each reaction makes is marked handled, so a stream never reports an
  // unhandled rejection the standard does not cause.

  function noop() {}
  S.noop = noop;
  S.newPromise = PromiseWithResolvers;
  S.resolved = PromiseResolve;
  S.rejected = PromiseReject;
  const resolvedUndefined = () => PromiseResolve(undefined);
  S.resolvedUndefined = resolvedUndefined;
  S.markHandled = markPromiseHandled;

  function uponPromise(promise, onFulfilled, onRejected) {
    markPromiseHandled(PromisePrototypeThen(promise, onFulfilled, onRejected));
  }
  S.uponPromise = uponPromise;
  S.uponFulfillment = (promise, onFulfilled) => uponPromise(promise, onFulfilled, undefined);
  S.uponRejection = (promise, onRejected) => uponPromise(promise, undefined, onRejected);
  S.transformPromise = (promise, onFulfilled, onRejected) => PromisePrototypeThen(promise, onFulfilled, onRejected);

  // A rejected promise already marked handled, for promises a stream stores (closed, ready).
  function rejectedHandled(reason) {
    const p = PromiseReject(reason);
    markPromiseHandled(p);
    return p;
  }
  S.rejectedHandled = rejectedHandled;

  // Calls `method` on `thisArg`; a throw becomes a rejected promise, a value a resolved one.
  function promiseCall(method, thisArg, args) {
    try {
      return PromiseResolve(ReflectApply(method, thisArg, args));
    } catch (e) {
      return PromiseReject(e);
    }
  }
  S.promiseCall = promiseCall;

  // -----------------------------------------------------------------------------------------
  // Queue-with-sizes (the containers are controller records with `queue` and `queueTotalSize`).

  S.dequeueValue = (container) => {
    const pair = listShift(container.queue);
    container.queueTotalSize -= pair.size;
    if (container.queueTotalSize < 0) container.queueTotalSize = 0; // rounding errors
    return pair.value;
  };
  S.enqueueValueWithSize = (container, value, size) => {
    size = NumberCtor(size); // a size() result is converted as the standard's unrestricted double
    if (!(size >= 0 && size !== Infinity)) { // also catches NaN
      throw new RangeErrorCtor("The size of a chunk must be a finite, non-negative number");
    }
    listPush(container.queue, { __proto__: null, value, size });
    container.queueTotalSize += size;
  };
  S.peekQueueValue = (container) => container.queue.head.value.value;
  S.resetQueue = (container) => {
    container.queue = newList();
    container.queueTotalSize = 0;
  };

  // -----------------------------------------------------------------------------------------
  // Web IDL conversions the stream constructors and methods apply to their arguments.

  function isObject(value) {
    return (typeof value === "object" && value !== null) || typeof value === "function";
  }
  S.isObject = isObject;

  // A dictionary argument: undefined and null are an empty dictionary; other non-objects throw.
  function dictionary(value, what) {
    if (value === undefined || value === null) return undefined;
    if (!isObject(value)) throw new TypeErrorCtor(`${what}: the argument must be an object`);
    return value;
  }
  S.dictionary = dictionary;
  S.member = (dict, key) => (dict === undefined ? undefined : dict[key]);

  // A callback function member: undefined stays undefined, anything else must be callable.
  function callback(value, what) {
    if (value === undefined) return undefined;
    if (typeof value !== "function") throw new TypeErrorCtor(`${what} must be a function`);
    return value;
  }
  S.callback = callback;

  // A QueuingStrategy dictionary: { highWaterMark, size } read in Web IDL's order.
  S.queuingStrategy = (value, what) => {
    const dict = dictionary(value, what);
    const highWaterMark = S.member(dict, "highWaterMark");
    const size = callback(S.member(dict, "size"), `${what}: size`);
    return {
      __proto__: null,
      highWaterMark: highWaterMark === undefined ? undefined : NumberCtor(highWaterMark),
      size,
    };
  };
  S.extractHighWaterMark = (strategy, defaultHWM) => {
    if (strategy.highWaterMark === undefined) return defaultHWM;
    const hwm = strategy.highWaterMark;
    if (NumberIsNaN(hwm) || hwm < 0) throw new RangeErrorCtor("The highWaterMark must be a non-negative number");
    return hwm;
  };
  S.extractSizeAlgorithm = (strategy) => {
    const size = strategy.size;
    if (size === undefined) return () => 1;
    return (chunk) => ReflectApply(size, undefined, [chunk]);
  };

  // -----------------------------------------------------------------------------------------
  // Queuing strategies

  // The `size` functions are one per realm, as the standard says; they read byteLength the way
  // a script would (a getter on the chunk may run).
  const byteLengthSize = ({ size(chunk) { return chunk.byteLength; } }).size;
  const countSize = ({ size() { return 1; } }).size;

  function strategyInit(init, what) {
    if (init === undefined || init === null || !isObject(init)) {
      throw new TypeErrorCtor(`${what}: the argument must be an object with a highWaterMark`);
    }
    const hwm = init.highWaterMark;
    if (hwm === undefined) throw new TypeErrorCtor(`${what}: highWaterMark is required`);
    return NumberCtor(hwm);
  }

  class ByteLengthQueuingStrategy {
    #highWaterMark;
    constructor(init) {
      if (arguments.length === 0) throw new TypeErrorCtor("ByteLengthQueuingStrategy: 1 argument required");
      this.#highWaterMark = strategyInit(init, "ByteLengthQueuingStrategy");
    }
    get highWaterMark() { return this.#highWaterMark; }
    get size() {
      void this.#highWaterMark; // brand check
      return byteLengthSize;
    }
  }
  webClass(ByteLengthQueuingStrategy, "ByteLengthQueuingStrategy");

  class CountQueuingStrategy {
    #highWaterMark;
    constructor(init) {
      if (arguments.length === 0) throw new TypeErrorCtor("CountQueuingStrategy: 1 argument required");
      this.#highWaterMark = strategyInit(init, "CountQueuingStrategy");
    }
    get highWaterMark() { return this.#highWaterMark; }
    get size() {
      void this.#highWaterMark; // brand check
      return countSize;
    }
  }
  webClass(CountQueuingStrategy, "CountQueuingStrategy");
  defineHidden(global, "ByteLengthQueuingStrategy", ByteLengthQueuingStrategy);
  defineHidden(global, "CountQueuingStrategy", CountQueuingStrategy);

  // -----------------------------------------------------------------------------------------
  // ArrayBuffers and views, read through the captured getters (a tenant may redefine
  // `byteLength` on a prototype; the standard reads the internal slots).

  const VIEW_TYPES = {
    __proto__: null,
    Int8Array: [Int8Array, 1], Uint8Array: [Uint8ArrayCtor, 1], Uint8ClampedArray: [Uint8ClampedArray, 1],
    Int16Array: [Int16Array, 2], Uint16Array: [Uint16Array, 2], Int32Array: [Int32Array, 4],
    Uint32Array: [Uint32Array, 4], Float32Array: [Float32Array, 4], Float64Array: [Float64Array, 8],
    BigInt64Array: [BigInt64Array, 8], BigUint64Array: [BigUint64Array, 8],
  };
  if (typeof global.Float16Array === "function") VIEW_TYPES.Float16Array = [global.Float16Array, 2];

  // What the standard reads from a view's internal slots: buffer, offset, length in bytes, the
  // constructor to make one like it, and its element size.
  function viewInfo(view) {
    const tag = TypedArrayPrototypeGetSymbolToStringTag(view);
    if (tag === undefined) {
      return {
        __proto__: null,
        buffer: DataViewPrototypeGetBuffer(view),
        byteOffset: DataViewPrototypeGetByteOffset(view),
        byteLength: DataViewPrototypeGetByteLength(view),
        ctor: DataViewCtor,
        elementSize: 1,
        length: DataViewPrototypeGetByteLength(view),
      };
    }
    const type = VIEW_TYPES[tag];
    return {
      __proto__: null,
      buffer: TypedArrayPrototypeGetBuffer(view),
      byteOffset: TypedArrayPrototypeGetByteOffset(view),
      byteLength: TypedArrayPrototypeGetByteLength(view),
      ctor: type[0],
      elementSize: type[1],
      length: TypedArrayPrototypeGetLength(view),
    };
  }
  S.viewInfo = viewInfo;
  S.isView = ArrayBufferIsView;
  S.isArrayBuffer = (value) => {
    try {
      ArrayBufferPrototypeGetByteLength(value);
      return true;
    } catch {
      return false; // not an ArrayBuffer (a SharedArrayBuffer or anything else)
    }
  };
  S.bufferByteLength = ArrayBufferPrototypeGetByteLength;
  S.isDetached = ArrayBufferPrototypeGetDetached;

  // TransferArrayBuffer: moves the contents into a new ArrayBuffer and detaches `buffer`.
  // A buffer that cannot be detached (a WebAssembly memory's) throws a TypeError.
  S.transferArrayBuffer = (buffer) => ArrayBufferPrototypeTransfer(buffer);
  S.canTransferArrayBuffer = (buffer) => !ArrayBufferPrototypeGetDetached(buffer);

  // A new view of `info.ctor`'s type.
  S.makeView = (ctor, buffer, byteOffset, length) => new ctor(buffer, byteOffset, length);
  S.newUint8Array = (buffer, byteOffset, byteLength) => new Uint8ArrayCtor(buffer, byteOffset, byteLength);
  S.Uint8Array = Uint8ArrayCtor;
  S.arrayBufferSlice = ArrayBufferPrototypeSlice;
  S.newArrayBuffer = (length) => new ArrayBufferCtor(length);

  // CopyDataBlockBytes: copies `count` bytes between two ArrayBuffers.
  S.copyDataBlockBytes = (toBuffer, toIndex, fromBuffer, fromIndex, count) => {
    TypedArrayPrototypeSet(new Uint8ArrayCtor(toBuffer, toIndex, count), new Uint8ArrayCtor(fromBuffer, fromIndex, count));
  };

  // A copy of a chunk's bytes as a Uint8Array (for tee's second branch and bodies).
  S.cloneAsUint8Array = (view) => {
    const info = viewInfo(view);
    const buffer = ArrayBufferPrototypeSlice(info.buffer, info.byteOffset, info.byteOffset + info.byteLength);
    return new Uint8ArrayCtor(buffer);
  };

  S.min = MathMin;
  S.toBoolean = BooleanCtor;
  S.toNumber = NumberCtor;
  S.toString = StringCtor;
  S.call = FunctionPrototypeCall;
  S.apply = ReflectApply;
  S.defineGetter = (target, name, get) => ObjectDefineProperty(target, name, { get, enumerable: false, configurable: true });
  S.TypeError = TypeErrorCtor;
  S.RangeError = RangeErrorCtor;
})

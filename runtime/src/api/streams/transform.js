// TransformStream and its controller, as the WHATWG Streams Standard defines them; the Workers
// extras IdentityTransformStream (bytes in, a byte stream out that BYOB readers can read, each
// write finishing when a reader has taken its bytes) and FixedLengthStream (the same, with the
// byte count checked), as workerd defines them; and "set up a TransformStream" for the
// standard's transform classes built in isobar (TextEncoderStream, CompressionStream, ...).
(function (ops, internals, global, primordials) {
  "use strict";
  const { FunctionPrototypeCall, NumberIsInteger, NumberMAX_SAFE_INTEGER } = primordials;
  const { defineHidden, webClass } = internals;
  const S = internals.streams;
  const {
    newPromise, resolved, rejected, resolvedUndefined, uponPromise, transformPromise, promiseCall, isObject,
    dictionary, member, callback, queuingStrategy, extractHighWaterMark, extractSizeAlgorithm, noop, INTERNAL, isView,
    viewInfo, isArrayBuffer, toNumber, TypeError: TypeErrorCtor, RangeError: RangeErrorCtor,
  } = S;

  function illegal() {
    return new TypeErrorCtor("Illegal invocation");
  }

  // -----------------------------------------------------------------------------------------
  // Public classes

  class TransformStream {
    #t;
    constructor(transformer = undefined, writableStrategy = undefined, readableStrategy = undefined) {
      if (transformer === INTERNAL) {
        this.#t = writableStrategy;
        writableStrategy.obj = this;
        return;
      }
      if (transformer !== undefined && !isObject(transformer)) {
        throw new TypeErrorCtor("TransformStream: the transformer must be an object");
      }
      const writableStrat = queuingStrategy(writableStrategy, "TransformStream: writableStrategy");
      const readableStrat = queuingStrategy(readableStrategy, "TransformStream: readableStrategy");
      const cancel = callback(member(transformer, "cancel"), "TransformStream: cancel");
      const flush = callback(member(transformer, "flush"), "TransformStream: flush");
      const readableType = member(transformer, "readableType");
      const start = callback(member(transformer, "start"), "TransformStream: start");
      const transform = callback(member(transformer, "transform"), "TransformStream: transform");
      const writableType = member(transformer, "writableType");
      if (readableType !== undefined) throw new RangeErrorCtor("TransformStream: readableType must be undefined");
      if (writableType !== undefined) throw new RangeErrorCtor("TransformStream: writableType must be undefined");
      const readableHWM = extractHighWaterMark(readableStrat, 0);
      const readableSize = extractSizeAlgorithm(readableStrat);
      const writableHWM = extractHighWaterMark(writableStrat, 1);
      const writableSize = extractSizeAlgorithm(writableStrat);
      const startPromise = newPromise();
      const t = newTransformRecord();
      t.obj = this;
      this.#t = t;
      initializeTransformStream(t, startPromise.promise, writableHWM, writableSize, readableHWM, readableSize);
      const c = setUpTransformStreamDefaultControllerFromTransformer(t, transformer, { __proto__: null, cancel, flush, transform });
      if (start !== undefined) startPromise.resolve(FunctionPrototypeCall(start, transformer, c.obj));
      else startPromise.resolve(undefined);
    }
    get readable() {
      return S.streamObject(ts(this).readable);
    }
    get writable() {
      return S.writableStreamObject(ts(this).writable);
    }
    static _t(value) {
      return (typeof value === "object" && value !== null && #t in value) ? value.#t : undefined;
    }
  }
  const tsOrUndefined = TransformStream._t;
  delete TransformStream._t;
  function ts(value) {
    const t = tsOrUndefined(value);
    if (t === undefined) throw illegal();
    return t;
  }
  webClass(TransformStream, "TransformStream");

  class TransformStreamDefaultController {
    #c;
    constructor(key = undefined, controller = undefined) {
      if (key !== INTERNAL) throw new TypeErrorCtor("Illegal constructor");
      this.#c = controller;
    }
    get desiredSize() {
      const readableController = this.#c.stream.readable.controller;
      return S.readableStreamDefaultControllerGetDesiredSize(readableController);
    }
    enqueue(chunk = undefined) {
      transformStreamDefaultControllerEnqueue(this.#c, chunk);
    }
    error(reason = undefined) {
      transformStreamError(this.#c.stream, reason);
    }
    terminate() {
      transformStreamDefaultControllerTerminate(this.#c);
    }
  }
  webClass(TransformStreamDefaultController, "TransformStreamDefaultController");

  defineHidden(global, "TransformStream", TransformStream);
  defineHidden(global, "TransformStreamDefaultController", TransformStreamDefaultController);

  // -----------------------------------------------------------------------------------------
  // TransformStream abstract operations

  function newTransformRecord() {
    return {
      __proto__: null,
      obj: undefined,
      readable: undefined,
      writable: undefined,
      backpressure: undefined,
      backpressureChangePromise: undefined,
      controller: undefined,
    };
  }

  function initializeTransformStream(t, startPromise, writableHWM, writableSize, readableHWM, readableSize) {
    const startAlgorithm = () => startPromise;
    t.writable = S.createWritableStream(startAlgorithm,
      (chunk) => transformStreamDefaultSinkWriteAlgorithm(t, chunk),
      () => transformStreamDefaultSinkCloseAlgorithm(t),
      (reason) => transformStreamDefaultSinkAbortAlgorithm(t, reason),
      writableHWM, writableSize);
    t.readable = S.createReadableStream(startAlgorithm,
      () => transformStreamDefaultSourcePullAlgorithm(t),
      (reason) => transformStreamDefaultSourceCancelAlgorithm(t, reason),
      readableHWM, readableSize);
    t.backpressure = undefined;
    t.backpressureChangePromise = undefined;
    transformStreamSetBackpressure(t, true);
    t.controller = undefined;
  }

  function transformStreamError(t, e) {
    S.readableStreamDefaultControllerError(t.readable.controller, e);
    transformStreamErrorWritableAndUnblockWrite(t, e);
  }

  function transformStreamErrorWritableAndUnblockWrite(t, e) {
    transformStreamDefaultControllerClearAlgorithms(t.controller);
    S.writableStreamDefaultControllerErrorIfNeeded(t.writable.controller, e);
    transformStreamUnblockWrite(t);
  }

  function transformStreamUnblockWrite(t) {
    if (t.backpressure) transformStreamSetBackpressure(t, false);
  }

  function transformStreamSetBackpressure(t, backpressure) {
    if (t.backpressureChangePromise !== undefined) t.backpressureChangePromise.resolve(undefined);
    t.backpressureChangePromise = newPromise();
    t.backpressure = backpressure;
  }

  function newControllerRecord() {
    return {
      __proto__: null,
      obj: undefined,
      stream: undefined,
      transformAlgorithm: undefined,
      flushAlgorithm: undefined,
      cancelAlgorithm: undefined,
      finishPromise: undefined,
    };
  }

  function setUpTransformStreamDefaultController(t, c, transformAlgorithm, flushAlgorithm, cancelAlgorithm) {
    c.obj = new TransformStreamDefaultController(INTERNAL, c);
    c.stream = t;
    t.controller = c;
    c.transformAlgorithm = transformAlgorithm;
    c.flushAlgorithm = flushAlgorithm;
    c.cancelAlgorithm = cancelAlgorithm;
    c.finishPromise = undefined;
  }

  function setUpTransformStreamDefaultControllerFromTransformer(t, transformer, dict) {
    const c = newControllerRecord();
    const transform = dict.transform;
    const flush = dict.flush;
    const cancel = dict.cancel;
    const transformAlgorithm = transform === undefined
      ? (chunk) => {
        try {
          transformStreamDefaultControllerEnqueue(c, chunk);
          return resolved(undefined);
        } catch (e) {
          return rejected(e);
        }
      }
      : (chunk) => promiseCall(transform, transformer, [chunk, c.obj]);
    const flushAlgorithm = flush === undefined ? resolvedUndefined : () => promiseCall(flush, transformer, [c.obj]);
    const cancelAlgorithm = cancel === undefined ? resolvedUndefined : (reason) => promiseCall(cancel, transformer, [reason]);
    setUpTransformStreamDefaultController(t, c, transformAlgorithm, flushAlgorithm, cancelAlgorithm);
    return c;
  }

  function transformStreamDefaultControllerClearAlgorithms(c) {
    c.transformAlgorithm = undefined;
    c.flushAlgorithm = undefined;
    c.cancelAlgorithm = undefined;
  }

  function transformStreamDefaultControllerEnqueue(c, chunk) {
    const t = c.stream;
    const readableController = t.readable.controller;
    if (!S.readableStreamDefaultControllerCanCloseOrEnqueue(readableController)) {
      throw new TypeErrorCtor("The readable side of this TransformStream is not in a state that permits enqueue");
    }
    try {
      S.readableStreamDefaultControllerEnqueue(readableController, chunk);
    } catch (e) {
      transformStreamErrorWritableAndUnblockWrite(t, e);
      throw t.readable.storedError;
    }
    const backpressure = S.readableStreamDefaultControllerHasBackpressure(readableController);
    if (backpressure !== t.backpressure) transformStreamSetBackpressure(t, true);
  }

  function transformStreamDefaultControllerPerformTransform(c, chunk) {
    const transformPromiseResult = c.transformAlgorithm(chunk);
    return transformPromise(transformPromiseResult, undefined, (r) => {
      transformStreamError(c.stream, r);
      throw r;
    });
  }

  function transformStreamDefaultControllerTerminate(c) {
    const t = c.stream;
    S.readableStreamDefaultControllerClose(t.readable.controller);
    transformStreamErrorWritableAndUnblockWrite(t, new TypeErrorCtor("The TransformStream has been terminated"));
  }

  function transformStreamDefaultSinkWriteAlgorithm(t, chunk) {
    const c = t.controller;
    if (t.backpressure) {
      // Settled by hand: a reaction returning the transform's promise would look up `then`.
      const done = newPromise();
      uponPromise(t.backpressureChangePromise.promise, () => {
        const writable = t.writable;
        if (writable.state === "erroring") {
          done.reject(writable.storedError);
          return;
        }
        uponPromise(transformStreamDefaultControllerPerformTransform(c, chunk), done.resolve, done.reject);
      }, done.reject);
      return done.promise;
    }
    return transformStreamDefaultControllerPerformTransform(c, chunk);
  }

  function transformStreamDefaultSinkAbortAlgorithm(t, reason) {
    const c = t.controller;
    if (c.finishPromise !== undefined) return c.finishPromise.promise;
    const readable = t.readable;
    c.finishPromise = newPromise();
    const cancelPromise = c.cancelAlgorithm(reason);
    transformStreamDefaultControllerClearAlgorithms(c);
    uponPromise(cancelPromise, () => {
      if (readable.state === "errored") {
        c.finishPromise.reject(readable.storedError);
      } else {
        S.readableStreamDefaultControllerError(readable.controller, reason);
        c.finishPromise.resolve(undefined);
      }
    }, (r) => {
      S.readableStreamDefaultControllerError(readable.controller, r);
      c.finishPromise.reject(r);
    });
    return c.finishPromise.promise;
  }

  function transformStreamDefaultSinkCloseAlgorithm(t) {
    const c = t.controller;
    if (c.finishPromise !== undefined) return c.finishPromise.promise;
    const readable = t.readable;
    c.finishPromise = newPromise();
    const flushPromise = c.flushAlgorithm();
    transformStreamDefaultControllerClearAlgorithms(c);
    uponPromise(flushPromise, () => {
      if (readable.state === "errored") {
        c.finishPromise.reject(readable.storedError);
      } else {
        S.readableStreamDefaultControllerClose(readable.controller);
        c.finishPromise.resolve(undefined);
      }
    }, (r) => {
      S.readableStreamDefaultControllerError(readable.controller, r);
      c.finishPromise.reject(r);
    });
    return c.finishPromise.promise;
  }

  function transformStreamDefaultSourceCancelAlgorithm(t, reason) {
    const c = t.controller;
    if (c.finishPromise !== undefined) return c.finishPromise.promise;
    const writable = t.writable;
    c.finishPromise = newPromise();
    const cancelPromise = c.cancelAlgorithm(reason);
    transformStreamDefaultControllerClearAlgorithms(c);
    uponPromise(cancelPromise, () => {
      if (writable.state === "errored") {
        c.finishPromise.reject(writable.storedError);
      } else {
        S.writableStreamDefaultControllerErrorIfNeeded(writable.controller, reason);
        transformStreamUnblockWrite(t);
        c.finishPromise.resolve(undefined);
      }
    }, (r) => {
      S.writableStreamDefaultControllerErrorIfNeeded(writable.controller, r);
      transformStreamUnblockWrite(t);
      c.finishPromise.reject(r);
    });
    return c.finishPromise.promise;
  }

  function transformStreamDefaultSourcePullAlgorithm(t) {
    transformStreamSetBackpressure(t, false);
    return t.backpressureChangePromise.promise;
  }

  // -----------------------------------------------------------------------------------------
  // "Set up a TransformStream" for isobar's own transforms. `transform(chunk, t)` and
  // `flush(t)` may return a promise; they enqueue with `S.transformEnqueue(t, chunk)`.

  S.newTransformStream = (transform, flush, cancel = undefined) => {
    const t = newTransformRecord();
    const startPromise = resolved(undefined);
    initializeTransformStream(t, startPromise, 1, () => 1, 0, () => 1);
    const c = newControllerRecord();
    const call = (algorithm, args) => {
      try {
        return resolved(FunctionPrototypeCall(algorithm, undefined, args[0], args[1]));
      } catch (e) {
        return rejected(e);
      }
    };
    setUpTransformStreamDefaultController(t, c,
      (chunk) => call(transform, [chunk, t]),
      flush === undefined ? resolvedUndefined : () => call(flush, [t]),
      cancel === undefined ? resolvedUndefined : (reason) => call(cancel, [reason, t]));
    new TransformStream(INTERNAL, t);
    return t;
  };
  S.transformEnqueue = (t, chunk) => transformStreamDefaultControllerEnqueue(t.controller, chunk);
  S.transformError = (t, e) => transformStreamError(t, e);
  // A promise that settles when the readable side wants more (undefined if it does now), so a
  // transform that makes many chunks from one (decompression) never runs ahead of its reader.
  S.transformReady = (t) => (t.backpressure ? t.backpressureChangePromise.promise : undefined);
  S.transformRecordOf = tsOrUndefined;

  // -----------------------------------------------------------------------------------------
  // IdentityTransformStream and FixedLengthStream (workerd)

  // The bytes of a chunk written to an identity stream: a copy (the readable side takes
  // ownership of what it is given, and the writer keeps its buffer); strings as UTF-8, as
  // workerd allows.
  function identityChunkBytes(chunk) {
    if (typeof chunk === "string") return internals.encodeUtf8(chunk);
    if (isView(chunk)) return S.cloneAsUint8Array(chunk);
    if (isArrayBuffer(chunk)) return new S.Uint8Array(S.arrayBufferSlice(chunk, 0));
    throw new TypeErrorCtor("This TransformStream is being used as a byte stream, but received an object of non-ArrayBuffer/ArrayBufferView type on its writable side.");
  }

  // Both sides of an identity stream. `expectedLength` is a FixedLengthStream's byte count.
  function setUpIdentityTransform(t, highWaterMark, expectedLength) {
    let pending; // the write waiting for a reader: { bytes, done: promise record }
    let delivered; // the write whose bytes a reader has, not all taken yet
    let pullWaiter; // a reader waiting for a write
    let seen = 0;
    let readable;
    let writable;

    function deliver() {
      const write = pending;
      pending = undefined;
      const rc = readable.controller;
      try {
        S.readableByteStreamControllerEnqueue(rc, write.bytes);
      } catch (e) {
        write.done.reject(e);
        return;
      }
      if (rc.queueTotalSize === 0) write.done.resolve(undefined);
      else delivered = write;
    }

    function fail(error) {
      S.readableByteStreamControllerError(readable.controller, error);
      S.writableStreamDefaultControllerErrorIfNeeded(writable.controller, error);
      if (pending !== undefined) pending.done.reject(error);
      if (delivered !== undefined) delivered.done.reject(error);
      pending = undefined;
      delivered = undefined;
      if (pullWaiter !== undefined) pullWaiter.resolve(undefined);
      pullWaiter = undefined;
    }

    const writeAlgorithm = (chunk) => {
      let bytes;
      try {
        bytes = identityChunkBytes(chunk);
      } catch (e) {
        // The standard's rule for a failing sink: the stream is errored, on both sides.
        fail(e);
        return rejected(e);
      }
      const length = bytes.byteLength;
      if (length === 0) return resolved(undefined);
      if (expectedLength !== undefined) {
        if (seen + length > expectedLength) {
          const error = new TypeErrorCtor("Attempt to write too many bytes through a FixedLengthStream.");
          fail(error);
          return rejected(error);
        }
        seen += length;
      }
      const done = newPromise();
      pending = { __proto__: null, bytes, done };
      if (pullWaiter !== undefined) {
        const waiter = pullWaiter;
        pullWaiter = undefined;
        deliver();
        waiter.resolve(undefined);
      }
      return done.promise;
    };
    const closeAlgorithm = () => {
      if (expectedLength !== undefined && seen !== expectedLength) {
        const error = new TypeErrorCtor("FixedLengthStream did not see all expected bytes before close().");
        fail(error);
        return rejected(error);
      }
      const rc = readable.controller;
      if (readable.state === "readable" && !rc.closeRequested) {
        try {
          S.readableByteStreamControllerClose(rc);
        } catch (e) {
          return rejected(e);
        }
        // A reader still waiting for bytes gets the end of the stream.
        if (rc.pendingPullIntos.size > 0 && readable.state === "closed") S.readableByteStreamControllerRespond(rc, 0);
      }
      if (pullWaiter !== undefined) pullWaiter.resolve(undefined);
      pullWaiter = undefined;
      return resolved(undefined);
    };
    const abortAlgorithm = (reason) => {
      fail(reason);
      return resolved(undefined);
    };
    const pullAlgorithm = () => {
      if (delivered !== undefined) {
        delivered.done.resolve(undefined);
        delivered = undefined;
      }
      if (pending !== undefined) {
        deliver();
        return resolved(undefined);
      }
      pullWaiter = newPromise();
      return pullWaiter.promise;
    };
    const cancelAlgorithm = (reason) => {
      S.writableStreamDefaultControllerErrorIfNeeded(writable.controller, reason);
      if (pending !== undefined) pending.done.reject(reason);
      if (delivered !== undefined) delivered.done.reject(reason);
      pending = undefined;
      delivered = undefined;
      pullWaiter = undefined;
      return resolved(undefined);
    };

    readable = S.createReadableByteStream(noop, pullAlgorithm, cancelAlgorithm, 0);
    readable.knownLength = expectedLength;
    // A write whose bytes a reader took only in part finishes when the rest is taken.
    readable.controller.onDrain = () => {
      if (delivered === undefined) return;
      const write = delivered;
      delivered = undefined;
      write.done.resolve(undefined);
    };
    // Without a highWaterMark, workerd reports no backpressure at all (desiredSize stays 1);
    // with one, the bytes written and not yet read count against it.
    const sizeAlgorithm = highWaterMark === undefined
      ? () => 0
      : (chunk) => {
        if (typeof chunk === "string") return chunk.length;
        if (isView(chunk)) return viewInfo(chunk).byteLength;
        if (isArrayBuffer(chunk)) return S.bufferByteLength(chunk);
        return 0;
      };
    writable = S.createWritableStream(noop, writeAlgorithm, closeAlgorithm, abortAlgorithm,
      highWaterMark === undefined ? 1 : highWaterMark, sizeAlgorithm);
    writable.onAbort = (reason) => {
      // A write waiting for a reader fails now instead of holding the abort back forever.
      if (pending !== undefined) pending.done.reject(reason);
      if (delivered !== undefined) delivered.done.reject(reason);
      pending = undefined;
      delivered = undefined;
    };
    t.readable = readable;
    t.writable = writable;
  }

  function identityStrategy(strategy, what) {
    const dict = dictionary(strategy, what);
    const hwm = member(dict, "highWaterMark");
    if (hwm === undefined) return undefined;
    return internals.enforceRange(hwm, 0, NumberMAX_SAFE_INTEGER, `${what}: highWaterMark`);
  }

  // FixedLengthStream builds its record and hands it to IdentityTransformStream's constructor
  // through this variable, set just before `super()` and cleared by the constructor.
  let fixedLengthRecord;

  class IdentityTransformStream extends TransformStream {
    constructor(strategy = undefined) {
      let t = fixedLengthRecord;
      fixedLengthRecord = undefined;
      if (t === undefined) {
        const highWaterMark = identityStrategy(strategy, "IdentityTransformStream");
        t = newTransformRecord();
        setUpIdentityTransform(t, highWaterMark, undefined);
      }
      super(INTERNAL, t);
    }
  }
  webClass(IdentityTransformStream, "IdentityTransformStream");

  class FixedLengthStream extends IdentityTransformStream {
    constructor(expectedLength, strategy = undefined) {
      if (arguments.length === 0) throw new TypeErrorCtor("FixedLengthStream: 1 argument required");
      const length = toNumber(expectedLength);
      if (!NumberIsInteger(length) || length < 0 || length > NumberMAX_SAFE_INTEGER) {
        throw new TypeErrorCtor("FixedLengthStream requires an integer expected length less than 2^53.");
      }
      let highWaterMark = identityStrategy(strategy, "FixedLengthStream");
      // A highWaterMark above the length could never be reached.
      if (highWaterMark !== undefined && highWaterMark > length) highWaterMark = length;
      const t = newTransformRecord();
      setUpIdentityTransform(t, highWaterMark, length);
      fixedLengthRecord = t;
      super();
    }
  }
  webClass(FixedLengthStream, "FixedLengthStream");

  defineHidden(global, "IdentityTransformStream", IdentityTransformStream);
  defineHidden(global, "FixedLengthStream", FixedLengthStream);
  internals.TransformStream = TransformStream;
})

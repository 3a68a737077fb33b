// ReadableStream as the WHATWG Streams Standard defines it: default and byte streams, default
// and BYOB readers (with workerd's `readAtLeast`), the controllers and BYOB requests, tee(),
// pipeTo()/pipeThrough(), async iteration and ReadableStream.from().
//
// Layout: each public object holds one internal record (a null-prototype object) in a private
// field; the standard's abstract operations are the functions below, named as in the standard,
// and work on records only, so that nothing a tenant does to the public objects or their
// prototypes changes what they do. Records of streams made inside isobar (tee branches, pipe
// readers) may have no public reader object at all.
(function (ops, internals, global, primordials) {
  "use strict";
  const {
    FunctionPrototypeCall, ObjectCreate, ObjectDefineProperty, ObjectGetOwnPropertyDescriptor, ObjectSetPrototypeOf,
    AsyncIteratorPrototype, PromisePrototypeThen, SafePromiseAll, SymbolAsyncIterator, SymbolIterator,
    NumberMAX_SAFE_INTEGER,
  } = primordials;
  const { defineHidden, webClass, enforceRange, newList, listPush, listShift, listPeek, listTake } = internals;
  const S = internals.streams;
  const {
    newPromise, resolved, rejected, resolvedUndefined, rejectedHandled, markHandled, uponPromise, uponFulfillment,
    uponRejection, transformPromise, promiseCall, isObject, dictionary,
    member, callback, queuingStrategy, extractHighWaterMark, extractSizeAlgorithm, dequeueValue, enqueueValueWithSize,
    resetQueue, viewInfo, isView, isDetached, transferArrayBuffer, canTransferArrayBuffer, copyDataBlockBytes,
    cloneAsUint8Array, bufferByteLength, newUint8Array, makeView, min, toBoolean, toString, noop,
    TypeError: TypeErrorCtor, RangeError: RangeErrorCtor,
  } = S;

  // The key that lets isobar's own code make public objects around records it built.
  const INTERNAL = { __proto__: null };

  function illegal() {
    return new TypeErrorCtor("Illegal invocation");
  }

  // -----------------------------------------------------------------------------------------
  // Public classes: thin shells over records.

  class ReadableStream {
    #r;
    constructor(underlyingSource = undefined, strategy = undefined) {
      if (underlyingSource === INTERNAL) {
        this.#r = strategy;
        strategy.obj = this;
        return;
      }
      if (underlyingSource !== undefined && !isObject(underlyingSource)) {
        throw new TypeErrorCtor("ReadableStream: the underlying source must be an object");
      }
      const strat = queuingStrategy(strategy, "ReadableStream: strategy");
      // The UnderlyingSource dictionary, its members read in Web IDL's (alphabetical) order.
      const source = underlyingSource;
      let autoAllocateChunkSize = member(source, "autoAllocateChunkSize");
      if (autoAllocateChunkSize !== undefined) {
        autoAllocateChunkSize = enforceRange(autoAllocateChunkSize, 0, NumberMAX_SAFE_INTEGER, "ReadableStream: autoAllocateChunkSize");
      }
      const cancel = callback(member(source, "cancel"), "ReadableStream: cancel");
      const pull = callback(member(source, "pull"), "ReadableStream: pull");
      const start = callback(member(source, "start"), "ReadableStream: start");
      let type = member(source, "type");
      if (type !== undefined) {
        type = toString(type);
        if (type !== "bytes") throw new TypeErrorCtor(`ReadableStream: "${type}" is not a valid stream type (only "bytes" is)`);
      }
      const r = newStreamRecord();
      r.obj = this;
      this.#r = r;
      const dict = { __proto__: null, autoAllocateChunkSize, cancel, pull, start };
      if (type === "bytes") {
        if (strat.size !== undefined) throw new RangeErrorCtor("ReadableStream: a byte stream's strategy cannot have a size function");
        const hwm = extractHighWaterMark(strat, 0);
        setUpReadableByteStreamControllerFromUnderlyingSource(r, source, dict, hwm);
      } else {
        const sizeAlgorithm = extractSizeAlgorithm(strat);
        const hwm = extractHighWaterMark(strat, 1);
        setUpReadableStreamDefaultControllerFromUnderlyingSource(r, source, dict, hwm, sizeAlgorithm);
      }
    }

    static from(asyncIterable) {
      return readableStreamFromIterable(asyncIterable).obj;
    }

    get locked() {
      return isReadableStreamLocked(rs(this));
    }

    cancel(reason = undefined) {
      try {
        const r = rs(this);
        if (isReadableStreamLocked(r)) return rejected(new TypeErrorCtor("Cannot cancel a stream that is locked to a reader"));
        return readableStreamCancel(r, reason);
      } catch (e) {
        return rejected(e);
      }
    }

    getReader(options = undefined) {
      const r = rs(this);
      const dict = dictionary(options, "ReadableStream.getReader");
      let mode = member(dict, "mode");
      if (mode === undefined) return readerObject(acquireReadableStreamDefaultReader(r));
      mode = toString(mode);
      if (mode !== "byob") throw new TypeErrorCtor(`ReadableStream.getReader: "${mode}" is not a valid reader mode (only "byob" is)`);
      return readerObject(acquireReadableStreamBYOBReader(r));
    }

    pipeThrough(transform, options = undefined) {
      const r = rs(this);
      if (!isObject(transform)) throw new TypeErrorCtor("ReadableStream.pipeThrough: the transform must be an object");
      const readableValue = transform.readable;
      const readable = rsOrUndefined(readableValue);
      if (readable === undefined) throw new TypeErrorCtor("ReadableStream.pipeThrough: transform.readable must be a ReadableStream");
      const writable = S.writableRecordOf(transform.writable);
      if (writable === undefined) throw new TypeErrorCtor("ReadableStream.pipeThrough: transform.writable must be a WritableStream");
      const opts = pipeOptions(options, "ReadableStream.pipeThrough");
      if (isReadableStreamLocked(r)) throw new TypeErrorCtor("ReadableStream.pipeThrough: this stream is locked to a reader");
      if (S.isWritableStreamLocked(writable)) throw new TypeErrorCtor("ReadableStream.pipeThrough: the writable side is locked to a writer");
      const promise = readableStreamPipeTo(r, writable, opts.preventClose, opts.preventAbort, opts.preventCancel, opts.signal);
      markHandled(promise);
      return readableValue;
    }

    pipeTo(destination, options = undefined) {
      try {
        const r = rs(this);
        const dest = S.writableRecordOf(destination);
        if (dest === undefined) throw new TypeErrorCtor("ReadableStream.pipeTo: the destination must be a WritableStream");
        const opts = pipeOptions(options, "ReadableStream.pipeTo");
        if (isReadableStreamLocked(r)) throw new TypeErrorCtor("ReadableStream.pipeTo: this stream is locked to a reader");
        if (S.isWritableStreamLocked(dest)) throw new TypeErrorCtor("ReadableStream.pipeTo: the destination is locked to a writer");
        return readableStreamPipeTo(r, dest, opts.preventClose, opts.preventAbort, opts.preventCancel, opts.signal);
      } catch (e) {
        return rejected(e);
      }
    }

    tee() {
      const branches = readableStreamTee(rs(this), false);
      return [branches[0].obj, branches[1].obj];
    }

    values(options = undefined) {
      const r = rs(this);
      const dict = dictionary(options, "ReadableStream.values");
      const preventCancel = toBoolean(member(dict, "preventCancel"));
      const reader = acquireReadableStreamDefaultReader(r);
      return newAsyncIterator(reader, preventCancel);
    }

    static _r(value) {
      return (typeof value === "object" && value !== null && #r in value) ? value.#r : undefined;
    }
  }
  const rsOrUndefined = ReadableStream._r;
  delete ReadableStream._r;
  function rs(value) {
    const r = rsOrUndefined(value);
    if (r === undefined) throw illegal();
    return r;
  }
  // [Symbol.asyncIterator] is the same function as values(), as Web IDL's async iterable says.
  ObjectDefineProperty(ReadableStream.prototype, SymbolAsyncIterator, {
    value: ReadableStream.prototype.values, writable: true, configurable: true, enumerable: false,
  });
  webClass(ReadableStream, "ReadableStream");

  function pipeOptions(options, what) {
    const dict = dictionary(options, what);
    const preventAbort = toBoolean(member(dict, "preventAbort"));
    const preventCancel = toBoolean(member(dict, "preventCancel"));
    const preventClose = toBoolean(member(dict, "preventClose"));
    const signal = member(dict, "signal");
    if (signal !== undefined && !S.isAbortSignal(signal)) throw new TypeErrorCtor(`${what}: options.signal must be an AbortSignal`);
    return { __proto__: null, preventAbort, preventCancel, preventClose, signal };
  }

  class ReadableStreamDefaultReader {
    #r;
    constructor(stream) {
      if (stream === INTERNAL) return;
      const r = rsOrUndefined(stream);
      if (r === undefined) throw new TypeErrorCtor("ReadableStreamDefaultReader: the argument must be a ReadableStream");
      const reader = newReaderRecord("default");
      setUpReadableStreamDefaultReader(reader, r);
      reader.obj = this;
      this.#r = reader;
    }
    get closed() {
      const reader = readerOrUndefined(this, "default");
      return reader === undefined ? rejected(illegal()) : reader.closed.promise;
    }
    cancel(reason = undefined) {
      const reader = readerOrUndefined(this, "default");
      if (reader === undefined) return rejected(illegal());
      if (reader.stream === undefined) return rejected(new TypeErrorCtor("This reader has been released"));
      return readableStreamReaderGenericCancel(reader, reason);
    }
    read() {
      const reader = readerOrUndefined(this, "default");
      if (reader === undefined) return rejected(illegal());
      if (reader.stream === undefined) return rejected(new TypeErrorCtor("This reader has been released"));
      const p = newPromise();
      readableStreamDefaultReaderRead(reader, {
        __proto__: null,
        chunkSteps: (chunk) => p.resolve({ value: chunk, done: false }),
        closeSteps: () => p.resolve({ value: undefined, done: true }),
        errorSteps: (e) => p.reject(e),
      });
      return p.promise;
    }
    releaseLock() {
      const reader = readerOrUndefined(this, "default");
      if (reader === undefined) throw illegal();
      if (reader.stream === undefined) return;
      readableStreamDefaultReaderRelease(reader);
    }
    static _r(value) {
      return (typeof value === "object" && value !== null && #r in value) ? value.#r : undefined;
    }
    static _set(object, reader) {
      object.#r = reader;
    }
  }
  const defaultReaderOf = ReadableStreamDefaultReader._r;
  const setDefaultReader = ReadableStreamDefaultReader._set;
  delete ReadableStreamDefaultReader._r;
  delete ReadableStreamDefaultReader._set;
  webClass(ReadableStreamDefaultReader, "ReadableStreamDefaultReader");

  class ReadableStreamBYOBReader {
    #r;
    constructor(stream) {
      if (stream === INTERNAL) return;
      const r = rsOrUndefined(stream);
      if (r === undefined) throw new TypeErrorCtor("ReadableStreamBYOBReader: the argument must be a ReadableStream");
      const reader = newReaderRecord("byob");
      setUpReadableStreamBYOBReader(reader, r);
      reader.obj = this;
      this.#r = reader;
    }
    get closed() {
      const reader = readerOrUndefined(this, "byob");
      return reader === undefined ? rejected(illegal()) : reader.closed.promise;
    }
    cancel(reason = undefined) {
      const reader = readerOrUndefined(this, "byob");
      if (reader === undefined) return rejected(illegal());
      if (reader.stream === undefined) return rejected(new TypeErrorCtor("This reader has been released"));
      return readableStreamReaderGenericCancel(reader, reason);
    }
    read(view, options = undefined) {
      try {
        const reader = readerOrUndefined(this, "byob");
        if (reader === undefined) throw illegal();
        if (!isView(view)) throw new TypeErrorCtor("ReadableStreamBYOBReader.read: the argument must be an ArrayBufferView");
        const dict = dictionary(options, "ReadableStreamBYOBReader.read");
        let minimum = member(dict, "min");
        minimum = minimum === undefined ? 1 : enforceRange(minimum, 0, NumberMAX_SAFE_INTEGER, "ReadableStreamBYOBReader.read: min");
        return byobRead(reader, view, minimum, false);
      } catch (e) {
        return rejected(e);
      }
    }
    // workerd's extension: read until at least `minElements` elements of `view` are filled.
    readAtLeast(minElements, view) {
      try {
        const reader = readerOrUndefined(this, "byob");
        if (reader === undefined) throw illegal();
        if (!isView(view)) throw new TypeErrorCtor("ReadableStreamBYOBReader.readAtLeast: the second argument must be an ArrayBufferView");
        return byobRead(reader, view, enforceRange(minElements, -0x80000000, 0x7fffffff, "readAtLeast: minBytes"), true);
      } catch (e) {
        return rejected(e);
      }
    }
    releaseLock() {
      const reader = readerOrUndefined(this, "byob");
      if (reader === undefined) throw illegal();
      if (reader.stream === undefined) return;
      readableStreamBYOBReaderRelease(reader);
    }
    static _r(value) {
      return (typeof value === "object" && value !== null && #r in value) ? value.#r : undefined;
    }
    static _set(object, reader) {
      object.#r = reader;
    }
  }
  const byobReaderOf = ReadableStreamBYOBReader._r;
  const setByobReader = ReadableStreamBYOBReader._set;
  delete ReadableStreamBYOBReader._r;
  delete ReadableStreamBYOBReader._set;
  webClass(ReadableStreamBYOBReader, "ReadableStreamBYOBReader");

  function readerOrUndefined(value, kind) {
    return kind === "default" ? defaultReaderOf(value) : byobReaderOf(value);
  }

  // The public object of a reader record, made when a script first needs it.
  function readerObject(reader) {
    if (reader.obj === undefined) {
      if (reader.kind === "default") {
        reader.obj = new ReadableStreamDefaultReader(INTERNAL);
        setDefaultReader(reader.obj, reader);
      } else {
        reader.obj = new ReadableStreamBYOBReader(INTERNAL);
        setByobReader(reader.obj, reader);
      }
    }
    return reader.obj;
  }

  // The checks of read(view, { min }) (standard: RangeError when min is too large) and of
  // readAtLeast (workerd: TypeError), then the read.
  function byobRead(reader, view, minimum, atLeast) {
    let info;
    try {
      info = viewInfo(view);
    } catch {
      return rejected(new TypeErrorCtor("The view's buffer is detached"));
    }
    if (info.byteLength === 0) return rejected(new TypeErrorCtor("The view must have a non-zero byteLength"));
    if (bufferByteLength(info.buffer) === 0) return rejected(new TypeErrorCtor("The view's buffer must have a non-zero byteLength"));
    if (isDetached(info.buffer)) return rejected(new TypeErrorCtor("The view's buffer is detached"));
    if (minimum <= 0) {
      return rejected(new TypeErrorCtor(`Requested invalid minimum number of ${atLeast ? "bytes" : "elements"} to read (${minimum}).`));
    }
    if (minimum > info.length) {
      const message = `The minimum to read (${minimum}) exceeds the view's length (${info.length})`;
      return rejected(atLeast ? new TypeErrorCtor(message) : new RangeErrorCtor(message));
    }
    if (reader.stream === undefined) return rejected(new TypeErrorCtor("This reader has been released"));
    const p = newPromise();
    readableStreamBYOBReaderRead(reader, view, info, minimum, {
      __proto__: null,
      chunkSteps: (chunk) => p.resolve({ value: chunk, done: false }),
      closeSteps: (chunk) => p.resolve({ value: chunk, done: true }),
      errorSteps: (e) => p.reject(e),
    });
    return p.promise;
  }

  class ReadableStreamDefaultController {
    #c;
    constructor(key = undefined, controller = undefined) {
      if (key !== INTERNAL) throw new TypeErrorCtor("Illegal constructor");
      this.#c = controller;
    }
    get desiredSize() {
      return readableStreamDefaultControllerGetDesiredSize(dc(this));
    }
    close() {
      const c = dc(this);
      if (!readableStreamDefaultControllerCanCloseOrEnqueue(c)) {
        throw new TypeErrorCtor("The stream is not in a state that permits close");
      }
      readableStreamDefaultControllerClose(c);
    }
    enqueue(chunk = undefined) {
      const c = dc(this);
      if (!readableStreamDefaultControllerCanCloseOrEnqueue(c)) {
        throw new TypeErrorCtor("The stream is not in a state that permits enqueue");
      }
      readableStreamDefaultControllerEnqueue(c, chunk);
    }
    error(e = undefined) {
      readableStreamDefaultControllerError(dc(this), e);
    }
    static _c(value) {
      return (typeof value === "object" && value !== null && #c in value) ? value.#c : undefined;
    }
  }
  const dcOrUndefined = ReadableStreamDefaultController._c;
  delete ReadableStreamDefaultController._c;
  function dc(value) {
    const c = dcOrUndefined(value);
    if (c === undefined) throw illegal();
    return c;
  }
  webClass(ReadableStreamDefaultController, "ReadableStreamDefaultController");

  class ReadableByteStreamController {
    #c;
    constructor(key = undefined, controller = undefined) {
      if (key !== INTERNAL) throw new TypeErrorCtor("Illegal constructor");
      this.#c = controller;
    }
    get byobRequest() {
      const request = readableByteStreamControllerGetBYOBRequest(bc(this));
      return request === null ? null : request.obj;
    }
    get desiredSize() {
      return readableByteStreamControllerGetDesiredSize(bc(this));
    }
    close() {
      const c = bc(this);
      if (c.closeRequested) throw new TypeErrorCtor("The stream is already closing");
      if (c.stream.state !== "readable") throw new TypeErrorCtor("The stream is not in a state that permits close");
      readableByteStreamControllerClose(c);
    }
    enqueue(chunk) {
      const c = bc(this);
      if (!isView(chunk)) throw new TypeErrorCtor("ReadableByteStreamController.enqueue: the chunk must be an ArrayBufferView");
      let info;
      try {
        info = viewInfo(chunk);
      } catch {
        throw new TypeErrorCtor("ReadableByteStreamController.enqueue: the chunk's buffer is detached");
      }
      if (info.byteLength === 0) throw new TypeErrorCtor("ReadableByteStreamController.enqueue: the chunk is empty");
      if (bufferByteLength(info.buffer) === 0) throw new TypeErrorCtor("ReadableByteStreamController.enqueue: the chunk's buffer is empty or detached");
      if (c.closeRequested) throw new TypeErrorCtor("ReadableByteStreamController.enqueue: the stream is closing");
      if (c.stream.state !== "readable") throw new TypeErrorCtor("The stream is not in a state that permits enqueue");
      readableByteStreamControllerEnqueue(c, chunk);
    }
    error(e = undefined) {
      readableByteStreamControllerError(bc(this), e);
    }
    static _c(value) {
      return (typeof value === "object" && value !== null && #c in value) ? value.#c : undefined;
    }
  }
  const bcOrUndefined = ReadableByteStreamController._c;
  delete ReadableByteStreamController._c;
  function bc(value) {
    const c = bcOrUndefined(value);
    if (c === undefined) throw illegal();
    return c;
  }
  webClass(ReadableByteStreamController, "ReadableByteStreamController");

  class ReadableStreamBYOBRequest {
    #q;
    constructor(key = undefined, request = undefined) {
      if (key !== INTERNAL) throw new TypeErrorCtor("Illegal constructor");
      this.#q = request;
    }
    get view() {
      return this.#q.view;
    }
    respond(bytesWritten) {
      const q = this.#q;
      bytesWritten = enforceRange(bytesWritten, 0, NumberMAX_SAFE_INTEGER, "ReadableStreamBYOBRequest.respond");
      if (q.controller === undefined) throw new TypeErrorCtor("This BYOB request has been invalidated");
      if (isDetached(viewInfo(q.view).buffer)) throw new TypeErrorCtor("The view's buffer has been detached");
      readableByteStreamControllerRespond(q.controller, bytesWritten);
    }
    respondWithNewView(view) {
      const q = this.#q;
      if (!isView(view)) throw new TypeErrorCtor("ReadableStreamBYOBRequest.respondWithNewView: the argument must be an ArrayBufferView");
      if (q.controller === undefined) throw new TypeErrorCtor("This BYOB request has been invalidated");
      let info;
      try {
        info = viewInfo(view);
      } catch {
        throw new TypeErrorCtor("The view's buffer has been detached");
      }
      if (isDetached(info.buffer)) throw new TypeErrorCtor("The view's buffer has been detached");
      readableByteStreamControllerRespondWithNewView(q.controller, view, info);
    }
  }
  webClass(ReadableStreamBYOBRequest, "ReadableStreamBYOBRequest");

  for (const [name, value] of [
    ["ReadableStream", ReadableStream], ["ReadableStreamDefaultReader", ReadableStreamDefaultReader],
    ["ReadableStreamBYOBReader", ReadableStreamBYOBReader], ["ReadableStreamDefaultController", ReadableStreamDefaultController],
    ["ReadableByteStreamController", ReadableByteStreamController], ["ReadableStreamBYOBRequest", ReadableStreamBYOBRequest],
  ]) {
    defineHidden(global, name, value);
  }

  // -----------------------------------------------------------------------------------------
  // Records

  function newStreamRecord() {
    return {
      __proto__: null,
      obj: undefined,
      state: "readable",
      reader: undefined,
      storedError: undefined,
      disturbed: false,
      controller: undefined,
      // Bytes the stream will carry, when known (FixedLengthStream): what a body's
      // Content-Length can say.
      knownLength: undefined,
    };
  }

  function newReaderRecord(kind) {
    return { __proto__: null, obj: undefined, kind, stream: undefined, closed: undefined, requests: newList() };
  }

  // The public object of a stream record, made if isobar built the record itself.
  function streamObject(r) {
    if (r.obj === undefined) new ReadableStream(INTERNAL, r);
    return r.obj;
  }

  // -----------------------------------------------------------------------------------------
  // Creating streams inside isobar

  function createReadableStream(startAlgorithm, pullAlgorithm, cancelAlgorithm, highWaterMark = 1, sizeAlgorithm = () => 1) {
    const r = newStreamRecord();
    streamObject(r);
    const c = newDefaultControllerRecord();
    setUpReadableStreamDefaultController(r, c, startAlgorithm, pullAlgorithm, cancelAlgorithm, highWaterMark, sizeAlgorithm);
    return r;
  }
  S.createReadableStream = createReadableStream;

  function createReadableByteStream(startAlgorithm, pullAlgorithm, cancelAlgorithm, highWaterMark = 0) {
    const r = newStreamRecord();
    streamObject(r);
    const c = newByteControllerRecord();
    setUpReadableByteStreamController(r, c, startAlgorithm, pullAlgorithm, cancelAlgorithm, highWaterMark, undefined);
    return r;
  }
  S.createReadableByteStream = createReadableByteStream;

  // -----------------------------------------------------------------------------------------
  // Readers

  function isReadableStreamLocked(r) {
    return r.reader !== undefined;
  }

  function acquireReadableStreamDefaultReader(r) {
    const reader = newReaderRecord("default");
    setUpReadableStreamDefaultReader(reader, r);
    return reader;
  }

  function acquireReadableStreamBYOBReader(r) {
    const reader = newReaderRecord("byob");
    setUpReadableStreamBYOBReader(reader, r);
    return reader;
  }

  function setUpReadableStreamDefaultReader(reader, r) {
    if (isReadableStreamLocked(r)) throw new TypeErrorCtor("This ReadableStream is currently locked to a reader.");
    readableStreamReaderGenericInitialize(reader, r);
    reader.requests = newList();
  }

  function setUpReadableStreamBYOBReader(reader, r) {
    if (isReadableStreamLocked(r)) throw new TypeErrorCtor("This ReadableStream is currently locked to a reader.");
    if (r.controller.kind !== "byte") throw new TypeErrorCtor("This ReadableStream does not support BYOB reads (it is not a byte stream).");
    readableStreamReaderGenericInitialize(reader, r);
    reader.requests = newList();
  }

  function readableStreamReaderGenericInitialize(reader, r) {
    reader.stream = r;
    r.reader = reader;
    if (r.state === "readable") {
      reader.closed = newPromise();
    } else if (r.state === "closed") {
      reader.closed = { __proto__: null, promise: resolved(undefined), resolve: noop, reject: noop };
    } else {
      reader.closed = { __proto__: null, promise: rejectedHandled(r.storedError), resolve: noop, reject: noop };
    }
  }

  function readableStreamReaderGenericCancel(reader, reason) {
    return readableStreamCancel(reader.stream, reason);
  }

  function readableStreamReaderGenericRelease(reader) {
    const r = reader.stream;
    const error = new TypeErrorCtor("This reader was released");
    if (r.state === "readable") {
      reader.closed.reject(error);
      markHandled(reader.closed.promise);
    } else {
      reader.closed = { __proto__: null, promise: rejectedHandled(error), resolve: noop, reject: noop };
    }
    controllerReleaseSteps(r.controller);
    r.reader = undefined;
    reader.stream = undefined;
  }

  function readableStreamDefaultReaderRelease(reader) {
    readableStreamReaderGenericRelease(reader);
    readableStreamDefaultReaderErrorReadRequests(reader, new TypeErrorCtor("The reader was released while a read was pending"));
  }
  S.readableStreamDefaultReaderRelease = readableStreamDefaultReaderRelease;

  function readableStreamBYOBReaderRelease(reader) {
    readableStreamReaderGenericRelease(reader);
    readableStreamBYOBReaderErrorReadIntoRequests(reader, new TypeErrorCtor("The reader was released while a read was pending"));
  }

  function readableStreamDefaultReaderErrorReadRequests(reader, e) {
    const requests = listTake(reader.requests);
    for (let node = requests.head; node !== null; node = node.next) node.value.errorSteps(e);
  }

  function readableStreamBYOBReaderErrorReadIntoRequests(reader, e) {
    const requests = listTake(reader.requests);
    for (let node = requests.head; node !== null; node = node.next) node.value.errorSteps(e);
  }

  function readableStreamDefaultReaderRead(reader, readRequest) {
    const r = reader.stream;
    r.disturbed = true;
    if (r.state === "closed") readRequest.closeSteps();
    else if (r.state === "errored") readRequest.errorSteps(r.storedError);
    else controllerPullSteps(r.controller, readRequest);
  }
  S.readableStreamDefaultReaderRead = readableStreamDefaultReaderRead;

  function readableStreamBYOBReaderRead(reader, view, info, minimum, readIntoRequest) {
    const r = reader.stream;
    r.disturbed = true;
    if (r.state === "errored") readIntoRequest.errorSteps(r.storedError);
    else readableByteStreamControllerPullInto(r.controller, view, info, minimum, readIntoRequest);
  }

  // -----------------------------------------------------------------------------------------
  // The stream's own abstract operations

  function readableStreamAddReadRequest(r, readRequest) {
    listPush(r.reader.requests, readRequest);
  }

  function readableStreamAddReadIntoRequest(r, readIntoRequest) {
    listPush(r.reader.requests, readIntoRequest);
  }

  function readableStreamCancel(r, reason) {
    r.disturbed = true;
    if (r.state === "closed") return resolved(undefined);
    if (r.state === "errored") return rejected(r.storedError);
    readableStreamClose(r);
    const reader = r.reader;
    if (reader !== undefined && reader.kind === "byob") {
      const requests = listTake(reader.requests);
      for (let node = requests.head; node !== null; node = node.next) node.value.closeSteps(undefined);
    }
    const sourceCancelPromise = controllerCancelSteps(r.controller, reason);
    return transformPromise(sourceCancelPromise, noop);
  }
  S.readableStreamCancel = readableStreamCancel;

  function readableStreamClose(r) {
    r.state = "closed";
    const reader = r.reader;
    if (reader === undefined) return;
    reader.closed.resolve(undefined);
    if (reader.kind === "default") {
      const requests = listTake(reader.requests);
      for (let node = requests.head; node !== null; node = node.next) node.value.closeSteps();
    }
  }

  function readableStreamError(r, e) {
    r.state = "errored";
    r.storedError = e;
    const reader = r.reader;
    if (reader === undefined) return;
    reader.closed.reject(e);
    markHandled(reader.closed.promise);
    if (reader.kind === "default") readableStreamDefaultReaderErrorReadRequests(reader, e);
    else readableStreamBYOBReaderErrorReadIntoRequests(reader, e);
  }

  function readableStreamFulfillReadIntoRequest(r, chunk, done) {
    const readIntoRequest = listShift(r.reader.requests);
    if (done) readIntoRequest.closeSteps(chunk);
    else readIntoRequest.chunkSteps(chunk);
  }

  function readableStreamFulfillReadRequest(r, chunk, done) {
    const readRequest = listShift(r.reader.requests);
    if (done) readRequest.closeSteps();
    else readRequest.chunkSteps(chunk);
  }

  function readableStreamGetNumReadRequests(r) {
    return r.reader.requests.size;
  }

  function readableStreamHasBYOBReader(r) {
    return r.reader !== undefined && r.reader.kind === "byob";
  }

  function readableStreamHasDefaultReader(r) {
    return r.reader !== undefined && r.reader.kind === "default";
  }

  // The controller's internal methods, dispatched on its kind.
  function controllerCancelSteps(c, reason) {
    return c.kind === "default" ? defaultControllerCancelSteps(c, reason) : byteControllerCancelSteps(c, reason);
  }
  function controllerPullSteps(c, readRequest) {
    if (c.kind === "default") defaultControllerPullSteps(c, readRequest);
    else byteControllerPullSteps(c, readRequest);
  }
  function controllerReleaseSteps(c) {
    if (c.kind === "byte") byteControllerReleaseSteps(c);
  }

  // -----------------------------------------------------------------------------------------
  // ReadableStreamDefaultController

  function newDefaultControllerRecord() {
    return {
      __proto__: null,
      kind: "default",
      obj: undefined,
      stream: undefined,
      queue: newList(),
      queueTotalSize: 0,
      started: false,
      closeRequested: false,
      pullAgain: false,
      pulling: false,
      strategySizeAlgorithm: undefined,
      strategyHWM: 0,
      pullAlgorithm: undefined,
      cancelAlgorithm: undefined,
    };
  }

  function setUpReadableStreamDefaultController(r, c, startAlgorithm, pullAlgorithm, cancelAlgorithm, highWaterMark, sizeAlgorithm) {
    c.obj = new ReadableStreamDefaultController(INTERNAL, c);
    c.stream = r;
    resetQueue(c);
    c.started = false;
    c.closeRequested = false;
    c.pullAgain = false;
    c.pulling = false;
    c.strategySizeAlgorithm = sizeAlgorithm;
    c.strategyHWM = highWaterMark;
    c.pullAlgorithm = pullAlgorithm;
    c.cancelAlgorithm = cancelAlgorithm;
    r.controller = c;
    const startResult = startAlgorithm(c);
    uponPromise(resolved(startResult), () => {
      c.started = true;
      readableStreamDefaultControllerCallPullIfNeeded(c);
    }, (e) => readableStreamDefaultControllerError(c, e));
  }

  function setUpReadableStreamDefaultControllerFromUnderlyingSource(r, source, dict, highWaterMark, sizeAlgorithm) {
    const c = newDefaultControllerRecord();
    const start = dict.start;
    const pull = dict.pull;
    const cancel = dict.cancel;
    const startAlgorithm = start === undefined ? noop : () => FunctionPrototypeCall(start, source, c.obj);
    const pullAlgorithm = pull === undefined ? resolvedUndefined : () => promiseCall(pull, source, [c.obj]);
    const cancelAlgorithm = cancel === undefined ? resolvedUndefined : (reason) => promiseCall(cancel, source, [reason]);
    setUpReadableStreamDefaultController(r, c, startAlgorithm, pullAlgorithm, cancelAlgorithm, highWaterMark, sizeAlgorithm);
  }

  function readableStreamDefaultControllerCallPullIfNeeded(c) {
    if (!readableStreamDefaultControllerShouldCallPull(c)) return;
    if (c.pulling) {
      c.pullAgain = true;
      return;
    }
    c.pulling = true;
    uponPromise(c.pullAlgorithm(c), () => {
      c.pulling = false;
      if (c.pullAgain) {
        c.pullAgain = false;
        readableStreamDefaultControllerCallPullIfNeeded(c);
      }
    }, (e) => readableStreamDefaultControllerError(c, e));
  }

  function readableStreamDefaultControllerShouldCallPull(c) {
    const r = c.stream;
    if (!readableStreamDefaultControllerCanCloseOrEnqueue(c)) return false;
    if (!c.started) return false;
    if (isReadableStreamLocked(r) && readableStreamGetNumReadRequests(r) > 0) return true;
    return readableStreamDefaultControllerGetDesiredSize(c) > 0;
  }

  function readableStreamDefaultControllerClearAlgorithms(c) {
    c.pullAlgorithm = undefined;
    c.cancelAlgorithm = undefined;
    c.strategySizeAlgorithm = undefined;
  }

  function readableStreamDefaultControllerClose(c) {
    if (!readableStreamDefaultControllerCanCloseOrEnqueue(c)) return;
    c.closeRequested = true;
    if (c.queue.size === 0) {
      readableStreamDefaultControllerClearAlgorithms(c);
      readableStreamClose(c.stream);
    }
  }
  S.readableStreamDefaultControllerClose = readableStreamDefaultControllerClose;

  function readableStreamDefaultControllerEnqueue(c, chunk) {
    if (!readableStreamDefaultControllerCanCloseOrEnqueue(c)) return;
    const r = c.stream;
    if (isReadableStreamLocked(r) && readableStreamGetNumReadRequests(r) > 0) {
      readableStreamFulfillReadRequest(r, chunk, false);
    } else {
      let size;
      try {
        size = c.strategySizeAlgorithm(chunk);
      } catch (e) {
        readableStreamDefaultControllerError(c, e);
        throw e;
      }
      try {
        enqueueValueWithSize(c, chunk, size);
      } catch (e) {
        readableStreamDefaultControllerError(c, e);
        throw e;
      }
    }
    readableStreamDefaultControllerCallPullIfNeeded(c);
  }
  S.readableStreamDefaultControllerEnqueue = readableStreamDefaultControllerEnqueue;

  function readableStreamDefaultControllerError(c, e) {
    const r = c.stream;
    if (r.state !== "readable") return;
    resetQueue(c);
    readableStreamDefaultControllerClearAlgorithms(c);
    readableStreamError(r, e);
  }
  S.readableStreamDefaultControllerError = readableStreamDefaultControllerError;

  function readableStreamDefaultControllerGetDesiredSize(c) {
    const state = c.stream.state;
    if (state === "errored") return null;
    if (state === "closed") return 0;
    return c.strategyHWM - c.queueTotalSize;
  }
  S.readableStreamDefaultControllerGetDesiredSize = readableStreamDefaultControllerGetDesiredSize;

  S.readableStreamDefaultControllerHasBackpressure = (c) => !readableStreamDefaultControllerShouldCallPull(c);

  function readableStreamDefaultControllerCanCloseOrEnqueue(c) {
    return !c.closeRequested && c.stream.state === "readable";
  }
  S.readableStreamDefaultControllerCanCloseOrEnqueue = readableStreamDefaultControllerCanCloseOrEnqueue;

  function defaultControllerCancelSteps(c, reason) {
    resetQueue(c);
    const result = c.cancelAlgorithm(reason);
    readableStreamDefaultControllerClearAlgorithms(c);
    return result;
  }

  function defaultControllerPullSteps(c, readRequest) {
    const r = c.stream;
    if (c.queue.size > 0) {
      const chunk = dequeueValue(c);
      if (c.closeRequested && c.queue.size === 0) {
        readableStreamDefaultControllerClearAlgorithms(c);
        readableStreamClose(r);
      } else {
        readableStreamDefaultControllerCallPullIfNeeded(c);
      }
      readRequest.chunkSteps(chunk);
    } else {
      readableStreamAddReadRequest(r, readRequest);
      readableStreamDefaultControllerCallPullIfNeeded(c);
    }
  }

  // -----------------------------------------------------------------------------------------
  // ReadableByteStreamController

  function newByteControllerRecord() {
    return {
      __proto__: null,
      kind: "byte",
      obj: undefined,
      stream: undefined,
      queue: newList(),
      queueTotalSize: 0,
      started: false,
      closeRequested: false,
      pullAgain: false,
      pulling: false,
      strategyHWM: 0,
      pullAlgorithm: undefined,
      cancelAlgorithm: undefined,
      autoAllocateChunkSize: undefined,
      byobRequest: null,
      pendingPullIntos: newList(),
      // isobar's own sources (IdentityTransformStream) learn here when a reader has taken every
      // queued byte.
      onDrain: undefined,
    };
  }

  function setUpReadableByteStreamController(r, c, startAlgorithm, pullAlgorithm, cancelAlgorithm, highWaterMark, autoAllocateChunkSize) {
    c.obj = new ReadableByteStreamController(INTERNAL, c);
    c.stream = r;
    c.pullAgain = false;
    c.pulling = false;
    c.byobRequest = null;
    resetQueue(c);
    c.closeRequested = false;
    c.started = false;
    c.strategyHWM = highWaterMark;
    c.pullAlgorithm = pullAlgorithm;
    c.cancelAlgorithm = cancelAlgorithm;
    c.autoAllocateChunkSize = autoAllocateChunkSize;
    c.pendingPullIntos = newList();
    r.controller = c;
    const startResult = startAlgorithm(c);
    uponPromise(resolved(startResult), () => {
      c.started = true;
      readableByteStreamControllerCallPullIfNeeded(c);
    }, (e) => readableByteStreamControllerError(c, e));
  }

  function setUpReadableByteStreamControllerFromUnderlyingSource(r, source, dict, highWaterMark) {
    const c = newByteControllerRecord();
    const start = dict.start;
    const pull = dict.pull;
    const cancel = dict.cancel;
    const startAlgorithm = start === undefined ? noop : () => FunctionPrototypeCall(start, source, c.obj);
    const pullAlgorithm = pull === undefined ? resolvedUndefined : () => promiseCall(pull, source, [c.obj]);
    const cancelAlgorithm = cancel === undefined ? resolvedUndefined : (reason) => promiseCall(cancel, source, [reason]);
    const autoAllocateChunkSize = dict.autoAllocateChunkSize;
    if (autoAllocateChunkSize === 0) throw new TypeErrorCtor("ReadableStream: autoAllocateChunkSize must be greater than 0");
    setUpReadableByteStreamController(r, c, startAlgorithm, pullAlgorithm, cancelAlgorithm, highWaterMark, autoAllocateChunkSize);
  }

  function readableByteStreamControllerCallPullIfNeeded(c) {
    if (!readableByteStreamControllerShouldCallPull(c)) return;
    if (c.pulling) {
      c.pullAgain = true;
      return;
    }
    c.pulling = true;
    uponPromise(c.pullAlgorithm(c), () => {
      c.pulling = false;
      if (c.pullAgain) {
        c.pullAgain = false;
        readableByteStreamControllerCallPullIfNeeded(c);
      }
    }, (e) => readableByteStreamControllerError(c, e));
  }

  function readableByteStreamControllerShouldCallPull(c) {
    const r = c.stream;
    if (r.state !== "readable") return false;
    if (c.closeRequested) return false;
    if (!c.started) return false;
    if (readableStreamHasDefaultReader(r) && readableStreamGetNumReadRequests(r) > 0) return true;
    if (readableStreamHasBYOBReader(r) && r.reader.requests.size > 0) return true;
    return readableByteStreamControllerGetDesiredSize(c) > 0;
  }

  function readableByteStreamControllerClearAlgorithms(c) {
    c.pullAlgorithm = undefined;
    c.cancelAlgorithm = undefined;
  }

  function readableByteStreamControllerClearPendingPullIntos(c) {
    readableByteStreamControllerInvalidateBYOBRequest(c);
    c.pendingPullIntos = newList();
  }

  function readableByteStreamControllerClose(c) {
    const r = c.stream;
    if (c.closeRequested || r.state !== "readable") return;
    if (c.queueTotalSize > 0) {
      c.closeRequested = true;
      return;
    }
    if (c.pendingPullIntos.size > 0) {
      const first = listPeek(c.pendingPullIntos);
      if (first.bytesFilled % first.elementSize !== 0) {
        const e = new TypeErrorCtor("Insufficient bytes to fill elements in the given buffer");
        readableByteStreamControllerError(c, e);
        throw e;
      }
    }
    readableByteStreamControllerClearAlgorithms(c);
    readableStreamClose(r);
  }
  S.readableByteStreamControllerClose = readableByteStreamControllerClose;

  function readableByteStreamControllerCommitPullIntoDescriptor(r, pullIntoDescriptor) {
    let done = false;
    if (r.state === "closed") done = true;
    const filledView = readableByteStreamControllerConvertPullIntoDescriptor(pullIntoDescriptor);
    if (pullIntoDescriptor.readerType === "default") readableStreamFulfillReadRequest(r, filledView, done);
    else readableStreamFulfillReadIntoRequest(r, filledView, done);
  }

  function readableByteStreamControllerConvertPullIntoDescriptor(pullIntoDescriptor) {
    const buffer = transferArrayBuffer(pullIntoDescriptor.buffer);
    return makeView(pullIntoDescriptor.viewConstructor, buffer, pullIntoDescriptor.byteOffset,
      pullIntoDescriptor.bytesFilled / pullIntoDescriptor.elementSize);
  }

  function readableByteStreamControllerEnqueue(c, chunk) {
    const r = c.stream;
    if (c.closeRequested || r.state !== "readable") return;
    const info = viewInfo(chunk);
    const byteOffset = info.byteOffset;
    const byteLength = info.byteLength;
    if (isDetached(info.buffer)) throw new TypeErrorCtor("The chunk's buffer is detached");
    const transferredBuffer = transferArrayBuffer(info.buffer);
    if (c.pendingPullIntos.size > 0) {
      const first = listPeek(c.pendingPullIntos);
      if (isDetached(first.buffer)) throw new TypeErrorCtor("The BYOB request's buffer has been detached");
      readableByteStreamControllerInvalidateBYOBRequest(c);
      first.buffer = transferArrayBuffer(first.buffer);
      if (first.readerType === "none") readableByteStreamControllerEnqueueDetachedPullIntoToQueue(c, first);
    }
    if (readableStreamHasDefaultReader(r)) {
      readableByteStreamControllerProcessReadRequestsUsingQueue(c);
      if (readableStreamGetNumReadRequests(r) === 0) {
        readableByteStreamControllerEnqueueChunkToQueue(c, transferredBuffer, byteOffset, byteLength);
      } else {
        if (c.pendingPullIntos.size > 0) readableByteStreamControllerShiftPendingPullInto(c);
        const transferredView = newUint8Array(transferredBuffer, byteOffset, byteLength);
        readableStreamFulfillReadRequest(r, transferredView, false);
      }
    } else if (readableStreamHasBYOBReader(r)) {
      readableByteStreamControllerEnqueueChunkToQueue(c, transferredBuffer, byteOffset, byteLength);
      const filled = readableByteStreamControllerProcessPullIntoDescriptorsUsingQueue(c);
      for (let node = filled.head; node !== null; node = node.next) {
        readableByteStreamControllerCommitPullIntoDescriptor(r, node.value);
      }
    } else {
      readableByteStreamControllerEnqueueChunkToQueue(c, transferredBuffer, byteOffset, byteLength);
    }
    readableByteStreamControllerCallPullIfNeeded(c);
  }
  S.readableByteStreamControllerEnqueue = readableByteStreamControllerEnqueue;

  function readableByteStreamControllerEnqueueChunkToQueue(c, buffer, byteOffset, byteLength) {
    listPush(c.queue, { __proto__: null, buffer, byteOffset, byteLength });
    c.queueTotalSize += byteLength;
  }

  function readableByteStreamControllerEnqueueClonedChunkToQueue(c, buffer, byteOffset, byteLength) {
    let clone;
    try {
      clone = S.arrayBufferSlice(buffer, byteOffset, byteOffset + byteLength);
    } catch (e) {
      readableByteStreamControllerError(c, e);
      throw e;
    }
    readableByteStreamControllerEnqueueChunkToQueue(c, clone, 0, byteLength);
  }

  function readableByteStreamControllerEnqueueDetachedPullIntoToQueue(c, pullIntoDescriptor) {
    if (pullIntoDescriptor.bytesFilled > 0) {
      readableByteStreamControllerEnqueueClonedChunkToQueue(c, pullIntoDescriptor.buffer, pullIntoDescriptor.byteOffset,
        pullIntoDescriptor.bytesFilled);
    }
    readableByteStreamControllerShiftPendingPullInto(c);
  }

  function readableByteStreamControllerError(c, e) {
    const r = c.stream;
    if (r.state !== "readable") return;
    readableByteStreamControllerClearPendingPullIntos(c);
    resetQueue(c);
    readableByteStreamControllerClearAlgorithms(c);
    readableStreamError(r, e);
  }
  S.readableByteStreamControllerError = readableByteStreamControllerError;

  function readableByteStreamControllerFillHeadPullIntoDescriptor(c, size, pullIntoDescriptor) {
    pullIntoDescriptor.bytesFilled += size;
  }

  function readableByteStreamControllerFillPullIntoDescriptorFromQueue(c, pullIntoDescriptor) {
    const maxBytesToCopy = min(c.queueTotalSize, pullIntoDescriptor.byteLength - pullIntoDescriptor.bytesFilled);
    const maxBytesFilled = pullIntoDescriptor.bytesFilled + maxBytesToCopy;
    let totalBytesToCopyRemaining = maxBytesToCopy;
    let ready = false;
    const remainderBytes = maxBytesFilled % pullIntoDescriptor.elementSize;
    const maxAlignedBytes = maxBytesFilled - remainderBytes;
    if (maxAlignedBytes >= pullIntoDescriptor.minimumFill) {
      totalBytesToCopyRemaining = maxAlignedBytes - pullIntoDescriptor.bytesFilled;
      ready = true;
    }
    const queue = c.queue;
    while (totalBytesToCopyRemaining > 0) {
      const head = listPeek(queue);
      const bytesToCopy = min(totalBytesToCopyRemaining, head.byteLength);
      const destStart = pullIntoDescriptor.byteOffset + pullIntoDescriptor.bytesFilled;
      copyDataBlockBytes(pullIntoDescriptor.buffer, destStart, head.buffer, head.byteOffset, bytesToCopy);
      if (head.byteLength === bytesToCopy) {
        listShift(queue);
      } else {
        head.byteOffset += bytesToCopy;
        head.byteLength -= bytesToCopy;
      }
      c.queueTotalSize -= bytesToCopy;
      readableByteStreamControllerFillHeadPullIntoDescriptor(c, bytesToCopy, pullIntoDescriptor);
      totalBytesToCopyRemaining -= bytesToCopy;
    }
    return ready;
  }

  function readableByteStreamControllerFillReadRequestFromQueue(c, readRequest) {
    const entry = listShift(c.queue);
    c.queueTotalSize -= entry.byteLength;
    readableByteStreamControllerHandleQueueDrain(c);
    const view = newUint8Array(entry.buffer, entry.byteOffset, entry.byteLength);
    readRequest.chunkSteps(view);
  }

  function readableByteStreamControllerGetBYOBRequest(c) {
    if (c.byobRequest === null && c.pendingPullIntos.size > 0) {
      const first = listPeek(c.pendingPullIntos);
      const view = newUint8Array(first.buffer, first.byteOffset + first.bytesFilled, first.byteLength - first.bytesFilled);
      const request = { __proto__: null, obj: undefined, controller: c, view };
      request.obj = new ReadableStreamBYOBRequest(INTERNAL, request);
      c.byobRequest = request;
    }
    return c.byobRequest;
  }
  S.readableByteStreamControllerGetBYOBRequest = readableByteStreamControllerGetBYOBRequest;

  function readableByteStreamControllerGetDesiredSize(c) {
    const state = c.stream.state;
    if (state === "errored") return null;
    if (state === "closed") return 0;
    return c.strategyHWM - c.queueTotalSize;
  }

  function readableByteStreamControllerHandleQueueDrain(c) {
    if (c.queueTotalSize === 0 && c.onDrain !== undefined) c.onDrain();
    if (c.queueTotalSize === 0 && c.closeRequested) {
      readableByteStreamControllerClearAlgorithms(c);
      readableStreamClose(c.stream);
    } else {
      readableByteStreamControllerCallPullIfNeeded(c);
    }
  }

  function readableByteStreamControllerInvalidateBYOBRequest(c) {
    if (c.byobRequest === null) return;
    c.byobRequest.controller = undefined;
    c.byobRequest.view = null;
    c.byobRequest = null;
  }

  function readableByteStreamControllerProcessPullIntoDescriptorsUsingQueue(c) {
    const filled = newList();
    while (c.pendingPullIntos.size > 0) {
      if (c.queueTotalSize === 0) break;
      const pullIntoDescriptor = listPeek(c.pendingPullIntos);
      if (readableByteStreamControllerFillPullIntoDescriptorFromQueue(c, pullIntoDescriptor)) {
        readableByteStreamControllerShiftPendingPullInto(c);
        listPush(filled, pullIntoDescriptor);
      }
    }
    return filled;
  }

  function readableByteStreamControllerProcessReadRequestsUsingQueue(c) {
    const reader = c.stream.reader;
    while (reader.requests.size > 0) {
      if (c.queueTotalSize === 0) return;
      const readRequest = listShift(reader.requests);
      readableByteStreamControllerFillReadRequestFromQueue(c, readRequest);
    }
  }

  function readableByteStreamControllerPullInto(c, view, info, minimum, readIntoRequest) {
    const r = c.stream;
    const elementSize = info.elementSize;
    const minimumFill = minimum * elementSize;
    const byteOffset = info.byteOffset;
    const byteLength = info.byteLength;
    let buffer;
    try {
      buffer = transferArrayBuffer(info.buffer);
    } catch (e) {
      readIntoRequest.errorSteps(e);
      return;
    }
    const pullIntoDescriptor = {
      __proto__: null,
      buffer,
      bufferByteLength: bufferByteLength(buffer),
      byteOffset,
      byteLength,
      bytesFilled: 0,
      minimumFill,
      elementSize,
      viewConstructor: info.ctor,
      readerType: "byob",
    };
    if (c.pendingPullIntos.size > 0) {
      listPush(c.pendingPullIntos, pullIntoDescriptor);
      readableStreamAddReadIntoRequest(r, readIntoRequest);
      return;
    }
    if (r.state === "closed") {
      const emptyView = makeView(info.ctor, pullIntoDescriptor.buffer, pullIntoDescriptor.byteOffset, 0);
      readIntoRequest.closeSteps(emptyView);
      return;
    }
    if (c.queueTotalSize > 0) {
      if (readableByteStreamControllerFillPullIntoDescriptorFromQueue(c, pullIntoDescriptor)) {
        const filledView = readableByteStreamControllerConvertPullIntoDescriptor(pullIntoDescriptor);
        readableByteStreamControllerHandleQueueDrain(c);
        readIntoRequest.chunkSteps(filledView);
        return;
      }
      if (c.closeRequested) {
        const e = new TypeErrorCtor("Insufficient bytes to fill elements in the given buffer");
        readableByteStreamControllerError(c, e);
        readIntoRequest.errorSteps(e);
        return;
      }
    }
    listPush(c.pendingPullIntos, pullIntoDescriptor);
    readableStreamAddReadIntoRequest(r, readIntoRequest);
    readableByteStreamControllerCallPullIfNeeded(c);
  }

  function readableByteStreamControllerRespond(c, bytesWritten) {
    const first = listPeek(c.pendingPullIntos);
    const state = c.stream.state;
    if (state === "closed") {
      if (bytesWritten !== 0) throw new TypeErrorCtor("bytesWritten must be 0 when calling respond() on a closed stream");
    } else {
      if (bytesWritten === 0) throw new TypeErrorCtor("bytesWritten must be greater than 0 when calling respond() on a readable stream");
      if (first.bytesFilled + bytesWritten > first.byteLength) throw new RangeErrorCtor("bytesWritten out of range");
    }
    first.buffer = transferArrayBuffer(first.buffer);
    readableByteStreamControllerRespondInternal(c, bytesWritten);
  }
  S.readableByteStreamControllerRespond = readableByteStreamControllerRespond;

  function readableByteStreamControllerRespondInClosedState(c, first) {
    if (first.readerType === "none") readableByteStreamControllerShiftPendingPullInto(c);
    const r = c.stream;
    if (readableStreamHasBYOBReader(r)) {
      const filled = newList();
      while (filled.size < r.reader.requests.size) {
        listPush(filled, readableByteStreamControllerShiftPendingPullInto(c));
      }
      for (let node = filled.head; node !== null; node = node.next) {
        readableByteStreamControllerCommitPullIntoDescriptor(r, node.value);
      }
    }
  }

  function readableByteStreamControllerRespondInReadableState(c, bytesWritten, pullIntoDescriptor) {
    readableByteStreamControllerFillHeadPullIntoDescriptor(c, bytesWritten, pullIntoDescriptor);
    if (pullIntoDescriptor.readerType === "none") {
      readableByteStreamControllerEnqueueDetachedPullIntoToQueue(c, pullIntoDescriptor);
      const filled = readableByteStreamControllerProcessPullIntoDescriptorsUsingQueue(c);
      for (let node = filled.head; node !== null; node = node.next) {
        readableByteStreamControllerCommitPullIntoDescriptor(c.stream, node.value);
      }
      return;
    }
    if (pullIntoDescriptor.bytesFilled < pullIntoDescriptor.minimumFill) return;
    readableByteStreamControllerShiftPendingPullInto(c);
    const remainderSize = pullIntoDescriptor.bytesFilled % pullIntoDescriptor.elementSize;
    if (remainderSize > 0) {
      const end = pullIntoDescriptor.byteOffset + pullIntoDescriptor.bytesFilled;
      readableByteStreamControllerEnqueueClonedChunkToQueue(c, pullIntoDescriptor.buffer, end - remainderSize, remainderSize);
    }
    pullIntoDescriptor.bytesFilled -= remainderSize;
    const filled = readableByteStreamControllerProcessPullIntoDescriptorsUsingQueue(c);
    readableByteStreamControllerCommitPullIntoDescriptor(c.stream, pullIntoDescriptor);
    for (let node = filled.head; node !== null; node = node.next) {
      readableByteStreamControllerCommitPullIntoDescriptor(c.stream, node.value);
    }
  }

  function readableByteStreamControllerRespondInternal(c, bytesWritten) {
    const first = listPeek(c.pendingPullIntos);
    readableByteStreamControllerInvalidateBYOBRequest(c);
    if (c.stream.state === "closed") readableByteStreamControllerRespondInClosedState(c, first);
    else readableByteStreamControllerRespondInReadableState(c, bytesWritten, first);
    readableByteStreamControllerCallPullIfNeeded(c);
  }

  function readableByteStreamControllerRespondWithNewView(c, view, info) {
    const first = listPeek(c.pendingPullIntos);
    const state = c.stream.state;
    if (state === "closed") {
      if (info.byteLength !== 0) throw new TypeErrorCtor("The view's length must be 0 when calling respondWithNewView() on a closed stream");
    } else if (info.byteLength === 0) {
      throw new TypeErrorCtor("The view's length must be greater than 0 when calling respondWithNewView() on a readable stream");
    }
    if (first.byteOffset + first.bytesFilled !== info.byteOffset) throw new RangeErrorCtor("The region specified by view does not match byobRequest");
    if (first.bufferByteLength !== bufferByteLength(info.buffer)) throw new RangeErrorCtor("The buffer of view has different capacity than byobRequest");
    if (first.bytesFilled + info.byteLength > first.byteLength) throw new RangeErrorCtor("The region specified by view is larger than byobRequest");
    const viewByteLength = info.byteLength;
    first.buffer = transferArrayBuffer(info.buffer);
    readableByteStreamControllerRespondInternal(c, viewByteLength);
  }
  S.readableByteStreamControllerRespondWithNewView = readableByteStreamControllerRespondWithNewView;

  function readableByteStreamControllerShiftPendingPullInto(c) {
    return listShift(c.pendingPullIntos);
  }

  function byteControllerCancelSteps(c, reason) {
    readableByteStreamControllerClearPendingPullIntos(c);
    resetQueue(c);
    const result = c.cancelAlgorithm(reason);
    readableByteStreamControllerClearAlgorithms(c);
    return result;
  }

  function byteControllerPullSteps(c, readRequest) {
    const r = c.stream;
    if (c.queueTotalSize > 0) {
      readableByteStreamControllerFillReadRequestFromQueue(c, readRequest);
      return;
    }
    const autoAllocateChunkSize = c.autoAllocateChunkSize;
    if (autoAllocateChunkSize !== undefined) {
      let buffer;
      try {
        buffer = S.newArrayBuffer(autoAllocateChunkSize);
      } catch (e) {
        readRequest.errorSteps(e);
        return;
      }
      listPush(c.pendingPullIntos, {
        __proto__: null,
        buffer,
        bufferByteLength: autoAllocateChunkSize,
        byteOffset: 0,
        byteLength: autoAllocateChunkSize,
        bytesFilled: 0,
        minimumFill: 1,
        elementSize: 1,
        viewConstructor: S.Uint8Array,
        readerType: "default",
      });
    }
    readableStreamAddReadRequest(r, readRequest);
    readableByteStreamControllerCallPullIfNeeded(c);
  }

  function byteControllerReleaseSteps(c) {
    if (c.pendingPullIntos.size > 0) {
      const first = listPeek(c.pendingPullIntos);
      first.readerType = "none";
      c.pendingPullIntos = newList();
      listPush(c.pendingPullIntos, first);
    }
  }

  // -----------------------------------------------------------------------------------------
  // tee()

  // A microtask, without a global a tenant could replace.
  const resolvedPromise = resolved(undefined);
  function queueMicrotask(steps) {
    uponFulfillment(resolvedPromise, steps);
  }

  // Copies a chunk for the second branch when the body of a Request or Response is cloned (the
  // standard's StructuredClone): bytes are copied, anything else is shared.
  function cloneChunk(chunk) {
    if (isView(chunk)) {
      const info = viewInfo(chunk);
      const copy = S.arrayBufferSlice(info.buffer, info.byteOffset, info.byteOffset + info.byteLength);
      return makeView(info.ctor, copy, 0, info.length);
    }
    if (internals.structuredClone !== undefined) return internals.structuredClone(chunk);
    return chunk;
  }

  // Settles `record` as `promise` settles (resolving one promise with another would look up
  // `then` on it, which a tenant may have replaced).
  function settleWith(record, promise) {
    uponPromise(promise, record.resolve, record.reject);
  }

  function readableStreamTee(r, cloneForBranch2) {
    if (r.controller.kind === "byte") return readableByteStreamTee(r);
    return readableStreamDefaultTee(r, cloneForBranch2);
  }
  S.readableStreamTee = readableStreamTee;

  function readableStreamDefaultTee(r, cloneForBranch2) {
    const reader = acquireReadableStreamDefaultReader(r);
    let reading = false;
    let readAgain = false;
    let canceled1 = false;
    let canceled2 = false;
    let reason1;
    let reason2;
    let branch1;
    let branch2;
    const cancelPromise = newPromise();
    // It is returned only to a branch that is cancelled; a rejection nobody asked for (a failed
    // chunk clone) must not be reported as unhandled.
    markHandled(cancelPromise.promise);
    const readRequest = {
      __proto__: null,
      chunkSteps: (chunk) => queueMicrotask(() => {
        readAgain = false;
        const chunk1 = chunk;
        let chunk2 = chunk;
        if (!canceled2 && cloneForBranch2) {
          try {
            chunk2 = cloneChunk(chunk2);
          } catch (e) {
            readableStreamDefaultControllerError(branch1.controller, e);
            readableStreamDefaultControllerError(branch2.controller, e);
            settleWith(cancelPromise, readableStreamCancel(r, e));
            return;
          }
        }
        if (!canceled1) readableStreamDefaultControllerEnqueue(branch1.controller, chunk1);
        if (!canceled2) readableStreamDefaultControllerEnqueue(branch2.controller, chunk2);
        reading = false;
        if (readAgain) pullAlgorithm();
      }),
      closeSteps: () => {
        reading = false;
        if (!canceled1) readableStreamDefaultControllerClose(branch1.controller);
        if (!canceled2) readableStreamDefaultControllerClose(branch2.controller);
        if (!canceled1 || !canceled2) cancelPromise.resolve(undefined);
      },
      errorSteps: () => {
        reading = false;
      },
    };
    function pullAlgorithm() {
      if (reading) {
        readAgain = true;
        return resolved(undefined);
      }
      reading = true;
      readableStreamDefaultReaderRead(reader, readRequest);
      return resolved(undefined);
    }
    function cancel1Algorithm(reason) {
      canceled1 = true;
      reason1 = reason;
      if (canceled2) settleWith(cancelPromise, readableStreamCancel(r, [reason1, reason2]));
      return cancelPromise.promise;
    }
    function cancel2Algorithm(reason) {
      canceled2 = true;
      reason2 = reason;
      if (canceled1) settleWith(cancelPromise, readableStreamCancel(r, [reason1, reason2]));
      return cancelPromise.promise;
    }
    branch1 = createReadableStream(noop, pullAlgorithm, cancel1Algorithm);
    branch2 = createReadableStream(noop, pullAlgorithm, cancel2Algorithm);
    uponRejection(reader.closed.promise, (e) => {
      readableStreamDefaultControllerError(branch1.controller, e);
      readableStreamDefaultControllerError(branch2.controller, e);
      if (!canceled1 || !canceled2) cancelPromise.resolve(undefined);
    });
    return [branch1, branch2];
  }

  function readableByteStreamTee(r) {
    let reader = acquireReadableStreamDefaultReader(r);
    let reading = false;
    let readAgainForBranch1 = false;
    let readAgainForBranch2 = false;
    let canceled1 = false;
    let canceled2 = false;
    let reason1;
    let reason2;
    let branch1;
    let branch2;
    const cancelPromise = newPromise();
    // It is returned only to a branch that is cancelled; a rejection nobody asked for (a failed
    // chunk clone) must not be reported as unhandled.
    markHandled(cancelPromise.promise);

    function forwardReaderError(thisReader) {
      uponRejection(thisReader.closed.promise, (e) => {
        if (thisReader !== reader) return;
        readableByteStreamControllerError(branch1.controller, e);
        readableByteStreamControllerError(branch2.controller, e);
        if (!canceled1 || !canceled2) cancelPromise.resolve(undefined);
      });
    }

    function pullWithDefaultReader() {
      if (reader.kind === "byob") {
        readableStreamBYOBReaderRelease(reader);
        reader = acquireReadableStreamDefaultReader(r);
        forwardReaderError(reader);
      }
      readableStreamDefaultReaderRead(reader, {
        __proto__: null,
        chunkSteps: (chunk) => queueMicrotask(() => {
          readAgainForBranch1 = false;
          readAgainForBranch2 = false;
          const chunk1 = chunk;
          let chunk2 = chunk;
          if (!canceled1 && !canceled2) {
            try {
              chunk2 = cloneAsUint8Array(chunk);
            } catch (e) {
              readableByteStreamControllerError(branch1.controller, e);
              readableByteStreamControllerError(branch2.controller, e);
              settleWith(cancelPromise, readableStreamCancel(r, e));
              return;
            }
          }
          if (!canceled1) readableByteStreamControllerEnqueue(branch1.controller, chunk1);
          if (!canceled2) readableByteStreamControllerEnqueue(branch2.controller, chunk2);
          reading = false;
          if (readAgainForBranch1) pull1Algorithm();
          else if (readAgainForBranch2) pull2Algorithm();
        }),
        closeSteps: () => {
          reading = false;
          if (!canceled1) readableByteStreamControllerClose(branch1.controller);
          if (!canceled2) readableByteStreamControllerClose(branch2.controller);
          if (branch1.controller.pendingPullIntos.size > 0) readableByteStreamControllerRespond(branch1.controller, 0);
          if (branch2.controller.pendingPullIntos.size > 0) readableByteStreamControllerRespond(branch2.controller, 0);
          if (!canceled1 || !canceled2) cancelPromise.resolve(undefined);
        },
        errorSteps: () => {
          reading = false;
        },
      });
    }

    function pullWithBYOBReader(view, forBranch2) {
      if (reader.kind === "default") {
        readableStreamDefaultReaderRelease(reader);
        reader = acquireReadableStreamBYOBReader(r);
        forwardReaderError(reader);
      }
      const byobBranch = forBranch2 ? branch2 : branch1;
      const otherBranch = forBranch2 ? branch1 : branch2;
      readableStreamBYOBReaderRead(reader, view, viewInfo(view), 1, {
        __proto__: null,
        chunkSteps: (chunk) => queueMicrotask(() => {
          readAgainForBranch1 = false;
          readAgainForBranch2 = false;
          const byobCanceled = forBranch2 ? canceled2 : canceled1;
          const otherCanceled = forBranch2 ? canceled1 : canceled2;
          if (!otherCanceled) {
            let clonedChunk;
            try {
              clonedChunk = cloneAsUint8Array(chunk);
            } catch (e) {
              readableByteStreamControllerError(byobBranch.controller, e);
              readableByteStreamControllerError(otherBranch.controller, e);
              settleWith(cancelPromise, readableStreamCancel(r, e));
              return;
            }
            if (!byobCanceled) readableByteStreamControllerRespondWithNewView(byobBranch.controller, chunk, viewInfo(chunk));
            readableByteStreamControllerEnqueue(otherBranch.controller, clonedChunk);
          } else if (!byobCanceled) {
            readableByteStreamControllerRespondWithNewView(byobBranch.controller, chunk, viewInfo(chunk));
          }
          reading = false;
          if (readAgainForBranch1) pull1Algorithm();
          else if (readAgainForBranch2) pull2Algorithm();
        }),
        closeSteps: (chunk) => {
          reading = false;
          const byobCanceled = forBranch2 ? canceled2 : canceled1;
          const otherCanceled = forBranch2 ? canceled1 : canceled2;
          if (!byobCanceled) readableByteStreamControllerClose(byobBranch.controller);
          if (!otherCanceled) readableByteStreamControllerClose(otherBranch.controller);
          if (chunk !== undefined) {
            if (!byobCanceled) readableByteStreamControllerRespondWithNewView(byobBranch.controller, chunk, viewInfo(chunk));
            if (!otherCanceled && otherBranch.controller.pendingPullIntos.size > 0) {
              readableByteStreamControllerRespond(otherBranch.controller, 0);
            }
          }
          if (!byobCanceled || !otherCanceled) cancelPromise.resolve(undefined);
        },
        errorSteps: () => {
          reading = false;
        },
      });
    }

    function pull1Algorithm() {
      if (reading) {
        readAgainForBranch1 = true;
        return resolved(undefined);
      }
      reading = true;
      const byobRequest = readableByteStreamControllerGetBYOBRequest(branch1.controller);
      if (byobRequest === null) pullWithDefaultReader();
      else pullWithBYOBReader(byobRequest.view, false);
      return resolved(undefined);
    }
    function pull2Algorithm() {
      if (reading) {
        readAgainForBranch2 = true;
        return resolved(undefined);
      }
      reading = true;
      const byobRequest = readableByteStreamControllerGetBYOBRequest(branch2.controller);
      if (byobRequest === null) pullWithDefaultReader();
      else pullWithBYOBReader(byobRequest.view, true);
      return resolved(undefined);
    }
    function cancel1Algorithm(reason) {
      canceled1 = true;
      reason1 = reason;
      if (canceled2) settleWith(cancelPromise, readableStreamCancel(r, [reason1, reason2]));
      return cancelPromise.promise;
    }
    function cancel2Algorithm(reason) {
      canceled2 = true;
      reason2 = reason;
      if (canceled1) settleWith(cancelPromise, readableStreamCancel(r, [reason1, reason2]));
      return cancelPromise.promise;
    }
    branch1 = createReadableByteStream(noop, pull1Algorithm, cancel1Algorithm);
    branch2 = createReadableByteStream(noop, pull2Algorithm, cancel2Algorithm);
    forwardReaderError(reader);
    return [branch1, branch2];
  }

  // -----------------------------------------------------------------------------------------
  // pipeTo()

  function readableStreamPipeTo(source, dest, preventClose, preventAbort, preventCancel, signal) {
    const reader = acquireReadableStreamDefaultReader(source);
    const writer = S.acquireWritableStreamDefaultWriter(dest);
    source.disturbed = true;
    let shuttingDown = false;
    let currentWrite = resolved(undefined);
    const result = newPromise();
    let abortAlgorithm;

    if (signal !== undefined) {
      abortAlgorithm = () => {
        const error = S.abortSignalReason(signal);
        const actions = [];
        if (!preventAbort) {
          actions[actions.length] = () => (dest.state === "writable" ? S.writableStreamAbort(dest, error) : resolved(undefined));
        }
        if (!preventCancel) {
          actions[actions.length] = () => (source.state === "readable" ? readableStreamCancel(source, error) : resolved(undefined));
        }
        shutdownWithAction(() => {
          const promises = [];
          for (let i = 0; i < actions.length; i++) promises[i] = actions[i]();
          return SafePromiseAll(promises);
        }, true, error);
      };
      if (S.abortSignalAborted(signal)) {
        abortAlgorithm();
        return result.promise;
      }
      S.addAbortAlgorithm(signal, abortAlgorithm);
    }

    // Errors must be propagated forward.
    isOrBecomesErrored(source, reader.closed.promise, (storedError) => {
      if (!preventAbort) shutdownWithAction(() => S.writableStreamAbort(dest, storedError), true, storedError);
      else shutdown(true, storedError);
    });
    // Errors must be propagated backward.
    isOrBecomesErrored(dest, writer.closed.promise, (storedError) => {
      if (!preventCancel) shutdownWithAction(() => readableStreamCancel(source, storedError), true, storedError);
      else shutdown(true, storedError);
    });
    // Closing must be propagated forward.
    isOrBecomesClosed(source, reader.closed.promise, () => {
      if (!preventClose) shutdownWithAction(() => S.writableStreamDefaultWriterCloseWithErrorPropagation(writer));
      else shutdown();
    });
    // Closing must be propagated backward.
    if (S.writableStreamCloseQueuedOrInFlight(dest) || dest.state === "closed") {
      const destClosed = new TypeErrorCtor("The destination writable stream closed before all data could be piped to it");
      if (!preventCancel) shutdownWithAction(() => readableStreamCancel(source, destClosed), true, destClosed);
      else shutdown(true, destClosed);
    }

    pipeStep();
    return result.promise;

    // Waits until the writer is ready, reads one chunk, starts writing it, and goes on. Each
    // step waits on a promise, so the loop never deepens the stack. (Errors end it: they are
    // handled by the propagation rules above.)
    function pipeStep() {
      if (shuttingDown) return;
      uponFulfillment(writer.ready.promise, () => {
        if (shuttingDown) return;
        readableStreamDefaultReaderRead(reader, {
          __proto__: null,
          chunkSteps: (chunk) => {
            currentWrite = PromisePrototypeThen(S.writableStreamDefaultWriterWrite(writer, chunk), undefined, noop);
            pipeStep();
          },
          closeSteps: noop,
          errorSteps: noop,
        });
      });
    }

    function isOrBecomesErrored(stream, promise, action) {
      if (stream.state === "errored") action(stream.storedError);
      else uponRejection(promise, action);
    }

    function isOrBecomesClosed(stream, promise, action) {
      if (stream.state === "closed") action();
      else uponFulfillment(promise, action);
    }

    // Calls `then` once the last write started has finished (writes may start while waiting).
    function waitForWritesToFinish(then) {
      const oldCurrentWrite = currentWrite;
      uponFulfillment(currentWrite, () => (oldCurrentWrite !== currentWrite ? waitForWritesToFinish(then) : then()));
    }

    function shutdownWithAction(action, originalIsError = false, originalError = undefined) {
      if (shuttingDown) return;
      shuttingDown = true;
      const doTheRest = () => {
        uponPromise(action(), () => finalize(originalIsError, originalError), (newError) => finalize(true, newError));
      };
      if (dest.state === "writable" && !S.writableStreamCloseQueuedOrInFlight(dest)) {
        waitForWritesToFinish(doTheRest);
      } else {
        doTheRest();
      }
    }

    function shutdown(isError = false, error = undefined) {
      if (shuttingDown) return;
      shuttingDown = true;
      if (dest.state === "writable" && !S.writableStreamCloseQueuedOrInFlight(dest)) {
        waitForWritesToFinish(() => finalize(isError, error));
      } else {
        finalize(isError, error);
      }
    }

    function finalize(isError, error) {
      S.writableStreamDefaultWriterRelease(writer);
      readableStreamDefaultReaderRelease(reader);
      if (signal !== undefined) S.removeAbortAlgorithm(signal, abortAlgorithm);
      if (isError) result.reject(error);
      else result.resolve(undefined);
    }
  }
  S.readableStreamPipeTo = readableStreamPipeTo;

  // -----------------------------------------------------------------------------------------
  // Async iteration (Web IDL's asynchronous iterator, with the standard's get-next and return
  // steps).

  const ReadableStreamAsyncIteratorPrototype = ObjectCreate(AsyncIteratorPrototype);
  const iteratorRecords = new primordials.SafeWeakMap();

  function newAsyncIterator(reader, preventCancel) {
    const iterator = ObjectCreate(ReadableStreamAsyncIteratorPrototype);
    iteratorRecords.set(iterator, { __proto__: null, reader, preventCancel, ongoing: undefined, finished: false });
    return iterator;
  }

  function iteratorGetNext(it) {
    const reader = it.reader;
    if (reader.stream === undefined) return rejected(new TypeErrorCtor("The iterator's reader was released"));
    const p = newPromise();
    readableStreamDefaultReaderRead(reader, {
      __proto__: null,
      chunkSteps: (chunk) => p.resolve({ __proto__: null, done: false, value: chunk }),
      closeSteps: () => {
        readableStreamDefaultReaderRelease(reader);
        p.resolve({ __proto__: null, done: true, value: undefined });
      },
      errorSteps: (e) => {
        readableStreamDefaultReaderRelease(reader);
        p.reject(e);
      },
    });
    return p.promise;
  }

  function iteratorReturn(it, value) {
    const reader = it.reader;
    if (reader.stream === undefined) return resolved(undefined);
    if (!it.preventCancel) {
      const result = readableStreamReaderGenericCancel(reader, value);
      readableStreamDefaultReaderRelease(reader);
      return result;
    }
    readableStreamDefaultReaderRelease(reader);
    return resolved(undefined);
  }

  // Web IDL's next() and return(), each queued behind the call before it (the "ongoing
  // promise"). Every promise here is settled with a plain value, never with another promise.
  const asyncIteratorMethods = {
    next() {
      const it = iteratorRecords.get(this);
      if (it === undefined) return rejected(new TypeErrorCtor("next() called on an object that is not a ReadableStream async iterator"));
      const result = newPromise();
      const nextSteps = () => {
        if (it.finished) {
          result.resolve({ value: undefined, done: true });
          return;
        }
        uponPromise(iteratorGetNext(it), (next) => {
          it.ongoing = undefined;
          if (next.done) {
            it.finished = true;
            result.resolve({ value: undefined, done: true });
          } else {
            result.resolve({ value: next.value, done: false });
          }
        }, (reason) => {
          it.ongoing = undefined;
          it.finished = true;
          result.reject(reason);
        });
      };
      if (it.ongoing === undefined) nextSteps();
      else uponPromise(it.ongoing, nextSteps, nextSteps);
      it.ongoing = result.promise;
      return result.promise;
    },
    return(value) {
      const it = iteratorRecords.get(this);
      if (it === undefined) return rejected(new TypeErrorCtor("return() called on an object that is not a ReadableStream async iterator"));
      const result = newPromise();
      const returnSteps = () => {
        if (it.finished) {
          result.resolve({ value, done: true });
          return;
        }
        it.finished = true;
        uponPromise(iteratorReturn(it, value), () => result.resolve({ value, done: true }), result.reject);
      };
      if (it.ongoing === undefined) returnSteps();
      else uponPromise(it.ongoing, returnSteps, returnSteps);
      it.ongoing = result.promise;
      return result.promise;
    },
  };
  ObjectDefineProperty(ReadableStreamAsyncIteratorPrototype, "next", {
    value: asyncIteratorMethods.next, writable: true, enumerable: true, configurable: true,
  });
  ObjectDefineProperty(ReadableStreamAsyncIteratorPrototype, "return", {
    value: asyncIteratorMethods.return, writable: true, enumerable: true, configurable: true,
  });

  // -----------------------------------------------------------------------------------------
  // ReadableStream.from()

  function getAsyncIterator(value) {
    const method = value === undefined || value === null ? undefined : value[SymbolAsyncIterator];
    if (method === undefined || method === null) {
      const syncMethod = value === undefined || value === null ? undefined : value[SymbolIterator];
      if (syncMethod === undefined || syncMethod === null) {
        throw new TypeErrorCtor("ReadableStream.from: the argument is not iterable (neither async nor sync)");
      }
      if (typeof syncMethod !== "function") throw new TypeErrorCtor("ReadableStream.from: Symbol.iterator is not a function");
      const syncIterator = FunctionPrototypeCall(syncMethod, value);
      if (!isObject(syncIterator)) throw new TypeErrorCtor("ReadableStream.from: the iterator is not an object");
      return asyncFromSyncIterator(syncIterator, syncIterator.next);
    }
    if (typeof method !== "function") throw new TypeErrorCtor("ReadableStream.from: Symbol.asyncIterator is not a function");
    const iterator = FunctionPrototypeCall(method, value);
    if (!isObject(iterator)) throw new TypeErrorCtor("ReadableStream.from: the async iterator is not an object");
    return { __proto__: null, iterator, next: iterator.next };
  }

  // CreateAsyncFromSyncIterator: the sync iterator's results, with their values awaited.
  function asyncFromSyncIterator(syncIterator, syncNext) {
    function continuation(result) {
      if (!isObject(result)) throw new TypeErrorCtor("The iterator result is not an object");
      const done = toBoolean(result.done);
      const value = result.value;
      return PromisePrototypeThen(resolved(value), (v) => ({ value: v, done }), (e) => {
        if (!done) {
          const ret = syncIterator.return;
          if (ret !== undefined && ret !== null) {
            try {
              FunctionPrototypeCall(ret, syncIterator);
            } catch {
              // The value's rejection is what the caller sees.
            }
          }
        }
        throw e;
      });
    }
    const iterator = {
      __proto__: null,
      next() {
        try {
          return continuation(FunctionPrototypeCall(syncNext, syncIterator));
        } catch (e) {
          return rejected(e);
        }
      },
      return(value) {
        try {
          const ret = syncIterator.return;
          if (ret === undefined || ret === null) return resolved({ value, done: true });
          return continuation(FunctionPrototypeCall(ret, syncIterator, value));
        } catch (e) {
          return rejected(e);
        }
      },
    };
    return { __proto__: null, iterator, next: iterator.next };
  }

  function readableStreamFromIterable(asyncIterable) {
    const record = getAsyncIterator(asyncIterable);
    let r;
    const pullAlgorithm = () => {
      let nextResult;
      try {
        nextResult = FunctionPrototypeCall(record.next, record.iterator);
      } catch (e) {
        return rejected(e);
      }
      return PromisePrototypeThen(resolved(nextResult), (iterResult) => {
        if (!isObject(iterResult)) throw new TypeErrorCtor("ReadableStream.from: the iterator result is not an object");
        if (toBoolean(iterResult.done)) readableStreamDefaultControllerClose(r.controller);
        else readableStreamDefaultControllerEnqueue(r.controller, iterResult.value);
      });
    };
    const cancelAlgorithm = (reason) => {
      const iterator = record.iterator;
      let returnMethod;
      try {
        returnMethod = iterator.return;
        if (returnMethod !== undefined && returnMethod !== null && typeof returnMethod !== "function") {
          throw new TypeErrorCtor("ReadableStream.from: the iterator's return is not a function");
        }
      } catch (e) {
        return rejected(e);
      }
      if (returnMethod === undefined || returnMethod === null) return resolved(undefined);
      let returnResult;
      try {
        returnResult = FunctionPrototypeCall(returnMethod, iterator, reason);
      } catch (e) {
        return rejected(e);
      }
      return PromisePrototypeThen(resolved(returnResult), (iterResult) => {
        if (!isObject(iterResult)) throw new TypeErrorCtor("ReadableStream.from: the iterator's return() result is not an object");
      });
    };
    r = createReadableStream(noop, pullAlgorithm, cancelAlgorithm, 0);
    return r;
  }

  // -----------------------------------------------------------------------------------------
  // AbortSignal, read through the captured EventTarget and AbortSignal methods.

  const AbortSignal = internals.AbortSignal;
  const abortedGetter = ObjectGetOwnPropertyDescriptor(AbortSignal.prototype, "aborted").get;
  const reasonGetter = ObjectGetOwnPropertyDescriptor(AbortSignal.prototype, "reason").get;
  const addEventListener = internals.EventTarget.prototype.addEventListener;
  const removeEventListener = internals.EventTarget.prototype.removeEventListener;
  S.isAbortSignal = (value) => {
    if (!isObject(value)) return false;
    try {
      FunctionPrototypeCall(abortedGetter, value);
      return true;
    } catch {
      return false;
    }
  };
  S.abortSignalAborted = (signal) => FunctionPrototypeCall(abortedGetter, signal);
  S.abortSignalReason = (signal) => FunctionPrototypeCall(reasonGetter, signal);
  S.addAbortAlgorithm = (signal, algorithm) => FunctionPrototypeCall(addEventListener, signal, "abort", algorithm);
  S.removeAbortAlgorithm = (signal, algorithm) => FunctionPrototypeCall(removeEventListener, signal, "abort", algorithm);

  // -----------------------------------------------------------------------------------------
  // What the other stream files and the body code use.

  S.INTERNAL = INTERNAL;
  S.readableRecordOf = rsOrUndefined;
  S.streamObject = streamObject;
  S.isReadableStreamLocked = isReadableStreamLocked;
  S.acquireReadableStreamDefaultReader = acquireReadableStreamDefaultReader;
  S.readableStreamClose = readableStreamClose;
  internals.ReadableStream = ReadableStream;
  internals.isReadableStream = (value) => rsOrUndefined(value) !== undefined;
  void ObjectSetPrototypeOf;
})

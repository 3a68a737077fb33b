// WritableStream, its default writer and controller, as the WHATWG Streams Standard defines
// them; records and abstract operations as in readable.js.
(function (ops, internals, global, primordials) {
  "use strict";
  const { FunctionPrototypeCall } = primordials;
  const { defineHidden, webClass, newList, listPush, listShift, listTake } = internals;
  const S = internals.streams;
  const {
    newPromise, resolved, rejected, resolvedUndefined, rejectedHandled, markHandled, uponPromise, promiseCall,
    isObject, dictionary, member, callback, queuingStrategy, extractHighWaterMark,
    extractSizeAlgorithm, dequeueValue, enqueueValueWithSize, peekQueueValue, resetQueue, noop, INTERNAL,
    TypeError: TypeErrorCtor, RangeError: RangeErrorCtor,
  } = S;

  function illegal() {
    return new TypeErrorCtor("Illegal invocation");
  }

  // A promise with its resolvers and whether it is still pending (the writer's ready and closed
  // promises are replaced or rejected depending on that).
  function newTrackedPromise() {
    const p = newPromise();
    const record = { __proto__: null, promise: p.promise, resolve: undefined, reject: undefined, state: "pending" };
    record.resolve = (value) => {
      if (record.state !== "pending") return;
      record.state = "resolved";
      p.resolve(value);
    };
    record.reject = (reason) => {
      if (record.state !== "pending") return;
      record.state = "rejected";
      p.reject(reason);
    };
    return record;
  }
  function resolvedTrackedPromise() {
    return { __proto__: null, promise: resolved(undefined), resolve: noop, reject: noop, state: "resolved" };
  }
  function rejectedTrackedPromise(reason) {
    return { __proto__: null, promise: rejectedHandled(reason), resolve: noop, reject: noop, state: "rejected" };
  }

  // -----------------------------------------------------------------------------------------
  // Public classes

  class WritableStream {
    #w;
    constructor(underlyingSink = undefined, strategy = undefined) {
      if (underlyingSink === INTERNAL) {
        this.#w = strategy;
        strategy.obj = this;
        return;
      }
      if (underlyingSink !== undefined && !isObject(underlyingSink)) {
        throw new TypeErrorCtor("WritableStream: the underlying sink must be an object");
      }
      const strat = queuingStrategy(strategy, "WritableStream: strategy");
      const sink = underlyingSink;
      const abort = callback(member(sink, "abort"), "WritableStream: abort");
      const close = callback(member(sink, "close"), "WritableStream: close");
      const start = callback(member(sink, "start"), "WritableStream: start");
      const type = member(sink, "type");
      const write = callback(member(sink, "write"), "WritableStream: write");
      if (type !== undefined) throw new RangeErrorCtor("WritableStream: the type of an underlying sink must be undefined");
      const w = newStreamRecord();
      w.obj = this;
      this.#w = w;
      const sizeAlgorithm = extractSizeAlgorithm(strat);
      const hwm = extractHighWaterMark(strat, 1);
      setUpWritableStreamDefaultControllerFromUnderlyingSink(w, sink, { __proto__: null, abort, close, start, write }, hwm, sizeAlgorithm);
    }
    get locked() {
      return isWritableStreamLocked(ws(this));
    }
    abort(reason = undefined) {
      const w = wsOrUndefined(this);
      if (w === undefined) return rejected(illegal());
      if (isWritableStreamLocked(w)) return rejected(new TypeErrorCtor("Cannot abort a stream that is locked to a writer"));
      return writableStreamAbort(w, reason);
    }
    close() {
      const w = wsOrUndefined(this);
      if (w === undefined) return rejected(illegal());
      if (isWritableStreamLocked(w)) return rejected(new TypeErrorCtor("Cannot close a stream that is locked to a writer"));
      if (writableStreamCloseQueuedOrInFlight(w)) return rejected(new TypeErrorCtor("The stream is already closing"));
      return writableStreamClose(w);
    }
    getWriter() {
      return writerObject(acquireWritableStreamDefaultWriter(ws(this)));
    }
    static _w(value) {
      return (typeof value === "object" && value !== null && #w in value) ? value.#w : undefined;
    }
  }
  const wsOrUndefined = WritableStream._w;
  delete WritableStream._w;
  function ws(value) {
    const w = wsOrUndefined(value);
    if (w === undefined) throw illegal();
    return w;
  }
  webClass(WritableStream, "WritableStream");

  class WritableStreamDefaultWriter {
    #r;
    constructor(stream) {
      if (stream === INTERNAL) return;
      const w = wsOrUndefined(stream);
      if (w === undefined) throw new TypeErrorCtor("WritableStreamDefaultWriter: the argument must be a WritableStream");
      const writer = newWriterRecord();
      setUpWritableStreamDefaultWriter(writer, w);
      writer.obj = this;
      this.#r = writer;
    }
    get closed() {
      const writer = writerOrUndefined(this);
      return writer === undefined ? rejected(illegal()) : writer.closed.promise;
    }
    get desiredSize() {
      const writer = writerOrUndefined(this);
      if (writer === undefined) throw illegal();
      if (writer.stream === undefined) throw new TypeErrorCtor("This writer has been released");
      return writableStreamDefaultWriterGetDesiredSize(writer);
    }
    get ready() {
      const writer = writerOrUndefined(this);
      return writer === undefined ? rejected(illegal()) : writer.ready.promise;
    }
    abort(reason = undefined) {
      const writer = writerOrUndefined(this);
      if (writer === undefined) return rejected(illegal());
      if (writer.stream === undefined) return rejected(new TypeErrorCtor("This writer has been released"));
      return writableStreamAbort(writer.stream, reason);
    }
    close() {
      const writer = writerOrUndefined(this);
      if (writer === undefined) return rejected(illegal());
      const w = writer.stream;
      if (w === undefined) return rejected(new TypeErrorCtor("This writer has been released"));
      if (writableStreamCloseQueuedOrInFlight(w)) return rejected(new TypeErrorCtor("The stream is already closing"));
      return writableStreamClose(w);
    }
    releaseLock() {
      const writer = writerOrUndefined(this);
      if (writer === undefined) throw illegal();
      if (writer.stream === undefined) return;
      writableStreamDefaultWriterRelease(writer);
    }
    write(chunk = undefined) {
      const writer = writerOrUndefined(this);
      if (writer === undefined) return rejected(illegal());
      if (writer.stream === undefined) return rejected(new TypeErrorCtor("This writer has been released"));
      return writableStreamDefaultWriterWrite(writer, chunk);
    }
    static _r(value) {
      return (typeof value === "object" && value !== null && #r in value) ? value.#r : undefined;
    }
    static _set(object, writer) {
      object.#r = writer;
    }
  }
  const writerOrUndefined = WritableStreamDefaultWriter._r;
  const setWriter = WritableStreamDefaultWriter._set;
  delete WritableStreamDefaultWriter._r;
  delete WritableStreamDefaultWriter._set;
  webClass(WritableStreamDefaultWriter, "WritableStreamDefaultWriter");

  function writerObject(writer) {
    if (writer.obj === undefined) {
      writer.obj = new WritableStreamDefaultWriter(INTERNAL);
      setWriter(writer.obj, writer);
    }
    return writer.obj;
  }

  class WritableStreamDefaultController {
    #c;
    constructor(key = undefined, controller = undefined) {
      if (key !== INTERNAL) throw new TypeErrorCtor("Illegal constructor");
      this.#c = controller;
    }
    get signal() {
      return this.#c.abortController.signal;
    }
    error(e = undefined) {
      const c = this.#c;
      if (c.stream.state !== "writable") return;
      writableStreamDefaultControllerError(c, e);
    }
  }
  webClass(WritableStreamDefaultController, "WritableStreamDefaultController");

  defineHidden(global, "WritableStream", WritableStream);
  defineHidden(global, "WritableStreamDefaultWriter", WritableStreamDefaultWriter);
  defineHidden(global, "WritableStreamDefaultController", WritableStreamDefaultController);

  // -----------------------------------------------------------------------------------------
  // Records

  function newStreamRecord() {
    return {
      __proto__: null,
      obj: undefined,
      state: "writable",
      storedError: undefined,
      writer: undefined,
      controller: undefined,
      inFlightWriteRequest: undefined,
      closeRequest: undefined,
      inFlightCloseRequest: undefined,
      pendingAbortRequest: undefined,
      writeRequests: newList(),
      backpressure: false,
      // isobar's own sinks (IdentityTransformStream) are told at once when the stream is
      // aborted, so that a write waiting for a reader can give up (what the controller's signal
      // does for a script's sink).
      onAbort: undefined,
    };
  }

  function newWriterRecord() {
    return { __proto__: null, obj: undefined, stream: undefined, ready: undefined, closed: undefined };
  }

  function streamObject(w) {
    if (w.obj === undefined) new WritableStream(INTERNAL, w);
    return w.obj;
  }

  // The close sentinel the controller's queue holds after the last chunk.
  const CLOSE_SENTINEL = { __proto__: null };

  // -----------------------------------------------------------------------------------------
  // WritableStream abstract operations

  function acquireWritableStreamDefaultWriter(w) {
    const writer = newWriterRecord();
    setUpWritableStreamDefaultWriter(writer, w);
    return writer;
  }
  S.acquireWritableStreamDefaultWriter = acquireWritableStreamDefaultWriter;

  function createWritableStream(startAlgorithm, writeAlgorithm, closeAlgorithm, abortAlgorithm, highWaterMark = 1, sizeAlgorithm = () => 1) {
    const w = newStreamRecord();
    streamObject(w);
    const c = newControllerRecord();
    setUpWritableStreamDefaultController(w, c, startAlgorithm, writeAlgorithm, closeAlgorithm, abortAlgorithm, highWaterMark, sizeAlgorithm);
    return w;
  }
  S.createWritableStream = createWritableStream;

  function isWritableStreamLocked(w) {
    return w.writer !== undefined;
  }
  S.isWritableStreamLocked = isWritableStreamLocked;

  function setUpWritableStreamDefaultWriter(writer, w) {
    if (isWritableStreamLocked(w)) throw new TypeErrorCtor("This WritableStream is currently locked to a writer.");
    writer.stream = w;
    w.writer = writer;
    const state = w.state;
    if (state === "writable") {
      writer.ready = !writableStreamCloseQueuedOrInFlight(w) && w.backpressure ? newTrackedPromise() : resolvedTrackedPromise();
      writer.closed = newTrackedPromise();
    } else if (state === "erroring") {
      writer.ready = rejectedTrackedPromise(w.storedError);
      writer.closed = newTrackedPromise();
    } else if (state === "closed") {
      writer.ready = resolvedTrackedPromise();
      writer.closed = resolvedTrackedPromise();
    } else {
      writer.ready = rejectedTrackedPromise(w.storedError);
      writer.closed = rejectedTrackedPromise(w.storedError);
    }
  }

  function writableStreamAbort(w, reason) {
    if (w.state === "closed" || w.state === "errored") return resolved(undefined);
    internals.abortSignal(w.controller.abortController.signal, reason);
    if (w.onAbort !== undefined) w.onAbort(reason);
    const state = w.state;
    if (state === "closed" || state === "errored") return resolved(undefined);
    if (w.pendingAbortRequest !== undefined) return w.pendingAbortRequest.promise.promise;
    let wasAlreadyErroring = false;
    if (state === "erroring") {
      wasAlreadyErroring = true;
      reason = undefined;
    }
    const promise = newPromise();
    w.pendingAbortRequest = { __proto__: null, promise, reason, wasAlreadyErroring };
    if (!wasAlreadyErroring) writableStreamStartErroring(w, reason);
    return promise.promise;
  }
  S.writableStreamAbort = writableStreamAbort;

  function writableStreamClose(w) {
    const state = w.state;
    if (state === "closed" || state === "errored") {
      return rejected(new TypeErrorCtor("The stream is not in the writable state and cannot be closed"));
    }
    const promise = newPromise();
    w.closeRequest = promise;
    const writer = w.writer;
    if (writer !== undefined && w.backpressure && state === "writable") writer.ready.resolve(undefined);
    writableStreamDefaultControllerClose(w.controller);
    return promise.promise;
  }

  function writableStreamAddWriteRequest(w) {
    const promise = newPromise();
    listPush(w.writeRequests, promise);
    return promise.promise;
  }

  function writableStreamCloseQueuedOrInFlight(w) {
    return w.closeRequest !== undefined || w.inFlightCloseRequest !== undefined;
  }
  S.writableStreamCloseQueuedOrInFlight = writableStreamCloseQueuedOrInFlight;

  function writableStreamDealWithRejection(w, error) {
    if (w.state === "writable") {
      writableStreamStartErroring(w, error);
      return;
    }
    writableStreamFinishErroring(w);
  }

  function writableStreamFinishErroring(w) {
    w.state = "errored";
    errorSteps(w.controller);
    const storedError = w.storedError;
    const requests = listTake(w.writeRequests);
    for (let node = requests.head; node !== null; node = node.next) node.value.reject(storedError);
    if (w.pendingAbortRequest === undefined) {
      writableStreamRejectCloseAndClosedPromiseIfNeeded(w);
      return;
    }
    const abortRequest = w.pendingAbortRequest;
    w.pendingAbortRequest = undefined;
    if (abortRequest.wasAlreadyErroring) {
      abortRequest.promise.reject(storedError);
      writableStreamRejectCloseAndClosedPromiseIfNeeded(w);
      return;
    }
    const promise = abortSteps(w.controller, abortRequest.reason);
    uponPromise(promise, () => {
      abortRequest.promise.resolve(undefined);
      writableStreamRejectCloseAndClosedPromiseIfNeeded(w);
    }, (reason) => {
      abortRequest.promise.reject(reason);
      writableStreamRejectCloseAndClosedPromiseIfNeeded(w);
    });
  }

  function writableStreamFinishInFlightClose(w) {
    w.inFlightCloseRequest.resolve(undefined);
    w.inFlightCloseRequest = undefined;
    if (w.state === "erroring") {
      w.storedError = undefined;
      if (w.pendingAbortRequest !== undefined) {
        w.pendingAbortRequest.promise.resolve(undefined);
        w.pendingAbortRequest = undefined;
      }
    }
    w.state = "closed";
    const writer = w.writer;
    if (writer !== undefined) writer.closed.resolve(undefined);
  }

  function writableStreamFinishInFlightCloseWithError(w, error) {
    w.inFlightCloseRequest.reject(error);
    w.inFlightCloseRequest = undefined;
    if (w.pendingAbortRequest !== undefined) {
      w.pendingAbortRequest.promise.reject(error);
      w.pendingAbortRequest = undefined;
    }
    writableStreamDealWithRejection(w, error);
  }

  function writableStreamFinishInFlightWrite(w) {
    w.inFlightWriteRequest.resolve(undefined);
    w.inFlightWriteRequest = undefined;
  }

  function writableStreamFinishInFlightWriteWithError(w, error) {
    w.inFlightWriteRequest.reject(error);
    w.inFlightWriteRequest = undefined;
    writableStreamDealWithRejection(w, error);
  }

  function writableStreamHasOperationMarkedInFlight(w) {
    return w.inFlightWriteRequest !== undefined || w.inFlightCloseRequest !== undefined;
  }

  function writableStreamMarkCloseRequestInFlight(w) {
    w.inFlightCloseRequest = w.closeRequest;
    w.closeRequest = undefined;
  }

  function writableStreamMarkFirstWriteRequestInFlight(w) {
    w.inFlightWriteRequest = listShift(w.writeRequests);
  }

  function writableStreamRejectCloseAndClosedPromiseIfNeeded(w) {
    if (w.closeRequest !== undefined) {
      w.closeRequest.reject(w.storedError);
      w.closeRequest = undefined;
    }
    const writer = w.writer;
    if (writer !== undefined) {
      writer.closed.reject(w.storedError);
      markHandled(writer.closed.promise);
    }
  }

  function writableStreamStartErroring(w, reason) {
    const c = w.controller;
    w.state = "erroring";
    w.storedError = reason;
    const writer = w.writer;
    if (writer !== undefined) writableStreamDefaultWriterEnsureReadyPromiseRejected(writer, reason);
    if (!writableStreamHasOperationMarkedInFlight(w) && c.started) writableStreamFinishErroring(w);
  }

  function writableStreamUpdateBackpressure(w, backpressure) {
    const writer = w.writer;
    if (writer !== undefined && backpressure !== w.backpressure) {
      if (backpressure) writer.ready = newTrackedPromise();
      else writer.ready.resolve(undefined);
    }
    w.backpressure = backpressure;
  }

  // -----------------------------------------------------------------------------------------
  // Writer abstract operations

  function writableStreamDefaultWriterCloseWithErrorPropagation(writer) {
    const w = writer.stream;
    const state = w.state;
    if (writableStreamCloseQueuedOrInFlight(w) || state === "closed") return resolved(undefined);
    if (state === "errored") return rejected(w.storedError);
    return writableStreamClose(w);
  }
  S.writableStreamDefaultWriterCloseWithErrorPropagation = writableStreamDefaultWriterCloseWithErrorPropagation;

  function writableStreamDefaultWriterEnsureClosedPromiseRejected(writer, error) {
    if (writer.closed.state === "pending") writer.closed.reject(error);
    else writer.closed = rejectedTrackedPromise(error);
    markHandled(writer.closed.promise);
  }

  function writableStreamDefaultWriterEnsureReadyPromiseRejected(writer, error) {
    if (writer.ready.state === "pending") writer.ready.reject(error);
    else writer.ready = rejectedTrackedPromise(error);
    markHandled(writer.ready.promise);
  }

  function writableStreamDefaultWriterGetDesiredSize(writer) {
    const w = writer.stream;
    const state = w.state;
    if (state === "errored" || state === "erroring") return null;
    if (state === "closed") return 0;
    return writableStreamDefaultControllerGetDesiredSize(w.controller);
  }

  function writableStreamDefaultWriterRelease(writer) {
    const w = writer.stream;
    const releasedError = new TypeErrorCtor("This writer was released");
    writableStreamDefaultWriterEnsureReadyPromiseRejected(writer, releasedError);
    writableStreamDefaultWriterEnsureClosedPromiseRejected(writer, releasedError);
    w.writer = undefined;
    writer.stream = undefined;
  }
  S.writableStreamDefaultWriterRelease = writableStreamDefaultWriterRelease;

  function writableStreamDefaultWriterWrite(writer, chunk) {
    const w = writer.stream;
    const c = w.controller;
    const chunkSize = writableStreamDefaultControllerGetChunkSize(c, chunk);
    if (w !== writer.stream) return rejected(new TypeErrorCtor("This writer was released while its chunk's size was measured"));
    const state = w.state;
    if (state === "errored") return rejected(w.storedError);
    if (writableStreamCloseQueuedOrInFlight(w) || state === "closed") {
      return rejected(new TypeErrorCtor("The stream is closing or closed and cannot be written to"));
    }
    if (state === "erroring") return rejected(w.storedError);
    const promise = writableStreamAddWriteRequest(w);
    writableStreamDefaultControllerWrite(c, chunk, chunkSize);
    return promise;
  }
  S.writableStreamDefaultWriterWrite = writableStreamDefaultWriterWrite;

  // -----------------------------------------------------------------------------------------
  // WritableStreamDefaultController

  function newControllerRecord() {
    return {
      __proto__: null,
      obj: undefined,
      stream: undefined,
      queue: newList(),
      queueTotalSize: 0,
      abortController: undefined,
      started: false,
      strategySizeAlgorithm: undefined,
      strategyHWM: 1,
      writeAlgorithm: undefined,
      closeAlgorithm: undefined,
      abortAlgorithm: undefined,
    };
  }

  function setUpWritableStreamDefaultController(w, c, startAlgorithm, writeAlgorithm, closeAlgorithm, abortAlgorithm, highWaterMark, sizeAlgorithm) {
    c.obj = new WritableStreamDefaultController(INTERNAL, c);
    c.stream = w;
    w.controller = c;
    resetQueue(c);
    c.abortController = new internals.AbortController();
    c.started = false;
    c.strategySizeAlgorithm = sizeAlgorithm;
    c.strategyHWM = highWaterMark;
    c.writeAlgorithm = writeAlgorithm;
    c.closeAlgorithm = closeAlgorithm;
    c.abortAlgorithm = abortAlgorithm;
    writableStreamUpdateBackpressure(w, writableStreamDefaultControllerGetBackpressure(c));
    const startResult = startAlgorithm(c);
    uponPromise(resolved(startResult), () => {
      c.started = true;
      writableStreamDefaultControllerAdvanceQueueIfNeeded(c);
    }, (r) => {
      c.started = true;
      writableStreamDealWithRejection(w, r);
    });
  }

  function setUpWritableStreamDefaultControllerFromUnderlyingSink(w, sink, dict, highWaterMark, sizeAlgorithm) {
    const c = newControllerRecord();
    const start = dict.start;
    const write = dict.write;
    const close = dict.close;
    const abort = dict.abort;
    const startAlgorithm = start === undefined ? noop : () => FunctionPrototypeCall(start, sink, c.obj);
    const writeAlgorithm = write === undefined ? resolvedUndefined : (chunk) => promiseCall(write, sink, [chunk, c.obj]);
    const closeAlgorithm = close === undefined ? resolvedUndefined : () => promiseCall(close, sink, []);
    const abortAlgorithm = abort === undefined ? resolvedUndefined : (reason) => promiseCall(abort, sink, [reason]);
    setUpWritableStreamDefaultController(w, c, startAlgorithm, writeAlgorithm, closeAlgorithm, abortAlgorithm, highWaterMark, sizeAlgorithm);
  }

  function writableStreamDefaultControllerAdvanceQueueIfNeeded(c) {
    const w = c.stream;
    if (!c.started) return;
    if (w.inFlightWriteRequest !== undefined) return;
    const state = w.state;
    if (state === "erroring") {
      writableStreamFinishErroring(w);
      return;
    }
    if (c.queue.size === 0) return;
    const value = peekQueueValue(c);
    if (value === CLOSE_SENTINEL) writableStreamDefaultControllerProcessClose(c);
    else writableStreamDefaultControllerProcessWrite(c, value);
  }

  function writableStreamDefaultControllerClearAlgorithms(c) {
    c.writeAlgorithm = undefined;
    c.closeAlgorithm = undefined;
    c.abortAlgorithm = undefined;
    c.strategySizeAlgorithm = undefined;
  }

  function writableStreamDefaultControllerClose(c) {
    enqueueValueWithSize(c, CLOSE_SENTINEL, 0);
    writableStreamDefaultControllerAdvanceQueueIfNeeded(c);
  }

  function writableStreamDefaultControllerError(c, error) {
    writableStreamDefaultControllerClearAlgorithms(c);
    writableStreamStartErroring(c.stream, error);
  }

  function writableStreamDefaultControllerErrorIfNeeded(c, error) {
    if (c.stream.state === "writable") writableStreamDefaultControllerError(c, error);
  }
  S.writableStreamDefaultControllerErrorIfNeeded = writableStreamDefaultControllerErrorIfNeeded;

  function writableStreamDefaultControllerGetBackpressure(c) {
    return writableStreamDefaultControllerGetDesiredSize(c) <= 0;
  }

  function writableStreamDefaultControllerGetChunkSize(c, chunk) {
    if (c.strategySizeAlgorithm === undefined) return 1; // the stream is no longer writable
    try {
      return c.strategySizeAlgorithm(chunk);
    } catch (e) {
      writableStreamDefaultControllerErrorIfNeeded(c, e);
      return 1;
    }
  }

  function writableStreamDefaultControllerGetDesiredSize(c) {
    return c.strategyHWM - c.queueTotalSize;
  }

  function writableStreamDefaultControllerProcessClose(c) {
    const w = c.stream;
    writableStreamMarkCloseRequestInFlight(w);
    dequeueValue(c);
    const sinkClosePromise = c.closeAlgorithm();
    writableStreamDefaultControllerClearAlgorithms(c);
    uponPromise(sinkClosePromise, () => writableStreamFinishInFlightClose(w),
      (reason) => writableStreamFinishInFlightCloseWithError(w, reason));
  }

  function writableStreamDefaultControllerProcessWrite(c, chunk) {
    const w = c.stream;
    writableStreamMarkFirstWriteRequestInFlight(w);
    const sinkWritePromise = c.writeAlgorithm(chunk);
    uponPromise(sinkWritePromise, () => {
      writableStreamFinishInFlightWrite(w);
      const state = w.state;
      dequeueValue(c);
      if (!writableStreamCloseQueuedOrInFlight(w) && state === "writable") {
        writableStreamUpdateBackpressure(w, writableStreamDefaultControllerGetBackpressure(c));
      }
      writableStreamDefaultControllerAdvanceQueueIfNeeded(c);
    }, (reason) => {
      if (w.state === "writable") writableStreamDefaultControllerClearAlgorithms(c);
      writableStreamFinishInFlightWriteWithError(w, reason);
    });
  }

  function writableStreamDefaultControllerWrite(c, chunk, chunkSize) {
    try {
      enqueueValueWithSize(c, chunk, chunkSize);
    } catch (e) {
      writableStreamDefaultControllerErrorIfNeeded(c, e);
      return;
    }
    const w = c.stream;
    if (!writableStreamCloseQueuedOrInFlight(w) && w.state === "writable") {
      writableStreamUpdateBackpressure(w, writableStreamDefaultControllerGetBackpressure(c));
    }
    writableStreamDefaultControllerAdvanceQueueIfNeeded(c);
  }

  function abortSteps(c, reason) {
    const result = c.abortAlgorithm(reason);
    writableStreamDefaultControllerClearAlgorithms(c);
    return result;
  }

  function errorSteps(c) {
    resetQueue(c);
  }

  S.writableRecordOf = wsOrUndefined;
  S.writableStreamObject = streamObject;
  internals.WritableStream = WritableStream;
  void dictionary;
})

// What the Fetch classes (api/fetch) need from streams, registered on `internals`: a body's
// stream made from its bytes, whether a body stream was disturbed, tee for clone(), reading a
// whole stream (bounded), and ReadableStream as a BodyInit.
(function (ops, internals, global, primordials) {
  "use strict";
  const { ArrayPrototypePush, TypedArrayPrototypeGetSymbolToStringTag, TypedArrayPrototypeGetByteLength,
    TypedArrayPrototypeSet } = primordials;
  const S = internals.streams;
  const { newPromise, rejected, noop, TypeError: TypeErrorCtor, RangeError: RangeErrorCtor } = S;

  // The most bytes readAllBytes gathers: what isobar reads into one body at most
  // (api/fetch/body.rs BODY_BYTES_MAX).
  const READ_ALL_BYTES_MAX = 128 << 20;
  internals.readAllBytesMax = READ_ALL_BYTES_MAX;

  // A byte stream holding `body` (null, a string or a Uint8Array isobar owns): what `.body`
  // returns for a body kept as bytes. A null body is an empty, closed stream.
  internals.streamFromBytes = (body) => {
    let bytes;
    if (body === null || body === undefined) bytes = undefined;
    else if (typeof body === "string") bytes = internals.encodeUtf8(body);
    else bytes = body;
    const r = S.createReadableByteStream((c) => {
      if (bytes !== undefined && TypedArrayPrototypeGetByteLength(bytes) > 0) {
        let chunk = bytes;
        if (!S.canTransferArrayBuffer(S.viewInfo(chunk).buffer)) chunk = S.cloneAsUint8Array(chunk);
        S.readableByteStreamControllerEnqueue(c, chunk);
      }
      S.readableByteStreamControllerClose(c);
    }, S.resolvedUndefined, S.resolvedUndefined, 0);
    return r.obj;
  };

  // Whether a body stream was read from or cancelled (what makes bodyUsed true).
  internals.streamDisturbed = (stream) => {
    const r = S.readableRecordOf(stream);
    return r !== undefined && r.disturbed;
  };

  // clone(): two branches of the body stream, [one for the original, one for the copy].
  internals.teeStream = (stream) => {
    const r = S.readableRecordOf(stream);
    if (r === undefined) throw new TypeErrorCtor("clone(): the body is not a ReadableStream");
    if (S.isReadableStreamLocked(r)) throw new TypeErrorCtor("clone(): the body's ReadableStream is locked to a reader");
    const branches = S.readableStreamTee(r, true);
    return [branches[0].obj, branches[1].obj];
  };

  // The Known length of a stream's bytes (a FixedLengthStream's readable side), or undefined:
  // what lets a response made from it carry a Content-Length.
  internals.streamKnownLength = (stream) => {
    const r = S.readableRecordOf(stream);
    return r === undefined ? undefined : r.knownLength;
  };

  // Fetch's "fully read": every chunk, which must each be a Uint8Array, concatenated. Past
  // READ_ALL_BYTES_MAX the stream is cancelled and the promise rejects with a RangeError, so a
  // body that never ends cannot grow the isolate without bound.
  internals.readAllBytes = (stream) => {
    const r = S.readableRecordOf(stream);
    if (r === undefined) return rejected(new TypeErrorCtor("The body is not a ReadableStream"));
    if (S.isReadableStreamLocked(r)) return rejected(new TypeErrorCtor("This ReadableStream is currently locked to a reader."));
    const reader = S.acquireReadableStreamDefaultReader(r);
    const result = newPromise();
    const chunks = [];
    let total = 0;
    let finished = false;

    function fail(error, cancel) {
      finished = true;
      if (cancel) S.markHandled(S.readableStreamCancel(r, error));
      result.reject(error);
    }
    // Takes one chunk; false when reading must stop.
    function take(chunk) {
      if (TypedArrayPrototypeGetSymbolToStringTag(chunk) !== "Uint8Array") {
        fail(new TypeErrorCtor("A body stream's chunks must be Uint8Arrays"), false);
        return false;
      }
      total += TypedArrayPrototypeGetByteLength(chunk);
      if (total > READ_ALL_BYTES_MAX) {
        fail(new RangeErrorCtor(`The body is larger than the ${READ_ALL_BYTES_MAX} bytes that can be read at once`), true);
        return false;
      }
      ArrayPrototypePush(chunks, chunk);
      return true;
    }
    function finish() {
      finished = true;
      S.readableStreamDefaultReaderRelease(reader);
      let out;
      try {
        out = new S.Uint8Array(total);
      } catch (e) {
        result.reject(e);
        return;
      }
      let offset = 0;
      for (let i = 0; i < chunks.length; i++) {
        TypedArrayPrototypeSet(out, chunks[i], offset);
        offset += TypedArrayPrototypeGetByteLength(chunks[i]);
      }
      result.resolve(out);
    }
    // Reads in a loop while chunks are already queued (no recursion per chunk), and resumes from
    // the read's callback when one has to wait.
    function pump() {
      for (;;) {
        let waiting = true;
        let syncChunk;
        let gotSync = false;
        S.readableStreamDefaultReaderRead(reader, {
          __proto__: null,
          chunkSteps: (chunk) => {
            if (waiting) {
              gotSync = true;
              syncChunk = chunk;
            } else if (take(chunk)) {
              pump();
            }
          },
          closeSteps: finish,
          errorSteps: (e) => fail(e, false),
        });
        waiting = false;
        if (!gotSync || finished) return;
        if (!take(syncChunk)) return;
      }
    }
    pump();
    return result.promise;
  };

  // A ReadableStream as a BodyInit: [stream, no Content-Type]. Bodies of other kinds (Blob,
  // FormData) are extracted by other areas through the same list.
  function extractStreamBody(init) {
    const r = S.readableRecordOf(init);
    if (r === undefined) return undefined;
    if (r.disturbed) throw new TypeErrorCtor("This ReadableStream is disturbed (has already been read from), and cannot be used as a body.");
    if (S.isReadableStreamLocked(r)) throw new TypeErrorCtor("This ReadableStream is currently locked to a reader.");
    return [init, null];
  }

  // internals.extractBodyMore(init) tries each function on internals.bodyExtractors in turn
  // (undefined: not mine); each area that adds a BodyInit kind pushes its own. Whichever area
  // loads first makes the list.
  if (internals.bodyExtractors === undefined) {
    const extractors = [];
    internals.bodyExtractors = extractors;
    internals.extractBodyMore = (init) => {
      for (let i = 0; i < extractors.length; i++) {
        const extracted = extractors[i](init);
        if (extracted !== undefined) return extracted;
      }
      return undefined;
    };
  }
  ArrayPrototypePush(internals.bodyExtractors, extractStreamBody);
  void noop;
})

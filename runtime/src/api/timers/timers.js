// setTimeout/setInterval (native: the callbacks live in Rust, tied to the request that set them)
// and queueMicrotask.
(function (ops, internals, global, primordials) {
  "use strict";
  const { PromisePrototypeThen, PromiseResolve, TypeError: TypeErrorCtor } = primordials;
  const { defineHidden } = internals;

  function queueMicrotask(callback) {
    if (typeof callback !== "function") {
      throw new TypeErrorCtor("queueMicrotask: argument 1 is not a function");
    }
    // An exception in a queued microtask is reported, never turned into an unhandled rejection.
    PromisePrototypeThen(PromiseResolve(), () => {
      try { callback(); } catch (e) { internals.reportError(e); }
    });
  }
  defineHidden(global, "queueMicrotask", queueMicrotask);

  // Browsers compile a string callback with eval; Workers forbid it, and so does ops.timerStart.
  defineHidden(global, "setTimeout", function setTimeout(callback, delay = 0, ...args) {
    return ops.timerStart(callback, delay, args, false);
  });
  defineHidden(global, "setInterval", function setInterval(callback, delay = 0, ...args) {
    return ops.timerStart(callback, delay, args, true);
  });
  defineHidden(global, "clearTimeout", function clearTimeout(id = undefined) { ops.timerCancel(id); });
  defineHidden(global, "clearInterval", function clearInterval(id = undefined) { ops.timerCancel(id); });
  // For isobar's own JS (AbortSignal.timeout): a timer whose callback is isobar's.
  internals.setTimer = (callback, delay) => ops.timerStart(callback, delay, [], false);
})

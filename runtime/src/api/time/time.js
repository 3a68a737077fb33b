// Time, and the other small globals. Date.now(), new Date(), performance.now() and
// Intl.DateTimeFormat's implicit "now" read the isolate's clock, which the scheduler moves only
// between I/O events: inside a request, code cannot time itself (the timing-attack mitigation
// Cloudflare Workers apply). Nothing here may read the clock at load time: this script runs
// once, into the startup snapshot, not once per isolate.
(function (ops, internals, global, primordials) {
  "use strict";
  const { FunctionPrototypeCall, ObjectDefineProperty, ObjectFreeze, ObjectGetOwnPropertyDescriptor, ReflectConstruct } = primordials;
  const { defineHidden } = internals;

  const OriginalDate = Date;
  // (A function expression, not a declaration: a hoisted `function Date` would shadow the
  // original before it is captured.)
  const FrozenDate = function Date(...args) {
    if (new.target === undefined) return primordials.DatePrototypeToString(new OriginalDate(ops.now()));
    if (args.length === 0) return ReflectConstruct(OriginalDate, [ops.now()], new.target);
    return ReflectConstruct(OriginalDate, args, new.target);
  };
  ObjectDefineProperty(FrozenDate, "length", { value: 7 });
  FrozenDate.prototype = OriginalDate.prototype;
  ObjectDefineProperty(OriginalDate.prototype, "constructor", { value: FrozenDate, writable: true, configurable: true, enumerable: false });
  defineHidden(FrozenDate, "now", function now() { return ops.now(); });
  defineHidden(FrozenDate, "parse", OriginalDate.parse);
  defineHidden(FrozenDate, "UTC", OriginalDate.UTC);
  defineHidden(global, "Date", FrozenDate);

  // Intl.DateTimeFormat formats "now" when given no date; V8 would read the real clock there.
  const DateTimeFormatPrototype = Intl.DateTimeFormat.prototype;
  const formatGetter = ObjectGetOwnPropertyDescriptor(DateTimeFormatPrototype, "format").get;
  ObjectDefineProperty(DateTimeFormatPrototype, "format", {
    configurable: true,
    enumerable: false,
    get() {
      const format = FunctionPrototypeCall(formatGetter, this);
      return function (date = undefined) {
        return format(date === undefined ? ops.now() : date);
      };
    },
  });
  const formatToParts = DateTimeFormatPrototype.formatToParts;
  defineHidden(DateTimeFormatPrototype, "formatToParts", function formatToParts_(date = undefined) {
    return FunctionPrototypeCall(formatToParts, this, date === undefined ? ops.now() : date);
  });
  ObjectDefineProperty(DateTimeFormatPrototype.formatToParts, "name", { value: "formatToParts" });
  // Date.prototype.toLocale*String() with no date use the Date's own time: no leak there.

  defineHidden(global, "self", global);
  // Libraries detect a Workers runtime by this user agent; see docs/compat.md.
  defineHidden(global, "navigator", ObjectFreeze({ userAgent: "Cloudflare-Workers", hardwareConcurrency: 1 }));

  class Performance extends internals.EventTarget {
    constructor(key) {
      super();
      if (key !== internals.token) throw new TypeError("Illegal constructor");
    }
    // Counts from the isolate's creation and follows the same frozen clock as Date.now().
    now() { return ops.now() - ops.timeOrigin(); }
    get timeOrigin() { return ops.timeOrigin(); }
    toJSON() { return { timeOrigin: this.timeOrigin }; }
  }
  internals.webClass(Performance, "Performance");
  defineHidden(global, "Performance", Performance);
  defineHidden(global, "performance", new Performance(internals.token));
})

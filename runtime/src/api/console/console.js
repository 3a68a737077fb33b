// console: formatted like a browser's console, written to the process log with the worker's name.
(function (ops, internals, global, primordials) {
  "use strict";
  const {
    ArrayIsArray, ArrayPrototypeIncludes, ArrayPrototypePop, ArrayPrototypePush, ArrayPrototypeJoin,
    ArrayBufferIsView, DatePrototypeToISOString, ErrorPrototypeToString, JSONStringify, MathMin,
    NumberIsNaN, DatePrototypeGetTime, ObjectGetPrototypeOf, ObjectIs, ObjectKeys, ObjectPrototypeHasOwnProperty,
    RegExpPrototypeTest, RegExpPrototypeToString, SafeMap, SafeSet, StringPrototypeIncludes, String: StringCtor,
    SymbolPrototypeToString, TypedArrayPrototypeGetLength, MapPrototypeGetSize, SetPrototypeGetSize,
    MapPrototypeForEach, SetPrototypeForEach, FunctionPrototypeCall, NumberParseInt, NumberParseFloat, Number: NumberCtor,
  } = primordials;
  const { defineHidden } = internals;
  const LEVEL = internals.consts.logLevel;

  const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;
  // Items shown per array, map or object, and nesting depth, as browsers bound them: a log line
  // of a huge or deep structure stays short (the op caps the line's bytes too).
  const ITEMS_MAX = 100;
  const DEPTH_MAX = 3;

  function inspect(value, depth, seen) {
    switch (typeof value) {
      case "string": return depth === 0 ? value : JSONStringify(value);
      case "number": return ObjectIs(value, -0) ? "-0" : StringCtor(value);
      case "bigint": return `${value}n`;
      case "boolean": case "undefined": return StringCtor(value);
      case "symbol": return SymbolPrototypeToString(value);
      case "function": return `[Function: ${value.name || "(anonymous)"}]`;
    }
    if (value === null) return "null";
    if (ArrayPrototypeIncludes(seen, value)) return "[Circular]";
    if (value instanceof Error) {
      const stack = value.stack;
      return typeof stack === "string" ? stack : ErrorPrototypeToString(value);
    }
    if (depth > DEPTH_MAX) return ArrayIsArray(value) ? "[Array]" : "[Object]";
    ArrayPrototypePush(seen, value);
    try {
      if (ArrayIsArray(value)) {
        const parts = [];
        const n = MathMin(value.length, ITEMS_MAX);
        for (let i = 0; i < n; i++) ArrayPrototypePush(parts, inspect(value[i], depth + 1, seen));
        if (value.length > n) ArrayPrototypePush(parts, `... ${value.length - n} more items`);
        return `[ ${ArrayPrototypeJoin(parts, ", ")} ]`;
      }
      if (ArrayBufferIsView(value) && !(value instanceof DataView)) {
        const length = TypedArrayPrototypeGetLength(value);
        const n = MathMin(length, 50);
        const items = [];
        for (let i = 0; i < n; i++) ArrayPrototypePush(items, StringCtor(value[i]));
        if (length > n) ArrayPrototypePush(items, `... ${length - n} more items`);
        return `${value.constructor?.name ?? "TypedArray"}(${length}) [ ${ArrayPrototypeJoin(items, ", ")} ]`;
      }
      if (value instanceof Map) {
        const parts = [];
        MapPrototypeForEach(value, (v, k) => {
          if (parts.length < ITEMS_MAX) ArrayPrototypePush(parts, `${inspect(k, depth + 1, seen)} => ${inspect(v, depth + 1, seen)}`);
        });
        return `Map(${MapPrototypeGetSize(value)}) { ${ArrayPrototypeJoin(parts, ", ")} }`;
      }
      if (value instanceof Set) {
        const parts = [];
        SetPrototypeForEach(value, (v) => {
          if (parts.length < ITEMS_MAX) ArrayPrototypePush(parts, inspect(v, depth + 1, seen));
        });
        return `Set(${SetPrototypeGetSize(value)}) { ${ArrayPrototypeJoin(parts, ", ")} }`;
      }
      if (value instanceof Promise) return "Promise { <pending?> }";
      if (value instanceof Date) {
        return NumberIsNaN(DatePrototypeGetTime(value)) ? "Invalid Date" : DatePrototypeToISOString(value);
      }
      if (value instanceof RegExp) return RegExpPrototypeToString(value);
      const custom = value[internals.inspectSymbol];
      if (typeof custom === "function") return FunctionPrototypeCall(custom, value, (v) => inspect(v, depth + 1, seen));
      const proto = ObjectGetPrototypeOf(value);
      const ctorName = proto !== null && ObjectPrototypeHasOwnProperty(proto, "constructor") &&
        typeof proto.constructor === "function" ? proto.constructor.name : "";
      const prefix = ctorName && ctorName !== "Object" ? `${ctorName} ` : "";
      const keys = ObjectKeys(value);
      if (keys.length === 0) return `${prefix}{}`;
      const parts = [];
      const n = MathMin(keys.length, ITEMS_MAX);
      for (let i = 0; i < n; i++) {
        const k = keys[i];
        const key = RegExpPrototypeTest(IDENTIFIER, k) ? k : JSONStringify(k);
        ArrayPrototypePush(parts, `${key}: ${inspect(value[k], depth + 1, seen)}`);
      }
      if (keys.length > n) ArrayPrototypePush(parts, `... ${keys.length - n} more keys`);
      return `${prefix}{ ${ArrayPrototypeJoin(parts, ", ")} }`;
    } finally {
      ArrayPrototypePop(seen);
    }
  }
  internals.inspectSymbol = Symbol("isobar.inspect");
  internals.inspect = (v) => inspect(v, 1, []);

  function format(args) {
    const first = args[0];
    let rest = 1;
    let out = "";
    if (typeof first === "string" && StringPrototypeIncludes(first, "%")) {
      let i = 0;
      while (i < first.length) {
        const c = first[i];
        if (c === "%" && i + 1 < first.length) {
          const spec = first[i + 1];
          if (spec === "%") { out += "%"; i += 2; continue; }
          if (StringPrototypeIncludes("sdifoOjc", spec)) {
            if (spec === "c") { rest++; i += 2; continue; }
            if (rest >= args.length) { out += c + spec; i += 2; continue; }
            const arg = args[rest++];
            if (spec === "s") out += typeof arg === "string" ? arg : inspect(arg, 1, []);
            else if (spec === "d" || spec === "i") {
              out += typeof arg === "bigint" ? `${arg}n` : StringCtor(spec === "i" ? NumberParseInt(arg) : NumberCtor(arg));
            } else if (spec === "f") out += StringCtor(NumberParseFloat(arg));
            else if (spec === "j") { try { out += JSONStringify(arg); } catch { out += "[Circular]"; } }
            else out += inspect(arg, 1, []);
            i += 2;
            continue;
          }
        }
        out += c;
        i++;
      }
    } else {
      out = inspect(first, 0, []);
    }
    for (; rest < args.length; rest++) out += " " + inspect(args[rest], 0, []);
    return out;
  }

  const counts = new SafeMap();
  const timers = new SafeMap();
  const console = {
    log: (...args) => ops.print(LEVEL.log, format(args)),
    info: (...args) => ops.print(LEVEL.info, format(args)),
    debug: (...args) => ops.print(LEVEL.debug, format(args)),
    warn: (...args) => ops.print(LEVEL.warn, format(args)),
    error: (...args) => ops.print(LEVEL.error, format(args)),
    trace: (...args) => {
      const err = new Error(format(args));
      err.name = "Trace";
      ops.print(LEVEL.log, StringCtor(err.stack));
    },
    assert: (cond, ...args) => {
      if (!cond) ops.print(LEVEL.error, "Assertion failed" + (args.length ? ": " + format(args) : ""));
    },
    count: (label = "default") => {
      const key = StringCtor(label);
      const n = (counts.get(key) ?? 0) + 1;
      // Bounded: a script counting under ever new labels cannot grow this map for ever.
      if (counts.size < 10000 || counts.has(key)) counts.set(key, n);
      ops.print(LEVEL.log, `${key}: ${n}`);
    },
    countReset: (label = "default") => counts.delete(StringCtor(label)),
    time: (label = "default") => {
      const key = StringCtor(label);
      if (timers.size < 10000 || timers.has(key)) timers.set(key, ops.now());
    },
    timeEnd: (label = "default") => {
      const key = StringCtor(label);
      const t = timers.get(key);
      timers.delete(key);
      if (t !== undefined) ops.print(LEVEL.log, `${key}: ${ops.now() - t}ms`);
    },
    timeLog: (label = "default", ...args) => {
      const key = StringCtor(label);
      const t = timers.get(key);
      if (t !== undefined) ops.print(LEVEL.log, `${key}: ${ops.now() - t}ms` + (args.length ? " " + format(args) : ""));
    },
    table: (...args) => ops.print(LEVEL.log, format(args)),
    dir: (v) => ops.print(LEVEL.log, inspect(v, 1, [])),
    group: (...args) => { if (args.length) ops.print(LEVEL.log, format(args)); },
    groupCollapsed: (...args) => { if (args.length) ops.print(LEVEL.log, format(args)); },
    groupEnd: () => {},
  };
  defineHidden(global, "console", console);
})

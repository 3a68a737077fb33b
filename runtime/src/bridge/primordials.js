// Primordials: the built-ins isobar's own JavaScript uses, captured once, before any tenant code
// exists, so that a tenant replacing `Array.prototype.push`, `Promise.prototype.then`,
// `Map.prototype.get` or `Symbol.iterator` behaviour cannot change what isobar's code does.
//
// Naming (so a reader can tell what each one is without looking here):
// - `ArrayIsArray`: the static `Array.isArray`.
// - `ArrayPrototypePush(array, ...items)`: `Array.prototype.push`, with `this` as first argument.
// - `ArrayBufferPrototypeGetByteLength(buffer)`: the getter of `ArrayBuffer.prototype.byteLength`.
// - `SymbolIterator`: the well-known symbol. `Math*`, `JSON*`, `Reflect*`: their functions.
// - `SafeMap`, `SafeSet`, `SafeWeakMap`, ...: subclasses whose methods and iterators are
//   isobar's own captured copies, so iterating them never calls a tenant's override.
// - `SafeArrayIterator(array)`: iterate an array with the captured iterator (for `for...of` and
//   spread over arrays that isobar made).
// - `SafePromiseAll`, `SafePromisePrototypeFinally`, ...: promise combinators that never call a
//   tenant's `then` on isobar's own promises.
//
// The result is frozen and handed to every later bootstrap file; it is never reachable from
// tenant code.
(function () {
  "use strict";
  const primordials = { __proto__: null };

  const { apply, bind, call } = Function.prototype;
  // uncurryThis(f)(self, ...args) === f.call(self, ...args), without looking up `call` later.
  const uncurryThis = bind.bind(call);
  primordials.uncurryThis = uncurryThis;
  const applyBind = bind.bind(apply);
  primordials.applyBind = applyBind;

  const {
    defineProperty, getOwnPropertyDescriptor, getOwnPropertyNames, getOwnPropertySymbols,
    getPrototypeOf, freeze, setPrototypeOf,
  } = Object;
  const { ownKeys } = Reflect;

  // The part of a built-in name after its owner: "push", "Symbol.iterator" -> "SymbolIterator".
  function suffix(key) {
    if (typeof key === "symbol") {
      const description = key.description; // "Symbol.iterator"
      const dot = description.indexOf(".");
      const name = dot >= 0 ? description.slice(dot + 1) : description;
      return "Symbol" + name[0].toUpperCase() + name.slice(1);
    }
    return key[0].toUpperCase() + key.slice(1);
  }

  // Copies the own properties of `source` onto primordials as `${prefix}${Name}`: data values as
  // they are (methods uncurried when `uncurry`), accessors as `${prefix}Get${Name}` /
  // `${prefix}Set${Name}` (always uncurried: they read `this`).
  function copy(source, prefix, uncurry) {
    for (const key of ownKeys(source)) {
      if (key === "constructor" || key === "caller" || key === "callee" || key === "arguments") continue;
      const descriptor = getOwnPropertyDescriptor(source, key);
      const name = `${prefix}${suffix(key)}`;
      if ("value" in descriptor) {
        const value = descriptor.value;
        if (typeof value === "function" && uncurry) {
          primordials[name] = uncurryThis(value);
        } else if (!(name in primordials)) {
          primordials[name] = value;
        }
      } else {
        if (descriptor.get) primordials[`${prefix}Get${suffix(key)}`] = uncurryThis(descriptor.get);
        if (descriptor.set) primordials[`${prefix}Set${suffix(key)}`] = uncurryThis(descriptor.set);
      }
    }
  }

  // Namespaces: their functions as they are.
  for (const name of ["JSON", "Math", "Reflect", "Atomics"]) {
    const namespace = globalThis[name];
    if (namespace !== undefined) copy(namespace, name, false);
  }

  // Constructors: the constructor itself, its statics, its prototype's methods uncurried.
  const constructors = [
    "AggregateError", "Array", "ArrayBuffer", "BigInt", "BigInt64Array", "BigUint64Array",
    "Boolean", "DataView", "Date", "Error", "EvalError", "FinalizationRegistry", "Float32Array",
    "Float64Array", "Function", "Int16Array", "Int32Array", "Int8Array", "Map", "Number",
    "Object", "Promise", "Proxy", "RangeError", "ReferenceError", "RegExp", "Set", "String",
    "Symbol", "SyntaxError", "TypeError", "URIError", "Uint16Array", "Uint32Array", "Uint8Array",
    "Uint8ClampedArray", "WeakMap", "WeakRef", "WeakSet",
  ];
  for (const name of constructors) {
    const ctor = globalThis[name];
    if (ctor === undefined) continue;
    primordials[name] = ctor;
    copy(ctor, name, false);
    if (ctor.prototype !== undefined) copy(ctor.prototype, `${name}Prototype`, true);
  }

  // Intrinsics without a global name.
  const TypedArray = getPrototypeOf(Uint8Array);
  primordials.TypedArray = TypedArray;
  copy(TypedArray, "TypedArray", false);
  copy(TypedArray.prototype, "TypedArrayPrototype", true);
  const ArrayIteratorPrototype = getPrototypeOf([][Symbol.iterator]());
  copy(ArrayIteratorPrototype, "ArrayIteratorPrototype", true);
  const StringIteratorPrototype = getPrototypeOf(""[Symbol.iterator]());
  copy(StringIteratorPrototype, "StringIteratorPrototype", true);
  const AsyncIteratorPrototype = getPrototypeOf(getPrototypeOf(async function* () {}).prototype);
  primordials.AsyncIteratorPrototype = AsyncIteratorPrototype;
  const IteratorPrototype = getPrototypeOf(ArrayIteratorPrototype);
  primordials.IteratorPrototype = IteratorPrototype;
  primordials.AsyncFunction = getPrototypeOf(async function () {}).constructor;
  primordials.globalThis = globalThis;

  // ---------------------------------------------------------------------------------------------
  // Safe iteration and collections.

  const ArrayIteratorPrototypeNext = primordials.ArrayIteratorPrototypeNext;
  const ArrayPrototypeSymbolIterator = primordials.ArrayPrototypeSymbolIterator;
  const SymbolIterator = Symbol.iterator;

  // An iterator class whose `next` is the captured one: `for (const x of new SafeArrayIterator(a))`
  // cannot be diverted by a tenant replacing %ArrayIteratorPrototype%.next.
  function makeSafeIterator(factory, next) {
    class SafeIterator {
      constructor(iterable) {
        this._iterator = factory(iterable);
      }
      next() {
        return next(this._iterator);
      }
      [SymbolIterator]() {
        return this;
      }
    }
    setPrototypeOf(SafeIterator.prototype, null);
    freeze(SafeIterator.prototype);
    freeze(SafeIterator);
    return SafeIterator;
  }
  primordials.SafeArrayIterator = makeSafeIterator(ArrayPrototypeSymbolIterator, ArrayIteratorPrototypeNext);
  primordials.SafeStringIterator = makeSafeIterator(
    primordials.StringPrototypeSymbolIterator,
    primordials.StringIteratorPrototypeNext,
  );

  // A subclass of a collection whose prototype carries isobar's own copies of the methods and
  // whose iterators are safe, so neither a tenant's override of Map.prototype.set nor of the
  // iterator protocol reaches it.
  function makeSafe(unsafe, safe) {
    let next;
    for (const key of ownKeys(unsafe.prototype)) {
      if (key === "constructor") continue;
      const descriptor = getOwnPropertyDescriptor(unsafe.prototype, key);
      if (key === "entries" || key === "keys" || key === "values" || key === SymbolIterator) {
        const createIterator = uncurryThis(descriptor.value);
        next ??= uncurryThis(createIterator(new unsafe()).next);
        const SafeIterator = makeSafeIterator(createIterator, next);
        descriptor.value = function () {
          return new SafeIterator(this);
        };
      }
      defineProperty(safe.prototype, key, descriptor);
    }
    for (const key of ownKeys(unsafe)) {
      if (key === "prototype" || key === "length" || key === "name") continue;
      defineProperty(safe, key, getOwnPropertyDescriptor(unsafe, key));
    }
    setPrototypeOf(safe.prototype, null);
    freeze(safe.prototype);
    freeze(safe);
    return safe;
  }
  primordials.SafeMap = makeSafe(Map, class SafeMap extends Map {
    constructor(entries) { super(entries); }
  });
  primordials.SafeSet = makeSafe(Set, class SafeSet extends Set {
    constructor(values) { super(values); }
  });
  primordials.SafeWeakMap = makeSafe(WeakMap, class SafeWeakMap extends WeakMap {
    constructor(entries) { super(entries); }
  });
  primordials.SafeWeakSet = makeSafe(WeakSet, class SafeWeakSet extends WeakSet {
    constructor(values) { super(values); }
  });
  primordials.SafeWeakRef = makeSafe(WeakRef, class SafeWeakRef extends WeakRef {
    constructor(target) { super(target); }
  });
  primordials.SafeFinalizationRegistry = makeSafe(FinalizationRegistry, class SafeFinalizationRegistry extends FinalizationRegistry {
    constructor(cleanup) { super(cleanup); }
  });

  // ---------------------------------------------------------------------------------------------
  // Promises. isobar's own promises are settled and chained through these, never through a
  // `then` looked up on the promise, so a tenant's `Promise.prototype.then` is never called by
  // isobar. (The promise capability itself is a plain %Promise%: `new Promise` does not consult
  // tenant code.)

  const PromisePrototypeThen = primordials.PromisePrototypeThen;
  const PromiseResolve = primordials.PromiseResolve = (value) => call.call(Promise.resolve, Promise, value);
  primordials.PromiseReject = (reason) => call.call(Promise.reject, Promise, reason);

  // A SafePromise is a Promise subclass with the captured `then`, so the species lookup inside
  // `then` finds SafePromise, never a tenant's constructor.
  class SafePromise extends Promise {
    constructor(executor) { super(executor); }
  }
  defineProperty(SafePromise, Symbol.species, { value: SafePromise });
  defineProperty(SafePromise.prototype, "constructor", { value: SafePromise });
  defineProperty(SafePromise.prototype, "then", { value: Promise.prototype.then });
  primordials.SafePromise = SafePromise;

  // Resolves with the values of `promises` in order, or rejects with the first rejection.
  primordials.SafePromiseAll = (promises) => new Promise((resolve, reject) => {
    const values = [];
    let left = promises.length;
    if (left === 0) resolve(values);
    for (let i = 0; i < promises.length; i++) {
      values[i] = undefined;
      PromisePrototypeThen(PromiseResolve(promises[i]), (value) => {
        values[i] = value;
        if (--left === 0) resolve(values);
      }, reject);
    }
  });
  primordials.SafePromiseAllSettled = (promises) => new Promise((resolve) => {
    const results = [];
    let left = promises.length;
    if (left === 0) resolve(results);
    for (let i = 0; i < promises.length; i++) {
      results[i] = undefined;
      const settle = (result) => {
        results[i] = result;
        if (--left === 0) resolve(results);
      };
      PromisePrototypeThen(PromiseResolve(promises[i]),
        (value) => settle({ status: "fulfilled", value }),
        (reason) => settle({ status: "rejected", reason }));
    }
  });
  primordials.SafePromiseRace = (promises) => new Promise((resolve, reject) => {
    for (let i = 0; i < promises.length; i++) {
      PromisePrototypeThen(PromiseResolve(promises[i]), resolve, reject);
    }
  });
  primordials.SafePromisePrototypeFinally = (promise, onFinally) => new Promise((resolve, reject) => {
    PromisePrototypeThen(promise,
      (value) => PromisePrototypeThen(PromiseResolve(onFinally()), () => resolve(value), reject),
      (reason) => PromisePrototypeThen(PromiseResolve(onFinally()), () => reject(reason), reject));
  });
  // A promise with its resolve and reject functions, as Promise.withResolvers gives.
  primordials.PromiseWithResolvers = () => {
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    return { promise, resolve, reject };
  };
  // Marks a promise as handled so that its rejection is never reported as unhandled.
  primordials.markPromiseHandled = (promise) => {
    PromisePrototypeThen(promise, undefined, () => {});
  };

  return freeze(primordials);
})

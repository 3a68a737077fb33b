// WebAssembly within the isolate's memory budget (mod.rs says why and how). Instances and
// memories reserve the most their memories may reach before they are made, and give it back
// once they are collected; `new WebAssembly.Memory()` gets a maximum within the budget. The
// originals are kept here only: the wrappers take their place everywhere a script can look
// (the globals and each prototype's `constructor`).
(function (ops, internals, global, primordials) {
  "use strict";
  const {
    FunctionPrototypeCall, MathFloor, NumberIsFinite, ObjectDefineProperty, ObjectGetOwnPropertyDescriptor,
    ObjectKeys, PromisePrototypeThen, PromiseReject, RangeError, ReflectApply, ReflectConstruct, SafeFinalizationRegistry,
    BigInt,
  } = primordials;
  const { defineHidden, hooks } = internals;

  // V8 installs `WebAssembly` in each new context, after the snapshot: the wrappers go on when a
  // worker is loaded, before its code runs. The parentheses make V8 compile the function with
  // this file, so its bytecode is in the snapshot: compiled lazily, in every new isolate, it
  // was ~5% of the first core's start-up (the function itself runs once per isolate).
  hooks.installWasm = (function installWasm() {
    const WebAssembly = global.WebAssembly;
    const OriginalInstance = WebAssembly.Instance;
    const OriginalMemory = WebAssembly.Memory;
    const originalInstantiate = WebAssembly.instantiate;
    const exportsOf = ObjectGetOwnPropertyDescriptor(OriginalInstance.prototype, "exports").get;
    const memoryBuffer = ObjectGetOwnPropertyDescriptor(OriginalMemory.prototype, "buffer").get;
    const PAGE = 65536;

    // One registry per isolate, made on first use. A reservation is given
    // back once every object holding its memory (the instance, and each memory it exports) is
    // collected.
    let registry;
    function releaseWhenCollected(objects, bytes) {
      if (bytes === 0) return;
      if (registry === undefined) {
        registry = new SafeFinalizationRegistry((held) => {
          held.live--;
          if (held.live === 0) ops.wasmRelease(held.bytes);
        });
      }
      const held = { __proto__: null, live: objects.length, bytes };
      for (let i = 0; i < objects.length; i++) registry.register(objects[i], held);
    }

    function isMemory(value) {
      try {
        FunctionPrototypeCall(memoryBuffer, value);
        return true;
      } catch {
        return false;
      }
    }

    // The instance and the memories it exports: an exported memory outlives its instance.
    function holders(instance) {
      const found = [instance];
      const exports = FunctionPrototypeCall(exportsOf, instance);
      const names = ObjectKeys(exports);
      for (let i = 0; i < names.length; i++) {
        const value = exports[names[i]];
        if (isMemory(value)) found[found.length] = value;
      }
      return found;
    }

    const Instance = function Instance(module, importObject) {
      if (new.target === undefined) return ReflectApply(OriginalInstance, this, [module, importObject]);
      const charge = ops.wasmModuleCharge(module);
      ops.wasmReserve(charge);
      let instance;
      try {
        instance = ReflectConstruct(OriginalInstance, [module, importObject], new.target);
      } catch (error) {
        ops.wasmRelease(charge);
        throw error;
      }
      releaseWhenCollected(holders(instance), charge);
      return instance;
    };
    ObjectDefineProperty(Instance, "length", { value: 1 });
    Instance.prototype = OriginalInstance.prototype;
    ObjectDefineProperty(OriginalInstance.prototype, "constructor", { value: Instance, writable: true, configurable: true });
    defineHidden(WebAssembly, "Instance", Instance);

    // `instantiate(module)` reserves like the constructor; `instantiate(bytes)` goes to V8, which
    // refuses it (no Wasm code generation at run time).
    function instantiate(source, importObject = undefined) {
      const charge = ops.wasmModuleCharge(source);
      if (charge === 0) return ReflectApply(originalInstantiate, WebAssembly, [source, importObject]);
      try {
        ops.wasmReserve(charge);
      } catch (error) {
        return PromiseReject(error);
      }
      return PromisePrototypeThen(
        ReflectApply(originalInstantiate, WebAssembly, [source, importObject]),
        (instance) => {
          releaseWhenCollected(holders(instance), charge);
          return instance;
        },
        (error) => {
          ops.wasmRelease(charge);
          throw error;
        },
      );
    }
    defineHidden(WebAssembly, "instantiate", instantiate);

    // A memory's size in pages from a descriptor field (a Number, or a BigInt for a 64-bit memory).
    function pages(value) {
      return typeof value === "bigint" ? Number(value) : +value;
    }

    const Memory = function Memory(descriptor) {
      if (new.target === undefined || descriptor === null || typeof descriptor !== "object") {
        // Let V8 say what is wrong, with its own message.
        return new.target === undefined
          ? ReflectApply(OriginalMemory, this, [descriptor])
          : ReflectConstruct(OriginalMemory, [descriptor], new.target);
      }
      // Each field is read once, in the order V8 reads them, and a size that is an object is
      // converted once: V8 gets the converted value, so a `valueOf` cannot answer one size to
      // the charge below and another to V8.
      const address = descriptor.address;
      const size = (value) =>
        value === null || (typeof value !== "object" && typeof value !== "function")
          ? value
          : address === "i64" ? BigInt(value) : +value;
      const initial = size(descriptor.initial);
      const maximum = size(descriptor.maximum);
      const shared = descriptor.shared;
      const budgetPages = MathFloor(ops.wasmBudgetBytes() / PAGE);
      const first = pages(initial);
      if (NumberIsFinite(first) && first > budgetPages) {
        throw new RangeError(
          `WebAssembly.Memory(): an initial size of ${first} pages is more than the ${budgetPages} pages of ` +
            "WebAssembly memory this isolate may hold",
        );
      }
      let most = maximum === undefined ? budgetPages : pages(maximum);
      if (!(most <= budgetPages)) most = budgetPages;
      const capped = typeof initial === "bigint" ? BigInt(MathFloor(most)) : MathFloor(most);
      const charge = MathFloor(most) * PAGE;
      ops.wasmReserve(charge);
      let memory;
      try {
        const copy = { __proto__: null, initial, maximum: maximum === undefined || most < pages(maximum) ? capped : maximum, shared };
        if (address !== undefined) copy.address = address;
        memory = ReflectConstruct(OriginalMemory, [copy], new.target);
      } catch (error) {
        ops.wasmRelease(charge);
        throw error;
      }
      releaseWhenCollected([memory], charge);
      return memory;
    };
    ObjectDefineProperty(Memory, "length", { value: 1 });
    Memory.prototype = OriginalMemory.prototype;
    ObjectDefineProperty(OriginalMemory.prototype, "constructor", { value: Memory, writable: true, configurable: true });
    defineHidden(WebAssembly, "Memory", Memory);
  });
});

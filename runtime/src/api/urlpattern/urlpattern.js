// URLPattern, as the URLPattern standard defines it. The pattern is parsed in Rust
// (urlpattern/mod.rs, denoland's urlpattern crate); each component's regular expression is
// compiled and run here, by V8, so custom groups have JavaScript's regular-expression semantics.
(function (ops, internals, global, primordials) {
  "use strict";
  const {
    ArrayPrototypePush, Boolean: BooleanCtor, ObjectDefineProperty, RegExp: RegExpCtor, RegExpPrototypeExec,
    TypeError: TypeErrorCtor,
  } = primordials;
  const { defineHidden, webClass } = internals;

  const COMPONENTS = ["protocol", "username", "password", "hostname", "port", "pathname", "search", "hash"];
  // The URLPatternInit members in Web IDL's (alphabetical) conversion order.
  const INIT_MEMBERS = ["baseURL", "hash", "hostname", "password", "pathname", "port", "protocol", "search", "username"];

  // Web IDL USVString: ToString (a Symbol throws), lone surrogates become U+FFFD.
  const toUSVString = (value) => primordials.StringPrototypeToWellFormed(`${value}`);

  // URLPatternInput (USVString or URLPatternInit) -> a string, or an object of strings that
  // only isobar has touched.
  function readInput(input) {
    if (input === undefined || input === null) return {};
    if (typeof input !== "object" && typeof input !== "function") return toUSVString(input);
    const init = {};
    for (let i = 0; i < INIT_MEMBERS.length; i++) {
      const value = input[INIT_MEMBERS[i]];
      if (value !== undefined) init[INIT_MEMBERS[i]] = toUSVString(value);
    }
    return init;
  }

  // The overloads (input, baseURL, options) and (input, options): a string second argument is
  // the base URL, anything else the options.
  function splitArguments(baseURL, options) {
    if (baseURL !== undefined && (typeof baseURL !== "string" && (typeof baseURL === "object" || typeof baseURL === "function"))) {
      return [undefined, baseURL];
    }
    return [baseURL === undefined ? undefined : toUSVString(baseURL), options];
  }

  class URLPattern {
    #patterns; #regexps; #groups; #hasRegExpGroups;
    constructor(input = undefined, baseURL = undefined, options = undefined) {
      const split = splitArguments(baseURL, options);
      const base = split[0];
      const opts = split[1];
      if (opts !== undefined && opts !== null && typeof opts !== "object" && typeof opts !== "function") {
        throw new TypeErrorCtor("URLPattern: the options argument must be an object");
      }
      const ignoreCase = BooleanCtor(opts?.ignoreCase);
      const init = readInput(input);
      const parsed = ops.urlPatternParse(init, base, ignoreCase);
      this.#patterns = [];
      this.#regexps = [];
      this.#groups = [];
      for (let i = 0; i < COMPONENTS.length; i++) {
        const component = parsed[i];
        ArrayPrototypePush(this.#patterns, component[0]);
        let regexp;
        try {
          regexp = new RegExpCtor(component[1], ignoreCase ? "vi" : "v");
        } catch (error) {
          throw new TypeErrorCtor(`URLPattern: the ${COMPONENTS[i]} pattern "${component[0]}" is not a valid regular expression: ${error.message}`);
        }
        ArrayPrototypePush(this.#regexps, regexp);
        ArrayPrototypePush(this.#groups, component[2]);
      }
      this.#hasRegExpGroups = parsed[8];
    }
    get protocol() { return this.#patterns[0]; }
    get username() { return this.#patterns[1]; }
    get password() { return this.#patterns[2]; }
    get hostname() { return this.#patterns[3]; }
    get port() { return this.#patterns[4]; }
    get pathname() { return this.#patterns[5]; }
    get search() { return this.#patterns[6]; }
    get hash() { return this.#patterns[7]; }
    get hasRegExpGroups() { return this.#hasRegExpGroups; }
    test(input = undefined, baseURL = undefined) {
      return this.#match(input, baseURL, false) !== null;
    }
    exec(input = undefined, baseURL = undefined) {
      return this.#match(input, baseURL, true);
    }
    #match(input, baseURL, wantResult) {
      const init = readInput(input);
      const base = baseURL === undefined ? undefined : toUSVString(baseURL);
      if (typeof init !== "string" && base !== undefined) {
        throw new TypeErrorCtor("URLPattern: a base URL is not allowed with an init object");
      }
      const values = ops.urlPatternMatchInput(init, base);
      if (values === null) return null;
      const matches = [];
      for (let i = 0; i < COMPONENTS.length; i++) {
        const match = RegExpPrototypeExec(this.#regexps[i], values[i]);
        if (match === null) return null;
        ArrayPrototypePush(matches, match);
      }
      if (!wantResult) return true;
      const inputs = [input === undefined ? {} : typeof input === "object" && input !== null ? init : toUSVString(input)];
      if (base !== undefined) ArrayPrototypePush(inputs, base);
      const result = { inputs };
      for (let i = 0; i < COMPONENTS.length; i++) {
        // Defined, not assigned: a group may be named "__proto__".
        const groups = {};
        const names = this.#groups[i];
        for (let j = 0; j < names.length; j++) {
          ObjectDefineProperty(groups, names[j], { value: matches[i][j + 1], writable: true, enumerable: true, configurable: true });
        }
        result[COMPONENTS[i]] = { input: values[i], groups };
      }
      return result;
    }
  }
  webClass(URLPattern, "URLPattern");
  defineHidden(global, "URLPattern", URLPattern);
})

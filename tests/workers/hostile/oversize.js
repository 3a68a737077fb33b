// Each path tries to make one of isobar's APIs handle a string or buffer larger than it (or V8)
// can hold. An attack answers "caught NAME" when the API threw an error the script can catch,
// "done LENGTH" when the API coped with the input, and `/` answers "oversize ok".
function grownByDoubling(seed) {
  // Cons strings: doubling is cheap until V8's maximum string length throws a RangeError.
  let s = seed;
  try {
    for (let i = 0; i < 40; i++) {
      s += s;
    }
  } catch {
    // `s` is the last string V8 could make (2^28 characters or so).
  }
  return s;
}

const attacks = {
  "/url-doubled"() {
    return new URL("http://x.test/?q=" + grownByDoubling("a")).href.length;
  },
  "/url-expanding"() {
    // Each astral character is 4 bytes of input and 12 percent-encoded bytes of output.
    return new URL("http://x.test/" + "\u{10000}".repeat(4 << 20)).href.length;
  },
  "/url-search-setter"() {
    const url = new URL("http://x.test/");
    url.search = grownByDoubling("\u00e9");
    return url.href.length;
  },
  "/url-search-params"() {
    const params = new URLSearchParams();
    for (let i = 0; i < 40; i++) {
      params.append("k", "\u00e9".repeat(1 << 20));
    }
    return params.toString().length;
  },
  "/text-decoder-huge"() {
    return new TextDecoder().decode(new Uint8Array(200 << 20)).length;
  },
  "/text-decoder-expanding"() {
    // 96 MiB of invalid bytes: each becomes U+FFFD.
    return new TextDecoder().decode(new Uint8Array(96 << 20).fill(0xff)).length;
  },
  "/text-decoder-doubled"() {
    return new TextDecoder().decode(new TextEncoder().encode(grownByDoubling("\u00e9"))).length;
  },
  "/header-value"() {
    return new Headers({ "x-big": grownByDoubling("v") }).get("x-big").length;
  },
  "/header-count"() {
    const headers = new Headers();
    for (let i = 0; i < 20000; i++) {
      headers.append("x-h" + i, "v");
    }
    return [...headers].length;
  },
  "/atob"() {
    return atob(grownByDoubling("QUFB")).length;
  },
  "/btoa"() {
    return btoa(grownByDoubling("a")).length;
  },
};

export default {
  fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === "/response-headers") {
      // 9,000 headers of 1 KiB each: within the Headers cap, past what a response may send.
      const headers = new Headers();
      const value = "v".repeat(1024);
      for (let i = 0; i < 9000; i++) {
        headers.append("x-h" + i, value);
      }
      return new Response("too many header bytes\n", { headers });
    }
    if (path === "/console") {
      console.log("console-attack " + grownByDoubling("c"));
      console.log("console-attack-objects", { big: "o".repeat(32 << 20) }, ["a".repeat(1 << 20)]);
      return new Response("logged\n");
    }
    const attack = attacks[path];
    if (attack === undefined) {
      return new Response("oversize ok\n");
    }
    try {
      return new Response("done " + attack() + "\n");
    } catch (error) {
      return new Response("caught " + (error && error.name) + ": " + String(error && error.message).slice(0, 200) + "\n");
    }
  },
};

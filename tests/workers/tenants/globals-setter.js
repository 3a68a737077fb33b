// A service worker that leaves traces everywhere it can: a top-level `var` (a true global in a
// classic script), properties on globalThis at load and at request time, and non-enumerable
// properties on built-in prototypes. None may be visible to another tenant.
var topLevelVar = "setter";
globalThis.leaked = "setter";
Object.defineProperty(Array.prototype, "polluted", { value: "setter" });
Object.defineProperty(Object.prototype, "isobarTestPolluted", { value: "setter" });

addEventListener("fetch", (event) => {
  globalThis.leakedAtRequest = "setter";
  event.respondWith(new Response(`setter ${typeof topLevelVar} ${typeof leaked} ${typeof [].polluted}\n`));
});

// Replaces what isobar could use to settle the handler's promise, then answers: exactly one
// response per request must come out, with the body the script meant.
const realThen = Promise.prototype.then;

export default {
  async fetch(request) {
    const url = new URL(request.url);
    const tag = url.searchParams.get("tag") ?? "";
    switch (url.pathname) {
      case "/then-twice":
        // Every `then` registers its callbacks twice, so each settles twice.
        Promise.prototype.then = function (onFulfilled, onRejected) {
          realThen.call(this, onFulfilled, onRejected);
          return realThen.call(this, onFulfilled, onRejected);
        };
        return Promise.resolve(new Response("then-twice " + tag + "\n"));
      case "/then-throws":
        Promise.prototype.then = function () {
          throw new Error("then is poisoned");
        };
        return new Response("then-throws " + tag + "\n");
      case "/constructor":
        Promise.prototype.constructor = function (executor) {
          executor(() => {}, () => {});
        };
        return Promise.resolve(new Response("constructor " + tag + "\n"));
      case "/species": {
        class Hijack extends Promise {
          static get [Symbol.species]() {
            return function (executor) {
              executor(
                () => {},
                () => {},
              );
            };
          }
        }
        Object.defineProperty(Promise, Symbol.species, { get: () => Hijack, configurable: true });
        return Hijack.resolve(new Response("species " + tag + "\n"));
      }
      case "/thenable-twice":
        return {
          then(resolve, reject) {
            resolve(new Response("thenable first " + tag + "\n"));
            resolve(new Response("thenable second " + tag + "\n"));
            reject(new Error("rejected after resolving"));
          },
        };
      default:
        return new Response("plain " + tag + "\n");
    }
  },
};

// The smallest Worker: `isobar run examples/hello.js`, then `curl http://127.0.0.1:8080/`.
export default {
  async fetch(request, env, ctx) {
    return new Response("hello from isobar\n");
  },
};

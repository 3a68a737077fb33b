// `/bomb` keeps arrays of doubles (800 KB each) until the isolate's heap limit stops it. The loop
// is bounded (about 800 MB in all), so a missing limit fails the test rather than the machine.
export default {
  fetch(request) {
    if (new URL(request.url).pathname === "/bomb") {
      const kept = [];
      for (let i = 0; i < 1000; i++) {
        kept.push(new Array(100_000).fill(i + 0.5));
      }
      return new Response(`survived with ${kept.length} arrays\n`);
    }
    return new Response("bomb ok\n");
  },
};

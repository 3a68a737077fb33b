// Reports how far Date.now() moved across a busy loop of `?n=` steps (it must not move during
// one request's synchronous work), and across a 30 ms timer on `/sleep` (it must move there).
export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/sleep") {
      const before = Date.now();
      await new Promise((resolve) => setTimeout(resolve, 30));
      return new Response(String(Date.now() - before));
    }
    const n = Number(url.searchParams.get("n") ?? "0");
    const before = Date.now();
    let x = 0;
    for (let i = 0; i < n; i++) {
      x = (x * 31 + i) % 1000003;
    }
    const after = Date.now();
    return new Response(String(after - before), {
      headers: {
        "x-now": String(before),
        "x-work": String(x),
        "x-shared-array-buffer": typeof SharedArrayBuffer,
      },
    });
  },
};

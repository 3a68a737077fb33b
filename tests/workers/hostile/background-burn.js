// `/wait-until` keeps the request alive with an interval that burns CPU after the response;
// `/bare-interval` leaves such an interval running without waitUntil. `/` answers at once.
function burn() {
  // The clock is frozen during synchronous work, so burn by count, not by time (a few ms).
  let x = 0;
  for (let i = 0; i < 300000; i++) {
    x = (x * 31 + i) % 1000003;
  }
  return x;
}

export default {
  fetch(request, env, ctx) {
    const path = new URL(request.url).pathname;
    if (path === "/wait-until") {
      ctx.waitUntil(new Promise(() => setInterval(burn, 1)));
      return new Response("burning in waitUntil\n");
    }
    if (path === "/bare-interval") {
      setInterval(burn, 1);
      return new Response("burning in a bare interval\n");
    }
    return new Response("background ok\n");
  },
};

// Answers with the status its path names, throws, burns CPU, or sends a large body: what the
// metrics test counts.
export default {
  fetch(request) {
    const url = new URL(request.url);
    switch (url.pathname) {
      case "/ok":
        return new Response("ok\n");
      case "/created":
        return new Response("created\n", { status: 201 });
      case "/missing":
        return new Response("missing\n", { status: 404 });
      case "/fail":
        return new Response("fail\n", { status: 500 });
      case "/throw":
        throw new Error("thrown on purpose");
      case "/big":
        return new Response("x".repeat(50_000));
      case "/burn": {
        // A fixed amount of work (Date.now() does not move during it, so it cannot be a time).
        const n = Number(url.searchParams.get("n") ?? "0");
        let x = 0;
        for (let i = 0; i < n; i++) {
          x = (x * 31 + i) % 1000003;
        }
        return new Response(`burned ${x}\n`);
      }
      default:
        return new Response("bad request\n", { status: 400 });
    }
  },
};

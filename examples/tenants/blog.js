// A service-worker script: the other syntax Cloudflare Workers accept.
addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  event.respondWith(new Response(`blog: ${url.hostname}${url.pathname}\n`));
});

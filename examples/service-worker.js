// The older service-worker syntax, still supported by Cloudflare Workers and by isobar.
addEventListener("fetch", (event) => {
  event.respondWith(handle(event.request));
});

async function handle(request) {
  const { pathname } = new URL(request.url);
  return new Response(`service worker saw ${request.method} ${pathname}\n`);
}

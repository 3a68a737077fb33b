// Echoes the request back as JSON: method, URL, headers and body.
export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/missing") {
      return new Response("not found\n", { status: 404 });
    }
    if (url.pathname === "/throw") {
      throw new Error("thrown on purpose");
    }
    return Response.json({
      method: request.method,
      url: request.url,
      headers: Object.fromEntries(request.headers),
      body: await request.text(),
    });
  },
};

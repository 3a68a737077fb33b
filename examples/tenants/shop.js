// A module worker with vars and secrets on `env`.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    return Response.json({
      tenant: "shop",
      greeting: env.GREETING,
      path: url.pathname,
      hasKey: typeof env.API_KEY === "string",
    });
  },
};

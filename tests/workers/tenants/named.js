// Answers with its tenant's name (the `NAME` var) and the path it saw, so a test can tell which
// tenant a request was routed to. Used by many tenants at once, each with its own `NAME`.
export default {
  fetch(request, env) {
    return new Response(`${env.NAME} ${new URL(request.url).pathname}\n`);
  },
};

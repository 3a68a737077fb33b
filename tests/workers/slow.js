// Answers after a delay given in the query (?ms=N), to keep a request in flight.
export default {
  async fetch(request) {
    const ms = Number(new URL(request.url).searchParams.get("ms") ?? "0");
    await new Promise((resolve) => setTimeout(resolve, ms));
    return new Response(`slept ${ms}ms\n`);
  },
};

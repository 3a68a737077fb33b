// Runs WPT's urltestdata.json (sent as the request body by url/wpt.rs) through `new URL()`, the
// way WPT's url-constructor and url-origin tests do, and answers {passed, total, failures}.
export default {
  async fetch(request) {
    const cases = await request.json();
    let passed = 0, total = 0;
    const failures = [];
    const fields = ["href", "protocol", "username", "password", "host", "hostname", "port", "pathname", "search", "hash"];
    for (const c of cases) {
      if (typeof c === "string") continue;
      total++;
      const what = `${JSON.stringify(c.input)} against ${JSON.stringify(c.base)}`;
      let url = null, error = null;
      try {
        url = c.base === null ? new URL(c.input) : new URL(c.input, c.base);
      } catch (e) {
        error = e;
      }
      if (c.failure) {
        if (error instanceof TypeError) passed++;
        else failures.push(`${what}: expected a TypeError, got ${url === null ? error : url.href}`);
        continue;
      }
      if (url === null) {
        failures.push(`${what}: threw ${error}`);
        continue;
      }
      const wrong = fields.filter((f) => url[f] !== c[f]);
      if ("origin" in c && url.origin !== c.origin) wrong.push("origin");
      if ("searchParams" in c && url.searchParams.toString() !== c.searchParams) wrong.push("searchParams");
      if (wrong.length === 0) passed++;
      else failures.push(`${what}: ${wrong.map((f) => `${f} ${JSON.stringify(f === "searchParams" ? url.searchParams.toString() : url[f])} != ${JSON.stringify(c[f])}`).join(", ")}`);
    }
    return new Response(JSON.stringify({ passed, total, failures }));
  },
};

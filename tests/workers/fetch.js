// The Worker the fetch() end-to-end tests run (tests/e2e/fetch.rs). Each path is one scenario;
// `to` is the origin's URL (a server the test started on loopback).
export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const to = url.searchParams.get("to");
    const say = (text, status = 200) => new Response(text + "\n", { status });
    const failure = (e) => say(`${e.name}: ${e.message}`, 502);
    switch (url.pathname) {
      // The origin's response as it is: head and body passed through.
      case "/pass":
        return fetch(to, { headers: { "x-from": "isobar" } });
      // The origin's body as a stream under a head of the script's.
      case "/wrap": {
        const r = await fetch(to);
        return new Response(r.body, { status: r.status, headers: { "x-wrapped": String(r.status) } });
      }
      case "/text": {
        const r = await fetch(to, { method: "POST", body: "sent by isobar" });
        return say(`${r.status} ${r.headers.get("content-type")} ${await r.text()}`);
      }
      case "/redirect": {
        const mode = url.searchParams.get("mode") ?? "follow";
        try {
          const r = await fetch(to, { redirect: mode, method: url.searchParams.get("method") ?? "GET",
                                      body: url.searchParams.get("method") === "POST" ? "form=1" : undefined });
          return say(`${r.status} ${r.redirected} ${r.url} ${r.headers.get("location")} ${await r.text()}`.trim());
        } catch (e) { return failure(e); }
      }
      case "/timeout":
        try {
          await fetch(to, { signal: AbortSignal.timeout(Number(url.searchParams.get("ms"))) });
          return say("no timeout");
        } catch (e) { return failure(e); }
      case "/abort": {
        const controller = new AbortController();
        const pending = fetch(to, { signal: controller.signal });
        setTimeout(() => controller.abort(), 50);
        try { await pending; return say("not aborted"); } catch (e) { return failure(e); }
      }
      case "/many": {
        const n = Number(url.searchParams.get("n"));
        let done = 0;
        try {
          for (let i = 0; i < n; i++) { await (await fetch(to)).arrayBuffer(); done++; }
          return say(`done ${done}`);
        } catch (e) { return say(`after ${done}: ${e.name}: ${e.message}`); }
      }
      case "/parallel": {
        const n = Number(url.searchParams.get("n"));
        const texts = await Promise.all(Array.from({ length: n }, (_, i) => fetch(`${to}?i=${i}`).then((r) => r.text())));
        return say(texts.map((t) => t.trim()).join(","));
      }
      case "/any":
        try { const r = await fetch(to); return say(`${r.status} ${await r.text()}`.trim()); } catch (e) { return failure(e); }
      case "/upload": {
        // The client's body, streamed to the origin as it arrives.
        const r = await fetch(to, { method: "POST", body: request.body, duplex: "half" });
        return say(await r.text());
      }
      case "/form": {
        const form = new FormData();
        form.append("name", "isobar");
        form.append("file", new File(["file contents"], "a.txt", { type: "text/plain" }));
        const r = await fetch(to, { method: "POST", body: form });
        return say(await r.text());
      }
      case "/stream": {
        // A body the script produces over time: piece 1 only after the gate (a request to the
        // test's origin that it answers once it has read piece 0) opens.
        const encoder = new TextEncoder();
        const gate = url.searchParams.get("gate");
        let i = 0;
        const body = new ReadableStream({
          async pull(controller) {
            if (i === 3) return controller.close();
            if (i === 1) await (await fetch(gate)).text();
            controller.enqueue(encoder.encode(`piece ${i++}\n`));
          },
        });
        return new Response(body);
      }
      case "/big": {
        // n bytes made as the client reads them (a slow client must not make isobar buffer them).
        const n = Number(url.searchParams.get("n"));
        let sent = 0;
        const chunk = new Uint8Array(64 * 1024).fill(120);
        return new Response(new ReadableStream({
          pull(controller) {
            if (sent >= n) return controller.close();
            controller.enqueue(chunk.slice());
            sent += chunk.length;
          },
        }));
      }
      case "/background": {
        ctx.waitUntil(fetch(to).then((r) => r.text()));
        return say("answered first");
      }
      case "/background-forever": {
        // Work after the response that would go on for a minute: cut at 30 s of wall time.
        ctx.waitUntil((async () => {
          await fetch(`${to}?step=1`).then((r) => r.text());
          await new Promise((resolve) => setTimeout(resolve, 60_000));
          await fetch(`${to}?step=2`).then((r) => r.text());
        })());
        return say("answered first");
      }
    }
    return say("no such scenario", 404);
  },
};

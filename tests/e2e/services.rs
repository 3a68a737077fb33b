//! Service bindings through the real binary: `env.AUTH.fetch()` calls another tenant of the
//! same process on the same core, with no socket. The callee sees the caller's method, URL,
//! headers and body; the caller gets the callee's status, headers and body (also when the
//! callee streams it, up to the caller's memory limit); a chain of calls ends at its depth limit with a clean error; a callee
//! that throws is a 500 for the caller, not a failure of the caller; a binding to a tenant that
//! does not exist stops start-up with the reason.
//!
//! Loopback only; every loop is bounded.

use isobar_e2e::{Client, Isobar, TempDir};

const FRONT: &str = r#"
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/echo") {
      const response = await env.AUTH.fetch("http://auth.internal/check?user=ada", {
        method: "POST",
        headers: { "x-token": "t0ken" },
        body: "the body",
      });
      return new Response(`${response.status} ${response.headers.get("x-auth")} ${await response.text()}`);
    }
    if (url.pathname === "/stream") {
      const response = await env.AUTH.fetch("http://auth.internal/stream");
      return new Response(`${response.status} ${(await response.text()).length}`);
    }
    if (url.pathname === "/big") {
      try {
        await env.AUTH.fetch("http://auth.internal/big");
        return new Response("taken");
      } catch (e) {
        return new Response(`refused: ${e.message}`);
      }
    }
    if (url.pathname === "/throws") {
      const response = await env.AUTH.fetch("http://auth.internal/throw");
      return new Response(`callee answered ${response.status}`);
    }
    if (url.pathname === "/depth") {
      const depth = Number(url.searchParams.get("d") ?? "0");
      try {
        const response = await env.SELF.fetch(`http://front.test/depth?d=${depth + 1}`);
        return new Response(await response.text());
      } catch (e) {
        return new Response(`stopped at ${depth}: ${e.message}`);
      }
    }
    return new Response("front", { status: 404 });
  },
};
"#;

const AUTH: &str = r#"
export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/check") {
      const body = await request.text();
      const seen = `${request.method} ${url.host}${url.pathname}?${url.searchParams} ${request.headers.get("x-token")} ${body}`;
      return new Response(seen, { status: 201, headers: { "x-auth": "ok" } });
    }
    if (url.pathname === "/stream") {
      let sent = 0;
      const stream = new ReadableStream({
        pull(controller) {
          if (sent === 100) return controller.close();
          controller.enqueue(new Uint8Array(1000).fill(65));
          sent++;
        },
      });
      return new Response(stream);
    }
    if (url.pathname === "/big") {
      let sent = 0;
      const chunk = new Uint8Array(1 << 20);
      return new Response(new ReadableStream({
        pull(controller) {
          if (sent++ === 40) return controller.close();
          controller.enqueue(chunk.slice());
        },
      }));
    }
    if (url.pathname === "/throw") throw new Error("the callee fails");
    return new Response("auth", { status: 404 });
  },
};
"#;

fn config(dir: &TempDir, services: &str) -> std::path::PathBuf {
    let front = dir.write("front.js", FRONT).display().to_string();
    let auth = dir.write("auth.js", AUTH).display().to_string();
    dir.write(
        "isobar.toml",
        &format!(
            "[[tenant]]\nname = \"front\"\nscript = {front:?}\nroutes = [\"front.test\"]\nservices = {services}\nlimits = {{ heap_mb = 32 }}\n\
             [[tenant]]\nname = \"auth\"\nscript = {auth:?}\nroutes = [\"auth.test\"]\n"
        ),
    )
}

fn text(client: &mut Client, path: &str) -> (u16, String) {
    let response = client.request_with_host("GET", "front.test", path, &[], b"");
    (response.status, response.text())
}

#[test]
fn a_service_binding_calls_another_tenant_on_the_same_core() {
    let dir = TempDir::new("services");
    let config = config(&dir, "{ AUTH = \"auth\", SELF = \"front\" }");
    let isobar = Isobar::serve(&config, &["--cores", "1", "--admin", "127.0.0.1:0"]);
    let mut client = isobar.connect();
    assert_eq!(
        text(&mut client, "/echo"),
        (200, "201 ok POST auth.internal/check?user=ada t0ken the body".into()),
        "the callee saw the caller's request, the caller the callee's response"
    );
    assert_eq!(text(&mut client, "/stream"), (200, "200 100000".into()), "a streamed body arrives whole");
    assert_eq!(text(&mut client, "/throws"), (200, "callee answered 500".into()));
    // A body larger than the caller's memory limit (32 MiB) is refused, not collected.
    let (status, body) = text(&mut client, "/big");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("refused: fetch: the response body of service \"auth\"") && body.contains("33554432"),
        "{body}"
    );
    let (status, body) = text(&mut client, "/depth");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("stopped at 16: fetch: service binding SELF: the chain of calls is deeper than 16"),
        "{body}"
    );

    // The callee's requests are its own: counted for it, not for the caller.
    let metrics = isobar_e2e::eventually(std::time::Duration::from_secs(10), || {
        let metrics = isobar.metrics();
        (metrics.sum("isobar_tenant_requests_total", &[("tenant", "auth")]) >= 3.0).then_some(metrics)
    });
    assert!(metrics.is_some(), "auth's requests are metered: {}", isobar.metrics().text);
    assert!(isobar.stderr().contains("the callee fails"), "the callee's exception is logged as its own");
}

#[test]
fn a_service_binding_to_a_missing_tenant_stops_start_up() {
    let dir = TempDir::new("services-missing");
    let config = config(&dir, "{ AUTH = \"nobody\" }");
    let config = config.display().to_string();
    let (code, stderr) = isobar_e2e::run_expecting_failure(&["serve", "--config", &config]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("services.AUTH names tenant \"nobody\", which is not in the configuration"), "{stderr}");
}

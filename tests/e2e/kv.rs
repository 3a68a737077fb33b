//! Workers KV through the real binary: `isobar run --kv` and `[[tenant.kv]]` bindings on the
//! embedded store, with the default system-call filter on (the store's thread runs confined).
//! Values written through one core are read through another, survive a restart, and every put
//! that was acknowledged survives a `kill -9` in the middle of a stream of puts.
//!
//! Every loop is bounded in count and time; only loopback is used; only processes the test
//! started are signalled.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use isobar_e2e::{Client, Isobar, TempDir};

/// A Worker that puts, gets, lists and reports KV errors from query parameters.
const SCRIPT: &str = r#"
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const key = url.searchParams.get("key");
    switch (url.pathname) {
      case "/put":
        await env.KV.put(key, url.searchParams.get("value"));
        return new Response("stored");
      case "/get": {
        const value = await env.KV.get(key);
        return new Response(value === null ? "<null>" : value);
      }
      case "/count": {
        let n = 0, cursor;
        for (let i = 0; i < 100; i++) {
          const page = await env.KV.list({ prefix: url.searchParams.get("prefix"), cursor });
          n += page.keys.length;
          if (page.list_complete) break;
          cursor = page.cursor;
        }
        return new Response(String(n));
      }
      case "/error":
        try {
          await env.KV.put("k", "v", { expirationTtl: 30 });
          return new Response("no error");
        } catch (e) {
          return new Response(`${e.constructor.name}: ${e.message}`);
        }
    }
    return new Response("not found", { status: 404 });
  },
};
"#;

fn start(dir: &TempDir, cores: &str, extra: &[&str]) -> Isobar {
    let script = dir.path().join("kv.js");
    if !script.exists() {
        dir.write("kv.js", SCRIPT);
    }
    let script = script.display().to_string();
    let store = dir.path().join("store").display().to_string();
    let mut args = vec!["run", script.as_str(), "--kv", "KV=main", "--kv-path", store.as_str(), "--cores", cores];
    args.extend_from_slice(extra);
    Isobar::start(&args)
}

fn text(client: &mut Client, path: &str) -> (u16, String) {
    let response = client.request("GET", path, &[], b"");
    (response.status, response.text())
}

#[test]
fn kv_values_are_shared_by_cores_and_metered() {
    let dir = TempDir::new("kv-cores");
    let isobar = start(&dir, "2", &["--admin", "127.0.0.1:0"]);
    let mut client = isobar.connect();
    assert_eq!(text(&mut client, "/put?key=greeting&value=hello"), (200, "stored".into()));
    assert_eq!(text(&mut client, "/get?key=greeting"), (200, "hello".into()));
    assert_eq!(text(&mut client, "/get?key=absent"), (200, "<null>".into()));
    // New connections land on either core (SO_REUSEPORT); each reads what the other wrote.
    let mut cores = BTreeSet::new();
    for i in 0..200 {
        let mut client = isobar.connect();
        let response = client.request("GET", &format!("/put?key=k{i}&value=v{i}"), &[], b"");
        assert_eq!((response.status, response.text()), (200, "stored".into()));
        let core = response.header("x-isobar-core").expect("x-isobar-core").to_string();
        let mut reader = isobar.connect();
        let read = reader.request("GET", &format!("/get?key=k{i}"), &[], b"");
        assert_eq!(read.text(), format!("v{i}"));
        cores.insert(core);
        cores.insert(read.header("x-isobar-core").expect("x-isobar-core").to_string());
        if cores.len() == 2 && i >= 20 {
            break;
        }
    }
    assert_eq!(cores.len(), 2, "requests reached both cores: {cores:?}");
    let (status, error) = text(&mut client, "/error");
    assert_eq!(status, 200);
    assert!(error.starts_with("Error: KV PUT failed: 400") && error.contains("at least 60"), "{error}");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = isobar.metrics();
        let puts = metrics.sum("isobar_tenant_kv_operations_total", &[("verb", "put")]);
        let gets = metrics.sum("isobar_tenant_kv_operations_total", &[("verb", "get")]);
        let written = metrics.sum("isobar_tenant_kv_bytes_written_total", &[]);
        let read = metrics.sum("isobar_tenant_kv_bytes_read_total", &[]);
        let errors = metrics.sum("isobar_tenant_kv_errors_total", &[]);
        if puts >= 22.0 && gets >= 22.0 && written > 0.0 && read > 0.0 && errors >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "KV metrics: puts {puts} gets {gets} written {written} read {read} errors {errors}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kv_values_survive_a_restart() {
    let dir = TempDir::new("kv-restart");
    let mut isobar = start(&dir, "1", &[]);
    let mut client = isobar.connect();
    for i in 0..50 {
        assert_eq!(text(&mut client, &format!("/put?key=p{i}&value=v{i}")).1, "stored");
    }
    isobar.terminate();
    assert_eq!(isobar.wait_exit(Duration::from_secs(30)), Some(0), "{}", isobar.stderr());
    drop(isobar);
    let isobar = start(&dir, "1", &[]);
    let mut client = isobar.connect();
    assert_eq!(text(&mut client, "/get?key=p49"), (200, "v49".into()));
    assert_eq!(text(&mut client, "/count?prefix=p"), (200, "50".into()));
}

#[test]
fn kv_acknowledged_puts_survive_kill_9() {
    let dir = TempDir::new("kv-kill");
    let isobar = start(&dir, "2", &[]);
    let addr = isobar.addr;
    let acknowledged: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let acknowledged = acknowledged.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                // Bounded: at most 5,000 puts per writer, and the process is killed long before.
                for i in 0..5_000 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let (key, value) = (format!("w{writer}-{i}"), format!("value-{writer}-{i}"));
                    client.send("GET", &format!("/put?key={key}&value={value}"), &[], b"");
                    // After the kill the read fails: that put was never acknowledged.
                    match client.try_read_response(false) {
                        Ok(response) if response.status == 200 && response.text() == "stored" => {
                            acknowledged.lock().unwrap().insert(key, value);
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    // Kill in the middle of the stream: once a few hundred puts were acknowledged.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().unwrap().len() < 300 {
        assert!(Instant::now() < deadline, "puts are too slow: {}", acknowledged.lock().unwrap().len());
        std::thread::sleep(Duration::from_millis(5));
    }
    // Dropping our Isobar sends SIGKILL to the process we started and reaps it.
    drop(isobar);
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 300);

    let isobar = start(&dir, "1", &[]);
    let mut client = isobar.connect();
    let mut missing = Vec::new();
    for (key, value) in &acknowledged {
        let (_, got) = text(&mut client, &format!("/get?key={key}"));
        if &got != value {
            missing.push((key.clone(), got));
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged puts lost: {:?}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(10)]
    );
}

#[test]
fn kv_bindings_from_the_configuration_are_per_tenant() {
    let dir = TempDir::new("kv-serve");
    let script = dir.write("kv.js", SCRIPT).display().to_string();
    let config = format!(
        "[kv]\npath = \"store\"\n\
         [[tenant]]\nname = \"a\"\nscript = {script:?}\nroutes = [\"a.test\"]\n[[tenant.kv]]\nbinding = \"KV\"\nnamespace = \"shared\"\n\
         [[tenant]]\nname = \"b\"\nscript = {script:?}\nroutes = [\"b.test\"]\n[[tenant.kv]]\nbinding = \"KV\"\nnamespace = \"shared\"\n"
    );
    let config = dir.write("isobar.toml", &config);
    let isobar = Isobar::serve(&config, &["--cores", "1"]);
    let mut client = isobar.connect();
    let put = client.request_with_host("GET", "a.test", "/put?key=k&value=from-a", &[], b"");
    assert_eq!((put.status, put.text()), (200, "stored".into()));
    let read = |client: &mut Client, host: &str| client.request_with_host("GET", host, "/get?key=k", &[], b"").text();
    assert_eq!(read(&mut client, "a.test"), "from-a");
    // Same namespace name, another tenant: another key space.
    assert_eq!(read(&mut client, "b.test"), "<null>");
    assert!(dir.path().join("store/kv.redb").exists(), "the store is beside the configuration");
}

/// A SIGHUP that adds the first KV binding to a server started without one is refused, with a
/// line that says why (the store is opened at start), and the running configuration stays.
#[test]
fn a_reload_adding_the_first_kv_binding_is_refused_clearly() {
    let dir = TempDir::new("kv-reload");
    let script = dir.write("kv.js", SCRIPT).display().to_string();
    let plain = format!("[[tenant]]\nname = \"a\"\nscript = {script:?}\nroutes = [\"a.test\"]\n");
    let config = dir.write("isobar.toml", &plain);
    let isobar = Isobar::serve(&config, &["--cores", "1"]);
    let before = isobar.connect().request_with_host("GET", "a.test", "/get?key=k", &[], b"");
    assert_eq!(before.status, 500, "no binding yet: env.KV is undefined ({})", before.text());

    dir.write("isobar.toml", &format!("{plain}[[tenant.kv]]\nbinding = \"KV\"\nnamespace = \"n\"\n"));
    isobar.hangup();
    let refused = isobar_e2e::eventually(Duration::from_secs(15), || {
        let stderr = isobar.stderr();
        stderr.contains("reload of").then_some(stderr)
    });
    let stderr = refused.unwrap_or_else(|| panic!("no reload line: {}", isobar.stderr()));
    assert!(stderr.contains("still serving the previous configuration"), "{stderr}");
    assert!(stderr.contains("tenant a has a KV binding, but isobar started with no KV store"), "{stderr}");
    let after = isobar.connect().request_with_host("GET", "a.test", "/get?key=k", &[], b"");
    assert_eq!(after.status, 500, "still the previous configuration ({})", after.text());
    assert!(!dir.path().join("kv/kv.redb").exists(), "no store was opened behind the server's back");
}

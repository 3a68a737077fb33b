//! The admin API's handling against `TestControl`, a test double of [`ControlPlane`] that keeps
//! tenants in a map and records every deploy. What the real control plane does (compiling,
//! reaching the cores) is covered by the end-to-end tests in `tests/e2e/tenants.rs`.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::stats::TenantStats;

/// Tenants in a map; a deploy replaces by name, refuses a route another tenant has (as the
/// runtime does), and resolves `Auto` to `Module`. `refuse` makes the next deploy or removal fail.
#[derive(Default)]
struct TestControl {
    tenants: RefCell<BTreeMap<String, DeployedTenant>>,
    deployed: RefCell<Vec<TenantSettings>>,
    refuse: RefCell<Option<ChangeError>>,
    stats: Vec<CoreStats>,
    /// (tenant, cron) of each `fire_scheduled`.
    fired: RefCell<Vec<(String, String)>>,
}

impl ControlPlane for TestControl {
    fn tenants(&self) -> Vec<DeployedTenant> {
        self.tenants.borrow().values().cloned().collect()
    }

    fn tenant(&self, name: &str) -> Option<DeployedTenant> {
        self.tenants.borrow().get(name).cloned()
    }

    fn stats(&self) -> Vec<CoreStats> {
        self.stats.clone()
    }

    fn deploy(&self, settings: TenantSettings) -> Result<Deployed, ChangeError> {
        if let Some(error) = self.refuse.borrow_mut().take() {
            return Err(error);
        }
        let mut tenants = self.tenants.borrow_mut();
        for other in tenants.values().filter(|t| t.name != settings.name) {
            if let Some(route) = settings.routes.iter().find(|r| other.routes.contains(r)) {
                return Err(ChangeError::RouteTaken(format!("route {route} belongs to tenant {}", other.name)));
            }
        }
        let version = 100 + self.deployed.borrow().len() as u64;
        let format = if settings.format == ScriptFormat::Auto { ScriptFormat::Module } else { settings.format };
        let tenant = DeployedTenant {
            name: settings.name.clone(),
            version,
            format,
            routes: settings.routes.clone(),
            vars: settings.vars.clone(),
            secrets: settings.secrets.clone(),
            limits: settings.limits,
            crons: settings.crons.clone(),
            kv: settings.kv.clone(),
            services: BTreeMap::new(),
        };
        let replaced = tenants.insert(settings.name.clone(), tenant).is_some();
        self.deployed.borrow_mut().push(settings);
        Ok(Deployed { version, replaced })
    }

    fn remove(&self, name: &str) -> Result<bool, ChangeError> {
        if let Some(error) = self.refuse.borrow_mut().take() {
            return Err(error);
        }
        Ok(self.tenants.borrow_mut().remove(name).is_some())
    }

    fn fire_scheduled(&self, name: &str, cron: &str) -> Result<bool, ChangeError> {
        if !self.tenants.borrow().contains_key(name) {
            return Ok(false);
        }
        self.fired.borrow_mut().push((name.to_string(), cron.to_string()));
        Ok(true)
    }
}

const LOOPBACK: &str = "127.0.0.1:40000";

fn request<'a>(method: &'a str, target: &'a str, body: &'a [u8]) -> AdminRequest<'a> {
    AdminRequest { method, target, authorization: None, content_type: None, body, peer: LOOPBACK.parse().unwrap() }
}

fn put_json<'a>(target: &'a str, body: &'a str) -> AdminRequest<'a> {
    AdminRequest { content_type: Some(b"application/json"), ..request("PUT", target, body.as_bytes()) }
}

fn text(response: &AdminResponse) -> &str {
    std::str::from_utf8(&response.body).unwrap()
}

fn json_of(response: &AdminResponse) -> Value {
    serde_json::from_slice(&response.body).unwrap_or_else(|e| panic!("{e}: {}", text(response)))
}

fn header<'a>(response: &'a AdminResponse, name: &str) -> Option<&'a str> {
    response.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

fn admin() -> Admin {
    Admin::new(None, TenantLimits::default())
}

/// A control plane serving `shop` (with a var and a secret) and `blog`, and one core's counters.
fn two_tenants() -> TestControl {
    let control = TestControl::default();
    let admin = admin();
    let shop = r#"{"script": "s", "format": "module", "routes": ["shop.test", "*.shop.test"],
        "vars": {"GREETING": "hello"}, "secrets": {"API_KEY": "sekrit-value"}, "limits": {"cpu_ms": 20}}"#;
    assert_eq!(admin.handle(&control, &put_json("/tenants/shop", shop)).status, 201);
    assert_eq!(
        admin.handle(&control, &put_json("/tenants/blog", r#"{"script": "b", "routes": ["blog.test"]}"#)).status,
        201
    );
    let mut counters = TenantCounters { cpu: Duration::from_millis(250), bytes_in: 7, ..Default::default() };
    counters.count_status(200);
    counters.count_status(200);
    counters.count_status(404);
    counters.count_limit(LimitKind::Wall);
    let shop_stats = TenantStats { name: "shop".into(), counters, isolates: 1, heap_bytes: 4096, in_flight: 2 };
    let core = |core| CoreStats { core, tenants: vec![shop_stats.clone()], isolates: 3, ..Default::default() };
    TestControl { stats: vec![core(0), core(1)], ..control }
}

#[test]
fn without_a_token_only_loopback_peers_are_served() {
    let control = TestControl::default();
    for peer in ["127.0.0.1:1", "127.9.9.9:1", "[::1]:1", "[::ffff:127.0.0.1]:1"] {
        let response =
            admin().handle(&control, &AdminRequest { peer: peer.parse().unwrap(), ..request("GET", "/tenants", b"") });
        assert_eq!(response.status, 200, "{peer}: {}", text(&response));
    }
    for peer in ["10.0.0.1:1", "[2001:db8::1]:1", "[::ffff:10.0.0.1]:1", "0.0.0.0:1"] {
        let response =
            admin().handle(&control, &AdminRequest { peer: peer.parse().unwrap(), ..request("GET", "/tenants", b"") });
        assert_eq!(response.status, 403, "{peer}");
        assert!(text(&response).contains("loopback"), "{}", text(&response));
    }
}

#[test]
fn with_a_token_every_request_needs_it_from_any_peer() {
    let control = two_tenants();
    let admin = Admin::new(Some("s3cret"), TenantLimits::default());
    let far: SocketAddr = "192.0.2.7:5000".parse().unwrap();
    let with = |authorization: Option<&'static [u8]>, method: &'static str, target: &'static str| {
        admin.handle(&control, &AdminRequest { authorization, peer: far, ..request(method, target, b"") })
    };
    for wrong in
        [None, Some(&b"Bearer wrong"[..]), Some(b"Bearer s3cre"), Some(b"Bearer s3cret "), Some(b"s3cret"), Some(b"")]
    {
        for (method, target) in
            [("GET", "/metrics"), ("GET", "/tenants"), ("DELETE", "/tenants/shop"), ("GET", "/nope")]
        {
            let response = with(wrong, method, target);
            assert_eq!(response.status, 401, "{method} {target} with {wrong:?}");
            assert_eq!(header(&response, "www-authenticate"), Some("Bearer"));
            assert!(!text(&response).contains("s3cret"), "the token is not echoed");
        }
    }
    assert_eq!(control.tenants.borrow().len(), 2, "nothing was deleted");
    assert_eq!(with(Some(b"Bearer s3cret"), "GET", "/tenants").status, 200);
    assert_eq!(with(Some(b"Bearer s3cret"), "GET", "/metrics").status, 200);
    assert!(!format!("{admin:?}").contains("s3cret"));
}

#[test]
fn metrics_are_the_cores_counters_as_openmetrics() {
    let control = two_tenants();
    let response = admin().handle(&control, &request("GET", "/metrics?x=1", b""));
    assert_eq!(response.status, 200);
    assert_eq!(header(&response, "content-type"), Some(crate::metrics::CONTENT_TYPE));
    let body = text(&response);
    assert!(body.contains("isobar_tenant_requests_total{tenant=\"shop\",core=\"1\",class=\"2xx\"} 2"), "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
}

#[test]
fn tenants_show_settings_and_totals_but_never_secret_values() {
    let control = two_tenants();
    let list = admin().handle(&control, &request("GET", "/tenants", b""));
    assert_eq!(list.status, 200);
    assert!(!text(&list).contains("sekrit-value"), "{}", text(&list));
    let list = json_of(&list);
    let names: Vec<&str> = list["tenants"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["blog", "shop"], "sorted by name");

    let shop = admin().handle(&control, &request("HEAD", "/tenants/shop", b""));
    assert!(!text(&shop).contains("sekrit-value"));
    let shop = json_of(&shop);
    assert_eq!(shop, list["tenants"][1]);
    assert_eq!(shop["routes"], json!(["shop.test", "*.shop.test"]));
    assert_eq!(shop["format"], "module");
    assert_eq!(shop["vars"], json!({ "GREETING": "hello" }));
    assert_eq!(shop["secrets"], json!(["API_KEY"]));
    assert_eq!(shop["version"], 100);
    assert_eq!(
        shop["limits"],
        json!({ "cpu_ms": 20, "heap_mb": 128, "wall_ms": 30000, "subrequests": 50, "concurrency": 1000 })
    );
    let stats = &shop["stats"];
    assert_eq!(stats["requests"], 6, "three requests on each of two cores: {stats}");
    assert_eq!(stats["requests_by_class"], json!({ "1xx": 0, "2xx": 4, "3xx": 0, "4xx": 2, "5xx": 0 }));
    assert_eq!(stats["cpu_seconds"], 0.5);
    assert_eq!((stats["bytes_in"].clone(), stats["isolates"].clone()), (json!(14), json!(2)));
    assert_eq!((stats["heap_bytes"].clone(), stats["in_flight"].clone()), (json!(8192), json!(4)));
    assert_eq!(stats["limits_exceeded"], json!({ "cpu": 0, "heap": 0, "wall": 2, "concurrency": 0 }));
    assert_eq!(list["tenants"][0]["stats"]["requests"], 0, "blog has no counters yet");

    let missing = admin().handle(&control, &request("GET", "/tenants/nobody", b""));
    assert_eq!(missing.status, 404);
}

#[test]
fn put_creates_a_tenant_from_json_with_the_default_limits() {
    let control = TestControl::default();
    let defaults = TenantLimits { concurrency: 7, ..TenantLimits::default() };
    let admin = Admin::new(None, defaults);
    let body = r#"{"script": "export default {}", "routes": ["Fresh.test/"], "vars": {"WHO": "me"}}"#;
    let response = admin.handle(&control, &put_json("/tenants/fresh", body));
    assert_eq!(response.status, 201, "{}", text(&response));
    assert_eq!(json_of(&response), json!({ "name": "fresh", "version": 100 }));
    let deployed = control.deployed.borrow();
    let settings = &deployed[0];
    assert_eq!(settings.name, "fresh");
    assert_eq!(settings.source, "export default {}");
    assert_eq!(settings.path, PathBuf::from("admin/fresh.js"));
    assert!(!settings.read_disk, "an upload cannot import from disk");
    assert_eq!(settings.routes, [Route::parse("fresh.test").unwrap()]);
    assert_eq!(settings.format, ScriptFormat::Auto);
    assert_eq!(settings.vars, BTreeMap::from([("WHO".to_owned(), "me".to_owned())]));
    assert!(settings.secrets.is_empty());
    assert_eq!(settings.limits, defaults);
}

#[test]
fn put_of_a_bare_script_or_partial_json_keeps_the_other_settings() {
    let control = two_tenants();
    let bare = AdminRequest { content_type: Some(b"application/javascript"), ..request("PUT", "/tenants/shop", b"v2") };
    let response = admin().handle(&control, &bare);
    assert_eq!(response.status, 200, "{}", text(&response));
    let partial = r#"{"script": "v3", "limits": {"heap_mb": 256}}"#;
    assert_eq!(admin().handle(&control, &put_json("/tenants/shop", partial)).status, 200);
    let deployed = control.deployed.borrow();
    let (first, bare, partial) = (&deployed[0], &deployed[2], &deployed[3]);
    for settings in [bare, partial] {
        assert_eq!(settings.routes, first.routes);
        assert_eq!(settings.vars, first.vars);
        assert_eq!(settings.secrets, first.secrets, "secret values are kept without being shown");
        assert_eq!(settings.format, ScriptFormat::Module);
    }
    assert_eq!(bare.source, "v2");
    assert_eq!(bare.limits, first.limits);
    assert_eq!(partial.limits, TenantLimits { heap_bytes: 256 << 20, ..first.limits }, "cpu_ms 20 is kept");
}

#[test]
fn bad_uploads_get_400_and_deploy_nothing() {
    let control = two_tenants();
    let heap_message = format!("limits.heap_mb must be between 4 and {} (got 99999999999)", crate::limits::HEAP_MB_MAX);
    let cases: Vec<(AdminRequest<'_>, &str)> = vec![
        (put_json("/tenants/newbie", r#"{"script": "x"}"#), "does not exist yet"),
        (
            AdminRequest { content_type: Some(b"text/javascript"), ..request("PUT", "/tenants/ghost", b"x") },
            "does not exist yet",
        ),
        (put_json("/tenants/Bad!Name", r#"{"script": "x", "routes": ["b.test"]}"#), "invalid tenant name \"Bad!Name\""),
        (put_json("/tenants/", r#"{"script": "x", "routes": ["b.test"]}"#), "invalid tenant name \"\""),
        (put_json("/tenants/a/b", r#"{"script": "x", "routes": ["b.test"]}"#), "invalid tenant name \"a/b\""),
        (put_json("/tenants/shop", r#"{"script": "x""#), "invalid JSON body"),
        (put_json("/tenants/shop", r#"{"script": "x", "route": ["a.test"]}"#), "unknown field `route`"),
        (put_json("/tenants/shop", r#"{"routes": ["a.test"]}"#), "missing field `script`"),
        (put_json("/tenants/shop", r#"{"script": "x", "routes": ["a.*.test"]}"#), "route \"a.*.test\": a wildcard"),
        (put_json("/tenants/shop", r#"{"script": "x", "format": "esm"}"#), "format \"esm\""),
        (
            put_json("/tenants/shop", r#"{"script": "x", "limits": {"cpu_ms": 0}}"#),
            "limits.cpu_ms must be between 1 and 60000 (got 0)",
        ),
        (put_json("/tenants/shop", r#"{"script": "x", "limits": {"heap_mb": 99999999999}}"#), heap_message.as_str()),
        (put_json("/tenants/shop", r#"{"script": "x", "limits": {"cpu": 5}}"#), "unknown field `cpu`"),
        (put_json("/tenants/shop", r#"{"script": "x", "vars": {"A": "1"}, "secrets": {"A": "2"}}"#), "\"A\" is both"),
        (
            put_json("/tenants/shop", r#"{"script": "x", "vars": {"API_KEY": "shown"}}"#),
            "\"API_KEY\" is both a var and a secret",
        ),
        (request("PUT", "/tenants/shop", b"\xff\xfe"), "not UTF-8"),
    ];
    let before = control.deployed.borrow().len();
    for (request, message) in cases {
        let response = admin().handle(&control, &request);
        assert_eq!(response.status, 400, "{} {}: {}", request.method, request.target, text(&response));
        assert!(text(&response).contains(message), "{:?} says {message:?}: {}", request.target, text(&response));
    }
    assert_eq!(control.deployed.borrow().len(), before, "nothing was deployed");
}

#[test]
fn refused_deploys_get_the_status_of_their_cause() {
    let control = two_tenants();
    let taken = admin().handle(&control, &put_json("/tenants/fresh", r#"{"script": "x", "routes": ["shop.test"]}"#));
    assert_eq!(taken.status, 409, "{}", text(&taken));
    assert!(control.tenant("fresh").is_none());
    let cases = [
        (ChangeError::Invalid("fresh.js:3:15: SyntaxError".into()), 400),
        (ChangeError::RouteTaken("taken".into()), 409),
        (ChangeError::Failed("core 1 did not acknowledge".into()), 500),
    ];
    for (error, status) in cases {
        let message = error.to_string();
        *control.refuse.borrow_mut() = Some(error);
        let response =
            admin().handle(&control, &put_json("/tenants/fresh", r#"{"script": "x", "routes": ["f.test"]}"#));
        assert_eq!((response.status, text(&response)), (status, format!("{message}\n").as_str()));
    }
}

#[test]
fn crons_are_deployed_checked_and_fired_by_hand() {
    let admin = Admin::new(None, TenantLimits::default());
    let control = TestControl::default();
    let body = r#"{"script": "x", "routes": ["a.test"], "crons": ["*/5 * * * *", "0 0 * * MON", "*/5 * * * *"]}"#;
    assert_eq!(admin.handle(&control, &put_json("/tenants/a", body)).status, 201);
    let tenant = control.tenant("a").unwrap();
    assert_eq!(tenant.crons, ["*/5 * * * *", "0 0 * * MON"], "duplicates are dropped");
    // A PUT without crons keeps them; a bad one is refused with the reason.
    assert_eq!(admin.handle(&control, &put_json("/tenants/a", r#"{"script": "y"}"#)).status, 200);
    assert_eq!(control.tenant("a").unwrap().crons.len(), 2);
    let bad = admin.handle(&control, &put_json("/tenants/a", r#"{"script": "y", "crons": ["* * *"]}"#));
    assert_eq!(bad.status, 400);
    assert!(String::from_utf8_lossy(&bad.body).contains("five fields"), "{bad:?}");
    let shown = admin.handle(&control, &request("GET", "/tenants/a", b""));
    let shown: serde_json::Value = serde_json::from_slice(&shown.body).unwrap();
    assert_eq!(shown["crons"], serde_json::json!(["*/5 * * * *", "0 0 * * MON"]), "{shown}");

    // Fired by hand: the given cron (percent-encoded), else the tenant's first.
    let fired = admin.handle(&control, &request("POST", "/tenants/a/scheduled?cron=0+12+*+*+%2A", b""));
    assert_eq!(fired.status, 202, "{fired:?}");
    assert_eq!(admin.handle(&control, &request("POST", "/tenants/a/scheduled", b"")).status, 202);
    assert_eq!(
        *control.fired.borrow(),
        [("a".to_string(), "0 12 * * *".to_string()), ("a".to_string(), "*/5 * * * *".to_string())]
    );
    assert_eq!(admin.handle(&control, &request("POST", "/tenants/a/scheduled?cron=nope", b"")).status, 400);
    assert_eq!(admin.handle(&control, &request("POST", "/tenants/a/scheduled?cron=%zz", b"")).status, 400);
    assert_eq!(admin.handle(&control, &request("POST", "/tenants/b/scheduled", b"")).status, 404);
}

#[test]
fn delete_removes_once() {
    let control = two_tenants();
    let delete = |name: &str| admin().handle(&control, &request("DELETE", &format!("/tenants/{name}"), b""));
    let response = delete("blog");
    assert_eq!(response.status, 200);
    assert_eq!(json_of(&response), json!({ "name": "blog", "deleted": true }));
    assert_eq!(delete("blog").status, 404, "already gone");
    assert_eq!(delete("never").status, 404);
    *control.refuse.borrow_mut() = Some(ChangeError::Failed("no ack".into()));
    assert_eq!(delete("shop").status, 500);
    assert!(control.tenant("shop").is_some());
}

#[test]
fn wrong_methods_and_paths() {
    let control = two_tenants();
    let answer = |method, target| admin().handle(&control, &request(method, target, b""));
    for (method, target, status, allow) in [
        ("POST", "/metrics", 405, Some("GET, HEAD")),
        ("DELETE", "/tenants", 405, Some("GET, HEAD")),
        ("PATCH", "/tenants/shop", 405, Some("GET, HEAD, PUT, DELETE")),
        ("GET", "/", 404, None),
        ("GET", "/tenant", 404, None),
        ("GET", "", 404, None),
    ] {
        let response = answer(method, target);
        assert_eq!(response.status, status, "{method} {target}");
        assert_eq!(header(&response, "allow"), allow, "{method} {target}");
    }
}

proptest! {
    /// Whatever a client sends, the handling answers with one of its statuses and never panics.
    #[test]
    fn any_request_gets_an_answer(
        method in prop::sample::select(vec!["GET", "HEAD", "PUT", "DELETE", "POST", "X"]),
        target in "(/tenants(/[a-z!/]{0,8})?|/metrics|/[ -~]{0,12})(\\?[ -~]{0,6})?",
        json in any::<bool>(),
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            "\\{\"script\": \"[a-z]{0,4}\"(, \"(routes|vars|secrets|limits|format)\": [\\[\\]{}\"a-z0-9:, *.-]{0,24})?\\}"
                .prop_map(String::into_bytes),
        ],
    ) {
        let control = two_tenants();
        let content_type: Option<&[u8]> = json.then_some(b"application/json");
        let request = AdminRequest { content_type, ..request(method, &target, &body) };
        let response = admin().handle(&control, &request);
        prop_assert!([200, 201, 400, 404, 405, 409].contains(&response.status), "{} {}", response.status, text(&response));
        prop_assert!(!text(&response).contains("sekrit-value"));
    }
}

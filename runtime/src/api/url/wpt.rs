//! The web-platform-tests URL cases (`url/resources/urltestdata.json`) run against both URL
//! parsers isobar could use, and against the `URL` class itself.
//!
//! The data is not kept in this repository. The `ada-url` crate ships WPT's file (891 cases,
//! the count issue 8 names) in its package on crates.io, so cargo has already downloaded it into
//! its registry cache (outside the repository) to build isobar; [`crate_file`] finds it through
//! `cargo metadata`. The npm registry was the first place looked: its search endpoint is not
//! reachable from here and no package known to ship the file could be found by name.

use std::path::PathBuf;

use serde_json::Value;

/// The text of `path` inside the source of the dependency `krate`, as cargo downloaded it: the
/// version Cargo.lock names, unpacked in cargo's registry cache (cargo unpacked it to build
/// isobar).
pub fn crate_file(krate: &str, path: &str) -> String {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lock = std::fs::read_to_string(manifest_dir.join("../Cargo.lock")).expect("Cargo.lock is readable");
    let needle = format!("name = \"{krate}\"\nversion = \"");
    let at = lock.find(&needle).unwrap_or_else(|| panic!("{krate} is not in Cargo.lock")) + needle.len();
    let version = &lock[at..at + lock[at..].find('"').expect("a quoted version")];
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME is set");
    let sources = home.join("registry/src");
    let registries = std::fs::read_dir(&sources).unwrap_or_else(|e| panic!("{}: {e}", sources.display()));
    for registry in registries.flatten() {
        let file = registry.path().join(format!("{krate}-{version}")).join(path);
        if let Ok(text) = std::fs::read_to_string(&file) {
            return text;
        }
    }
    panic!("{krate} {version} is not unpacked under {}", sources.display());
}

/// Runs the JS test worker `api/<test>` with `data` as its request body; it answers
/// `{passed, total, failures}` as JSON.
pub fn run_js_cases(test: &str, data: &str) -> (usize, usize, Vec<String>) {
    let mut worker = crate::testing::load_api_test(test);
    let request =
        crate::testing::Req { method: "POST", url: "http://example.com/", headers: &[], body: data.as_bytes() };
    let (status, body) = crate::testing::body_of(crate::testing::request(&mut worker, 1, &request));
    assert_eq!(status, 200, "{test}: {body}");
    let report: Value = serde_json::from_str(&body).expect("the test answers JSON");
    let failures =
        report["failures"].as_array().map(|f| f.iter().map(|x| x.as_str().unwrap_or("?").to_owned()).collect());
    (
        report["passed"].as_u64().unwrap_or(0) as usize,
        report["total"].as_u64().unwrap_or(0) as usize,
        failures.unwrap_or_default(),
    )
}

/// One URL case's expected components (absent for a case that must fail).
struct Case<'a> {
    input: &'a str,
    base: Option<&'a str>,
    expected: Option<[(&'static str, &'a str); 10]>,
    origin: Option<&'a str>,
}

const FIELDS: [&str; 10] =
    ["href", "protocol", "username", "password", "host", "hostname", "port", "pathname", "search", "hash"];

fn cases(data: &Value) -> Vec<Case<'_>> {
    let mut out = Vec::new();
    for case in data.as_array().expect("an array of cases") {
        // Strings in the array are comments.
        if !case.is_object() {
            continue;
        }
        let input = case["input"].as_str().expect("input");
        let base = case["base"].as_str();
        let expected = if case["failure"].as_bool() == Some(true) {
            None
        } else {
            Some(FIELDS.map(|f| (f, case[f].as_str().unwrap_or(""))))
        };
        out.push(Case { input, base, expected, origin: case["origin"].as_str() });
    }
    out
}

/// How many cases a parser gets right: `parse` gives each component (in [`FIELDS`] order) and
/// the origin, or `None` for a parse failure.
fn score(cases: &[Case], parse: impl Fn(&str, Option<&str>) -> Option<([String; 10], String)>) -> (usize, Vec<String>) {
    let mut passed = 0;
    let mut failures = Vec::new();
    for case in cases {
        let got = parse(case.input, case.base);
        let ok = match (&case.expected, &got) {
            (None, None) => true,
            (Some(expected), Some((components, origin))) => {
                expected.iter().zip(components).all(|((_, want), have)| want == have)
                    && case.origin.is_none_or(|want| want == origin)
            }
            _ => false,
        };
        if ok {
            passed += 1;
        } else {
            failures.push(format!("{:?} against {:?}: got {:?}", case.input, case.base, got.map(|g| g.0[0].clone())));
        }
    }
    (passed, failures)
}

fn with_url_crate(input: &str, base: Option<&str>) -> Option<([String; 10], String)> {
    use url::quirks;
    let url = match base {
        None => url::Url::parse(input).ok()?,
        Some(base) => url::Url::parse(base).ok()?.join(input).ok()?,
    };
    let components = [
        quirks::href(&url),
        quirks::protocol(&url),
        quirks::username(&url),
        quirks::password(&url),
        quirks::host(&url),
        quirks::hostname(&url),
        quirks::port(&url),
        quirks::pathname(&url),
        quirks::search(&url),
        quirks::hash(&url),
    ]
    .map(str::to_owned);
    Some((components, quirks::origin(&url)))
}

fn with_ada(input: &str, base: Option<&str>) -> Option<([String; 10], String)> {
    let url = ada_url::Url::parse(input, base).ok()?;
    let components = [
        url.href(),
        url.protocol(),
        url.username(),
        url.password(),
        url.host(),
        url.hostname(),
        url.port(),
        url.pathname(),
        url.search(),
        url.hash(),
    ]
    .map(str::to_owned);
    Some((components, url.origin()))
}

fn urltestdata() -> String {
    crate_file("ada-url", "tests/wpt/urltestdata.json")
}

/// The measurement behind the choice of parser: prints how many cases each passes.
#[test]
fn wpt_url_parsers() {
    let text = urltestdata();
    let data: Value = serde_json::from_str(&text).expect("urltestdata.json is JSON");
    let cases = cases(&data);
    let (url_crate, url_crate_failures) = score(&cases, with_url_crate);
    let (ada, ada_failures) = score(&cases, with_ada);
    println!("WPT urltestdata.json: {} cases", cases.len());
    println!("  url crate: {url_crate} pass, {} fail", url_crate_failures.len());
    println!("  ada-url: {ada} pass, {} fail", ada_failures.len());
    for failure in ada_failures.iter().take(20) {
        println!("  ada fails {failure}");
    }
    assert!(cases.len() >= 891, "the WPT file has {} cases", cases.len());
    assert_eq!(ada_failures, Vec::<String>::new(), "ada is the parser isobar uses");
    assert!(url_crate < ada, "the url crate was measured to fail some cases: {url_crate} of {}", cases.len());
}

/// The same cases through `new URL()` in an isolate: what a tenant's script gets.
#[test]
fn wpt_url_cases_through_the_url_class() {
    let (passed, total, failures) = run_js_cases("url/test_wpt.js", &urltestdata());
    println!("URL class: {passed} of {total} WPT cases pass");
    assert!(total >= 891, "{total} cases");
    assert_eq!(failures, Vec::<String>::new());
    assert_eq!(passed, total);
}

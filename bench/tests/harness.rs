//! CI's run of the benchmark harness: quick mode (isobar alone, no peers, seconds) against the
//! isobar binary of this test's profile, checking that it wrote a well-formed results file with
//! measurements in every scenario, and plots that parse as SVG. Benchmarks never assert
//! timings; this checks that the instrument works, not what it measures.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench/ is inside the workspace").to_path_buf()
}

/// The isobar binary of this test's profile, built with cargo (as tests/harness/lib.rs does;
/// cargo releases its lock before running tests).
fn isobar_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ISOBAR_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("test binary lives in target/<profile>/deps");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.current_dir(workspace()).args(["build", "--quiet", "-p", "isobar", "--bin", "isobar"]);
    if release {
        build.arg("--release");
    }
    assert!(build.status().expect("run cargo build").success(), "cargo build of the isobar binary failed");
    let bin = profile_dir.join("isobar");
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}

fn rounds(series: &serde_json::Value) -> usize {
    series["rounds"].as_array().map_or(0, Vec::len)
}

#[test]
fn quick_mode_writes_results_and_plots() {
    let out = std::env::temp_dir().join(format!("isobar-harness-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let output = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["quick", "--isobar"])
        .arg(isobar_bin())
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run the harness");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "harness failed:\n{stderr}\n{stdout}");
    assert!(stdout.contains("== targets =="), "no summary printed:\n{stdout}");

    let text = std::fs::read_to_string(out.join("latest-quick.json")).expect("latest-quick.json");
    let results: serde_json::Value = serde_json::from_str(&text).expect("the results are JSON");
    assert_eq!(results["mode"], "quick");

    // Switch: isobar measured at every tenant count, both variants, round-robin and one tenant.
    let groups = results["switch"]["groups"].as_array().expect("switch groups");
    assert_eq!(groups.len(), 3, "quick mode measures N = 1, 2, 10");
    for group in groups {
        let isobar = &group["systems"][0];
        assert_eq!(isobar["system"], "isobar");
        assert!(isobar["error"].is_null(), "isobar failed: {}", isobar["error"]);
        let variants = isobar["variants"].as_array().expect("variants");
        assert!(!variants.is_empty());
        for variant in variants {
            assert!(rounds(&variant["series"]) > 0, "no measurement in {variant}");
            let cpu = &variant["series"]["summary"]["server_cpu_us_per_request"]["median"];
            assert!(cpu.as_f64().is_some_and(|v| v > 0.0), "no server CPU figure in {variant}");
        }
    }
    // Cold start: isobar run launched and answered.
    let launches = results["coldstart"]["launches"].as_array().expect("launches");
    let run = launches.iter().find(|l| l["system"] == "isobar run").expect("an isobar run row");
    assert!(run["samples_ms"].as_array().is_some_and(|s| !s.is_empty()), "isobar run never answered: {run}");
    assert!(run["cpu_samples_ms"].as_array().is_some_and(|s| !s.is_empty()), "no CPU time read: {run}");
    let new_tenants = results["coldstart"]["new_tenants"].as_array().expect("new tenant rows");
    assert!(new_tenants.iter().all(|r| r["samples_ms"].as_array().is_some_and(|s| !s.is_empty())), "{new_tenants:?}");
    // Memory: RSS read for every N.
    let memory = results["memory"]["isobar"].as_array().expect("memory rows");
    assert!(memory.iter().all(|r| r["rss_after_bytes"].as_u64().is_some_and(|b| b > 0)), "{memory:?}");
    // Throughput: isobar on kernel sockets measured at every connection count.
    let kernel = &results["throughput"]["systems"][0];
    assert!(kernel["error"].is_null(), "{kernel}");
    let by_connections = kernel["by_connections"].as_array().expect("by connections");
    assert_eq!(by_connections.len(), 2);
    assert!(by_connections.iter().all(|pair| rounds(&pair[1]) > 0), "{by_connections:?}");
    // Metering: both counters read.
    let workloads = results["metering"]["workloads"].as_array().expect("metering workloads");
    assert!(workloads.len() >= 2 && workloads.iter().all(|w| w["metered_us_per_request"]["median"].is_number()));
    // KV: isobar's embedded store measured for every operation at every connection count, and
    // no request failed (a failed get would mean the keys were not written first).
    let kv = &results["kv"]["systems"][0];
    assert!(kv["error"].is_null(), "{kv}");
    let cells = kv["cells"].as_array().expect("kv cells");
    assert_eq!(cells.len(), 6, "get, put and no KV at 1 and 4 connections: {cells:?}");
    for cell in cells {
        let series = &cell["series"];
        assert!(rounds(series) > 0, "no measurement in {cell}");
        assert!(series["summary"]["server_cpu_us_per_request"]["median"].as_f64().is_some_and(|v| v > 0.0), "{cell}");
        assert_eq!(series["summary"]["failures"]["max"].as_f64(), Some(0.0), "{cell}");
    }
    // Every "Report against" target is stated.
    assert_eq!(results["targets"].as_array().map(Vec::len), Some(5));

    // Plots: each parses as XML whose root is <svg>.
    for name in ["switch.svg", "memory.svg", "coldstart.svg", "throughput.svg", "latency.svg", "cpu.svg"] {
        let path = out.join("plots").join(name);
        let svg = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let document = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{name} is not XML: {e}"));
        assert_eq!(document.root_element().tag_name().name(), "svg", "{name}");
        assert!(document.descendants().count() > 20, "{name} has almost nothing in it");
    }
    let _ = std::fs::remove_dir_all(&out);
}

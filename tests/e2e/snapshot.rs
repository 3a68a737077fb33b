//! The snapshot cache through the real binary: the first start builds V8's startup snapshot and
//! writes it to the cache, the second loads it from there; a cached file that is damaged, cut
//! short, not a snapshot, made by another build, writable or owned by another user, or a
//! symbolic link is refused with a warning that says why, the snapshot is built and written
//! again, and isobar serves all the same.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use isobar_e2e::{Isobar, TempDir, eventually};

const SETTLE: Duration = Duration::from_secs(10);

/// `isobar run examples/hello.js` with the snapshot cache in `cache` (and `extra` arguments):
/// it must answer 200; returns its log up to the start-up line.
fn run_with_cache(cache: &Path, extra: &[&str]) -> String {
    let mut args = vec!["run", "examples/hello.js", "--cores", "1", "--snapshot-cache", cache.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut isobar = Isobar::start(&args);
    let response = isobar.get("/");
    assert_eq!(response.status, 200, "{}", isobar.stderr());
    assert_eq!(response.text(), "hello from isobar\n");
    let log = eventually(SETTLE, || Some(isobar.stderr()).filter(|log| log.contains("start-up took")))
        .unwrap_or_else(|| isobar.stderr());
    isobar.terminate();
    assert_eq!(isobar.wait_exit(SETTLE), Some(0), "{}", isobar.stderr());
    log
}

/// The snapshot files in `cache`.
fn cached(cache: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(cache).map(|entries| entries.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    files.retain(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("snapshot-")));
    files.sort();
    files
}

/// The first start builds the snapshot and caches it; the second loads it from the cache.
#[test]
fn the_second_start_loads_the_snapshot_the_first_cached() {
    let dir = TempDir::new("snapshot-cache");
    let cache = dir.path().join("cache");

    let log = run_with_cache(&cache, &[]);
    assert!(log.contains("no snapshot in the cache yet"), "{log}");
    assert!(log.contains("snapshot written to the cache"), "{log}");
    assert!(log.contains("V8 + snapshot built"), "{log}");
    let files = cached(&cache);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(std::fs::metadata(&files[0]).unwrap().mode() & 0o777, 0o600, "only its user reads the file");
    assert_eq!(std::fs::metadata(&cache).unwrap().mode() & 0o777, 0o700, "nor the directory");

    let log = run_with_cache(&cache, &[]);
    assert!(log.contains(&format!("snapshot loaded from the cache {}", files[0].display())), "{log}");
    assert!(log.contains("V8 + snapshot from the cache"), "{log}");
    assert!(!log.contains("building"), "{log}");
    assert_eq!(cached(&cache), files, "nothing new was written");

    // Other V8 flags are another key: their snapshot is built and cached beside the first.
    let log = run_with_cache(&cache, &["--v8-flags", "--stack-size=900"]);
    assert!(log.contains("no snapshot in the cache yet"), "{log}");
    assert_eq!(cached(&cache).len(), 2);
    let log = run_with_cache(&cache, &[]);
    assert!(log.contains("snapshot loaded from the cache"), "{log}");

    // Off is off: nothing read, nothing written.
    let mut isobar = Isobar::start(&["run", "examples/hello.js", "--cores", "1", "--snapshot-cache", "off"]);
    assert_eq!(isobar.get("/").status, 200);
    let log = eventually(SETTLE, || Some(isobar.stderr()).filter(|log| log.contains("start-up took")))
        .unwrap_or_else(|| isobar.stderr());
    isobar.terminate();
    assert_eq!(isobar.wait_exit(SETTLE), Some(0));
    assert!(
        log.contains("V8 + snapshot built") && !log.contains("snapshot cache") && !log.contains("to the cache"),
        "{log}"
    );
}

/// Every way a cached file can be unfit is refused before V8 sees it, named in a warning, and
/// mended: the snapshot is built, served from, and written again, so the next start loads it.
#[test]
fn an_unfit_cached_snapshot_is_refused_rebuilt_and_replaced() {
    let dir = TempDir::new("snapshot-cache-unfit");
    let cache = dir.path().join("cache");
    run_with_cache(&cache, &[]);
    let file = cached(&cache).pop().expect("the first start cached its snapshot");
    let sound = std::fs::read(&file).unwrap();

    let damaged = {
        let mut bytes = sound.clone();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        bytes
    };
    let other_build = {
        // The key (bytes 16..24) of another binary or other flags, with a sound checksum.
        let mut bytes = sound.clone();
        bytes[16] ^= 1;
        bytes
    };
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("damaged", damaged, "damaged (length or checksum differs)"),
        ("cut short", sound[..sound.len() / 2].to_vec(), "damaged (length or checksum differs)"),
        ("cut in the header", sound[..20].to_vec(), "cut short (20 bytes)"),
        ("garbage", b"#!/bin/sh\necho this is not a snapshot\n".to_vec(), "not an isobar snapshot file"),
        ("another build", other_build, "made by another isobar build or with other V8 flags"),
    ];
    for (case, bytes, why) in cases {
        std::fs::write(&file, &bytes).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let log = run_with_cache(&cache, &[]);
        assert!(log.contains("not using the cached snapshot") && log.contains(why), "{case}: {log}");
        assert!(log.contains("snapshot written to the cache"), "{case}: rewritten\n{log}");
        // Rebuilt, not restored: V8's snapshots of the same build differ byte for byte (hash
        // seeds, addresses), so the next start's load is the proof that it is sound.
        let rewritten = std::fs::read(&file).unwrap();
        assert!(rewritten != bytes && rewritten.len() > 100_000, "{case}: a new snapshot was written");
        let log = run_with_cache(&cache, &[]);
        assert!(log.contains("snapshot loaded from the cache"), "{case}: then used\n{log}");
    }

    // A file other users may write to is not read, whatever it holds.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let log = run_with_cache(&cache, &[]);
    assert!(log.contains("not using the cached snapshot") && log.contains("other users may write"), "{log}");
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600, "replaced by a private file");

    // Nor one that belongs to another user (the tests run as root, who can make one).
    std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
    let log = run_with_cache(&cache, &[]);
    assert!(log.contains("belongs to uid 65534"), "{log}");
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), own_uid(), "replaced by this user's file");

    // Nor a symbolic link, even to a sound snapshot.
    let elsewhere = dir.path().join("elsewhere.bin");
    std::fs::copy(&file, &elsewhere).unwrap();
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
    let log = run_with_cache(&cache, &[]);
    assert!(log.contains("not using the cached snapshot"), "{log}");
    assert!(!std::fs::symlink_metadata(&file).unwrap().file_type().is_symlink(), "the link was replaced");

    // A cache directory other users may write to is not used at all; isobar serves anyway.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let log = run_with_cache(&cache, &[]);
    assert!(log.contains("not using the snapshot cache") && log.contains("other users may write"), "{log}");
    assert!(log.contains("V8 + snapshot built"), "{log}");
}

/// The cached snapshot is mapped for a fast start, then copied out of the mapping: a file cut
/// short in place after that (by hand: isobar itself replaces files by renaming) would have taken
/// the mapped pages with it, and the next isolate made from them would have been SIGBUS for the
/// whole process. Here each spin loses its isolate (CPU limit), so new ones are made from the
/// snapshot after the file is emptied.
#[test]
fn a_cached_snapshot_cut_short_after_the_start_stops_nothing() {
    let dir = TempDir::new("snapshot-cache-cut");
    let cache = dir.path().join("cache");
    run_with_cache(&cache, &[]);
    let file = cached(&cache).pop().expect("the first start cached its snapshot");
    let script = dir.write(
        "spin.js",
        "export default { fetch(request) {\n  if (new URL(request.url).pathname === '/spin') for (;;) {}\n  \
         return new Response('served');\n} };\n",
    );
    let args = [
        "run",
        script.to_str().unwrap(),
        "--cores",
        "1",
        "--cpu-ms",
        "50",
        "--snapshot-cache",
        cache.to_str().unwrap(),
        "--log",
        "info,isobar=debug",
    ];
    let mut isobar = Isobar::start(&args);
    assert_eq!(isobar.get("/").text(), "served");
    let log = eventually(SETTLE, || Some(isobar.stderr()).filter(|log| log.contains("copied out of its file")))
        .unwrap_or_else(|| isobar.stderr());
    assert!(log.contains("snapshot loaded from the cache"), "{log}");
    assert!(log.contains("copied out of its file"), "{log}");

    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(0).unwrap();
    for round in 0..3 {
        assert_eq!(isobar.get("/spin").status, 503, "round {round}: {}", isobar.stderr());
        let response = isobar.get("/");
        assert_eq!(
            (response.status, response.text()),
            (200, "served".to_string()),
            "round {round}: {}",
            isobar.stderr()
        );
    }
    assert!(isobar.is_running(), "{}", isobar.stderr());
    isobar.terminate();
    assert_eq!(isobar.wait_exit(SETTLE), Some(0), "{}", isobar.stderr());
}

/// This test's user (isobar's too): whose files the cache must hold.
fn own_uid() -> u32 {
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0)
}

/// `isobar run` compiles its script and runs the top level in one isolate now: a top level that
/// throws, or that sets up no handler, is still a start-up error naming the file, and a module
/// with imports and a service worker still serve.
#[test]
fn run_still_checks_the_top_level_before_serving() {
    let dir = TempDir::new("run-top-level");
    let throws = dir.write("throws.js", "throw new Error('top level says no');\nexport default { fetch() {} };\n");
    let (code, stderr) =
        isobar_e2e::run_expecting_failure(&["run", throws.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("throws.js") && stderr.contains("top level says no"), "{stderr}");

    let idle = dir.write("idle.js", "globalThis.x = 1;\n");
    let (code, stderr) = isobar_e2e::run_expecting_failure(&["run", idle.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("idle.js") && stderr.contains("no fetch handler"), "{stderr}");

    dir.write("greeting.js", "export const greeting = 'hi from an import';\n");
    let main = dir.write(
        "main.js",
        "import { greeting } from './greeting.js';\nexport default { fetch() { return new Response(greeting); } };\n",
    );
    let isobar = Isobar::start(&["run", main.to_str().unwrap(), "--cores", "1"]);
    assert_eq!(isobar.get("/").text(), "hi from an import");
    let isobar = Isobar::start(&["run", "examples/service-worker.js", "--cores", "1"]);
    assert_eq!(isobar.connect().request("DELETE", "/thing", &[], b"").text(), "service worker saw DELETE /thing\n");
}

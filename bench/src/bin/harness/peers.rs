//! The systems isobar is compared with, made ready once per run: workerd, deno and bun from the
//! npm registry (pinned versions, installed with npm into the harness's cache directory and
//! reused while the versions match), node from the machine, and the native responder compiled
//! from bench/native/responder.c with the machine's C compiler. A peer that cannot be made
//! ready is an `Err` with the reason, which becomes a row saying so; it never stops the run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

/// The npm packages and the versions the figures were taken with.
const NPM_PACKAGES: [(&str, &str); 3] = [("workerd", "1.20261123.1"), ("bun", "1.4.5"), ("deno", "2.9.6")];

/// A ready peer: the program to run and what it says its version is.
#[derive(Clone, Debug, Serialize)]
pub struct Peer {
    pub program: PathBuf,
    pub version: String,
}

/// Every peer, or why it is missing.
#[derive(Debug)]
pub struct Peers {
    pub node: Result<Peer, String>,
    pub bun: Result<Peer, String>,
    pub deno: Result<Peer, String>,
    pub workerd: Result<Peer, String>,
    pub responder: Result<Peer, String>,
}

impl Peers {
    /// No peers (quick mode): each says so.
    pub fn none() -> Peers {
        let off = || Err("not run in this mode".to_string());
        Peers { node: off(), bun: off(), deno: off(), workerd: off(), responder: off() }
    }

    /// Installs or finds every peer under `cache`.
    pub fn prepare(cache: &Path, workspace: &Path) -> Peers {
        let npm_dir = cache.join("npm");
        let installed = install_npm(&npm_dir);
        let from_npm = |name: &str| -> Result<Peer, String> {
            installed.clone()?;
            let program = npm_dir.join("node_modules/.bin").join(name);
            version(&program, &["--version"])
        };
        Peers {
            node: which("node").and_then(|p| version(&p, &["--version"])),
            bun: from_npm("bun"),
            deno: from_npm("deno"),
            workerd: from_npm("workerd"),
            responder: compile_responder(cache, workspace),
        }
    }

    /// Name -> version or reason, for the results file.
    pub fn describe(&self) -> serde_json::Value {
        let entry = |peer: &Result<Peer, String>| match peer {
            Ok(peer) => serde_json::json!({ "version": peer.version, "program": peer.program }),
            Err(reason) => serde_json::json!({ "missing": reason }),
        };
        serde_json::json!({
            "node": entry(&self.node),
            "bun": entry(&self.bun),
            "deno": entry(&self.deno),
            "workerd": entry(&self.workerd),
            "responder": entry(&self.responder),
        })
    }
}

fn which(name: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| format!("{name} is not on PATH"))
}

fn version(program: &Path, args: &[&str]) -> Result<Peer, String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} --version failed: {}",
            program.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    // "deno 2.9.6 (stable, ...)", "workerd 2026-11-23", "v20.20.2", "1.4.5": the first word
    // that starts with a digit (or v and a digit).
    let text = String::from_utf8_lossy(&output.stdout);
    let first = text.lines().next().unwrap_or("").trim();
    let version = first
        .split_whitespace()
        .find(|w| w.trim_start_matches('v').starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(first)
        .to_string();
    Ok(Peer { program: program.to_path_buf(), version })
}

/// `npm install` of the pinned packages, skipped when they are already there.
fn install_npm(dir: &Path) -> Result<(), String> {
    let present = NPM_PACKAGES.iter().all(|(name, wanted)| {
        let manifest = dir.join("node_modules").join(name).join("package.json");
        std::fs::read_to_string(manifest)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|v| v["version"] == *wanted)
            && dir.join("node_modules/.bin").join(name).exists()
    });
    if present {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let npm = which("npm")?;
    eprintln!("harness: installing {} from npm into {}", package_list().join(" "), dir.display());
    let output = Command::new(npm)
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(dir)
        .args(package_list())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run npm: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("npm install failed: {}", stderr.lines().last().unwrap_or("").trim()));
    }
    Ok(())
}

fn package_list() -> Vec<String> {
    NPM_PACKAGES.iter().map(|(name, version)| format!("{name}@{version}")).collect()
}

/// bench/native/responder.c compiled into the cache (again when the source is newer).
pub fn compile_responder(cache: &Path, workspace: &Path) -> Result<Peer, String> {
    let source = workspace.join("bench/native/responder.c");
    let binary = cache.join("responder");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = matches!((modified(&source), modified(&binary)), (Some(s), Some(b)) if b >= s);
    if !fresh {
        std::fs::create_dir_all(cache).map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let output = Command::new(&cc)
            .args(["-O2", "-Wall", "-o"])
            .arg(&binary)
            .arg(&source)
            .arg("-lpthread")
            .output()
            .map_err(|e| format!("cannot run the C compiler {cc}: {e}"))?;
        if !output.status.success() {
            return Err(format!("{cc} failed on responder.c: {}", String::from_utf8_lossy(&output.stderr).trim()));
        }
    }
    Ok(Peer { program: binary, version: format!("responder.c, {}", cc_version()) })
}

fn cc_version() -> String {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    Command::new(cc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_string))
        .unwrap_or_else(|| "cc".into())
}

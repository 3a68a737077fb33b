//! Module types end to end: a Worker importing a WebAssembly module, a JSON file and a text
//! file, under `run` (read from disk) and `serve` (bundled at deploy; the cores load from the
//! bundle), and `eval` refused. Files are written into a fresh temporary directory.

use isobar_e2e::{Isobar, TempDir};

/// `add(i32, i32) -> i32` as a WebAssembly binary, by hand: magic and version, then the type,
/// function, export and code sections.
const ADD_WASM: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x07, 0x01, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f, 0x03, 0x02,
    0x01, 0x00, 0x07, 0x07, 0x01, 0x03, b'a', b'd', b'd', 0x00, 0x00, 0x0a, 0x09, 0x01, 0x07, 0x00, 0x20, 0x00, 0x20,
    0x01, 0x6a, 0x0b,
];

const MAIN: &str = r#"
import add from "./add.wasm";
import settings from "./settings.json";
import greeting from "./greeting.txt";
const instance = new WebAssembly.Instance(add);
export default {
  fetch(request) {
    const n = Number(new URL(request.url).searchParams.get("n") ?? "1");
    let evalRefused = false;
    try { eval("1"); } catch (e) { evalRefused = e instanceof EvalError; }
    return new Response(`${greeting.trim()} ${instance.exports.add(n, settings.offset)} eval refused: ${evalRefused}\n`);
  },
};
"#;

fn worker_dir() -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new("modules");
    let main = dir.write("main.js", MAIN);
    std::fs::write(dir.path().join("add.wasm"), ADD_WASM).unwrap();
    dir.write("settings.json", r#"{ "offset": 40 }"#);
    dir.write("greeting.txt", "hello from a text module\n");
    (dir, main)
}

#[test]
fn a_worker_imports_wasm_json_and_text_modules() {
    let (dir, main) = worker_dir();
    let isobar = Isobar::start(&["run", main.to_str().unwrap()]);
    let r = isobar.get("/?n=2");
    assert_eq!((r.status, r.text().as_str()), (200, "hello from a text module 42 eval refused: true\n"));

    // Under serve the modules are bundled at load; the cores never read the directory again.
    let config = dir.write(
        "isobar.toml",
        &format!("[[tenant]]\nname = \"wasm\"\nscript = \"{}\"\nroutes = [\"*\"]\n", main.display()),
    );
    let served = Isobar::serve(&config, &["--cores", "2"]);
    std::fs::remove_file(dir.path().join("add.wasm")).unwrap();
    for n in 0..4 {
        let r = served.get(&format!("/?n={n}"));
        assert_eq!(r.text(), format!("hello from a text module {} eval refused: true\n", n + 40));
    }
}

#[test]
fn a_broken_wasm_module_is_a_start_up_error() {
    let dir = TempDir::new("modules-bad");
    let main =
        dir.write("main.js", "import m from './bad.wasm'; export default { fetch() { return new Response('x'); } }");
    std::fs::write(dir.path().join("bad.wasm"), b"\0asm\x01\0\0\0\xff").unwrap();
    let (code, stderr) = isobar_e2e::run_expecting_failure(&["run", main.to_str().unwrap()]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("bad.wasm"), "{stderr}");
}

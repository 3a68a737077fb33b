//! Form uploads from a client to a Worker, against the real binary under `isobar run`: a
//! multipart/form-data body with a text field and a binary file (every byte value, CRLFs and the
//! boundary's text inside it), parsed by `request.formData()`; a urlencoded body; a multipart body cut
//! short, which the script sees as a TypeError while the process goes on serving.

use isobar_e2e::{Isobar, TempDir};

const WORKER: &str = r#"
const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
export default {
  async fetch(request) {
    let form;
    try {
      form = await request.formData();
    } catch (e) {
      return new Response(`${e.name}: ${e.message}`, { status: 400 });
    }
    const lines = [];
    for (const [name, value] of form) {
      if (typeof value === "string") {
        lines.push(`${name}=${JSON.stringify(value)}`);
      } else {
        const bytes = await value.arrayBuffer();
        const digest = hex(await crypto.subtle.digest("SHA-256", bytes));
        lines.push(`${name}: File ${JSON.stringify(value.name)} ${value.type} ${value.size} bytes sha256 ${digest}`);
      }
    }
    return new Response(lines.join("\n") + "\n");
  },
};
"#;

const BOUNDARY: &str = "----isobar-e2e-7d2c";

/// The file's bytes: every byte value, blank lines, and the boundary's text where a body may
/// hold it (not after a CRLF: RFC 2046 keeps a delimiter line out of every part).
fn file_bytes() -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..=255u8).collect();
    bytes.extend_from_slice(b"\r\n\r\nab--");
    bytes.extend_from_slice(BOUNDARY.as_bytes());
    bytes.extend_from_slice(b"--\r\nend");
    bytes
}

fn multipart(file: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
    body.extend_from_slice(b"Content-Disposition: form-data; name=\"title\"\r\n\r\n");
    body.extend_from_slice("caf\u{e9} & co\r\nline two".as_bytes());
    body.extend_from_slice(format!("\r\n--{BOUNDARY}\r\n").as_bytes());
    body.extend_from_slice(b"Content-Disposition: form-data; name=\"upload\"; filename=\"data.bin\"\r\n");
    body.extend_from_slice(b"Content-Type: application/octet-stream\r\n\r\n");
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_worker_parses_multipart_and_urlencoded_uploads() {
    let dir = TempDir::new("forms");
    let main = dir.write("forms.js", WORKER);
    let isobar = Isobar::start(&["run", main.to_str().unwrap()]);
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let file = file_bytes();

    let response = isobar.connect().request("POST", "/", &[("content-type", &content_type)], &multipart(&file));
    assert_eq!(response.status, 200, "{}", response.text());
    let expected = format!(
        "title=\"café & co\\r\\nline two\"\nupload: File \"data.bin\" application/octet-stream {} bytes sha256 {}\n",
        file.len(),
        sha256_hex(&file)
    );
    assert_eq!(response.text(), expected);

    let form = [("content-type", "application/x-www-form-urlencoded")];
    let response = isobar.connect().request("POST", "/", &form, b"a=1&b=two+words&a=%E2%9C%93&empty=");
    assert_eq!(response.text(), "a=\"1\"\nb=\"two words\"\na=\"✓\"\nempty=\"\"\n");

    // Cut before the closing boundary: the script gets a TypeError, the process serves on.
    let mut cut = multipart(&file);
    cut.truncate(cut.len() - 40);
    let response = isobar.connect().request("POST", "/", &[("content-type", &content_type)], &cut);
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(response.text().starts_with("TypeError: "), "{}", response.text());
    let response = isobar.connect().request("POST", "/", &[("content-type", &content_type)], &multipart(b"again"));
    assert!(
        response.text().contains("upload: File \"data.bin\" application/octet-stream 5 bytes"),
        "{}",
        response.text()
    );
}

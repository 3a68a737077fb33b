//! Links the `isobar` binary with packed relative relocations (`-z pack-relative-relocs`,
//! DT_RELR). V8 makes the binary position-independent code with ~73,000 relative
//! relocations; as RELA entries they are 1.7 MB that the dynamic loader reads (page faults) and
//! applies on every start, before `main`. Packed, the table is a few kilobytes. glibc has read
//! DT_RELR since 2.36 (Debian 12). Not for the static guest build (`+crt-static`), whose
//! self-relocation is left as it was.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" && !features.split(',').any(|f| f == "crt-static") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

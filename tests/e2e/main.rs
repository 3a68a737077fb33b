#[test]
fn nested() { let o = isobar_e2e::build(); eprintln!("{}", String::from_utf8_lossy(&o.stderr)); assert!(o.status.success()); }

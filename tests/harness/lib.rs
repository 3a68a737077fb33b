pub fn build() -> std::process::Output {
    std::process::Command::new(env!("CARGO")).args(["build", "-p", "isobar", "--bin", "isobar"]).current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).output().unwrap()
}

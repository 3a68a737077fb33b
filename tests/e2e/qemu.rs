//! The unikernel-style image: isobar as /init of a minimal Linux guest, booted in QEMU (TCG
//! here: this machine kind has no working KVM), reached through user-mode networking forwarded
//! to a loopback port. Each test builds its own image from the built isobar binary, boots it
//! with a hard timeout, and never retries.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use isobar_e2e::{TempDir, isobar_bin, workspace};
use isobar_qemu::{BootOptions, ImageOptions, Vm, build_image, http_get};

/// Every QEMU test finishes within this, boot to power-off.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

fn image(dir: &TempDir, config: &str, scripts: &[(&str, &str)]) -> PathBuf {
    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(config_dir.join("isobar.toml"), config).unwrap();
    for (name, source) in scripts {
        std::fs::write(config_dir.join(name), source).unwrap();
    }
    let out = dir.path().join("image");
    build_image(&ImageOptions {
        isobar: isobar_bin().to_path_buf(),
        config: config_dir.join("isobar.toml"),
        out: out.clone(),
        cache: workspace().join("qemu/out/cache"),
        kernel_package: None,
    })
    .unwrap_or_else(|e| panic!("building the image: {e:#}"));
    out
}

fn boot(dir: &TempDir, image: PathBuf, cmdline: &str) -> Vm {
    Vm::boot(&BootOptions {
        image,
        port: 0,
        serial_log: dir.path().join("serial.log"),
        cmdline: cmdline.to_string(),
        memory_mb: 512,
        cpus: 2,
    })
    .unwrap_or_else(|e| panic!("starting QEMU: {e:#}"))
}

/// GET through the forwarded port, retried while the forwarding settles.
fn get(vm: &Vm, host: &str, deadline: Instant) -> (u16, String) {
    loop {
        match http_get(vm.addr(), host, "/", Duration::from_secs(20)) {
            Ok(answer) => return answer,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "no answer from the guest for {host}: {error:#}\nconsole:\n{}",
                    vm.console()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn serve_two_tenants_and_power_off(label: &str, cmdline: &str, expected_net: &str) {
    let dir = TempDir::new(label);
    // TCG runs the guest some 30 times slower than the host, and two tests' VMs share two host
    // cores, which the guest's CPU clocks count too: a tenant's first request (its isolate made,
    // its module evaluated) can take more than the default 50 ms of guest CPU time.
    let config = "[server]\nlisten = \"127.0.0.1:8080\"\n[defaults.limits]\ncpu_ms = 2000\n\
        [[tenant]]\nname = \"alpha\"\nscript = \"alpha.js\"\nroutes = [\"alpha.test\"]\nvars = { WHO = \"alpha\" }\n\
        [[tenant]]\nname = \"beta\"\nscript = \"beta.js\"\nroutes = [\"beta.test\"]\n";
    let image = image(
        &dir,
        config,
        &[
            ("alpha.js", "export default { fetch(r, env) { return new Response(`hello from ${env.WHO}`); } };"),
            (
                "beta.js",
                "addEventListener('fetch', e => e.respondWith(new Response('beta via ' + new URL(e.request.url).host)));",
            ),
        ],
    );
    let started = Instant::now();
    let mut vm = boot(&dir, image, cmdline);
    let deadline = started + BOOT_TIMEOUT;
    vm.wait_for("isobar listening", BOOT_TIMEOUT).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(get(&vm, "alpha.test", deadline), (200, "hello from alpha".to_string()));
    assert_eq!(get(&vm, "beta.test", deadline), (200, "beta via beta.test".to_string()));
    let (status, body) = get(&vm, "nobody.test", deadline);
    assert_eq!(status, 404, "{body}");
    let console = vm.console();
    assert!(console.contains("isobar: init at guest uptime"), "{console}");
    assert!(console.contains(&format!("network {expected_net} ready")), "{console}");
    assert!(console.contains("2 core(s)"), "one scheduler per vCPU:\n{console}");
    assert!(
        console.contains("snapshot loaded from /lib/isobar/snapshot.bin"),
        "the image's snapshot is used:\n{console}"
    );

    vm.power_button().unwrap();
    let status = vm.wait_exit(deadline.saturating_duration_since(Instant::now())).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(status.success(), "QEMU exit {status}; console:\n{}", vm.console());
    let console = vm.console();
    assert!(console.contains("draining"), "the power button drained isobar:\n{console}");
    assert!(console.contains("isobar: stopped; powering off"), "{console}");
    assert!(console.contains("reboot: Power down"), "{console}");
    assert!(!console.contains("Kernel panic"), "{console}");
    assert!(started.elapsed() < BOOT_TIMEOUT);
}

#[test]
fn the_guest_serves_two_tenants_on_its_userspace_stack_and_powers_off_cleanly() {
    // The default: smoltcp on AF_PACKET on the virtio-net interface.
    serve_two_tenants_and_power_off("qemu-packet", "", "packet:eth0");
}

#[test]
fn the_guest_serves_over_kernel_sockets_when_asked() {
    serve_two_tenants_and_power_off("qemu-kernel", "isobar.net=kernel", "kernel");
}

#[test]
fn a_broken_config_is_shown_on_the_console_and_the_guest_powers_off() {
    let dir = TempDir::new("qemu-broken");
    let config = "[server]\nlisten = \"127.0.0.1:8080\"\n\n[[tenant]]\nname = \"alpha\"\nscript = \"alpha.js\"\nroutes = [\"alpha.test\"]\ncpu = 5\n";
    let image = image(&dir, config, &[("alpha.js", "export default { fetch() { return new Response('x'); } };")]);
    let started = Instant::now();
    let mut vm = boot(&dir, image, "");
    let status = vm.wait_exit(BOOT_TIMEOUT).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(status.success(), "QEMU exit {status}; console:\n{}", vm.console());
    let console = vm.console();
    assert!(console.contains("/etc/isobar/isobar.toml:8:1:"), "the error names file, line and column:\n{console}");
    assert!(console.contains("unknown key `cpu`"), "{console}");
    assert!(console.contains("isobar: fatal:"), "{console}");
    assert!(console.contains("reboot: Power down"), "a clean power-off, not a panic loop:\n{console}");
    assert!(!console.contains("Kernel panic"), "{console}");
    assert!(started.elapsed() < BOOT_TIMEOUT);
}

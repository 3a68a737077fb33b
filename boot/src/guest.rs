//! isobar as `/init` of a minimal Linux guest: the PID-1 duties, then `serve` with the settings
//! of the kernel command line, then power off. PID 1 must never exit (the kernel would panic), so
//! every path, success or error, ends in [`kernel_shim::pid1::power_off`].

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kernel_shim::pid1;

/// Where the image keeps the V8 snapshot made at image build time (`isobar snapshot`), if it
/// has one; `isobar.snapshot=PATH` on the kernel command line names another.
const SNAPSHOT: &str = "/lib/isobar/snapshot.bin";

/// Runs the guest and powers the machine off at the end. Never returns.
pub fn main() -> ! {
    if let Err(error) = pid1::mount_pseudo_filesystems() {
        // No console yet, maybe: the kernel's /dev/console from the initramfs is stdout.
        eprintln!("isobar: fatal: {error}");
        pid1::power_off();
    }
    if let Err(error) = pid1::attach_console() {
        eprintln!("isobar: fatal: {error}");
        pid1::power_off();
    }
    let uptime = pid1::uptime().map(|u| u.as_secs_f64()).unwrap_or(0.0);
    println!("isobar: init at guest uptime {uptime:.3}s");
    pid1::route_ctrl_alt_del_to_init();
    match run() {
        Ok(()) => println!("isobar: stopped; powering off"),
        Err(error) => println!("isobar: fatal: {error:#}\nisobar: powering off"),
    }
    pid1::power_off();
}

fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let loaded = pid1::load_modules(std::path::Path::new("/lib/modules/load-order"))?;
    let settings = pid1::cmdline_settings("isobar.")?;
    let config = PathBuf::from(settings.get("config").map(String::as_str).unwrap_or("/etc/isobar/isobar.toml"));
    kernel_shim::link::set_up("lo").map_err(anyhow::Error::from)?;
    // The userspace stack on AF_PACKET when it can be had, kernel sockets otherwise.
    let mut net = settings.get("net").cloned().unwrap_or_else(|| "packet:eth0".to_string());
    if let Some(interface) = net.strip_prefix("packet:") {
        wait_for_interface(interface, Duration::from_secs(10))?;
        let probe = kernel_shim::link::set_up(interface)
            .and_then(|()| kernel_shim::link::open_packet(interface, 0xfffe, false));
        if let Err(error) = probe {
            println!("isobar: init: AF_PACKET on {interface} unavailable ({error}); using kernel sockets");
            net = "kernel".to_string();
        }
    }
    if net == "kernel" {
        configure_kernel_network(&settings)?;
    }
    println!("isobar: init: {loaded} module(s) loaded, network {net} ready in {:.3}s", started.elapsed().as_secs_f64());
    // The power button (QEMU's system_powerdown) drains like SIGTERM.
    if let Some(mut button) = pid1::open_power_button() {
        std::thread::Builder::new().name("isobar-power-button".into()).spawn(move || {
            if pid1::wait_power_button(&mut button).is_ok() {
                let _ = kernel_shim::signal::raise_in_process(kernel_shim::signal::Signal::Terminate);
            }
        })?;
    }
    let listen = settings
        .get("listen")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(std::net::SocketAddr::from(([0, 0, 0, 0], 8080)));
    let args = crate::cli::ServeArgs {
        config,
        listen: Some(listen),
        admin: None,
        cores: None,
        v8_flags: None,
        // The image's snapshot, made at image build time by this binary, is the guest's
        // equivalent of one embedded in the binary; no cache: nothing written to the
        // initramfs survives the boot.
        snapshot: crate::cli::SnapshotSource {
            snapshot: Some(PathBuf::from(settings.get("snapshot").map(String::as_str).unwrap_or(SNAPSHOT)))
                .filter(|path| path.exists()),
            snapshot_cache: Some(PathBuf::from("off")),
        },
        network: crate::cli::NetArgs {
            net: Some(net),
            ip: settings.get("ip").cloned(),
            gateway: settings.get("gateway").cloned(),
            dns: settings.get("dns").cloned(),
            ca_files: Vec::new(),
        },
        hardening: crate::cli::HardeningArgs {
            // `isobar.startup_cpu_ms=`: QEMU without KVM runs isobar many times slower, and the
            // guest's CPU clock counts that.
            startup_cpu_ms: match settings.get("startup_cpu_ms") {
                Some(ms) => ms.parse().map_err(|e| anyhow::anyhow!("isobar.startup_cpu_ms={ms}: {e}"))?,
                None => crate::cli::STARTUP_CPU_MS_DEFAULT,
            },
            ..crate::cli::HardeningArgs::default()
        },
    };
    let code = crate::serve(args, crate::snapshot::Timeline::new())?;
    if code != std::process::ExitCode::SUCCESS {
        anyhow::bail!("isobar stopped with a failure");
    }
    Ok(())
}

/// Gives `eth0` the address and default route of `isobar.ip` / `isobar.gateway` (kernel-socket
/// networking), once the virtio-net driver has created it.
fn configure_kernel_network(settings: &std::collections::BTreeMap<String, String>) -> anyhow::Result<()> {
    let Some(ip) = settings.get("ip") else { return Ok(()) };
    let (addr, prefix) = ip.split_once('/').unwrap_or((ip.as_str(), "24"));
    let addr: Ipv4Addr = addr.parse().map_err(|e| anyhow::anyhow!("isobar.ip={ip}: {e}"))?;
    let prefix: u8 = prefix.parse().map_err(|e| anyhow::anyhow!("isobar.ip={ip}: {e}"))?;
    let device = settings.get("device").map(String::as_str).unwrap_or("eth0");
    wait_for_interface(device, Duration::from_secs(10))?;
    kernel_shim::link::set_ipv4(device, addr, prefix)?;
    kernel_shim::link::set_up(device)?;
    if let Some(gateway) = settings.get("gateway") {
        let gateway: Ipv4Addr = gateway.parse().map_err(|e| anyhow::anyhow!("isobar.gateway={gateway}: {e}"))?;
        pid1::add_default_route(gateway).map_err(|e| anyhow::anyhow!("default route via {gateway}: {e}"))?;
    }
    Ok(())
}

/// Network devices appear a moment after their driver loads.
pub fn wait_for_interface(name: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !std::path::Path::new("/sys/class/net").join(name).exists() {
        if Instant::now() > deadline {
            anyhow::bail!("no network interface {name} after {timeout:?} (is the virtio-net driver in the image?)");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

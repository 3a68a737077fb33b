//! `isobar-qemu image` builds the guest image; `isobar-qemu boot` boots it and prints the boot
//! timeline. See the crate docs and qemu/README.md.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use isobar_qemu::{BootOptions, ImageOptions, Vm, build_image, http_get};

#[derive(Debug, Parser)]
#[command(name = "isobar-qemu", about = "Build and boot isobar's unikernel-style QEMU image")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build vmlinux + initramfs.cpio (isobar as /init, its config directory, kernel modules).
    Image {
        /// The isobar configuration the guest serves (its directory goes into the image).
        #[arg(long, default_value = "examples/isobar.toml")]
        config: PathBuf,
        /// The isobar binary to use as /init.
        #[arg(long, default_value = "target/release/isobar")]
        isobar: PathBuf,
        #[arg(long, default_value = "qemu/out/image")]
        out: PathBuf,
        #[arg(long, default_value = "qemu/out/cache")]
        cache: PathBuf,
        /// A Debian kernel package (default: the newest linux-image-6.1.0-*-amd64).
        #[arg(long)]
        kernel: Option<String>,
    },
    /// Boot the image in QEMU (KVM if it works, TCG otherwise) and print the boot timeline.
    Boot {
        #[arg(long, default_value = "qemu/out/image")]
        image: PathBuf,
        /// Loopback port forwarded to the guest's port 8080.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Host header of the first request (the timeline's "first response").
        #[arg(long, default_value = "localhost")]
        host: String,
        #[arg(long, default_value = "qemu/out/serial.log")]
        serial: PathBuf,
        /// Extra kernel command-line words, e.g. "isobar.net=packet:eth0".
        #[arg(long, default_value = "")]
        cmdline: String,
        #[arg(long, default_value_t = 512)]
        memory_mb: u32,
        #[arg(long, default_value_t = 2)]
        cpus: u32,
        /// Press the power button after the first response and wait for the guest to power off.
        #[arg(long)]
        then_poweroff: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Image { config, isobar, out, cache, kernel } => {
            let started = Instant::now();
            let image = build_image(&ImageOptions { isobar, config, out: out.clone(), cache, kernel_package: kernel })?;
            let size = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len() as f64 / 1e6).unwrap_or(0.0);
            println!(
                "image in {} ({:.1}s): vmlinux {:.1} MB (kernel {}), initramfs.cpio {:.1} MB, modules: {}",
                out.display(),
                started.elapsed().as_secs_f64(),
                size(&image.vmlinux),
                image.kernel_release,
                size(&image.initramfs),
                image.modules.join(" ")
            );
        }
        Cmd::Boot { image, port, host, serial, cmdline, memory_mb, cpus, then_poweroff, timeout } => {
            let timeout = Duration::from_secs(timeout);
            let mut vm = Vm::boot(&BootOptions { image, port, serial_log: serial.clone(), cmdline, memory_mb, cpus })?;
            println!("qemu started ({}, console in {})", vm.accel, serial.display());
            let kernel = vm.wait_for("Linux version", timeout)?;
            println!("  {:>8.3}s kernel", kernel.as_secs_f64());
            let init = vm.wait_for("isobar: init", timeout)?;
            println!("  {:>8.3}s /init (isobar)", init.as_secs_f64());
            let listening = vm.wait_for("isobar listening", timeout)?;
            println!("  {:>8.3}s listening", listening.as_secs_f64());
            let deadline = Instant::now() + timeout;
            let (status, body) = loop {
                match http_get(vm.addr(), &host, "/", Duration::from_secs(10)) {
                    Ok(answer) => break answer,
                    Err(error) if Instant::now() < deadline => {
                        let _ = error;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(error) => return Err(error).context("first request"),
                }
            };
            println!("  {:>8.3}s first response: {status} {:?}", vm.started.elapsed().as_secs_f64(), body.trim());
            for line in isobar_qemu::console_lines(&vm.console(), "isobar: init") {
                println!("  guest: {}", line.trim());
            }
            if then_poweroff {
                vm.power_button()?;
                let exit = vm.wait_exit(timeout)?;
                println!("  {:>8.3}s powered off ({exit})", vm.started.elapsed().as_secs_f64());
                if !exit.success() {
                    anyhow::bail!("QEMU exited with {exit}");
                }
            } else {
                println!("serving on http://127.0.0.1:{}; Ctrl-C stops QEMU", vm.port);
                let exit = vm.wait_exit(Duration::from_secs(u64::MAX / 4))?;
                println!("QEMU exited ({exit})");
            }
        }
    }
    Ok(())
}

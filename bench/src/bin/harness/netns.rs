//! A network namespace of the harness's own, with TAP devices for isobar's userspace stack:
//! created with iproute2 (`ip netns add`, as bench/net.sh did before the harness), entered by
//! servers and client threads through its /run/netns file, deleted when dropped. Needs root;
//! without it the scenario runs on the host's loopback and says the userspace row is missing.
//! Traffic never leaves it: the TAPs' kernel side and isobar's stack are its only addresses.

use std::fs::File;
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};

pub struct Namespace {
    name: String,
    pub file: Arc<File>,
}

/// One TAP in the namespace: its name, the kernel side's address (CIDR), and the address
/// isobar's stack takes on it.
pub struct Tap {
    pub name: &'static str,
    pub kernel_cidr: &'static str,
    pub stack_cidr: &'static str,
    pub stack_ip: std::net::IpAddr,
}

pub const TAPS: [Tap; 2] = [
    Tap {
        name: "isobench0",
        kernel_cidr: "10.0.0.1/24",
        stack_cidr: "10.0.0.2/24",
        stack_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)),
    },
    Tap {
        name: "isobench1",
        kernel_cidr: "10.0.1.1/24",
        stack_cidr: "10.0.1.2/24",
        stack_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, 2)),
    },
];

fn ip(args: &[&str]) -> Result<()> {
    let output = Command::new("ip").args(args).output().context("run ip (iproute2)")?;
    if !output.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

impl Namespace {
    /// A namespace with loopback up and `taps` TAPs (multi-queue, virtio-net headers, as isobar
    /// opens them).
    pub fn create(taps: usize) -> Result<Namespace> {
        if !nix::unistd::geteuid().is_root() {
            bail!("needs root (a network namespace and a TAP device)");
        }
        let name = format!("isobar-harness-{}", std::process::id());
        ip(&["netns", "add", &name])?;
        let namespace =
            Namespace { file: Arc::new(File::open(format!("/run/netns/{name}")).context("open the namespace")?), name };
        ip(&["-n", &namespace.name, "link", "set", "lo", "up"])?;
        for tap in TAPS.iter().take(taps) {
            ip(&["-n", &namespace.name, "tuntap", "add", "mode", "tap", "multi_queue", "vnet_hdr", "name", tap.name])?;
            ip(&["-n", &namespace.name, "addr", "add", tap.kernel_cidr, "dev", tap.name])?;
            // The kernel drops frames for a TAP reader beyond txqueuelen (500 by default): 1,024
            // clients sending at once overflow it, and each drop costs a retransmission timeout.
            ip(&["-n", &namespace.name, "link", "set", tap.name, "up", "txqueuelen", "4096"])?;
        }
        Ok(namespace)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

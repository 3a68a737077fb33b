//! What isobar must do when it is `/init`, the first and only process of a minimal Linux guest:
//! mount the pseudo file systems, take the console, load the kernel modules shipped in the image,
//! bring up the network, read its settings from the kernel command line, and finally power the
//! machine off (PID 1 must never exit: the kernel panics if it does).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

/// Why a PID-1 duty failed. Each is fatal for a guest: the caller prints it and powers off.
#[derive(Debug, thiserror::Error)]
pub enum Pid1Error {
    #[error("cannot mount {what} on {target}: {error}")]
    Mount { what: &'static str, target: &'static str, error: io::Error },
    #[error("cannot open the console {path}: {error}")]
    Console { path: &'static str, error: io::Error },
    #[error("cannot read the module load order {path}: {error}")]
    ModuleList { path: String, error: io::Error },
    #[error("cannot load kernel module {path}: {error}")]
    Module { path: String, error: io::Error },
    #[error("cannot read the kernel command line: {0}")]
    Cmdline(io::Error),
}

/// True when this process is the init process of its PID namespace.
pub fn is_init() -> bool {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() == 1 }
}

fn mount(
    source: &str,
    target: &'static str,
    fstype: &str,
    flags: libc::c_ulong,
    what: &'static str,
) -> Result<(), Pid1Error> {
    let _ = std::fs::create_dir_all(target);
    let source_c = CString::new(source).expect("no NUL in a literal");
    let target_c = CString::new(target).expect("no NUL in a literal");
    let fstype_c = CString::new(fstype).expect("no NUL in a literal");
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call;
    // no data argument is passed.
    let rc = unsafe { libc::mount(source_c.as_ptr(), target_c.as_ptr(), fstype_c.as_ptr(), flags, std::ptr::null()) };
    if rc != 0 {
        let error = io::Error::last_os_error();
        // Already mounted (the kernel mounts devtmpfs itself with CONFIG_DEVTMPFS_MOUNT).
        if error.raw_os_error() == Some(libc::EBUSY) {
            return Ok(());
        }
        return Err(Pid1Error::Mount { what, target, error });
    }
    Ok(())
}

/// Mounts /proc, /sys, /dev (devtmpfs), /dev/pts and /tmp (tmpfs).
pub fn mount_pseudo_filesystems() -> Result<(), Pid1Error> {
    let nosuid_noexec_nodev = libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV;
    mount("proc", "/proc", "proc", nosuid_noexec_nodev, "proc")?;
    mount("sysfs", "/sys", "sysfs", nosuid_noexec_nodev, "sysfs")?;
    mount("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "devtmpfs")?;
    mount("tmpfs", "/tmp", "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, "tmpfs")?;
    Ok(())
}

/// Makes /dev/console the process's stdin, stdout and stderr (the kernel gives /init the
/// console only if the initramfs has a /dev/console node; after devtmpfs it always exists).
pub fn attach_console() -> Result<(), Pid1Error> {
    const PATH: &str = "/dev/console";
    let path_c = CString::new(PATH).expect("no NUL");
    // SAFETY: path_c is a valid NUL-terminated string; the flags are plain.
    let fd = unsafe { libc::open(path_c.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Pid1Error::Console { path: PATH, error: io::Error::last_os_error() });
    }
    // SAFETY: `fd` was just opened and is owned here.
    let console = unsafe { OwnedFd::from_raw_fd(fd) };
    for target in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors; `console` stays open until after.
        if unsafe { libc::dup2(console.as_raw_fd(), target) } < 0 {
            return Err(Pid1Error::Console { path: PATH, error: io::Error::last_os_error() });
        }
    }
    Ok(())
}

/// Loads the modules named, one per line, in `list` (paths relative to its directory), in that
/// order (the image builder writes them in dependency order). A module already built in or
/// loaded (EEXIST) is fine.
pub fn load_modules(list: &Path) -> Result<usize, Pid1Error> {
    let text = match std::fs::read_to_string(list) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(Pid1Error::ModuleList { path: list.display().to_string(), error }),
    };
    let dir = list.parent().unwrap_or(Path::new("/"));
    let mut loaded = 0;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let path = dir.join(line);
        let module = std::fs::File::open(&path)
            .map_err(|error| Pid1Error::Module { path: path.display().to_string(), error })?;
        let params = CString::new("").expect("empty");
        // SAFETY: finit_module reads the module from the open file and the (empty) parameter
        // string; both stay valid for the call.
        let rc = unsafe { libc::syscall(libc::SYS_finit_module, module.as_raw_fd(), params.as_ptr(), 0) };
        if rc != 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EEXIST) {
                return Err(Pid1Error::Module { path: path.display().to_string(), error });
            }
        }
        loaded += 1;
    }
    Ok(loaded)
}

/// The kernel command line's `key=value` words whose key starts with `prefix` (e.g. "isobar."),
/// without the prefix.
pub fn cmdline_settings(prefix: &str) -> Result<BTreeMap<String, String>, Pid1Error> {
    let text = std::fs::read_to_string("/proc/cmdline").map_err(Pid1Error::Cmdline)?;
    Ok(parse_cmdline(&text, prefix))
}

fn parse_cmdline(text: &str, prefix: &str) -> BTreeMap<String, String> {
    text.split_whitespace()
        .filter_map(|word| word.strip_prefix(prefix))
        .filter_map(|rest| rest.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// Adds a default IPv4 route through `gateway` (SIOCADDRT), for kernel-socket networking in a
/// guest whose interface was configured by isobar itself.
pub fn add_default_route(gateway: std::net::Ipv4Addr) -> io::Result<()> {
    fn sockaddr_in(addr: std::net::Ipv4Addr) -> libc::sockaddr {
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(addr.octets()) },
            sin_zero: [0; 8],
        };
        // SAFETY: sockaddr_in and sockaddr have the same size; the bytes are a valid sockaddr.
        unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
    }
    // SAFETY: a zeroed rtentry is a valid "no options" value.
    let mut route: libc::rtentry = unsafe { std::mem::zeroed() };
    route.rt_dst = sockaddr_in(std::net::Ipv4Addr::UNSPECIFIED);
    route.rt_genmask = sockaddr_in(std::net::Ipv4Addr::UNSPECIFIED);
    route.rt_gateway = sockaddr_in(gateway);
    route.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    // SAFETY: a plain datagram socket for the ioctl, closed by OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned here.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: SIOCADDRT reads a valid rtentry that lives for the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCADDRT, &route) } != 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EEXIST) {
            return Err(error);
        }
    }
    Ok(())
}

/// Seconds since the guest kernel started (`/proc/uptime`), for the boot timeline.
pub fn uptime() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let seconds: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_secs_f64(seconds))
}

/// Reaps exited children (an init process inherits every orphan).
pub fn reap_children() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with WNOHANG only writes `status`.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
    }
}

/// Lets Ctrl-Alt-Del reach init as SIGINT instead of rebooting the machine at once.
pub fn route_ctrl_alt_del_to_init() {
    // SAFETY: RB_DISABLE_CAD only changes what the kernel does on Ctrl-Alt-Del.
    unsafe { libc::reboot(libc::RB_DISABLE_CAD) };
}

/// Flushes file systems and powers the machine off. Never returns.
pub fn power_off() -> ! {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    // SAFETY: reboot(RB_POWER_OFF) stops the machine; nothing runs after it.
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
    // Only reached if reboot failed (not PID 1 / no CAP_SYS_BOOT): nothing better to do.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The input device of the ACPI power button, if the `button` and `evdev` modules are loaded:
/// QEMU's `system_powerdown` (and a real host's power button) presses it.
pub fn open_power_button() -> Option<std::fs::File> {
    let entries = std::fs::read_dir("/sys/class/input").ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("event") {
            continue;
        }
        let device_name = std::fs::read_to_string(entry.path().join("device/name")).unwrap_or_default();
        if device_name.trim() == "Power Button" {
            return std::fs::File::open(format!("/dev/input/{name}")).ok();
        }
    }
    None
}

/// Blocks until the power button is pressed (a KEY_POWER key-down event). For a control thread.
pub fn wait_power_button(device: &mut std::fs::File) -> io::Result<()> {
    use std::io::Read;
    // struct input_event on x86_64: struct timeval (16 bytes), u16 type, u16 code, i32 value.
    const EVENT_BYTES: usize = 24;
    const EV_KEY: u16 = 1;
    const KEY_POWER: u16 = 116;
    let mut event = [0u8; EVENT_BYTES];
    loop {
        device.read_exact(&mut event)?;
        let kind = u16::from_ne_bytes([event[16], event[17]]);
        let code = u16::from_ne_bytes([event[18], event[19]]);
        let value = i32::from_ne_bytes([event[20], event[21], event[22], event[23]]);
        if kind == EV_KEY && code == KEY_POWER && value == 1 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_cmdline;

    #[test]
    fn settings_come_from_prefixed_words() {
        let line = "console=ttyS0 panic=-1 isobar.config=/etc/isobar/isobar.toml isobar.net=packet:eth0 isobar.ip=10.0.2.15/24 isobar.bad\n";
        let settings = parse_cmdline(line, "isobar.");
        assert_eq!(settings.len(), 3);
        assert_eq!(settings["config"], "/etc/isobar/isobar.toml");
        assert_eq!(settings["net"], "packet:eth0");
        assert_eq!(settings["ip"], "10.0.2.15/24");
    }

    #[test]
    fn not_init_in_tests() {
        assert!(!super::is_init());
    }
}

//! isobar's unikernel-style image and its QEMU boot.
//!
//! [`build_image`] makes a directory with two files QEMU boots directly: `vmlinux` (Debian's
//! kernel, taken out of its compressed `vmlinuz` so QEMU can boot it through PVH, about twice as
//! fast under TCG) and `initramfs.cpio`, whose `/init` is the isobar binary and which holds
//! exactly what it needs besides: its shared libraries, the configuration directory (config and
//! tenants' scripts), the kernel modules for virtio networking and the ACPI power button with
//! a load-order file, and V8's startup snapshot made by that same binary (`isobar snapshot`).
//! Nothing else is in the guest's userland.
//!
//! [`Vm::boot`] starts QEMU (KVM when it really works, TCG otherwise) with user-mode networking
//! forwarding a loopback port to the guest's port 8080, the serial console in a log file, and a
//! QEMU monitor socket to press the virtual power button.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The modules the guest loads (their dependencies are added): virtio networking, the virtio
/// entropy device, and the ACPI power button with the event device that reports it.
///
/// The entropy device matters for start-up time: V8 seeds itself from /dev/urandom, and a
/// kernel whose random pool is not yet initialised answers that read by first generating
/// entropy from timer jitter — over a second under TCG. A PVH boot gets no seed from QEMU, so
/// without virtio-rng that second is spent in every boot.
pub const GUEST_MODULES: &[&str] = &["virtio_pci", "virtio_rng", "virtio_net", "button", "evdev"];

/// Where the configuration directory goes in the guest.
pub const GUEST_CONFIG_DIR: &str = "/etc/isobar";

/// Where the guest's isobar finds the snapshot made at image build time (boot/src/guest.rs).
pub const GUEST_SNAPSHOT: &str = "/lib/isobar/snapshot.bin";

/// The port isobar listens on in the guest.
pub const GUEST_PORT: u16 = 8080;

/// What to put in an image.
#[derive(Debug, Clone)]
pub struct ImageOptions {
    /// The isobar binary (`target/release/isobar` or `target/debug/isobar`).
    pub isobar: PathBuf,
    /// The configuration file; its whole directory (scripts beside it) goes into the image.
    pub config: PathBuf,
    /// Where to write `vmlinux`, `initramfs.cpio` and `cmdline`.
    pub out: PathBuf,
    /// Where downloaded kernel packages are kept between builds.
    pub cache: PathBuf,
    /// The Debian kernel package, e.g. `linux-image-6.1.0-56-amd64`; `None`: the newest
    /// `linux-image-6.1.0-*-amd64` the archive has.
    pub kernel_package: Option<String>,
}

/// What [`build_image`] made.
#[derive(Debug, Clone)]
pub struct Image {
    pub vmlinux: PathBuf,
    pub initramfs: PathBuf,
    pub kernel_release: String,
    pub modules: Vec<String>,
}

/// Runs a command and returns its stdout, or an error with its stderr.
fn run(command: &mut Command) -> anyhow::Result<String> {
    let output = command.output().with_context(|| format!("cannot run {command:?}"))?;
    if !output.status.success() {
        bail!("{command:?} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The newest `linux-image-6.1.0-N-amd64` package the apt archive offers.
fn newest_kernel_package() -> anyhow::Result<String> {
    let list = run(Command::new("apt-cache").args(["search", "--names-only", "^linux-image-6\\.1\\.0-[0-9]+-amd64$"]))?;
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|name| {
            let abi: u32 = name.strip_prefix("linux-image-6.1.0-")?.strip_suffix("-amd64")?.parse().ok()?;
            Some((abi, name.to_string()))
        })
        .max()
        .map(|(_, name)| name)
        .context("apt-cache knows no linux-image-6.1.0-*-amd64 package; run apt-get update")
}

/// Downloads (once) and unpacks a kernel package; returns the unpacked root.
fn fetch_kernel(package: &str, cache: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(cache)?;
    let cache = cache.canonicalize()?;
    let root = cache.join(package);
    if root.join("boot").exists() {
        return Ok(root);
    }
    let has_deb = |dir: &Path| -> Option<PathBuf> {
        std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).find(|p| {
            p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{package}_")))
                && p.extension().is_some_and(|e| e == "deb")
        })
    };
    // Several image builds may run at once (the tests do): each one works in its own scratch
    // directory and publishes with a rename, so none sees another's half-written files.
    let scratch = cache.join(format!(".{package}.{}.{:?}", std::process::id(), std::thread::current().id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let result = (|| -> anyhow::Result<()> {
        let deb = match has_deb(&cache) {
            Some(deb) => deb,
            None => {
                // apt-get download works without installing anything on the host.
                run(Command::new("apt-get").current_dir(&scratch).args(["download", package]))?;
                let fetched = has_deb(&scratch)
                    .with_context(|| format!("apt-get download {package} left no .deb in {}", scratch.display()))?;
                let deb = cache.join(fetched.file_name().context("a .deb has a file name")?);
                std::fs::rename(&fetched, &deb)?;
                deb
            }
        };
        let unpacked = scratch.join("root");
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
        match std::fs::rename(&unpacked, &root) {
            Ok(()) => Ok(()),
            // Another build published the same package first: use that one.
            Err(_) if root.join("boot").exists() => Ok(()),
            Err(error) => Err(error).with_context(|| format!("publishing {}", root.display())),
        }
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result?;
    Ok(root)
}

/// The uncompressed kernel inside a bzImage: the XZ stream after the magic `FD 37 7A 58 5A 00`.
/// Decompressed by `xz` (xz-utils, in every Debian): the stream uses the x86 BCJ filter, which
/// the pure-Rust XZ decoders do not implement.
pub fn extract_vmlinux(vmlinuz: &[u8]) -> anyhow::Result<Vec<u8>> {
    const XZ_MAGIC: &[u8] = &[0xFD, b'7', b'z', b'X', b'Z', 0x00];
    let start = vmlinuz
        .windows(XZ_MAGIC.len())
        .position(|w| w == XZ_MAGIC)
        .context("the kernel image holds no XZ stream (not an XZ-compressed bzImage?)")?;
    let mut child = Command::new("xz")
        .args(["--decompress", "--stdout", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run xz (apt-get install xz-utils)")?;
    let mut stdin = child.stdin.take().context("xz stdin")?;
    let input = vmlinuz[start..].to_vec();
    let writer = std::thread::spawn(move || {
        // xz stops reading after the first stream; a broken pipe after that is expected.
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output()?;
    let _ = writer.join();
    if !output.status.success() {
        bail!("xz could not decompress the kernel: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    if !output.stdout.starts_with(b"\x7fELF") {
        bail!("the decompressed kernel is not an ELF file");
    }
    Ok(output.stdout)
}

/// `depends=` of a kernel module (from its `.modinfo` strings).
fn module_depends(ko: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"depends=";
    ko.split(|b| *b == 0)
        .find_map(|field| field.strip_prefix(KEY))
        .map(|deps| String::from_utf8_lossy(deps).split(',').filter(|d| !d.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

/// The modules named and everything they depend on, dependencies first.
fn modules_in_load_order(modules_dir: &Path, wanted: &[&str]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut stack = vec![modules_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".ko")) {
                // modinfo names use underscores where file names may use dashes.
                by_name.insert(name.replace('-', "_"), path);
            }
        }
    }
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    fn visit(
        name: &str,
        by_name: &BTreeMap<String, PathBuf>,
        done: &mut BTreeSet<String>,
        order: &mut Vec<(String, PathBuf)>,
        depth: usize,
    ) -> anyhow::Result<()> {
        if done.contains(name) {
            return Ok(());
        }
        if depth > 32 {
            bail!("module dependencies of {name} go deeper than 32 (a cycle?)");
        }
        let path =
            by_name.get(name).with_context(|| format!("no kernel module named {name} (built in, or absent?)"))?;
        let bytes = std::fs::read(path)?;
        for dep in module_depends(&bytes) {
            visit(&dep, by_name, done, order, depth + 1)?;
        }
        done.insert(name.to_string());
        order.push((name.to_string(), path.clone()));
        Ok(())
    }
    for name in wanted {
        visit(name, &by_name, &mut done, &mut order, 0)?;
    }
    Ok(order)
}

/// The shared libraries `binary` needs (from `ldd`), and its program interpreter.
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = run(Command::new("ldd").arg(binary))?;
    let mut libs = Vec::new();
    for line in out.lines() {
        let line = line.trim();
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next().filter(|p| p.starts_with('/')),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(path));
        }
    }
    if libs.is_empty() {
        bail!("ldd found no libraries for {} (a static binary needs none; is ldd installed?)", binary.display());
    }
    Ok(libs)
}

/// Writes a `newc` cpio archive (what the kernel unpacks as its initramfs).
pub struct Cpio<W: Write> {
    out: W,
    inode: u32,
    written: u64,
}

impl<W: Write> Cpio<W> {
    pub fn new(out: W) -> Cpio<W> {
        Cpio { out, inode: 1, written: 0 }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) -> std::io::Result<()> {
        let name = name.trim_start_matches('/');
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.inode,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.inode += 1;
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.written += header.len() as u64 + name.len() as u64 + 1;
        self.pad()?;
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        self.pad()
    }

    fn pad(&mut self) -> std::io::Result<()> {
        let padding = (4 - (self.written % 4)) % 4;
        self.out.write_all(&[0u8; 3][..padding as usize])?;
        self.written += padding;
        Ok(())
    }

    pub fn dir(&mut self, name: &str) -> std::io::Result<()> {
        self.entry(name, 0o040755, &[], (0, 0))
    }

    pub fn file(&mut self, name: &str, data: &[u8], executable: bool) -> std::io::Result<()> {
        self.entry(name, if executable { 0o100755 } else { 0o100644 }, data, (0, 0))
    }

    pub fn char_device(&mut self, name: &str, major: u32, minor: u32) -> std::io::Result<()> {
        self.entry(name, 0o020600, &[], (major, minor))
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.entry("TRAILER!!!", 0, &[], (0, 0))?;
        // The kernel reads the archive in 512-byte blocks.
        let padding = (512 - (self.written % 512)) % 512;
        self.out.write_all(&vec![0u8; padding as usize])?;
        Ok(self.out)
    }
}

/// Adds every parent directory of `path` not added yet.
fn add_parents<W: Write>(cpio: &mut Cpio<W>, made: &mut BTreeSet<String>, path: &str) -> std::io::Result<()> {
    let mut prefix = String::new();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        prefix.push('/');
        prefix.push_str(part);
        if made.insert(prefix.clone()) {
            cpio.dir(&prefix)?;
        }
    }
    Ok(())
}

/// Files under `dir` (recursively), bounded.
fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    const FILES_MAX: usize = 10_000;
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)?.flatten() {
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                files.push(path);
                if files.len() > FILES_MAX {
                    bail!(
                        "{} holds more than {FILES_MAX} files; keep the configuration directory small",
                        dir.display()
                    );
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Builds the image: see the module docs.
pub fn build_image(options: &ImageOptions) -> anyhow::Result<Image> {
    let package = match &options.kernel_package {
        Some(p) => p.clone(),
        None => newest_kernel_package()?,
    };
    let root = fetch_kernel(&package, &options.cache)?;
    let vmlinuz = std::fs::read_dir(root.join("boot"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .context("the kernel package has no boot/vmlinuz-*")?;
    let kernel_release =
        vmlinuz.file_name().unwrap_or_default().to_string_lossy().trim_start_matches("vmlinuz-").to_string();
    std::fs::create_dir_all(&options.out)?;
    let vmlinux = options.out.join("vmlinux");
    let vmlinux_bytes = extract_vmlinux(&std::fs::read(&vmlinuz)?)?;
    std::fs::write(&vmlinux, vmlinux_bytes)?;

    let modules_dir = root.join("lib/modules").join(&kernel_release);
    let modules = modules_in_load_order(&modules_dir, GUEST_MODULES)?;

    let initramfs = options.out.join("initramfs.cpio");
    let file = std::io::BufWriter::new(std::fs::File::create(&initramfs)?);
    let mut cpio = Cpio::new(file);
    let mut made = BTreeSet::new();
    for dir in ["/dev", "/proc", "/sys", "/tmp", "/etc", "/lib", "/lib/modules"] {
        made.insert(dir.to_string());
        cpio.dir(dir)?;
    }
    // The kernel opens /dev/console for /init before any file system is mounted.
    cpio.char_device("/dev/console", 5, 1)?;
    // Debug information is most of the binary's size and of no use in the guest.
    let stripped = options.out.join("init");
    let init = match run(Command::new("objcopy").arg("--strip-debug").arg(&options.isobar).arg(&stripped)) {
        Ok(_) => std::fs::read(&stripped)?,
        Err(_) => std::fs::read(&options.isobar).with_context(|| format!("reading {}", options.isobar.display()))?,
    };
    let _ = std::fs::remove_file(&stripped);
    cpio.file("/init", &init, true)?;
    for lib in shared_libraries(&options.isobar)? {
        let data = std::fs::read(&lib).with_context(|| format!("reading {}", lib.display()))?;
        let name = lib.to_string_lossy().into_owned();
        add_parents(&mut cpio, &mut made, &name)?;
        cpio.file(&name, &data, true)?;
    }
    let mut order = String::new();
    for (name, path) in &modules {
        let file_name = format!("{name}.ko");
        cpio.file(&format!("/lib/modules/{file_name}"), &std::fs::read(path)?, false)?;
        order.push_str(&file_name);
        order.push('\n');
    }
    cpio.file("/lib/modules/load-order", order.as_bytes(), false)?;
    // V8's startup snapshot, made now by the very binary that becomes /init: building it in
    // the guest takes seconds under TCG, loading it a fraction of that.
    let snapshot = options.out.join("snapshot.bin");
    run(Command::new(&options.isobar).arg("snapshot").arg("--out").arg(&snapshot))
        .context("making V8's startup snapshot for the image")?;
    add_parents(&mut cpio, &mut made, GUEST_SNAPSHOT)?;
    cpio.file(GUEST_SNAPSHOT, &std::fs::read(&snapshot)?, false)?;
    std::fs::remove_file(&snapshot)?;
    let config_dir = options.config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // The image itself may be written inside the configuration directory; never copy it in.
    let out = options.out.canonicalize()?;
    for path in files_under(config_dir)? {
        if path.canonicalize().is_ok_and(|p| p.starts_with(&out)) {
            continue;
        }
        let relative = path.strip_prefix(config_dir).unwrap_or(&path).to_string_lossy().into_owned();
        let name = format!("{GUEST_CONFIG_DIR}/{relative}");
        add_parents(&mut cpio, &mut made, &name)?;
        cpio.file(&name, &std::fs::read(&path)?, false)?;
    }
    cpio.finish()?.flush()?;
    let config_name = options.config.file_name().context("the config path has no file name")?.to_string_lossy();
    std::fs::write(options.out.join("cmdline"), format!("isobar.config={GUEST_CONFIG_DIR}/{config_name}"))?;
    Ok(Image { vmlinux, initramfs, kernel_release, modules: modules.into_iter().map(|(n, _)| n).collect() })
}

/// How to boot.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// The directory [`build_image`] wrote.
    pub image: PathBuf,
    /// The loopback port forwarded to the guest's port 8080 (0: pick a free one).
    pub port: u16,
    /// Where the serial console goes.
    pub serial_log: PathBuf,
    /// Extra kernel command-line words (e.g. `isobar.net=packet:eth0`).
    pub cmdline: String,
    pub memory_mb: u32,
    pub cpus: u32,
}

/// Whether KVM can run a Linux guest here: /dev/kvm exists and the CPU has VMX or SVM (a
/// paravirtual /dev/kvm without them makes QEMU fail or crawl).
pub fn kvm_works() -> bool {
    if !Path::new("/dev/kvm").exists() {
        return false;
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo.lines().any(|l| l.starts_with("flags") && (l.contains(" vmx") || l.contains(" svm")))
}

/// A running guest.
pub struct Vm {
    child: Child,
    pub port: u16,
    pub serial_log: PathBuf,
    monitor: PathBuf,
    pub started: Instant,
    pub accel: &'static str,
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Vm {
    /// Starts QEMU.
    pub fn boot(options: &BootOptions) -> anyhow::Result<Vm> {
        let image = &options.image;
        let base_cmdline = std::fs::read_to_string(image.join("cmdline")).unwrap_or_default();
        let accel = if kvm_works() { "kvm" } else { "tcg" };
        // Under TCG every instruction is emulated (~10-30x slower here) and the guest's CPU clock
        // counts it, so a script's start-up gets ten times Workers' 400 ms.
        let startup = if accel == "tcg" { "isobar.startup_cpu_ms=4000" } else { "" };
        let cmdline = format!(
            "console=ttyS0 panic=-1 loglevel=6 isobar.ip=10.0.2.15/24 isobar.gateway=10.0.2.2 {startup} {} {}",
            base_cmdline.trim(),
            options.cmdline
        );
        let port = if options.port == 0 { free_port()? } else { options.port };
        let monitor = options.serial_log.with_extension("monitor");
        let _ = std::fs::remove_file(&monitor);
        let _ = std::fs::remove_file(&options.serial_log);
        if let Some(dir) = options.serial_log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut command = Command::new("qemu-system-x86_64");
        command
            .args(["-M", "pc", "-display", "none", "-no-reboot", "-no-user-config", "-nodefaults"])
            .args(["-accel", accel])
            .args(["-m", &options.memory_mb.to_string(), "-smp", &options.cpus.to_string()])
            .arg("-kernel")
            .arg(image.join("vmlinux"))
            .arg("-initrd")
            .arg(image.join("initramfs.cpio"))
            .args(["-append", &cmdline])
            .args([
                "-netdev",
                &format!("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:{GUEST_PORT}"),
                "-device",
                "virtio-net-pci,netdev=n0,romfile=",
            ])
            .args(["-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0"])
            .arg("-serial")
            .arg(format!("file:{}", options.serial_log.display()))
            .arg("-monitor")
            .arg(format!("unix:{},server=on,wait=off", monitor.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let child = command.spawn().context("cannot start qemu-system-x86_64 (is QEMU installed?)")?;
        Ok(Vm { child, port, serial_log: options.serial_log.clone(), monitor, started, accel })
    }

    /// The serial console so far.
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.serial_log).unwrap_or_default()).into_owned()
    }

    /// Waits until the console shows a line containing `needle`; returns when it was first seen.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.console().contains(needle) {
                return Ok(self.started.elapsed());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("QEMU exited ({status}) before the console showed {needle:?}; console:\n{}", self.console());
            }
            if Instant::now() > deadline {
                bail!("the console did not show {needle:?} within {timeout:?}; console:\n{}", self.console());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Presses the virtual power button (ACPI), through the QEMU monitor.
    pub fn power_button(&self) -> anyhow::Result<()> {
        let mut stream = std::os::unix::net::UnixStream::connect(&self.monitor).context("QEMU monitor")?;
        stream.write_all(b"system_powerdown\n")?;
        std::thread::sleep(Duration::from_millis(100));
        Ok(())
    }

    /// Waits for QEMU to exit; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("QEMU did not exit within {timeout:?}; console:\n{}", self.console());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address the guest's port 8080 is forwarded to.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.monitor);
    }
}

/// One HTTP/1.1 GET (connection: close), for the boot timeline and checks: (status, body).
pub fn http_get(addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status: u16 = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no HTTP status")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// Makes `path` executable (for scripts written by the tool).
pub fn make_executable(path: &Path) -> std::io::Result<()> {
    let mut permissions = std::fs::metadata(path)?.permissions();
    permissions.set_mode(0o755);
    std::fs::set_permissions(path, permissions)
}

/// Reads `key: value` lines isobar prints on the console (e.g. its init timeline).
pub fn console_lines(console: &str, prefix: &str) -> Vec<String> {
    std::io::Cursor::new(console).lines().map_while(Result::ok).filter(|l| l.contains(prefix)).collect()
}

#[cfg(test)]
mod tests {
    use super::{Cpio, module_depends};

    #[test]
    fn cpio_entries_are_aligned_and_terminated() {
        let mut cpio = Cpio::new(Vec::new());
        cpio.dir("/etc").unwrap();
        cpio.file("/etc/a", b"hello", false).unwrap();
        cpio.char_device("/dev/console", 5, 1).unwrap();
        let bytes = cpio.finish().unwrap();
        assert_eq!(bytes.len() % 512, 0);
        assert!(bytes.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("etc/a\0"));
        assert!(text.contains("hello"));
        assert!(text.contains("TRAILER!!!"));
        // Every header starts on a 4-byte boundary.
        for (i, _) in text.match_indices("070701") {
            assert_eq!(i % 4, 0);
        }
    }

    #[test]
    fn module_dependencies_come_from_modinfo() {
        let ko = b"\x7fELF...\0license=GPL\0depends=virtio,virtio_ring\0name=virtio_net\0";
        assert_eq!(module_depends(ko), vec!["virtio".to_string(), "virtio_ring".to_string()]);
        assert!(module_depends(b"\0depends=\0").is_empty());
    }
}

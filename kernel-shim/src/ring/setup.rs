//! Creating the io_uring instance and checking, once at start-up, that the kernel has every
//! opcode and feature the driver relies on; each failure names its cause and its fix.
//!
//! Every ring is created disabled (`IORING_SETUP_R_DISABLED`), set up (probe, provided-buffer
//! ring), then restricted (`IORING_REGISTER_RESTRICTIONS`) to exactly the SQE opcodes and flags
//! of [`OPCODES_REQUIRED`] and to no `io_uring_register` operation at all, and only then
//! enabled. io_uring operations bypass seccomp (the kernel does the work, not a system call of
//! ours), so without the restriction code that took over a core could still open files or
//! sockets through the ring it already has; with it, the ring does what the driver does and
//! nothing else, and the seccomp filter (`crate::seccomp`) forbids making a new ring.

use std::io;

use io_uring::register::Restriction;
use io_uring::{IoUring, Probe, opcode, squeue};

/// Why a [`Ring`](super::Ring) could not be created or driven.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum RingError {
    /// io_uring is disabled by sysctl kernel.io_uring_disabled=2; set it to 0 (sysctl -w kernel.io_uring_disabled=0)
    DisabledBySysctl,
    /// io_uring is restricted by sysctl kernel.io_uring_disabled=1 to the group in kernel.io_uring_group; add this user to that group or set kernel.io_uring_disabled to 0
    RestrictedToGroup,
    /// io_uring_setup was refused (EPERM) although kernel.io_uring_disabled=0: a seccomp filter or the container runtime blocks io_uring; allow io_uring_setup, io_uring_enter and io_uring_register (e.g. docker --security-opt seccomp=unconfined)
    BlockedBySeccomp,
    /// io_uring_setup does not exist (ENOSYS): the kernel is built without CONFIG_IO_URING, or a seccomp filter hides the syscall; Linux >= 6.1 with io_uring is required
    NotInKernel,
    /// the kernel rejected IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN (EINVAL): Linux >= 6.1 is required
    SetupFlagsRejected,
    /// opcode {name} is missing: Linux >= {linux} is required
    OpcodeMissing {
        /// The io_uring opcode, as the kernel names it.
        name: &'static str,
        /// The first Linux release that has it.
        linux: &'static str,
    },
    /// io_uring feature {name} is missing: Linux >= {linux} is required
    FeatureMissing {
        /// The `IORING_FEAT_*` name.
        name: &'static str,
        /// The first Linux release that has it.
        linux: &'static str,
    },
    /// could not create the io_uring instance: {error}
    Setup {
        /// What io_uring_setup returned.
        error: io::Error,
    },
    /// could not restrict the ring to isobar's opcodes (IORING_REGISTER_RESTRICTIONS, Linux >= 5.10): {error}
    Restrict {
        /// What io_uring_register returned.
        error: io::Error,
    },
    /// could not enable the ring after restricting it (IORING_REGISTER_ENABLE_RINGS, Linux >= 5.10): {error}
    Enable {
        /// What io_uring_register returned.
        error: io::Error,
    },
    /// could not probe the io_uring opcodes (IORING_REGISTER_PROBE, Linux >= 5.6): {error}
    Probe {
        /// What io_uring_register returned.
        error: io::Error,
    },
    /// could not map {bytes} bytes for the provided-buffer ring (lower recv_buffers or recv_buffer_bytes): {error}
    BufferMemory {
        /// The size of the failed mapping.
        bytes: usize,
        /// What mmap returned.
        error: io::Error,
    },
    /// could not register the provided-buffer ring (IORING_REGISTER_PBUF_RING, Linux >= 5.19): {error}
    BufferRegister {
        /// What io_uring_register returned.
        error: io::Error,
    },
    /// invalid ring configuration: {0}
    Config(&'static str),
    /// io_uring_enter failed: {error}
    Enter {
        /// What io_uring_enter returned.
        error: io::Error,
    },
}

/// The opcodes the driver submits, with the Linux release that made each usable the way we use
/// it (multishot accept and recv, cancel by fd).
const OPCODES_REQUIRED: [(u8, &str, &str); 10] = [
    (opcode::AcceptMulti::CODE, "ACCEPT (multishot)", "5.19"),
    (opcode::RecvMulti::CODE, "RECV (multishot)", "6.0"),
    (opcode::Send::CODE, "SEND", "5.6"),
    (opcode::Read::CODE, "READ", "5.6"),
    (opcode::Write::CODE, "WRITE", "5.6"),
    (opcode::Connect::CODE, "CONNECT", "5.5"),
    (opcode::Timeout::CODE, "TIMEOUT", "5.4"),
    (opcode::AsyncCancel2::CODE, "ASYNC_CANCEL (by fd)", "5.19"),
    (opcode::Close::CODE, "CLOSE", "5.6"),
    (opcode::Shutdown::CODE, "SHUTDOWN", "5.11"),
];

/// The SQE flags the driver sets: only `BUFFER_SELECT`, which multishot recv needs to draw from
/// the provided-buffer ring.
const SQE_FLAGS_ALLOWED: squeue::Flags = squeue::Flags::BUFFER_SELECT;

/// Creates the instance, disabled until [`restrict_and_enable`]: one submitter thread
/// (SINGLE_ISSUER, bound to the thread that enables it), completions' task work run only
/// when that thread asks for events (DEFER_TASKRUN, so the kernel never interrupts the core to
/// run it), a flag telling us when such work is pending (TASKRUN_FLAG), and a submission that
/// goes on past a failed SQE (SUBMIT_ALL: its error arrives as a CQE like any other).
pub(super) fn create(entries: u32, cq_entries: u32) -> Result<IoUring, RingError> {
    let built = IoUring::builder()
        .setup_r_disabled()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .setup_submit_all()
        .setup_cqsize(cq_entries)
        .setup_clamp()
        .build(entries);
    let uring = built.map_err(classify_setup_error)?;
    check_kernel(&uring)?;
    Ok(uring)
}

/// Restricts the ring to the opcodes and SQE flags the driver uses, with no register operation
/// allowed from here on, then enables it. Call once the ring is set up: registering anything
/// (buffers, files) after this fails with EACCES, and so does an SQE with any other opcode or
/// flag (its completion carries the error).
pub(super) fn restrict_and_enable(uring: &IoUring) -> Result<(), RingError> {
    let mut restrictions: Vec<Restriction> =
        OPCODES_REQUIRED.iter().map(|(code, _, _)| Restriction::sqe_op(*code)).collect();
    restrictions.push(Restriction::sqe_flags_allowed(SQE_FLAGS_ALLOWED.bits()));
    uring.submitter().register_restrictions(&mut restrictions).map_err(|error| RingError::Restrict { error })?;
    uring.submitter().register_enable_rings().map_err(|error| RingError::Enable { error })
}

fn check_kernel(uring: &IoUring) -> Result<(), RingError> {
    let mut probe = Probe::new();
    uring.submitter().register_probe(&mut probe).map_err(|error| RingError::Probe { error })?;
    for (code, name, linux) in OPCODES_REQUIRED {
        if !probe.is_supported(code) {
            return Err(RingError::OpcodeMissing { name, linux });
        }
    }
    let params = uring.params();
    if !params.is_feature_nodrop() {
        return Err(RingError::FeatureMissing { name: "NODROP", linux: "5.5" });
    }
    if !params.is_feature_ext_arg() {
        return Err(RingError::FeatureMissing { name: "EXT_ARG", linux: "5.11" });
    }
    if !params.is_feature_fast_poll() {
        return Err(RingError::FeatureMissing { name: "FAST_POLL", linux: "5.7" });
    }
    Ok(())
}

fn classify_setup_error(error: io::Error) -> RingError {
    match error.raw_os_error() {
        Some(libc::ENOSYS) => RingError::NotInKernel,
        Some(libc::EINVAL) => RingError::SetupFlagsRejected,
        Some(libc::EPERM) => match io_uring_disabled_sysctl() {
            Some(2) => RingError::DisabledBySysctl,
            Some(1) => RingError::RestrictedToGroup,
            _ => RingError::BlockedBySeccomp,
        },
        _ => RingError::Setup { error },
    }
}

/// `kernel.io_uring_disabled` (Linux >= 6.6); `None` when the kernel has no such sysctl.
fn io_uring_disabled_sysctl() -> Option<u8> {
    let text = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_errors_name_cause_and_fix() {
        let enosys = classify_setup_error(io::Error::from_raw_os_error(libc::ENOSYS));
        assert!(matches!(enosys, RingError::NotInKernel));
        assert!(enosys.to_string().contains("Linux >= 6.1"));
        let einval = classify_setup_error(io::Error::from_raw_os_error(libc::EINVAL));
        assert!(matches!(einval, RingError::SetupFlagsRejected));
        assert_eq!(
            RingError::DisabledBySysctl.to_string(),
            "io_uring is disabled by sysctl kernel.io_uring_disabled=2; set it to 0 \
             (sysctl -w kernel.io_uring_disabled=0)"
        );
        let missing = RingError::OpcodeMissing { name: "RECV (multishot)", linux: "6.0" };
        assert_eq!(missing.to_string(), "opcode RECV (multishot) is missing: Linux >= 6.0 is required");
    }
}

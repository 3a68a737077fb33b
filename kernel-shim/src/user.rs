//! Giving up root on a dedicated host: once isobar has opened what needs privileges (listeners
//! on low ports, TAP devices, AF_PACKET sockets, `vm.max_map_count`), it becomes an unprivileged
//! account for good: supplementary groups, group and user IDs (real, effective and saved) all
//! set, so no capability is left and none can come back. docs/dedicated-host.md says when to
//! use it.
//!
//! It must be called while the process has one thread or while every thread can take glibc's
//! set-ID broadcast (glibc applies the change to every thread, as POSIX requires), and before
//! the seccomp filter, which does not allow these calls.

use std::ffi::{CStr, CString};
use std::io;

/// Why isobar could not become another user.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum UserError {
    /// no user named {0:?} in the password database (create it, e.g. `useradd --system --no-create-home isobar`)
    Unknown(String),
    /// looking up user {name:?} failed: {error}
    Lookup { name: String, error: io::Error },
    /// only root can switch to user {0:?}; start isobar as root or drop --user
    NotRoot(String),
    /// {call} for user {name:?} failed: {error}
    Switch { name: String, call: &'static str, error: io::Error },
    /// after switching to {name:?} the process still has {what} (the switch did not take)
    StillPrivileged { name: String, what: String },
}

/// An account from the password database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

/// Whether this process runs as root (effective user ID 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Looks `name` up in the password database (`getpwnam_r`: /etc/passwd, or NSS).
pub fn lookup(name: &str) -> Result<Account, UserError> {
    let c_name = CString::new(name).map_err(|_| UserError::Unknown(name.to_string()))?;
    let mut buffer = vec![0u8; 4096];
    loop {
        // SAFETY: a zeroed passwd (null pointers, zero IDs) is a valid value of the type.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: `entry` is a valid out-parameter; getpwnam_r points its strings into `buffer`,
        // whose length we pass; `result` is a valid out-pointer.
        let rc = unsafe {
            libc::getpwnam_r(c_name.as_ptr(), &mut entry, buffer.as_mut_ptr().cast(), buffer.len(), &mut result)
        };
        if rc == libc::ERANGE && buffer.len() < 1 << 20 {
            buffer.resize(buffer.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(UserError::Lookup { name: name.to_string(), error: io::Error::from_raw_os_error(rc) });
        }
        if result.is_null() {
            return Err(UserError::Unknown(name.to_string()));
        }
        // SAFETY: on success `pw_name` points at a NUL-terminated string inside `buffer`.
        let found = unsafe { CStr::from_ptr(entry.pw_name) }.to_string_lossy().into_owned();
        return Ok(Account { name: found, uid: entry.pw_uid, gid: entry.pw_gid });
    }
}

/// Becomes `account` for good: supplementary groups reduced to its primary group, then the
/// real, effective and saved group IDs, then the user IDs. Moving every user ID from 0 to
/// another clears the permitted, effective and ambient capability sets (see capabilities(7));
/// this is checked afterwards, along with the fact that root cannot be had back.
pub fn become_user(account: &Account) -> Result<(), UserError> {
    let fail =
        |call: &'static str| UserError::Switch { name: account.name.clone(), call, error: io::Error::last_os_error() };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(UserError::NotRoot(account.name.clone()));
    }
    let groups = [account.gid];
    // SAFETY: `groups` holds one valid gid_t; setgroups only reads it.
    if unsafe { libc::setgroups(1, groups.as_ptr()) } != 0 {
        return Err(fail("setgroups"));
    }
    // SAFETY: plain integer arguments.
    if unsafe { libc::setresgid(account.gid, account.gid, account.gid) } != 0 {
        return Err(fail("setresgid"));
    }
    // SAFETY: plain integer arguments.
    if unsafe { libc::setresuid(account.uid, account.uid, account.uid) } != 0 {
        return Err(fail("setresuid"));
    }
    check_unprivileged(account)
}

/// After the switch: every ID is the account's, no capability is left (unless the account is
/// root itself), and setting user ID 0 again is refused.
fn check_unprivileged(account: &Account) -> Result<(), UserError> {
    let still = |what: String| UserError::StillPrivileged { name: account.name.clone(), what };
    let (mut ruid, mut euid, mut suid) = (0, 0, 0);
    // SAFETY: three valid out-pointers.
    unsafe { libc::getresuid(&mut ruid, &mut euid, &mut suid) };
    if [ruid, euid, suid] != [account.uid; 3] {
        return Err(still(format!("user IDs {ruid}/{euid}/{suid}")));
    }
    if account.uid == 0 {
        return Ok(());
    }
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    for field in ["CapPrm:", "CapEff:", "CapAmb:"] {
        let value = status.lines().find_map(|line| line.strip_prefix(field)).map(str::trim);
        if let Some(value) = value
            && u64::from_str_radix(value, 16) != Ok(0)
        {
            return Err(still(format!("capabilities {field} {value}")));
        }
    }
    // SAFETY: plain integer argument; expected to fail with EPERM.
    if unsafe { libc::setuid(0) } == 0 {
        return Err(still("the power to become root again".to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_nobody_are_found_and_strangers_are_not() {
        let root = lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(matches!(lookup("no-such-user-isobar"), Err(UserError::Unknown(_))));
        assert!(matches!(lookup("nul\0byte"), Err(UserError::Unknown(_))));
        let error = lookup("no-such-user-isobar").unwrap_err().to_string();
        assert!(error.contains("useradd"), "{error}");
    }
}

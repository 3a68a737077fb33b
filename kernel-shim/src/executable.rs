//! What identifies the running program: its GNU build ID, the hash the linker wrote into the
//! executable (`.note.gnu.build-id`) over everything it linked. Two builds that differ in any
//! byte of code have different IDs; copies of one build (stripped of debug info or not) share
//! it. isobar keys its cached V8 snapshot with it, so a snapshot made by another binary is
//! never handed to V8.

use std::sync::OnceLock;

/// The note type of a GNU build ID (elf.h's `NT_GNU_BUILD_ID`).
const NT_GNU_BUILD_ID: u32 = 3;

/// The running executable's GNU build ID, if it has one (read once, from the program headers
/// the kernel mapped: no file is opened, so it works before /proc is mounted and after the
/// system-call filter is on).
pub fn build_id() -> Option<&'static [u8]> {
    static BUILD_ID: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    BUILD_ID.get_or_init(read_build_id).as_deref()
}

fn read_build_id() -> Option<Vec<u8>> {
    // SAFETY: getauxval only reads the auxiliary vector the kernel gave the process.
    let (phdr, phnum) = unsafe { (libc::getauxval(libc::AT_PHDR), libc::getauxval(libc::AT_PHNUM)) };
    if phdr == 0 || phnum == 0 || phnum > 4096 {
        return None;
    }
    // SAFETY: the kernel mapped the executable's `phnum` program headers at AT_PHDR (both from
    // the auxiliary vector) for the life of the process, read-only, and never moves them.
    let headers = unsafe { std::slice::from_raw_parts(phdr as *const libc::Elf64_Phdr, phnum as usize) };
    // The load bias of a position-independent executable: where its headers are, less where
    // they say they are. A program without PT_PHDR gets no ID rather than a guess.
    let bias = (phdr as usize).wrapping_sub(headers.iter().find(|h| h.p_type == libc::PT_PHDR)?.p_vaddr as usize);
    let loaded = |start: u64, size: u64| {
        headers.iter().any(|h| {
            h.p_type == libc::PT_LOAD
                && h.p_vaddr <= start
                && start.saturating_add(size) <= h.p_vaddr.saturating_add(h.p_filesz)
        })
    };
    for note in headers.iter().filter(|h| h.p_type == libc::PT_NOTE) {
        if !loaded(note.p_vaddr, note.p_filesz) {
            continue;
        }
        // SAFETY: the note segment lies inside a PT_LOAD segment's file-backed part (checked just
        // above), which the kernel mapped readable at the same bias as the headers.
        let bytes = unsafe {
            std::slice::from_raw_parts(bias.wrapping_add(note.p_vaddr as usize) as *const u8, note.p_filesz as usize)
        };
        if let Some(id) = find_build_id(bytes) {
            return Some(id.to_vec());
        }
    }
    None
}

/// The descriptor of the first GNU build-ID note among `notes` (an ELF note segment: name size,
/// descriptor size, type, then name and descriptor, each padded to 4 bytes).
fn find_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    let word = |bytes: &[u8], at: usize| Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let padded = |size: u32| (size as usize).checked_add(3).map(|n| n & !3);
    while notes.len() >= 12 {
        let (name_size, desc_size, kind) = (word(notes, 0)?, word(notes, 4)?, word(notes, 8)?);
        let name_end = 12usize.checked_add(padded(name_size)?)?;
        let desc_end = name_end.checked_add(padded(desc_size)?)?;
        let name = notes.get(12..12 + name_size as usize)?;
        let desc = notes.get(name_end..name_end + desc_size as usize)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" && !desc.is_empty() {
            return Some(desc);
        }
        notes = notes.get(desc_end..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_binary_has_a_build_id() {
        // Debian's linker writes one by default; the ID is what `file` and `readelf -n` show.
        let id = build_id().expect("a GNU build ID");
        assert!(id.len() >= 16, "{id:?}");
        assert_eq!(build_id(), Some(id));
    }

    #[test]
    fn notes_are_parsed_within_their_bounds() {
        let mut notes = Vec::new();
        // An ABI tag note first, then the build ID.
        notes.extend_from_slice(&4u32.to_ne_bytes());
        notes.extend_from_slice(&16u32.to_ne_bytes());
        notes.extend_from_slice(&1u32.to_ne_bytes());
        notes.extend_from_slice(b"GNU\0");
        notes.extend_from_slice(&[0; 16]);
        notes.extend_from_slice(&4u32.to_ne_bytes());
        notes.extend_from_slice(&5u32.to_ne_bytes());
        notes.extend_from_slice(&3u32.to_ne_bytes());
        notes.extend_from_slice(b"GNU\0");
        notes.extend_from_slice(&[1, 2, 3, 4, 5, 0, 0, 0]);
        assert_eq!(find_build_id(&notes), Some(&[1, 2, 3, 4, 5][..]));
        // Cut anywhere, it is found whole or not at all.
        for cut in 0..notes.len() {
            assert!(find_build_id(&notes[..cut]).is_none_or(|id| id == [1, 2, 3, 4, 5]));
        }
        // Sizes that point past the end.
        let mut bad = notes.clone();
        bad[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(find_build_id(&bad), None);
    }
}

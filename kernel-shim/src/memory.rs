//! The process's memory allocator, and giving freed memory back to the kernel.
//!
//! isobar links mimalloc as the allocator of everything, V8's C++ code included (the
//! `override` feature replaces malloc/free). Isolates come and go by the thousand; with glibc's
//! malloc, a few hundred bytes V8 keeps per isolate created pinned the pages around them, and
//! RSS stayed tens of megabytes above its start after every isolate was dropped. mimalloc groups
//! allocations by size, so what stays behind shares a few pages instead.

/// Returns free memory held by the allocator to the kernel (after evicting isolates).
pub fn release_free_memory() {
    // SAFETY: mi_collect only touches mimalloc's own state; `force` also frees abandoned
    // segments.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

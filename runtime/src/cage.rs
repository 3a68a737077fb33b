//! Where a new isolate's heap lives when V8 is built with pointer compression (the `ptrcomp`
//! feature).
//!
//! Pointer compression halves V8's object sizes by storing 32-bit offsets into a 4 GB "cage".
//! Upstream, one cage holds every isolate of the process: isobar's tenants would have to share
//! 4 GB of heap, and V8 aborts the process when the cage is full (it did at ~5,400 isolates).
//! isobar's V8 is built with multiple cages (`runtime/v8/ptrcomp.gn`): every isolate group is a
//! cage of its own. This module seats each new isolate in a group of its core's where the heap
//! limits of the group's isolates, summed, leave room for the heap a terminating isolate may
//! still take; when none has room it makes a new group. So no cage can fill: an isolate
//! reaches its own heap limit (and is terminated) first.
//!
//! Groups belong to the thread (the core) that made them, like the isolates in them. The crate
//! binds no group API; `runtime/v8/patches/0001-isolate-groups.patch` adds four C functions to
//! its archive. Without the feature a seat is nothing and every isolate is in V8's one space.

/// Address space of one cage.
#[cfg(any(feature = "ptrcomp", test))]
const CAGE_BYTES: usize = 4 << 30;

/// What a cage holds beside its isolates' heaps: V8's code range (128 MB on x86-64), the
/// group's read-only heap, and slack for pages a heap holds beyond its limit while it grows.
#[cfg(any(feature = "ptrcomp", test))]
const CAGE_OVERHEAD_BYTES: usize = 512 << 20;

/// The heap limits of a group's isolates sum to at most this: the cage, less its overhead, less
/// the headroom one isolate that reached its limit is granted until it is terminated.
#[cfg(any(feature = "ptrcomp", test))]
pub(crate) const GROUP_HEAP_BYTES: usize = CAGE_BYTES - CAGE_OVERHEAD_BYTES - crate::isolate::HEAP_HEADROOM_BYTES;

// The largest heap limit configuration and the admin API accept fits one group.
#[cfg(feature = "ptrcomp")]
const _: () = assert!((isobar_tenancy::limits::HEAP_MB_MAX as usize) << 20 <= GROUP_HEAP_BYTES);

/// A place held for one isolate in a group; dropped with the isolate.
#[derive(Debug)]
pub(crate) struct Seat {
    #[cfg(feature = "ptrcomp")]
    group: std::rc::Rc<groups::Group>,
    #[cfg(feature = "ptrcomp")]
    heap_bytes: usize,
}

/// Seats an isolate with a heap limit of `heap_bytes`, and runs `make` to make it there.
#[cfg(not(feature = "ptrcomp"))]
pub(crate) fn seat<T>(_heap_bytes: usize, make: impl FnOnce() -> T) -> Result<(Seat, T), String> {
    Ok((Seat {}, make()))
}

#[cfg(feature = "ptrcomp")]
pub(crate) use groups::seat;

/// Groups made and still alive on this thread, for tests and metrics.
#[cfg(feature = "ptrcomp")]
pub fn groups_alive() -> usize {
    groups::GROUPS.with(|groups| groups.borrow().len())
}

#[cfg(not(feature = "ptrcomp"))]
pub fn groups_alive() -> usize {
    0
}

/// Which group has room for an isolate of `heap_bytes`: the first of `reserved` (each group's
/// summed heap limits) that stays within [`GROUP_HEAP_BYTES`], or None for a new one.
#[cfg(any(feature = "ptrcomp", test))]
fn group_with_room(reserved: impl IntoIterator<Item = usize>, heap_bytes: usize) -> Option<usize> {
    reserved.into_iter().position(|r| r.checked_add(heap_bytes).is_some_and(|sum| sum <= GROUP_HEAP_BYTES))
}

#[cfg(feature = "ptrcomp")]
mod groups {
    use std::cell::{Cell, RefCell};
    use std::ptr::NonNull;
    use std::rc::Rc;

    use super::{GROUP_HEAP_BYTES, Seat, group_with_room};

    /// `v8::IsolateGroup`, opaque: a pointer to V8's reference-counted group.
    #[repr(C)]
    struct RawGroup {
        _private: [u8; 0],
    }

    unsafe extern "C" {
        fn isobar__IsolateGroup__CanCreateNewGroups() -> bool;
        fn isobar__IsolateGroup__Create() -> *mut RawGroup;
        fn isobar__IsolateGroup__DELETE(group: *mut RawGroup);
        fn isobar__IsolateGroup__SetForNewIsolates(group: *mut RawGroup);
    }

    #[derive(Debug)]
    pub(super) struct Group {
        raw: NonNull<RawGroup>,
        /// The heap limits of the isolates seated here, summed.
        reserved: Cell<usize>,
    }

    impl Drop for Group {
        fn drop(&mut self) {
            // SAFETY: `raw` came from isobar__IsolateGroup__Create and is deleted once, here.
            // Isolates still in the group hold references of their own; V8 frees the cage when
            // the last of them is disposed.
            unsafe { isobar__IsolateGroup__DELETE(self.raw.as_ptr()) };
        }
    }

    impl Drop for Seat {
        fn drop(&mut self) {
            let left = self.group.reserved.get() - self.heap_bytes;
            self.group.reserved.set(left);
            if left == 0 {
                // The last isolate seated here is going: forget the group, so its cage is
                // released with that isolate. (At thread exit the list may be gone already.)
                let _ = GROUPS.try_with(|groups| groups.borrow_mut().retain(|g| !Rc::ptr_eq(g, &self.group)));
            }
        }
    }

    thread_local! {
        pub(super) static GROUPS: RefCell<Vec<Rc<Group>>> = const { RefCell::new(Vec::new()) };
    }

    /// Clears the thread's group for new isolates when dropped, even if `make` unwinds.
    struct Unset;

    impl Drop for Unset {
        fn drop(&mut self) {
            // SAFETY: a null group means V8's default group, as if never set.
            unsafe { isobar__IsolateGroup__SetForNewIsolates(std::ptr::null_mut()) };
        }
    }

    pub(crate) fn seat<T>(heap_bytes: usize, make: impl FnOnce() -> T) -> Result<(Seat, T), String> {
        if heap_bytes > GROUP_HEAP_BYTES {
            return Err(format!(
                "a heap limit of {} MB is more than one isolate group holds ({} MB)",
                heap_bytes >> 20,
                GROUP_HEAP_BYTES >> 20
            ));
        }
        let group = GROUPS.with(|groups| {
            let mut groups = groups.borrow_mut();
            if let Some(i) = group_with_room(groups.iter().map(|g| g.reserved.get()), heap_bytes) {
                return Ok(groups[i].clone());
            }
            // SAFETY: plain queries and construction; V8 is initialised (engine::init runs first).
            if !unsafe { isobar__IsolateGroup__CanCreateNewGroups() } {
                return Err("this V8 was built with one pointer-compression cage for all isolates \
                            (see runtime/v8/ptrcomp.gn)"
                    .to_string());
            }
            // SAFETY: as above; the group is deleted by Group's drop.
            let raw = NonNull::new(unsafe { isobar__IsolateGroup__Create() })
                .ok_or_else(|| "V8 made no isolate group".to_string())?;
            let group = Rc::new(Group { raw, reserved: Cell::new(0) });
            groups.push(group.clone());
            Ok(group)
        })?;
        group.reserved.set(group.reserved.get() + heap_bytes);
        let seat = Seat { group, heap_bytes };
        // SAFETY: the group stays alive (the seat holds it) while it is set, and Unset clears it
        // before this returns, so only `make`'s isolate is made in it.
        unsafe { isobar__IsolateGroup__SetForNewIsolates(seat.group.raw.as_ptr()) };
        let unset = Unset;
        let made = make();
        drop(unset);
        Ok((seat, made))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_isolate_goes_to_the_first_group_with_room_for_its_heap_limit() {
        let mb = 1 << 20;
        assert_eq!(group_with_room([], 128 * mb), None);
        assert_eq!(group_with_room([GROUP_HEAP_BYTES, 0], 128 * mb), Some(1));
        assert_eq!(group_with_room([GROUP_HEAP_BYTES - 128 * mb, 0], 128 * mb), Some(0));
        assert_eq!(group_with_room([GROUP_HEAP_BYTES - 128 * mb + 1], 128 * mb), None);
        assert_eq!(group_with_room([usize::MAX], 1), None);
        // With a 128 MB heap limit (isobar's default), a group takes 18 isolates.
        assert_eq!(GROUP_HEAP_BYTES / (128 * mb), 18);
    }

    /// A worker in `isolate` whose each request builds a few thousand objects and answers with
    /// its name and a sum over them.
    #[cfg(feature = "ptrcomp")]
    fn worker(name: &str, isolate: crate::isolate::Isolate) -> crate::Worker {
        let source = format!(
            "export default {{ fetch() {{ const a = []; for (let i = 0; i < 5000; i++) a.push({{ i }}); \
             return new Response('{name} ' + a.reduce((s, o) => s + o.i, 0)); }} }}"
        );
        let spec = crate::WorkerSpec::from_source(name, std::path::Path::new(name), source, crate::ScriptFormat::Auto);
        crate::Worker::load(isolate, &spec, std::time::Duration::MAX).unwrap()
    }

    #[cfg(feature = "ptrcomp")]
    fn answer(worker: &mut crate::Worker, id: u64) -> String {
        let outcome = crate::testing::request(worker, id, &crate::testing::Req::get("http://cage.test/"));
        let (status, body) = crate::testing::body_of(outcome);
        assert_eq!(status, 200, "{body}");
        body
    }

    #[cfg(feature = "ptrcomp")]
    #[test]
    fn isolates_fill_groups_by_heap_limit_and_a_group_goes_with_its_last_isolate() {
        use crate::isolate::Isolate;
        let gb = 1 << 30;
        let make = |name: &str| Isolate::new(name, gb).unwrap();
        // Groups are per thread, and each test has a thread of its own.
        assert_eq!(groups_alive(), 0);
        let (a, b) = (make("a"), make("b"));
        assert_eq!(groups_alive(), 1, "two 1 GB limits fit in one group");
        let (c, d) = (make("c"), make("d"));
        assert_eq!(groups_alive(), 2, "a third does not");
        let e = make("e");
        assert_eq!(groups_alive(), 3);
        drop((c, d));
        assert_eq!(groups_alive(), 2, "the second group went with its last isolate");
        let f = make("f");
        assert_eq!(groups_alive(), 2, "f took the room left in the third group");
        // Every isolate works, each in its own cage, entered in turns on one thread.
        let mut workers: Vec<_> =
            [("a", a), ("b", b), ("e", e), ("f", f)].into_iter().map(|(n, i)| (n, worker(n, i))).collect();
        for round in 0..3 {
            for (i, (name, worker)) in workers.iter_mut().enumerate() {
                assert_eq!(answer(worker, round * 10 + i as u64), format!("{name} 12497500"));
            }
        }
        drop(workers);
        assert_eq!(groups_alive(), 0);
        let too_big = Isolate::new("huge", 3 * gb).unwrap_err();
        assert!(too_big.contains("more than one isolate group holds"), "{too_big}");
        assert_eq!(groups_alive(), 0);
    }

    #[cfg(feature = "ptrcomp")]
    #[test]
    fn a_heap_hog_is_stopped_and_its_neighbours_in_the_group_keep_working() {
        use crate::isolate::{Condemned, Isolate};
        let limit = 64 << 20;
        let mut quiet: Vec<_> =
            (0..3).map(|i| worker(&format!("quiet{i}"), Isolate::new("q", limit).unwrap())).collect();
        let spec = crate::WorkerSpec::from_source(
            "hog",
            std::path::Path::new("hog"),
            "export default { fetch() { const a = []; for (;;) a.push(new Array(1e5).fill(1.5)); } }".into(),
            crate::ScriptFormat::Auto,
        );
        let mut hog =
            crate::Worker::load(Isolate::new("hog", limit).unwrap(), &spec, std::time::Duration::MAX).unwrap();
        assert_eq!(groups_alive(), 1, "four 64 MB limits share a group");
        let outcome = crate::testing::request(&mut hog, 1, &crate::testing::Req::get("http://cage.test/"));
        assert!(!matches!(outcome, Some(crate::Outcome::Response { .. })), "{outcome:?}");
        assert_eq!(hog.condemned(), Some(Condemned::HeapLimit));
        drop(hog);
        for (i, worker) in quiet.iter_mut().enumerate() {
            assert_eq!(answer(worker, 2 + i as u64), format!("quiet{i} 12497500"));
        }
    }
}

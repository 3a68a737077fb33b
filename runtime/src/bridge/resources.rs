//! Rust state a script holds by number: a streaming decoder, a compression stream, a digest in
//! progress, an outbound connection. isobar's own JS keeps the id (tenant code never sees it)
//! and frees it when done, or through a FinalizationRegistry when its JS owner is collected.
//!
//! The table is bounded in count and, for resources that say how much memory they hold, in
//! bytes: V8's heap limit does not see Rust memory, so without these bounds a script could grow
//! the process by opening resources.

use std::any::Any;
use std::collections::HashMap;

use super::JsError;

/// Something kept in a [`ResourceTable`].
pub trait Resource: Any {
    /// For error messages.
    fn name(&self) -> &'static str;
    /// Rust memory it holds, counted against the table's byte budget.
    fn bytes(&self) -> usize {
        0
    }
}

/// An isolate's resources, by id.
#[derive(Default)]
pub struct ResourceTable {
    slots: HashMap<u32, Box<dyn Any>>,
    next_id: u32,
}

impl std::fmt::Debug for ResourceTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceTable").field("open", &self.slots.len()).finish()
    }
}

/// How many resources one isolate may hold at once.
pub const RESOURCES_MAX: usize = 4096;

impl ResourceTable {
    /// Adds `resource`; a RangeError when the isolate already holds [`RESOURCES_MAX`].
    pub fn add<T: Resource>(&mut self, resource: T) -> Result<u32, JsError> {
        if self.slots.len() >= RESOURCES_MAX {
            return Err(JsError::range_error(format!(
                "{}: too many open resources in this worker (the limit is {RESOURCES_MAX})",
                resource.name()
            )));
        }
        loop {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.slots.contains_key(&self.next_id) {
                break;
            }
        }
        self.slots.insert(self.next_id, Box::new(resource));
        Ok(self.next_id)
    }

    /// The resource `id` as a `T`; a TypeError if there is none or it is of another kind.
    pub fn get_mut<T: Resource>(&mut self, id: u32, what: &str) -> Result<&mut T, JsError> {
        self.slots
            .get_mut(&id)
            .and_then(|slot| slot.downcast_mut::<T>())
            .ok_or_else(|| JsError::type_error(format!("{what}: this object is closed or was never opened")))
    }

    /// Removes and returns the resource `id` as a `T`.
    pub fn take<T: Resource>(&mut self, id: u32, what: &str) -> Result<Box<T>, JsError> {
        match self.slots.remove(&id) {
            Some(slot) => match slot.downcast::<T>() {
                Ok(resource) => Ok(resource),
                Err(other) => {
                    self.slots.insert(id, other);
                    Err(JsError::type_error(format!("{what}: wrong kind of resource")))
                }
            },
            None => Err(JsError::type_error(format!("{what}: this object is closed or was never opened"))),
        }
    }

    /// Frees every resource of kind `T` that `keep` rejects (keys whose JS object was collected,
    /// say); returns how many were freed.
    pub fn retain<T: Resource>(&mut self, mut keep: impl FnMut(&T) -> bool) -> usize {
        let before = self.slots.len();
        self.slots.retain(|_, slot| slot.downcast_ref::<T>().is_none_or(&mut keep));
        before - self.slots.len()
    }

    /// Frees resource `id` (nothing if it is already gone).
    pub fn close(&mut self, id: u32) {
        self.slots.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u32);
    impl Resource for Counter {
        fn name(&self) -> &'static str {
            "counter"
        }
    }
    struct Other;
    impl Resource for Other {
        fn name(&self) -> &'static str {
            "other"
        }
    }

    #[test]
    fn typed_access_and_bounds() {
        let mut table = ResourceTable::default();
        let a = table.add(Counter(1)).unwrap();
        let b = table.add(Other).unwrap();
        assert_ne!(a, b);
        table.get_mut::<Counter>(a, "t").unwrap().0 += 1;
        assert_eq!(table.get_mut::<Counter>(a, "t").unwrap().0, 2);
        assert!(table.get_mut::<Counter>(b, "t").is_err(), "wrong kind");
        assert!(table.take::<Counter>(b, "t").is_err());
        assert!(table.get_mut::<Other>(b, "t").is_ok(), "a failed take keeps the resource");
        let c = table.add(Counter(7)).unwrap();
        assert_eq!(table.retain::<Counter>(|counter| counter.0 != 7), 1, "retain frees what it rejects");
        assert!(
            table.get_mut::<Counter>(c, "t").is_err() && table.get_mut::<Other>(b, "t").is_ok(),
            "of its kind only"
        );
        table.close(a);
        assert!(table.get_mut::<Counter>(a, "t").is_err(), "closed");
        for _ in 0..RESOURCES_MAX - 1 {
            table.add(Other).unwrap();
        }
        assert!(matches!(table.add(Other), Err(JsError::Range(_))));
    }
}

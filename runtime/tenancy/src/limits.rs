//! A tenant's limits and the values each may take: the one place that says `cpu_ms` is
//! `1..=60000`, used by the configuration file and by the admin API alike.
//!
//! Operators write limits in [`Limits`] (whole milliseconds and MiB, as in `isobar.toml` and an
//! upload's `limits`); the runtime enforces them as [`TenantLimits`] (durations and bytes).
//! [`LimitsPatch`] is the set of keys one table or upload sets, checked against [`LIMIT_KEYS`].

use std::time::Duration;

use serde::Deserialize;

/// The limits of one tenant as operators write them (`[defaults.limits]`, `tenant.limits`, an
/// upload's `limits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// CPU time per request.
    pub cpu_ms: u32,
    /// Heap per isolate; at most `isolates.per_core_heap_mb`.
    pub heap_mb: u32,
    /// Wall-clock time per request.
    pub wall_ms: u32,
    /// Outbound fetches per request.
    pub subrequests: u32,
    /// In-flight requests per tenant per core.
    pub concurrency: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { cpu_ms: 50, heap_mb: 128, wall_ms: 30_000, subrequests: 50, concurrency: 1000 }
    }
}

/// One key of [`Limits`]: its name, the values it may take, and its field.
#[derive(Debug)]
pub struct LimitKey {
    pub name: &'static str,
    pub min: u32,
    pub max: u32,
    field: fn(&mut Limits) -> &mut u32,
}

/// The largest heap an isolate may have, in MiB. With pointer compression an isolate's heap
/// lives in its isolate group's 4 GB cage, which holds at most 2,304 MB of heap limits (runtime's
/// `cage::GROUP_HEAP_BYTES`, which checks that it agrees), so a larger limit is refused when it
/// is set rather than failing every time an isolate is made.
pub const HEAP_MB_MAX: u32 = if cfg!(feature = "ptrcomp") { 2304 } else { 4096 };

/// Every limit a tenant can set, with its range, in the order messages list them.
pub const LIMIT_KEYS: [LimitKey; 5] = [
    LimitKey { name: "cpu_ms", min: 1, max: 60_000, field: |limits| &mut limits.cpu_ms },
    LimitKey { name: "heap_mb", min: 4, max: HEAP_MB_MAX, field: |limits| &mut limits.heap_mb },
    LimitKey { name: "wall_ms", min: 1, max: 600_000, field: |limits| &mut limits.wall_ms },
    LimitKey { name: "subrequests", min: 0, max: 10_000, field: |limits| &mut limits.subrequests },
    LimitKey { name: "concurrency", min: 1, max: 100_000, field: |limits| &mut limits.concurrency },
];

/// A value outside a limit's range; written to follow the key's name:
/// `cpu_ms must be between 1 and 60000 (got 0)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("must be between {min} and {max} (got {got})")]
pub struct OutOfRange {
    pub min: u64,
    pub max: u64,
    pub got: i128,
}

/// Checks `value` against `min..=max`.
pub fn in_range(value: i128, min: u64, max: u64) -> Result<u64, OutOfRange> {
    match u64::try_from(value) {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(OutOfRange { min, max, got: value }),
    }
}

impl LimitKey {
    /// This limit's field of `limits`.
    pub fn field<'a>(&self, limits: &'a mut Limits) -> &'a mut u32 {
        (self.field)(limits)
    }

    /// This limit's value in `limits`.
    pub fn get(&self, limits: &Limits) -> u32 {
        *self.field(&mut { *limits })
    }

    /// Sets this limit of `limits` to `value`, if it is in range.
    pub fn set(&self, limits: &mut Limits, value: i128) -> Result<(), OutOfRange> {
        let checked = in_range(value, self.min.into(), self.max.into())?;
        // The range check above makes the conversion exact.
        *self.field(limits) = u32::try_from(checked).unwrap_or(self.max);
        Ok(())
    }
}

/// The limits one table or upload sets, each optional; `V` is how a value is read (a spanned
/// TOML integer in the configuration file, a JSON number in an upload). Unknown keys are
/// refused, and the field names are [`LIMIT_KEYS`]' (a test checks).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsPatch<V> {
    pub cpu_ms: Option<V>,
    pub heap_mb: Option<V>,
    pub wall_ms: Option<V>,
    pub subrequests: Option<V>,
    pub concurrency: Option<V>,
}

impl<V> LimitsPatch<V> {
    /// Each key that is set, with its value, in [`LIMIT_KEYS`] order.
    pub fn into_entries(self) -> impl Iterator<Item = (&'static LimitKey, V)> {
        let [cpu_ms, heap_mb, wall_ms, subrequests, concurrency] = &LIMIT_KEYS;
        [
            (cpu_ms, self.cpu_ms),
            (heap_mb, self.heap_mb),
            (wall_ms, self.wall_ms),
            (subrequests, self.subrequests),
            (concurrency, self.concurrency),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key, value?)))
    }
}

/// A limit of a [`LimitsPatch`] that is out of range, named by its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("limits.{key} {error}")]
pub struct PatchError {
    pub key: &'static str,
    pub error: OutOfRange,
}

impl Limits {
    /// These limits with `patch`'s values on top; fails at the first value out of range.
    pub fn patched(mut self, patch: LimitsPatch<i64>) -> Result<Limits, PatchError> {
        for (key, value) in patch.into_entries() {
            key.set(&mut self, value.into()).map_err(|error| PatchError { key: key.name, error })?;
        }
        Ok(self)
    }
}

/// Per-tenant limits as the runtime enforces them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantLimits {
    /// CPU time one request may use in the isolate (all its entries together).
    pub cpu: Duration,
    /// V8 heap of one isolate, and as much again of ArrayBuffer memory.
    pub heap_bytes: usize,
    /// Wall-clock time from dispatch to response.
    pub wall: Duration,
    /// Outbound fetches per request (enforced once fetch() exists).
    pub subrequests: u32,
    /// Requests of this tenant in flight at once on one core; beyond it, 503 + Retry-After.
    pub concurrency: u32,
}

impl Default for TenantLimits {
    fn default() -> TenantLimits {
        TenantLimits::from(Limits::default())
    }
}

impl From<Limits> for TenantLimits {
    fn from(limits: Limits) -> TenantLimits {
        TenantLimits {
            cpu: Duration::from_millis(limits.cpu_ms.into()),
            heap_bytes: (limits.heap_mb as usize) << 20,
            wall: Duration::from_millis(limits.wall_ms.into()),
            subrequests: limits.subrequests,
            concurrency: limits.concurrency,
        }
    }
}

/// Back to whole milliseconds and MiB (exact for limits made from [`Limits`]; others round down
/// and saturate), for showing a tenant's limits and for patching them.
impl From<TenantLimits> for Limits {
    fn from(limits: TenantLimits) -> Limits {
        let saturate = |value: u128| u32::try_from(value).unwrap_or(u32::MAX);
        Limits {
            cpu_ms: saturate(limits.cpu.as_millis()),
            heap_mb: saturate((limits.heap_bytes >> 20) as u128),
            wall_ms: saturate(limits.wall.as_millis()),
            subrequests: limits.subrequests,
            concurrency: limits.concurrency,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_in_range_and_the_runtime_defaults_match() {
        for key in &LIMIT_KEYS {
            let default = key.get(&Limits::default());
            assert!((key.min..=key.max).contains(&default), "the default of {} is in its range", key.name);
        }
        let runtime = TenantLimits::default();
        assert_eq!(runtime.cpu, Duration::from_millis(50));
        assert_eq!(runtime.heap_bytes, 128 << 20);
        assert_eq!(Limits::from(runtime), Limits::default());
    }

    #[test]
    fn keys_set_their_own_field() {
        let mut limits = Limits::default();
        for (value, key) in (1..).zip(&LIMIT_KEYS) {
            key.set(&mut limits, value + 3).unwrap();
        }
        assert_eq!(limits, Limits { cpu_ms: 4, heap_mb: 5, wall_ms: 6, subrequests: 7, concurrency: 8 });
    }

    /// The patch's serde field names are the keys' names, in the same order.
    #[test]
    fn patch_fields_are_the_limit_keys() {
        let object: serde_json::Map<String, serde_json::Value> =
            LIMIT_KEYS.iter().zip(10..).map(|(key, value)| (key.name.to_owned(), value.into())).collect();
        let patch: LimitsPatch<i64> = serde_json::from_value(object.into()).unwrap();
        let entries: Vec<(&str, i64)> = patch.into_entries().map(|(key, value)| (key.name, value)).collect();
        let expected: Vec<(&str, i64)> = LIMIT_KEYS.iter().map(|key| key.name).zip(10..).collect();
        assert_eq!(entries, expected);
    }

    #[test]
    fn patches_are_checked_against_the_ranges() {
        let patch = |json: &str| serde_json::from_str::<LimitsPatch<i64>>(json).unwrap();
        let limits = Limits::default().patched(patch(r#"{"cpu_ms": 60000, "subrequests": 0}"#)).unwrap();
        assert_eq!(limits, Limits { cpu_ms: 60_000, subrequests: 0, ..Limits::default() });
        let heap = (format!(r#"{{"heap_mb": {}}}"#, HEAP_MB_MAX + 1), HEAP_MB_MAX);
        let heap_message = format!("limits.heap_mb must be between 4 and {} (got {})", heap.1, heap.1 + 1);
        let cases = [
            (r#"{"cpu_ms": 0}"#, "limits.cpu_ms must be between 1 and 60000 (got 0)"),
            (heap.0.as_str(), heap_message.as_str()),
            (r#"{"wall_ms": -5}"#, "limits.wall_ms must be between 1 and 600000 (got -5)"),
            (r#"{"concurrency": 100001}"#, "limits.concurrency must be between 1 and 100000 (got 100001)"),
        ];
        for (json, message) in cases {
            assert_eq!(Limits::default().patched(patch(json)).unwrap_err().to_string(), message, "{json}");
        }
        assert!(serde_json::from_str::<LimitsPatch<i64>>(r#"{"cpu": 5}"#).is_err(), "unknown keys are refused");
    }

    #[test]
    fn out_of_range_covers_every_integer() {
        assert_eq!(in_range(i128::MAX, 0, 10).unwrap_err().got, i128::MAX);
        assert_eq!(in_range(-1, 0, 10).unwrap_err().got, -1);
        assert_eq!(in_range(10, 0, 10), Ok(10));
    }
}

//! isobar-state owns the state behind Workers bindings, as plain Rust libraries with no V8:
//! KV namespaces ([`kv`]: an embedded redb store per host, or a Valkey/Redis server or cluster
//! shared by many hosts) and the Cache API store ([`cache`]: `caches.default` and `caches.open`,
//! memory and disk budgets shared by a host's cores). The runtime's glue turns them into
//! JavaScript bindings. (Cron schedules are control-plane state: `isobar_tenancy::cron`.)
//!
//! It must not block a core's thread. Everything slow happens on a thread this crate spawns
//! (the embedded KV store and the cache's disk tier each have one storage thread per host,
//! reached through bounded channels that refuse rather than wait when full), or is sans-IO
//! (the Redis backend takes bytes and time in and hands bytes and events out;
//! the core's io_uring loop drives them). Time comes from a [`clock::Clock`] so tests can move
//! it. It must not depend on V8 or on the `runtime` crate.

pub mod cache;
pub mod clock;
pub mod kv;

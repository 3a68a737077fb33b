//! A core's idle keep-alive connections for outbound requests, keyed by origin; a plain data
//! structure, time passed in.
//!
//! `fetch()` reuses a connection to the same origin (scheme, host, port) rather than paying a
//! TCP (and TLS) handshake per request. This pool only keeps the idle ones: it owns no socket,
//! reads no clock and closes nothing itself. Whatever it lets go (evicted, expired, drained) is
//! handed back to the caller, who closes it. What it must not do: decide whether a connection is
//! still usable (the caller checks its codec before reuse, and removes an idle connection the
//! origin closed with [`KeepAlivePool::remove`]), or hold more than its limits.
//!
//! Policy: a request takes the most recently used idle connection of its origin (the one most
//! likely still open, with warm congestion state; older ones age out); a connection idle longer
//! than `idle_timeout` expires; beyond `idle_per_origin_max` the origin's oldest goes, beyond
//! `idle_total_max` the core's least recently used goes.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// `http` or `https`: the same host and port over TLS is a different origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

/// What a connection is to: scheme, host and port (RFC 6454's origin).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    scheme: Scheme,
    host: String,
    port: u16,
}

impl Origin {
    /// `host` is a DNS name or an IP literal (IPv6 without brackets, or with: both are kept as
    /// given). DNS names are case-insensitive, so it is lowercased.
    pub fn new(scheme: Scheme, host: &str, port: u16) -> Self {
        Self { scheme, host: host.to_ascii_lowercase(), port }
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Bounds on what the pool keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// Idle connections kept per origin (0: keep-alive off for everyone).
    pub idle_per_origin_max: usize,
    /// Idle connections kept on the core, all origins together.
    pub idle_total_max: usize,
    /// An idle connection older than this is let go. Origins close idle connections on their
    /// own timers (often 5-60 s); a shorter one here makes a request racing the origin's close
    /// less likely.
    pub idle_timeout: Duration,
}

impl Default for PoolLimits {
    /// Enough idle connections per origin for a core proxying 64-128 requests at once: with
    /// 16, each burst opened new connections only to close most of them again (12% of a core
    /// in connect and close under 64 connections, BENCHMARKS.md §8). An idle connection costs a
    /// socket and a few hundred bytes.
    fn default() -> Self {
        Self { idle_per_origin_max: 128, idle_total_max: 1024, idle_timeout: Duration::from_secs(30) }
    }
}

/// Names one idle connection in the pool, to [`KeepAlivePool::remove`] it (the origin closed it,
/// say). Never reused within one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdleId(u64);

/// What [`KeepAlivePool::put`] did with a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Put<C> {
    /// Kept under `id`; `evicted` is another connection let go to make room (close it).
    Kept { id: IdleId, evicted: Option<C> },
    /// Not kept (limits of zero): close it.
    Refused(C),
}

#[derive(Debug)]
struct Entry<C> {
    origin: Origin,
    since: Instant,
    conn: C,
}

/// The per-core keep-alive pool. See the module documentation.
#[derive(Debug)]
pub struct KeepAlivePool<C> {
    limits: PoolLimits,
    entries: HashMap<IdleId, Entry<C>>,
    /// Each origin's idle connections in the order they were put: the back is the most
    /// recently used. At most `idle_per_origin_max` long; empty ones are removed.
    by_origin: HashMap<Origin, VecDeque<IdleId>>,
    /// Every idle connection by when it became idle: the first is the least recently used.
    by_age: BTreeSet<(Instant, IdleId)>,
    next_id: u64,
}

impl<C> KeepAlivePool<C> {
    pub fn new(limits: PoolLimits) -> Self {
        Self { limits, entries: HashMap::new(), by_origin: HashMap::new(), by_age: BTreeSet::new(), next_id: 0 }
    }

    pub fn limits(&self) -> PoolLimits {
        self.limits
    }

    /// Idle connections held, all origins.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Idle connections held for `origin`.
    pub fn len_for(&self, origin: &Origin) -> usize {
        self.by_origin.get(origin).map_or(0, VecDeque::len)
    }

    /// Returns a connection that finished an exchange and may carry another, idle since `now`.
    pub fn put(&mut self, origin: Origin, conn: C, now: Instant) -> Put<C> {
        if self.limits.idle_per_origin_max == 0 || self.limits.idle_total_max == 0 {
            return Put::Refused(conn);
        }
        // Make room first, so neither bound is ever exceeded, even for a moment. Before this
        // put both held, so one eviction restores both: from the origin if it is full (the
        // total drops with it), else the core's least recently used.
        let evicted = if self.len_for(&origin) >= self.limits.idle_per_origin_max {
            self.by_origin.get(&origin).and_then(|ids| ids.front().copied()).and_then(|id| self.remove(id))
        } else if self.entries.len() >= self.limits.idle_total_max {
            self.by_age.first().map(|&(_, id)| id).and_then(|id| self.remove(id))
        } else {
            None
        };
        let id = IdleId(self.next_id);
        self.next_id += 1;
        self.by_origin.entry(origin.clone()).or_default().push_back(id);
        self.by_age.insert((now, id));
        self.entries.insert(id, Entry { origin, since: now, conn });
        Put::Kept { id, evicted }
    }

    /// The most recently used idle connection to `origin` that has not expired at `now`, if any.
    /// Expired ones stay until [`Self::expire`] hands them back for closing.
    pub fn take(&mut self, origin: &Origin, now: Instant) -> Option<C> {
        let id = *self.by_origin.get(origin)?.back()?;
        let entry = self.entries.get(&id)?;
        if self.expired(entry.since, now) {
            return None;
        }
        self.remove(id)
    }

    /// Takes one idle connection out by id (the origin closed it, or it failed), if it is still
    /// in the pool.
    pub fn remove(&mut self, id: IdleId) -> Option<C> {
        let entry = self.entries.remove(&id)?;
        self.by_age.remove(&(entry.since, id));
        if let Some(ids) = self.by_origin.get_mut(&entry.origin) {
            // Short (at most `idle_per_origin_max`), and usually the back or the front.
            if let Some(position) = ids.iter().rposition(|&other| other == id) {
                ids.remove(position);
            }
            if ids.is_empty() {
                self.by_origin.remove(&entry.origin);
            }
        }
        Some(entry.conn)
    }

    /// Moves every connection idle for `idle_timeout` or longer at `now` into `out`, least
    /// recently used first, for the caller to close.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<C>) {
        // Each pass removes one entry or leaves; the bound makes that plain.
        for _ in 0..self.entries.len() {
            let Some(&(since, id)) = self.by_age.first() else {
                break;
            };
            if !self.expired(since, now) {
                break;
            }
            if let Some(conn) = self.remove(id) {
                out.push(conn);
            }
        }
    }

    /// When [`Self::expire`] next has something to do, if ever.
    pub fn poll_at(&self) -> Option<Instant> {
        let &(since, _) = self.by_age.first()?;
        since.checked_add(self.limits.idle_timeout)
    }

    /// Lets every idle connection go (shutdown, or a change of limits), least recently used
    /// first.
    pub fn drain(&mut self, out: &mut Vec<C>) {
        let ids: Vec<IdleId> = self.by_age.iter().map(|&(_, id)| id).collect();
        for id in ids {
            if let Some(conn) = self.remove(id) {
                out.push(conn);
            }
        }
    }

    /// Every idle connection's id and connection, for the caller to match socket events
    /// (an EOF on an idle connection) to pool entries.
    pub fn iter(&self) -> impl Iterator<Item = (IdleId, &C)> {
        self.entries.iter().map(|(&id, entry)| (id, &entry.conn))
    }

    fn expired(&self, since: Instant, now: Instant) -> bool {
        since.checked_add(self.limits.idle_timeout).is_some_and(|deadline| now >= deadline)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn http(host: &str) -> Origin {
        Origin::new(Scheme::Http, host, 80)
    }

    fn kept<C: std::fmt::Debug>(put: Put<C>) -> (IdleId, Option<C>) {
        match put {
            Put::Kept { id, evicted } => (id, evicted),
            Put::Refused(conn) => panic!("refused {conn:?}"),
        }
    }

    #[test]
    fn origins_differ_by_scheme_host_and_port_not_case() {
        assert_eq!(Origin::new(Scheme::Http, "Example.COM", 80), http("example.com"));
        assert_ne!(Origin::new(Scheme::Https, "example.com", 80), http("example.com"));
        assert_ne!(Origin::new(Scheme::Http, "example.com", 8080), http("example.com"));
        let t0 = Instant::now();
        let mut pool = KeepAlivePool::new(PoolLimits::default());
        kept(pool.put(http("a"), "a-conn", t0));
        assert_eq!(pool.take(&Origin::new(Scheme::Https, "a", 80), t0), None);
        assert_eq!(pool.take(&Origin::new(Scheme::Http, "a", 81), t0), None);
        assert_eq!(pool.take(&Origin::new(Scheme::Http, "A", 80), t0), Some("a-conn"));
        assert!(pool.is_empty());
    }

    #[test]
    fn takes_the_most_recently_used_first() {
        let t0 = Instant::now();
        let mut pool = KeepAlivePool::new(PoolLimits::default());
        for (i, conn) in ["first", "second", "third"].into_iter().enumerate() {
            kept(pool.put(http("a"), conn, t0 + Duration::from_secs(i as u64)));
        }
        kept(pool.put(http("b"), "other", t0));
        let now = t0 + Duration::from_secs(3);
        assert_eq!(pool.take(&http("a"), now), Some("third"));
        assert_eq!(pool.take(&http("a"), now), Some("second"));
        kept(pool.put(http("a"), "again", now));
        assert_eq!(pool.take(&http("a"), now), Some("again"));
        assert_eq!(pool.take(&http("a"), now), Some("first"));
        assert_eq!(pool.take(&http("a"), now), None);
        assert_eq!((pool.len(), pool.len_for(&http("b"))), (1, 1));
    }

    #[test]
    fn idle_timeout_expires_least_recently_used_first() {
        let t0 = Instant::now();
        let limits = PoolLimits { idle_timeout: Duration::from_secs(10), ..PoolLimits::default() };
        let mut pool = KeepAlivePool::new(limits);
        assert_eq!(pool.poll_at(), None);
        kept(pool.put(http("a"), 1, t0));
        kept(pool.put(http("b"), 2, t0 + Duration::from_secs(4)));
        kept(pool.put(http("a"), 3, t0 + Duration::from_secs(8)));
        assert_eq!(pool.poll_at(), Some(t0 + Duration::from_secs(10)));
        let mut out = Vec::new();
        pool.expire(t0 + Duration::from_secs(9), &mut out);
        assert!(out.is_empty());
        pool.expire(t0 + Duration::from_secs(14), &mut out);
        assert_eq!(out, [1, 2]);
        assert_eq!(pool.poll_at(), Some(t0 + Duration::from_secs(18)));
        // An expired connection is never handed out, even before `expire` runs.
        assert_eq!(pool.take(&http("a"), t0 + Duration::from_secs(18)), None);
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.take(&http("a"), t0 + Duration::from_secs(17)), Some(3));
    }

    #[test]
    fn per_origin_and_total_bounds_evict() {
        let t0 = Instant::now();
        let limits = PoolLimits { idle_per_origin_max: 2, idle_total_max: 3, idle_timeout: Duration::from_secs(60) };
        let mut pool = KeepAlivePool::new(limits);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(kept(pool.put(http("a"), "a1", at(0))).1, None);
        assert_eq!(kept(pool.put(http("a"), "a2", at(1))).1, None);
        // The origin is full: its oldest goes.
        assert_eq!(kept(pool.put(http("a"), "a3", at(2))).1, Some("a1"));
        assert_eq!(kept(pool.put(http("b"), "b1", at(3))).1, None);
        // The core is full: the least recently used of all goes, whatever its origin.
        assert_eq!(kept(pool.put(http("c"), "c1", at(4))).1, Some("a2"));
        assert_eq!(pool.len(), 3);
        assert_eq!((pool.len_for(&http("a")), pool.len_for(&http("b")), pool.len_for(&http("c"))), (1, 1, 1));
    }

    #[test]
    fn zero_limits_turn_keep_alive_off() {
        let t0 = Instant::now();
        for limits in [
            PoolLimits { idle_per_origin_max: 0, ..PoolLimits::default() },
            PoolLimits { idle_total_max: 0, ..PoolLimits::default() },
        ] {
            let mut pool = KeepAlivePool::new(limits);
            assert_eq!(pool.put(http("a"), 7, t0), Put::Refused(7));
            assert!(pool.is_empty());
        }
        // A zero timeout keeps nothing usable.
        let mut pool = KeepAlivePool::new(PoolLimits { idle_timeout: Duration::ZERO, ..PoolLimits::default() });
        kept(pool.put(http("a"), 7, t0));
        assert_eq!(pool.take(&http("a"), t0), None);
        let mut out = Vec::new();
        pool.expire(t0, &mut out);
        assert_eq!(out, [7]);
    }

    #[test]
    fn remove_by_id_and_drain() {
        let t0 = Instant::now();
        let mut pool = KeepAlivePool::new(PoolLimits::default());
        let (a1, _) = kept(pool.put(http("a"), "a1", t0));
        let (a2, _) = kept(pool.put(http("a"), "a2", t0));
        kept(pool.put(http("b"), "b1", t0 + Duration::from_secs(1)));
        assert_ne!(a1, a2);
        let ids: Vec<_> = pool.iter().map(|(id, _)| id).collect();
        assert!(ids.contains(&a1) && ids.contains(&a2));
        assert_eq!(pool.remove(a2), Some("a2"));
        assert_eq!(pool.remove(a2), None, "an id names one connection once");
        assert_eq!(pool.take(&http("a"), t0), Some("a1"));
        assert_eq!(pool.remove(a1), None);
        let mut out = Vec::new();
        pool.drain(&mut out);
        assert_eq!(out, ["b1"]);
        assert!(pool.is_empty() && pool.poll_at().is_none());
    }

    #[test]
    fn timeouts_never_overflow() {
        let t0 = Instant::now();
        let mut pool = KeepAlivePool::new(PoolLimits { idle_timeout: Duration::MAX, ..PoolLimits::default() });
        kept(pool.put(http("a"), 1, t0));
        assert_eq!(pool.poll_at(), None);
        let mut out = Vec::new();
        pool.expire(t0 + Duration::from_secs(1 << 30), &mut out);
        assert!(out.is_empty());
        assert_eq!(pool.take(&http("a"), t0 + Duration::from_secs(1 << 30)), Some(1));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u8),
        Take(u8),
        Remove(usize),
        Expire,
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..4).prop_map(Op::Put),
            3 => (0u8..4).prop_map(Op::Take),
            1 => any::<usize>().prop_map(Op::Remove),
            1 => Just(Op::Expire),
            2 => (0u64..20).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// The pool against a plain list model: same answers, bounds always held, every
        /// connection accounted for (held, handed out, or handed back for closing) exactly once.
        #[test]
        fn behaves_like_the_model(
            ops in prop::collection::vec(op(), 0..200),
            per_origin in 0usize..4,
            total in 0usize..6,
            timeout_s in 1u64..30,
        ) {
            let limits = PoolLimits {
                idle_per_origin_max: per_origin,
                idle_total_max: total,
                idle_timeout: Duration::from_secs(timeout_s),
            };
            let t0 = Instant::now();
            let mut now = t0;
            let mut pool = KeepAlivePool::new(limits);
            // (id, origin, since, conn), oldest first.
            let mut model: Vec<(IdleId, u8, Instant, u32)> = Vec::new();
            let mut next_conn = 0u32;
            let mut released = 0usize;
            let mut out = Vec::new();
            for op in ops {
                match op {
                    Op::Put(o) => {
                        let conn = next_conn;
                        next_conn += 1;
                        match pool.put(http(&o.to_string()), conn, now) {
                            Put::Refused(c) => {
                                prop_assert_eq!(c, conn);
                                prop_assert!(per_origin == 0 || total == 0);
                                released += 1;
                            }
                            Put::Kept { id, evicted } => {
                                let same: Vec<usize> = (0..model.len()).filter(|&i| model[i].1 == o).collect();
                                let expected = if same.len() >= per_origin {
                                    Some(model.remove(same[0]).3)
                                } else if model.len() >= total {
                                    Some(model.remove(0).3)
                                } else {
                                    None
                                };
                                prop_assert_eq!(evicted, expected);
                                released += usize::from(evicted.is_some());
                                model.push((id, o, now, conn));
                            }
                        }
                    }
                    Op::Take(o) => {
                        let got = pool.take(&http(&o.to_string()), now);
                        let newest = model.iter().rposition(|m| m.1 == o);
                        let expected = newest
                            .filter(|&i| now < model[i].2 + limits.idle_timeout)
                            .map(|i| model.remove(i).3);
                        prop_assert_eq!(got, expected);
                        released += usize::from(got.is_some());
                    }
                    Op::Remove(pick) => {
                        if !model.is_empty() {
                            let (id, _, _, conn) = model.remove(pick % model.len());
                            prop_assert_eq!(pool.remove(id), Some(conn));
                            released += 1;
                        }
                    }
                    Op::Expire => {
                        out.clear();
                        pool.expire(now, &mut out);
                        let expected: Vec<u32> =
                            model.iter().filter(|m| now >= m.2 + limits.idle_timeout).map(|m| m.3).collect();
                        model.retain(|m| now < m.2 + limits.idle_timeout);
                        prop_assert_eq!(&out, &expected);
                        released += out.len();
                    }
                    Op::Advance(s) => now += Duration::from_secs(s),
                }
                prop_assert_eq!(pool.len(), model.len());
                prop_assert!(pool.len() <= total);
                for o in 0u8..4 {
                    prop_assert!(pool.len_for(&http(&o.to_string())) <= per_origin);
                }
                let oldest = model.first().map(|m| m.2 + limits.idle_timeout);
                prop_assert_eq!(pool.poll_at(), oldest);
            }
            out.clear();
            pool.drain(&mut out);
            released += out.len();
            prop_assert_eq!(released, next_conn as usize);
        }
    }
}

//! Answers by name until their TTL runs out, bounded in entries.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use super::DnsError;

type CachedResult = Result<Vec<IpAddr>, DnsError>;

#[derive(Debug)]
struct Entry {
    result: CachedResult,
    expires: Instant,
}

/// Positive and negative answers keyed by the normalized host name. When full, the entry
/// closest to expiry makes room: it is the one worth least.
#[derive(Debug)]
pub(super) struct Cache {
    entries_max: usize,
    entries: HashMap<String, Entry>,
    by_expiry: BTreeSet<(Instant, String)>,
}

impl Cache {
    pub(super) fn new(entries_max: usize) -> Self {
        Self { entries_max, entries: HashMap::new(), by_expiry: BTreeSet::new() }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The answer for `host` if it has not expired at `now`.
    pub(super) fn get(&self, host: &str, now: Instant) -> Option<CachedResult> {
        self.entries.get(host).filter(|entry| entry.expires > now).map(|entry| entry.result.clone())
    }

    pub(super) fn insert(&mut self, host: String, result: CachedResult, expires: Instant) {
        if self.entries_max == 0 {
            return;
        }
        if let Some(old) = self.entries.remove(&host) {
            self.by_expiry.remove(&(old.expires, host.clone()));
        }
        while self.entries.len() >= self.entries_max {
            let Some((_, victim)) = self.by_expiry.pop_first() else { break };
            self.entries.remove(&victim);
        }
        self.by_expiry.insert((expires, host.clone()));
        self.entries.insert(host, Entry { result, expires });
    }

    /// Drops every entry expired at `now`.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some((expires, _)) = self.by_expiry.first() {
            if *expires > now {
                break;
            }
            if let Some((_, host)) = self.by_expiry.pop_first() {
                self.entries.remove(&host);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn expiry_and_bounds() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let ip = |last: u8| Ok(vec![IpAddr::from([192, 0, 2, last])]);
        let mut cache = Cache::new(2);
        cache.insert("a".into(), ip(1), at(10));
        cache.insert("b".into(), Err(DnsError::NxDomain), at(5));
        assert_eq!(cache.get("a", at(9)), Some(ip(1)));
        assert_eq!(cache.get("a", at(10)), None, "expired at its instant");
        assert_eq!(cache.get("b", at(1)), Some(Err(DnsError::NxDomain)));
        // Full: the entry closest to expiry goes.
        cache.insert("c".into(), ip(3), at(20));
        assert_eq!((cache.len(), cache.get("b", at(1))), (2, None));
        // Replacing keeps one entry per name.
        cache.insert("a".into(), ip(4), at(30));
        assert_eq!((cache.len(), cache.get("a", at(25))), (2, Some(ip(4))));
        cache.expire(at(20));
        assert_eq!((cache.len(), cache.get("c", at(0))), (1, None));
        let mut off = Cache::new(0);
        off.insert("a".into(), ip(1), at(10));
        assert_eq!(off.len(), 0);
    }
}

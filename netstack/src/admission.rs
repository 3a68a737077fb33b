//! Connection admission at the edge: how many connections one client address, and the whole
//! process, may hold open at once. One [`ConnAdmission`] is shared by every core's transport;
//! a transport asks it about each connection it accepts, before anything else is spent on it,
//! and a connection beyond a cap is closed at once (kernel sockets) or reset (the userspace
//! stack) and counted. The ticket ([`Admitted`]) lives with the connection and gives its place
//! back when the connection is dropped from the transport's table.
//!
//! A client is its IPv4 address, or the /64 prefix of its IPv6 address (one host is routinely
//! given a whole /64, so counting single IPv6 addresses would cap nothing); an IPv4-mapped IPv6
//! peer counts as its IPv4 address.
//!
//! Cores share nothing else, so this is the one place they meet on the connection path: an
//! atomic for the total and a map per shard (64 shards, keyed by a per-process SipHash of the
//! client), each behind a mutex held for one map update, uncontended unless two cores accept
//! from clients of the same shard in the same instant. The maps hold only clients with an open
//! connection, so their size is bounded by the total cap. It makes no system call and never
//! waits on anything but those short critical sections.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// The caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnCaps {
    /// Connections one client (IPv4 address or IPv6 /64) may hold open at once.
    pub per_client_max: u32,
    /// Connections the process holds open at once, over every core.
    pub total_max: u32,
}

impl Default for ConnCaps {
    /// 256 per client: a browser opens about six per host, so this leaves room for a few
    /// dozen people behind one NAT address, and still keeps one address from taking a core's
    /// whole table (10,000). 100,000 in all: more than the open-file limit of most hosts.
    fn default() -> ConnCaps {
        ConnCaps { per_client_max: 256, total_max: 100_000 }
    }
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, displaydoc::Display)]
pub enum Refusal {
    /// the client already holds {0} connections, its cap
    PerClient(u32),
    /// the process already holds {0} connections, its cap
    Total(u32),
}

/// Connections refused at the edge, by reason (one transport's count).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefusedConns {
    /// Closed because the transport's own table was full (`NetLimits::conns_max`).
    pub table_full: u64,
    /// Closed because the client was at `ConnCaps::per_client_max`.
    pub per_client: u64,
    /// Closed because the process was at `ConnCaps::total_max`.
    pub total: u64,
}

impl RefusedConns {
    pub(crate) fn count(&mut self, refusal: Refusal) {
        match refusal {
            Refusal::PerClient(_) => self.per_client += 1,
            Refusal::Total(_) => self.total += 1,
        }
    }
}

/// A client, as the per-client cap counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Client {
    V4([u8; 4]),
    /// The /64 prefix.
    V6([u8; 8]),
}

impl Client {
    fn of(ip: IpAddr) -> Client {
        match ip {
            IpAddr::V4(v4) => Client::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client::V4(v4.octets()),
                None => {
                    let octets = v6.octets();
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&octets[..8]);
                    Client::V6(prefix)
                }
            },
        }
    }
}

const SHARDS: usize = 64;

/// The caps and what is open, shared by every core. See the module documentation.
pub struct ConnAdmission {
    caps: ConnCaps,
    open: AtomicU32,
    shards: Vec<Mutex<HashMap<Client, u32>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for ConnAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnAdmission").field("caps", &self.caps).field("open", &self.open_conns()).finish()
    }
}

impl ConnAdmission {
    /// Caps of 0 are raised to 1 (a cap of 0 would refuse everything).
    pub fn new(caps: ConnCaps) -> Arc<ConnAdmission> {
        let caps = ConnCaps { per_client_max: caps.per_client_max.max(1), total_max: caps.total_max.max(1) };
        Arc::new(ConnAdmission {
            caps,
            open: AtomicU32::new(0),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        })
    }

    pub fn caps(&self) -> ConnCaps {
        self.caps
    }

    /// Connections admitted and not yet released, over every core.
    pub fn open_conns(&self) -> u32 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections `peer`'s client holds now.
    pub fn client_conns(&self, peer: IpAddr) -> u32 {
        let client = Client::of(peer);
        let shard = self.shard(client).lock().unwrap_or_else(|e| e.into_inner());
        shard.get(&client).copied().unwrap_or(0)
    }

    fn shard(&self, client: Client) -> &Mutex<HashMap<Client, u32>> {
        let index = (self.hasher.hash_one(client) as usize) % SHARDS;
        &self.shards[index]
    }

    /// Takes a place for a connection from `peer`, or says which cap is reached.
    pub fn admit(self: &Arc<ConnAdmission>, peer: IpAddr) -> Result<Admitted, Refusal> {
        let total_max = self.caps.total_max;
        // Reserve a place in the total first; give it back if the client is at its cap.
        let reserved = self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
            if open < total_max { Some(open + 1) } else { None }
        });
        if reserved.is_err() {
            return Err(Refusal::Total(total_max));
        }
        let client = Client::of(peer);
        let mut shard = self.shard(client).lock().unwrap_or_else(|e| e.into_inner());
        let held = shard.entry(client).or_insert(0);
        if *held >= self.caps.per_client_max {
            let held = *held;
            drop(shard);
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::PerClient(held));
        }
        *held += 1;
        Ok(Admitted { admission: self.clone(), client })
    }

    fn release(&self, client: Client) {
        let mut shard = self.shard(client).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = shard.get_mut(&client) {
            *held -= 1;
            if *held == 0 {
                shard.remove(&client);
            }
        }
        drop(shard);
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One admitted connection's place; dropping it gives the place back.
pub struct Admitted {
    admission: Arc<ConnAdmission>,
    client: Client,
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted").field("client", &self.client).finish()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.release(self.client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_client_is_capped_and_gets_its_places_back() {
        let admission = ConnAdmission::new(ConnCaps { per_client_max: 2, total_max: 100 });
        let a = admission.admit(ip("10.0.0.1")).unwrap();
        let b = admission.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(admission.admit(ip("10.0.0.1")).unwrap_err(), Refusal::PerClient(2));
        // Another client is not affected, and a refusal took no place.
        let other = admission.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(admission.open_conns(), 3);
        drop(a);
        assert_eq!(admission.client_conns(ip("10.0.0.1")), 1);
        let c = admission.admit(ip("10.0.0.1")).unwrap();
        drop((b, c, other));
        assert_eq!(admission.open_conns(), 0);
        assert_eq!(admission.client_conns(ip("10.0.0.1")), 0);
        assert!(admission.shards.iter().all(|s| s.lock().unwrap().is_empty()), "no client is kept once gone");
    }

    #[test]
    fn the_total_is_capped_over_all_clients() {
        let admission = ConnAdmission::new(ConnCaps { per_client_max: 10, total_max: 3 });
        let held: Vec<Admitted> = (1..=3).map(|i| admission.admit(ip(&format!("192.0.2.{i}"))).unwrap()).collect();
        assert_eq!(admission.admit(ip("192.0.2.9")).unwrap_err(), Refusal::Total(3));
        drop(held);
        assert!(admission.admit(ip("192.0.2.9")).is_ok());
    }

    #[test]
    fn ipv6_clients_are_their_64_prefix_and_mapped_ipv4_is_ipv4() {
        let admission = ConnAdmission::new(ConnCaps { per_client_max: 1, total_max: 100 });
        let _first = admission.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(admission.admit(ip("2001:db8:1:2:ffff::9")).is_err(), "same /64");
        let _other = admission.admit(ip("2001:db8:1:3::1")).unwrap();
        let _v4 = admission.admit(ip("198.51.100.7")).unwrap();
        assert!(admission.admit(ip("::ffff:198.51.100.7")).is_err(), "the mapped form is the same client");
    }

    #[test]
    fn caps_hold_under_concurrent_admission() {
        let admission = ConnAdmission::new(ConnCaps { per_client_max: 50, total_max: 120 });
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let admission = admission.clone();
                std::thread::spawn(move || {
                    (0..100)
                        .filter_map(|i| admission.admit(ip(&format!("10.1.{}.1", (t + i) % 3))).ok())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let held: Vec<Vec<Admitted>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let admitted: usize = held.iter().map(Vec::len).sum();
        assert_eq!(admitted, 120, "exactly the total cap, never more");
        for client in 0..3 {
            assert!(admission.client_conns(ip(&format!("10.1.{client}.1"))) <= 50);
        }
        drop(held);
        assert_eq!(admission.open_conns(), 0);
    }
}

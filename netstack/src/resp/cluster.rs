//! The wire-level facts of a Valkey/Redis cluster: which of the 16384 slots a key hashes to,
//! which node serves each slot (from `CLUSTER SLOTS`), and what a `MOVED` or `ASK` error says.
//! Routing decisions (when to refresh, how often to retry) belong to the caller.

use super::Reply;

/// Slots in a Redis cluster.
pub const SLOT_COUNT: u16 = 16384;

/// The slot of `key`: CRC16 (XMODEM) of the key, or of its `{hash tag}` if it has a non-empty
/// one, modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    redis_protocol::redis_keyslot(key) % SLOT_COUNT
}

/// Which node (`host:port`, as the cluster announces it) serves each slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    /// Index = slot; `None` for a slot no node claims.
    owners: Vec<Option<u16>>,
    nodes: Vec<String>,
}

impl Default for SlotMap {
    fn default() -> Self {
        Self { owners: vec![None; usize::from(SLOT_COUNT)], nodes: Vec::new() }
    }
}

impl SlotMap {
    /// Builds the map from a `CLUSTER SLOTS` reply: an array of
    /// `[start, end, [host, port, id...], replicas...]`; only the primary (first node) is used.
    pub fn from_cluster_slots(reply: &Reply) -> Option<Self> {
        let Reply::Array(ranges) = reply else { return None };
        let mut map = Self::default();
        for range in ranges {
            let Reply::Array(fields) = range else { return None };
            let (Some(Reply::Integer(start)), Some(Reply::Integer(end)), Some(Reply::Array(primary))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return None;
            };
            let host = primary.first().and_then(Reply::as_bytes)?;
            let Some(Reply::Integer(port)) = primary.get(1) else { return None };
            let host = std::str::from_utf8(host).ok()?;
            let port = u16::try_from(*port).ok()?;
            let start = u16::try_from(*start).ok().filter(|s| *s < SLOT_COUNT)?;
            let end = u16::try_from(*end).ok().filter(|e| *e < SLOT_COUNT && *e >= start)?;
            let address = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
            for slot in start..=end {
                map.set(slot, &address);
            }
        }
        Some(map)
    }

    /// The node serving `slot`, if known.
    pub fn node(&self, slot: u16) -> Option<&str> {
        let index = self.owners.get(usize::from(slot)).copied().flatten()?;
        self.nodes.get(usize::from(index)).map(String::as_str)
    }

    /// Records that `node` serves `slot` (after a `MOVED`).
    pub fn set(&mut self, slot: u16, node: &str) {
        let index = match self.nodes.iter().position(|n| n == node) {
            Some(index) => index,
            None => {
                self.nodes.push(node.to_owned());
                self.nodes.len() - 1
            }
        };
        // A cluster has at most 16384 primaries, so the index fits.
        let index = u16::try_from(index).unwrap_or(u16::MAX);
        if let Some(owner) = self.owners.get_mut(usize::from(slot)) {
            *owner = Some(index);
        }
    }

    /// Every node the map names.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Whether no slot has an owner yet.
    pub fn is_empty(&self) -> bool {
        self.owners.iter().all(Option::is_none)
    }
}

/// A cluster redirection carried by an error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// `MOVED slot host:port`: the slot lives there now; update the map and retry there.
    Moved { slot: u16, node: String },
    /// `ASK slot host:port`: the slot is being migrated and this key is already there; send
    /// `ASKING` and the command to that node, once, without updating the map.
    Ask { slot: u16, node: String },
}

impl Redirect {
    /// Parses `MOVED 3999 127.0.0.1:6381` or `ASK 3999 127.0.0.1:6381`; `None` for any other error.
    pub fn parse(error: &str) -> Option<Self> {
        let mut words = error.split_ascii_whitespace();
        let kind = words.next()?;
        let slot: u16 = words.next()?.parse().ok().filter(|s| *s < SLOT_COUNT)?;
        let node = words.next()?;
        // A node may be announced as ":port" when the server does not know its own address;
        // such a redirect cannot be followed without the caller's knowledge, so it is refused.
        if node.starts_with(':') || words.next().is_some() {
            return None;
        }
        let node = node.to_owned();
        match kind {
            "MOVED" => Some(Self::Moved { slot, node }),
            "ASK" => Some(Self::Ask { slot, node }),
            _ => None,
        }
    }
}

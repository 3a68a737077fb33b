//! A sans-IO stub resolver for `fetch()`: host names to IPv4/IPv6 addresses over UDP, with the
//! search list, retries and timeouts of resolv.conf(5), and a bounded TTL cache.
//!
//! It owns no socket and reads no clock: the caller sends the datagrams it asks for
//! ([`Resolver::poll_transmit`]), feeds back the ones that arrive ([`Resolver::receive`]), and
//! passes time in ([`Resolver::poll`], [`Resolver::poll_at`]), so it runs on the core's ring or
//! on the userspace stack, and every test drives it with explicit instants. Query ids come from
//! the caller too ([`Resolver::new`]), from the system's random source. Messages are encoded and
//! decoded by `hickory-proto` (the `message` module); what it must not do: parse DNS by hand, trust an
//! answer that does not match its query, send an IP literal to DNS, or hold more than its
//! limits ([`ResolverLimits`]).
//!
//! The caller's loop:
//! 1. `match resolver.lookup(host, now)`: [`LookupStart::Ready`] (IP literal, `localhost`,
//!    cache) or [`LookupStart::Pending`] with a [`LookupId`];
//! 2. `while let Some(t) = resolver.poll_transmit()` send `t.bytes` to `t.server` (UDP, from a
//!    socket connected to it, ideally a fresh one per lookup so the source port is random);
//! 3. a datagram arrives from a nameserver: `resolver.receive(from, &bytes, now)`;
//! 4. `resolver.poll(now)` when [`Resolver::poll_at`] is due (retries, timeouts);
//! 5. `while let Some((id, result)) = resolver.poll_result()` wake whoever waits for `id`.

mod cache;
mod conf;
mod message;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::rr::{Name, RecordType};

use cache::Cache;
pub use conf::{IgnoredLine, NAME_BYTES_MAX, NAMESERVERS_MAX, RESOLV_CONF_BYTES_MAX, ResolvConf, SEARCH_DOMAINS_MAX};
use message::{Answer, Mismatch, Question};

/// Why a lookup gave no address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, displaydoc::Display)]
pub enum DnsError {
    /// the name does not exist (NXDOMAIN)
    NxDomain,
    /// the name exists but has no address of the families asked for
    NoAddresses,
    /// no nameserver answered in time
    Timeout,
    /// no nameserver is configured
    NoServers,
    /// the nameservers answered with an error (response code {rcode})
    ServerFailure { rcode: u16 },
    /// the nameservers answered only with malformed messages
    Malformed,
    /// the answer was truncated and would need DNS over TCP, which is not supported
    Truncated,
    /// not a valid host name
    InvalidName,
    /// too many lookups in flight on this core
    TooManyLookups,
}

/// Which address families a lookup asks for (A, AAAA, or both in parallel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressFamilies {
    Ipv4,
    Ipv6,
    Both,
}

impl AddressFamilies {
    fn qtypes(self) -> &'static [RecordType] {
        match self {
            Self::Ipv4 => &[RecordType::A],
            Self::Ipv6 => &[RecordType::AAAA],
            Self::Both => &[RecordType::A, RecordType::AAAA],
        }
    }

    fn allows(self, ip: IpAddr) -> bool {
        matches!((self, ip), (Self::Both, _) | (Self::Ipv4, IpAddr::V4(_)) | (Self::Ipv6, IpAddr::V6(_)))
    }
}

/// Bounds on what the resolver holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolverLimits {
    /// Lookups in flight; more -> [`DnsError::TooManyLookups`].
    pub lookups_max: usize,
    /// Names cached (answers and NXDOMAIN/NODATA); beyond it the entry closest to expiry goes.
    pub cache_entries_max: usize,
    /// No answer is cached longer than this, whatever its TTL.
    pub ttl_max: Duration,
    /// How long a negative answer is cached when it carries no SOA record.
    pub negative_ttl: Duration,
    /// No negative answer is cached longer than this.
    pub negative_ttl_max: Duration,
    /// Which records a lookup asks for.
    pub families: AddressFamilies,
}

impl Default for ResolverLimits {
    fn default() -> Self {
        Self {
            lookups_max: 256,
            cache_entries_max: 1024,
            ttl_max: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(30),
            negative_ttl_max: Duration::from_secs(300),
            families: AddressFamilies::Both,
        }
    }
}

/// Names one lookup in flight. Two lookups of the same name while one is in flight share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LookupId(u64);

/// What [`Resolver::lookup`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupStart {
    /// Known at once: an IP literal, a `localhost` name, a cached answer, or an error.
    Ready(Result<Vec<IpAddr>, DnsError>),
    /// Queries are on their way; the result comes from [`Resolver::poll_result`].
    Pending(LookupId),
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// A nameserver from the configuration (port 53).
    pub server: SocketAddr,
    pub bytes: Vec<u8>,
}

/// Counters for metrics and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsStats {
    pub queries_sent: u64,
    /// Datagrams that matched no question in flight, or came from another address: late,
    /// duplicated or spoofed.
    pub answers_ignored: u64,
    pub answers_malformed: u64,
    pub cache_hits: u64,
}

/// One question of a lookup in flight (A or AAAA for the current candidate name).
#[derive(Debug)]
struct QuestionState {
    question: Question,
    id: u16,
    query: Vec<u8>,
    /// Transmissions so far; the next goes to server `(first_server + sends) % n`.
    sends: usize,
    /// Servers it was sent to (indexes into the nameserver list), to accept answers only from
    /// them.
    sent_to: u8,
    deadline: Instant,
    /// What the last failing server said, for the error if all of them fail.
    last_failure: Option<DnsError>,
    saw_malformed: bool,
    outcome: Option<Result<Answer, DnsError>>,
}

#[derive(Debug)]
struct Lookup {
    /// The name as asked, normalized: the coalescing and cache key.
    host: String,
    /// Names to try in order (search list applied).
    candidates: Vec<Name>,
    candidate: usize,
    questions: Vec<QuestionState>,
    first_server: usize,
    /// A candidate answered NODATA (rather than NXDOMAIN): the final error is NoAddresses.
    saw_nodata: bool,
    /// The smallest negative TTL seen, for caching the final negative answer.
    negative_ttl_secs: Option<u32>,
}

/// The per-core resolver. See the module documentation.
pub struct Resolver {
    conf: ResolvConf,
    limits: ResolverLimits,
    random_id: Box<dyn FnMut() -> u16>,
    cache: Cache,
    lookups: HashMap<LookupId, Lookup>,
    by_host: HashMap<String, LookupId>,
    /// Question ids in flight -> their lookup. Ids are unique among questions in flight.
    by_id: HashMap<u16, LookupId>,
    /// Question deadlines, soonest first.
    deadlines: BTreeSet<(Instant, u16)>,
    transmits: VecDeque<Transmit>,
    results: VecDeque<(LookupId, Result<Vec<IpAddr>, DnsError>)>,
    next_lookup: u64,
    next_server: usize,
    stats: DnsStats,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("conf", &self.conf)
            .field("limits", &self.limits)
            .field("lookups", &self.lookups.len())
            .field("cache", &self.cache.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// `random_id` gives a fresh unpredictable 16-bit query id per question (from the system's
    /// random source: predictable ids make answers easy to forge).
    pub fn new(conf: ResolvConf, limits: ResolverLimits, random_id: Box<dyn FnMut() -> u16>) -> Self {
        Self {
            conf,
            cache: Cache::new(limits.cache_entries_max),
            limits,
            random_id,
            lookups: HashMap::new(),
            by_host: HashMap::new(),
            by_id: HashMap::new(),
            deadlines: BTreeSet::new(),
            transmits: VecDeque::new(),
            results: VecDeque::new(),
            next_lookup: 0,
            next_server: 0,
            stats: DnsStats::default(),
        }
    }

    pub fn conf(&self) -> &ResolvConf {
        &self.conf
    }

    /// Replaces the configuration (resolv.conf changed, SIGHUP). Lookups in flight finish with
    /// the old servers; the cache is kept.
    pub fn set_conf(&mut self, conf: ResolvConf) {
        self.conf = conf;
    }

    pub fn stats(&self) -> DnsStats {
        self.stats
    }

    /// Lookups in flight.
    pub fn lookups_in_flight(&self) -> usize {
        self.lookups.len()
    }

    /// Starts resolving `host` (a URL's host: a DNS name, an IPv4 literal, or an IPv6 literal
    /// with or without brackets). IP literals never go to DNS; `localhost` and names under it are
    /// loopback (RFC 6761 §6.3).
    pub fn lookup(&mut self, host: &str, now: Instant) -> LookupStart {
        let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return LookupStart::Ready(Ok(vec![ip]));
        }
        let Some(host) = normalize(host) else {
            return LookupStart::Ready(Err(DnsError::InvalidName));
        };
        let bare = host.strip_suffix('.').unwrap_or(&host);
        if bare == "localhost" || bare.ends_with(".localhost") {
            let loopback = [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)];
            let addrs = loopback.into_iter().filter(|&ip| self.limits.families.allows(ip)).collect();
            return LookupStart::Ready(Ok(addrs));
        }
        if let Some(cached) = self.cache.get(&host, now) {
            self.stats.cache_hits += 1;
            return LookupStart::Ready(cached);
        }
        if let Some(&id) = self.by_host.get(&host) {
            return LookupStart::Pending(id);
        }
        if self.conf.nameservers.is_empty() {
            return LookupStart::Ready(Err(DnsError::NoServers));
        }
        if self.lookups.len() >= self.limits.lookups_max {
            return LookupStart::Ready(Err(DnsError::TooManyLookups));
        }
        let candidates = candidates(&host, &self.conf);
        if candidates.is_empty() {
            return LookupStart::Ready(Err(DnsError::InvalidName));
        }
        let first_server = if self.conf.rotate {
            self.next_server = (self.next_server + 1) % self.conf.nameservers.len();
            self.next_server
        } else {
            0
        };
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        let lookup = Lookup {
            host: host.clone(),
            candidates,
            candidate: 0,
            questions: Vec::new(),
            first_server,
            saw_nodata: false,
            negative_ttl_secs: None,
        };
        self.lookups.insert(id, lookup);
        self.by_host.insert(host, id);
        self.start_candidate(id, now);
        LookupStart::Pending(id)
    }

    /// Gives up on a lookup (everyone waiting for it went away). Answers still arriving for it
    /// are ignored.
    pub fn cancel(&mut self, id: LookupId) {
        if let Some(lookup) = self.lookups.remove(&id) {
            self.forget_questions(&lookup);
            self.by_host.remove(&lookup.host);
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next finished lookup.
    pub fn poll_result(&mut self) -> Option<(LookupId, Result<Vec<IpAddr>, DnsError>)> {
        self.results.pop_front()
    }

    /// A datagram arrived from `from`. It is used only if it comes from a nameserver the
    /// matching question was sent to and answers exactly that question; anything else is
    /// counted and dropped.
    pub fn receive(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        let Some(qid) = message::peek_id(bytes) else {
            self.stats.answers_malformed += 1;
            return;
        };
        let Some(server) = self.conf.nameservers.iter().position(|&s| s == from) else {
            self.stats.answers_ignored += 1;
            return;
        };
        let Some(&lookup_id) = self.by_id.get(&qid) else {
            self.stats.answers_ignored += 1;
            return;
        };
        let Some(lookup) = self.lookups.get_mut(&lookup_id) else {
            self.stats.answers_ignored += 1;
            return;
        };
        let Some(index) = lookup.questions.iter().position(|q| q.id == qid && q.outcome.is_none()) else {
            self.stats.answers_ignored += 1;
            return;
        };
        let state = &mut lookup.questions[index];
        if server >= 8 || state.sent_to & (1 << server) == 0 {
            self.stats.answers_ignored += 1;
            return;
        }
        match message::parse_answer(bytes, qid, &state.question) {
            Err(Mismatch::NotOurs) => self.stats.answers_ignored += 1,
            Err(Mismatch::Malformed) => {
                // Possibly forged noise: keep waiting for a real answer, but remember it for the
                // error if none comes.
                self.stats.answers_malformed += 1;
                state.saw_malformed = true;
            }
            Ok(Answer::ServerFailure { rcode }) => {
                self.server_failed(lookup_id, index, DnsError::ServerFailure { rcode }, now)
            }
            Ok(Answer::Truncated) => self.server_failed(lookup_id, index, DnsError::Truncated, now),
            Ok(answer) => self.question_done(lookup_id, index, Ok(answer), now),
        }
    }

    /// When [`Self::poll`] next has something to do, if ever.
    pub fn poll_at(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(deadline, _)| deadline)
    }

    /// Retries and timeouts due at `now`: a question unanswered for `timeout` goes to the next
    /// nameserver, until `attempts` rounds over the list are spent.
    pub fn poll(&mut self, now: Instant) {
        // Each pass removes one deadline (and may add a later one); bounded by the questions in
        // flight.
        for _ in 0..self.deadlines.len() {
            let Some(&(deadline, qid)) = self.deadlines.first() else { break };
            if deadline > now {
                break;
            }
            self.deadlines.remove(&(deadline, qid));
            let Some(&lookup_id) = self.by_id.get(&qid) else { continue };
            let Some(index) = self.question_index(lookup_id, qid) else { continue };
            self.send_or_fail(lookup_id, index, DnsError::Timeout, now);
        }
        self.cache.expire(now);
    }

    fn question_index(&self, lookup_id: LookupId, qid: u16) -> Option<usize> {
        self.lookups.get(&lookup_id)?.questions.iter().position(|q| q.id == qid && q.outcome.is_none())
    }

    /// A server answered with an error: the next server right away, if any are left.
    fn server_failed(&mut self, lookup_id: LookupId, index: usize, error: DnsError, now: Instant) {
        if let Some(state) = self.lookups.get_mut(&lookup_id).and_then(|l| l.questions.get_mut(index)) {
            self.deadlines.remove(&(state.deadline, state.id));
            state.last_failure = Some(error);
        }
        self.send_or_fail(lookup_id, index, error, now);
    }

    /// Sends the question to its next server, or, with every transmission spent, fails it with
    /// the most telling error.
    fn send_or_fail(&mut self, lookup_id: LookupId, index: usize, error: DnsError, now: Instant) {
        let servers = self.conf.nameservers.len().max(1);
        let transmissions_max = servers * usize::from(self.conf.attempts.max(1));
        let Some(lookup) = self.lookups.get_mut(&lookup_id) else { return };
        let first_server = lookup.first_server;
        let Some(state) = lookup.questions.get_mut(index) else { return };
        if state.sends < transmissions_max {
            let server = (first_server + state.sends) % servers;
            if let Some(&address) = self.conf.nameservers.get(server) {
                state.sends += 1;
                state.sent_to |= 1u8.checked_shl(server as u32).unwrap_or(0);
                state.deadline = now + self.conf.timeout;
                self.deadlines.insert((state.deadline, state.id));
                self.transmits.push_back(Transmit { server: address, bytes: state.query.clone() });
                self.stats.queries_sent += 1;
                return;
            }
        }
        let error = match (state.last_failure, error) {
            (Some(failure), DnsError::Timeout) => failure,
            (_, DnsError::Timeout) if state.saw_malformed => DnsError::Malformed,
            (_, error) => error,
        };
        self.question_done(lookup_id, index, Err(error), now);
    }

    fn question_done(&mut self, lookup_id: LookupId, index: usize, outcome: Result<Answer, DnsError>, now: Instant) {
        let Some(lookup) = self.lookups.get_mut(&lookup_id) else { return };
        let Some(state) = lookup.questions.get_mut(index) else { return };
        self.deadlines.remove(&(state.deadline, state.id));
        self.by_id.remove(&state.id);
        state.outcome = Some(outcome);
        if lookup.questions.iter().all(|q| q.outcome.is_some()) {
            self.candidate_done(lookup_id, now);
        }
    }

    /// Every question for the current candidate is answered: finish, or try the next name.
    fn candidate_done(&mut self, lookup_id: LookupId, now: Instant) {
        let Some(lookup) = self.lookups.get_mut(&lookup_id) else { return };
        let mut addrs = Vec::new();
        let mut ttl_secs = u32::MAX;
        let mut error = None;
        for state in &lookup.questions {
            match &state.outcome {
                Some(Ok(Answer::Addresses { addrs: found, ttl_secs: ttl })) => {
                    addrs.extend_from_slice(found);
                    ttl_secs = ttl_secs.min(*ttl);
                }
                Some(Ok(Answer::NxDomain { ttl_secs: ttl })) => {
                    lookup.negative_ttl_secs = min_option(lookup.negative_ttl_secs, *ttl);
                }
                Some(Ok(Answer::NoData { ttl_secs: ttl })) => {
                    lookup.saw_nodata = true;
                    lookup.negative_ttl_secs = min_option(lookup.negative_ttl_secs, *ttl);
                }
                Some(Ok(Answer::ServerFailure { rcode })) => error = Some(DnsError::ServerFailure { rcode: *rcode }),
                Some(Ok(Answer::Truncated)) => error = Some(DnsError::Truncated),
                Some(Err(e)) => error = Some(*e),
                None => {}
            }
        }
        if !addrs.is_empty() {
            // Answers for one family are enough, even if the other family's query failed.
            let ttl = Duration::from_secs(u64::from(ttl_secs)).min(self.limits.ttl_max);
            self.finish(lookup_id, Ok(addrs), ttl, now);
            return;
        }
        if let Some(error) = error {
            // A failing server is not a missing name: do not try the other candidates, and do
            // not cache.
            self.finish(lookup_id, Err(error), Duration::ZERO, now);
            return;
        }
        lookup.candidate += 1;
        if lookup.candidate < lookup.candidates.len() {
            self.start_candidate(lookup_id, now);
            return;
        }
        let error = if lookup.saw_nodata { DnsError::NoAddresses } else { DnsError::NxDomain };
        let ttl = lookup
            .negative_ttl_secs
            .map_or(self.limits.negative_ttl, |secs| Duration::from_secs(u64::from(secs)))
            .min(self.limits.negative_ttl_max);
        self.finish(lookup_id, Err(error), ttl, now);
    }

    fn start_candidate(&mut self, lookup_id: LookupId, now: Instant) {
        let qtypes = self.limits.families.qtypes();
        let Some(lookup) = self.lookups.get_mut(&lookup_id) else { return };
        let Some(name) = lookup.candidates.get(lookup.candidate).cloned() else { return };
        let previous = std::mem::take(&mut lookup.questions);
        for state in &previous {
            self.by_id.remove(&state.id);
            self.deadlines.remove(&(state.deadline, state.id));
        }
        let mut questions: Vec<QuestionState> = Vec::with_capacity(qtypes.len());
        for &qtype in qtypes {
            let question = Question { name: name.clone(), qtype };
            let taken: Vec<u16> = questions.iter().map(|q| q.id).collect();
            let Some(id) = self.fresh_id(&taken) else {
                self.finish(lookup_id, Err(DnsError::TooManyLookups), Duration::ZERO, now);
                return;
            };
            let Some(query) = message::build_query(id, &question) else {
                self.finish(lookup_id, Err(DnsError::InvalidName), Duration::ZERO, now);
                return;
            };
            questions.push(QuestionState {
                question,
                id,
                query,
                sends: 0,
                sent_to: 0,
                deadline: now,
                last_failure: None,
                saw_malformed: false,
                outcome: None,
            });
        }
        for state in &questions {
            self.by_id.insert(state.id, lookup_id);
        }
        let count = questions.len();
        if let Some(lookup) = self.lookups.get_mut(&lookup_id) {
            lookup.questions = questions;
        }
        for index in 0..count {
            self.send_or_fail(lookup_id, index, DnsError::Timeout, now);
        }
    }

    /// An id no question in flight uses (nor `taken`). With at most `2 * lookups_max` of 65,536
    /// taken, a few draws find one; a source that keeps repeating itself is refused rather than
    /// trusted.
    fn fresh_id(&mut self, taken: &[u16]) -> Option<u16> {
        (0..64).map(|_| (self.random_id)()).find(|id| !self.by_id.contains_key(id) && !taken.contains(id))
    }

    fn finish(&mut self, lookup_id: LookupId, result: Result<Vec<IpAddr>, DnsError>, ttl: Duration, now: Instant) {
        let Some(lookup) = self.lookups.remove(&lookup_id) else { return };
        self.forget_questions(&lookup);
        self.by_host.remove(&lookup.host);
        if !ttl.is_zero() {
            self.cache.insert(lookup.host, result.clone(), now + ttl);
        }
        self.results.push_back((lookup_id, result));
    }

    fn forget_questions(&mut self, lookup: &Lookup) {
        for state in &lookup.questions {
            if state.outcome.is_none() {
                self.by_id.remove(&state.id);
                self.deadlines.remove(&(state.deadline, state.id));
            }
        }
    }
}

fn min_option(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A host name as the cache and the search list see it: lowercase, letters, digits, `-`, `_`
/// and dots, labels of 1-63 bytes, at most 253 bytes, an optional trailing dot kept (it means
/// "no search list").
fn normalize(host: &str) -> Option<String> {
    let name = host.strip_suffix('.').unwrap_or(host);
    let valid = !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    valid.then(|| host.to_ascii_lowercase())
}

/// The names to query for `host`, in order (resolv.conf(5) on `ndots` and `search`): a name
/// ending in a dot as it is; one with at least `ndots` dots as it is, then with each search
/// domain; others with each search domain first, then as it is.
fn candidates(host: &str, conf: &ResolvConf) -> Vec<Name> {
    let fqdn = |text: &str| Name::from_ascii(format!("{text}.")).ok();
    if let Some(absolute) = host.strip_suffix('.') {
        return fqdn(absolute).into_iter().collect();
    }
    let searched = conf
        .search
        .iter()
        .map(|domain| format!("{host}.{domain}"))
        .filter(|name| name.len() <= NAME_BYTES_MAX)
        .filter_map(|name| fqdn(&name));
    let dots = host.bytes().filter(|&b| b == b'.').count();
    let mut names: Vec<Name> = Vec::with_capacity(conf.search.len() + 1);
    if dots >= usize::from(conf.ndots) {
        names.extend(fqdn(host));
        names.extend(searched);
    } else {
        names.extend(searched);
        names.extend(fqdn(host));
    }
    names
}

//! The resolver driven with explicit time, answering its queries with messages built by
//! hickory-proto the way a recursive server would.

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use proptest::prelude::*;

use super::*;

const NS1: &str = "192.0.2.53:53";
const NS2: &str = "[2001:db8::53]:53";

fn ns(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn conf(servers: &[&str]) -> ResolvConf {
    ResolvConf {
        nameservers: servers.iter().map(|s| ns(s)).collect(),
        search: Vec::new(),
        ndots: 1,
        timeout: Duration::from_secs(5),
        attempts: 2,
        rotate: false,
    }
}

/// Ids from a counter, so tests can see them; the resolver must still check them.
fn counting_ids() -> Box<dyn FnMut() -> u16> {
    let mut next = 0x1000u16;
    Box::new(move || {
        next = next.wrapping_add(1);
        next
    })
}

fn resolver(conf: ResolvConf) -> Resolver {
    Resolver::new(conf, ResolverLimits::default(), counting_ids())
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

/// A query the resolver sent, decoded.
#[derive(Debug, Clone)]
struct Sent {
    server: SocketAddr,
    id: u16,
    name: String,
    qtype: RecordType,
}

fn sent(resolver: &mut Resolver) -> Vec<Sent> {
    std::iter::from_fn(|| resolver.poll_transmit())
        .map(|t| {
            let message = Message::from_vec(&t.bytes).unwrap();
            assert_eq!(message.metadata.message_type, MessageType::Query);
            assert!(message.metadata.recursion_desired);
            let [query] = message.queries.as_slice() else { panic!("one question") };
            Sent {
                server: t.server,
                id: message.metadata.id,
                name: query.name().to_ascii().to_ascii_lowercase(),
                qtype: query.query_type(),
            }
        })
        .collect()
}

/// The bytes a server would answer `query` with.
fn reply(query: &Sent, rcode: ResponseCode, answers: Vec<Record>, authorities: Vec<Record>) -> Vec<u8> {
    let mut message = Message::new(query.id, MessageType::Response, OpCode::Query);
    message.metadata.response_code = rcode;
    message.metadata.recursion_available = true;
    message.add_query(Query::query(name(&query.name), query.qtype));
    for record in answers {
        message.add_answer(record);
    }
    for record in authorities {
        message.add_authority(record);
    }
    message.to_vec().unwrap()
}

/// The address records a small zone has for `query`'s name and type.
fn zone(query: &Sent) -> (ResponseCode, Vec<Record>) {
    let owner = name(&query.name);
    let v4 = |ip: [u8; 4]| Record::from_rdata(owner.clone(), 300, RData::A(A(ip.into())));
    let v6 = |ip: &str| Record::from_rdata(owner.clone(), 600, RData::AAAA(AAAA(ip.parse().unwrap())));
    match (query.name.as_str(), query.qtype) {
        ("origin.example.", RecordType::A) => (ResponseCode::NoError, vec![v4([192, 0, 2, 10]), v4([192, 0, 2, 11])]),
        ("origin.example.", RecordType::AAAA) => (ResponseCode::NoError, vec![v6("2001:db8::10")]),
        ("v4only.example.", RecordType::A) => (ResponseCode::NoError, vec![v4([198, 51, 100, 1])]),
        ("v4only.example.", _) => (ResponseCode::NoError, vec![]),
        ("www.example.", t) => {
            let alias = Record::from_rdata(owner.clone(), 60, RData::CNAME(CNAME(name("origin.example."))));
            let target = Sent { name: "origin.example.".into(), ..query.clone() };
            let (_, mut records) = zone(&target);
            records.insert(0, alias);
            let _ = t;
            (ResponseCode::NoError, records)
        }
        ("db.corp.example.", RecordType::A) => (ResponseCode::NoError, vec![v4([10, 0, 0, 5])]),
        ("db.corp.example.", _) => (ResponseCode::NoError, vec![]),
        _ => (ResponseCode::NXDomain, vec![]),
    }
}

fn soa(ttl: u32, minimum: u32) -> Record {
    let soa = SOA::new(name("ns.example."), name("hostmaster.example."), 1, 7200, 900, 86400, minimum);
    Record::from_rdata(name("example."), ttl, RData::SOA(soa))
}

/// Answers every query sent so far from the zone, from the server it went to.
fn answer_all(resolver: &mut Resolver, now: Instant) -> Vec<Sent> {
    let queries = sent(resolver);
    for query in &queries {
        let (rcode, records) = zone(query);
        let authorities = if rcode == ResponseCode::NXDomain { vec![soa(3600, 120)] } else { vec![] };
        resolver.receive(query.server, &reply(query, rcode, records, authorities), now);
    }
    queries
}

fn results(resolver: &mut Resolver) -> Vec<(LookupId, Result<Vec<IpAddr>, DnsError>)> {
    std::iter::from_fn(|| resolver.poll_result()).collect()
}

fn pending(start: LookupStart) -> LookupId {
    match start {
        LookupStart::Pending(id) => id,
        LookupStart::Ready(result) => panic!("ready: {result:?}"),
    }
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn ip_literals_and_localhost_never_go_to_dns() {
    let now = Instant::now();
    let mut r = resolver(conf(&[NS1]));
    for (host, expected) in [
        ("192.0.2.1", ips(&["192.0.2.1"])),
        ("::1", ips(&["::1"])),
        ("[2001:db8::1]", ips(&["2001:db8::1"])),
        ("localhost", ips(&["127.0.0.1", "::1"])),
        ("api.LOCALHOST.", ips(&["127.0.0.1", "::1"])),
    ] {
        assert_eq!(r.lookup(host, now), LookupStart::Ready(Ok(expected)), "{host}");
    }
    assert!(r.poll_transmit().is_none());
    let mut v4 = Resolver::new(
        conf(&[NS1]),
        ResolverLimits { families: AddressFamilies::Ipv4, ..ResolverLimits::default() },
        counting_ids(),
    );
    assert_eq!(v4.lookup("localhost", now), LookupStart::Ready(Ok(ips(&["127.0.0.1"]))));
}

#[test]
fn invalid_names_and_no_servers() {
    let now = Instant::now();
    let mut r = resolver(conf(&[NS1]));
    let long = format!("{}.example", "a".repeat(64));
    let too_long = ["abcdefghi."; 26].concat();
    for host in ["", ".", "a..b", "exa mple.com", "ex\0ample", "a/b", long.as_str(), too_long.as_str(), "[::1"] {
        assert_eq!(r.lookup(host, now), LookupStart::Ready(Err(DnsError::InvalidName)), "{host:?}");
    }
    let mut none = resolver(ResolvConf::from_nameservers(&[]));
    assert_eq!(none.lookup("example.com", now), LookupStart::Ready(Err(DnsError::NoServers)));
    assert!(r.poll_transmit().is_none());
}

#[test]
fn resolves_a_and_aaaa_in_parallel_and_caches_by_ttl() {
    let t0 = Instant::now();
    let mut r = resolver(conf(&[NS1, NS2]));
    let id = pending(r.lookup("Origin.Example", t0));
    let queries = answer_all(&mut r, t0);
    let asked: Vec<_> = queries.iter().map(|q| (q.server, q.name.as_str(), q.qtype)).collect();
    assert_eq!(asked, [(ns(NS1), "origin.example.", RecordType::A), (ns(NS1), "origin.example.", RecordType::AAAA)]);
    assert_ne!(queries[0].id, queries[1].id);
    let expected = ips(&["192.0.2.10", "192.0.2.11", "2001:db8::10"]);
    assert_eq!(results(&mut r), [(id, Ok(expected.clone()))]);
    assert_eq!(r.lookups_in_flight(), 0);
    assert_eq!(r.poll_at(), None);
    // Cached for the smallest TTL (300 s), case-insensitively.
    assert_eq!(r.lookup("origin.example", t0 + Duration::from_secs(299)), LookupStart::Ready(Ok(expected)));
    assert_eq!(r.stats().cache_hits, 1);
    assert!(r.poll_transmit().is_none());
    pending(r.lookup("origin.example", t0 + Duration::from_secs(300)));
    assert_eq!(sent(&mut r).len(), 2);
}

#[test]
fn cname_chain_inside_one_answer() {
    let now = Instant::now();
    let mut r = resolver(conf(&[NS1]));
    let id = pending(r.lookup("www.example", now));
    answer_all(&mut r, now);
    assert_eq!(results(&mut r), [(id, Ok(ips(&["192.0.2.10", "192.0.2.11", "2001:db8::10"])))]);
    // The CNAME's TTL (60 s) bounds the cached answer.
    assert!(matches!(r.lookup("www.example", now + Duration::from_secs(59)), LookupStart::Ready(Ok(_))));
    pending(r.lookup("www.example", now + Duration::from_secs(60)));
}

#[test]
fn spoofed_and_mismatched_answers_are_ignored() {
    let now = Instant::now();
    let mut r = resolver(conf(&[NS1]));
    let id = pending(r.lookup("origin.example", now));
    let queries = sent(&mut r);
    let query = &queries[0];
    let evil = vec![Record::from_rdata(name("origin.example."), 300, RData::A(A([6, 6, 6, 6].into())))];
    // From an address that is not a nameserver.
    r.receive(ns("203.0.113.9:53"), &reply(query, ResponseCode::NoError, evil.clone(), vec![]), now);
    // From the nameserver's address but another port.
    r.receive(ns("192.0.2.53:5353"), &reply(query, ResponseCode::NoError, evil.clone(), vec![]), now);
    // A wrong id.
    let wrong_id = Sent { id: query.id.wrapping_add(7), ..query.clone() };
    r.receive(query.server, &reply(&wrong_id, ResponseCode::NoError, evil.clone(), vec![]), now);
    // The right id, another question.
    let other = Sent { name: "bank.example.".into(), ..query.clone() };
    r.receive(query.server, &reply(&other, ResponseCode::NoError, evil.clone(), vec![]), now);
    // Garbage with the right id.
    let mut garbage = query.id.to_be_bytes().to_vec();
    garbage.extend_from_slice(b"\x81\x80\xff\xff");
    r.receive(query.server, &garbage, now);
    r.receive(query.server, b"", now);
    assert!(results(&mut r).is_empty());
    assert_eq!(r.stats().answers_ignored, 4);
    assert_eq!(r.stats().answers_malformed, 2);
    // The real answers still count.
    for query in &queries {
        let (rcode, records) = zone(query);
        r.receive(query.server, &reply(query, rcode, records, vec![]), now);
    }
    let done = results(&mut r);
    let [(got, Ok(addrs))] = done.as_slice() else { panic!("no result: {done:?}") };
    assert_eq!(*got, id);
    assert!(!addrs.contains(&"6.6.6.6".parse().unwrap()));
    // A duplicate of an answer already used changes nothing.
    r.receive(query.server, &reply(query, ResponseCode::NoError, evil, vec![]), now);
    assert!(results(&mut r).is_empty());
}

#[test]
fn retries_rotate_over_servers_then_time_out() {
    let t0 = Instant::now();
    let mut r = Resolver::new(
        conf(&[NS1, NS2]),
        ResolverLimits { families: AddressFamilies::Ipv4, ..ResolverLimits::default() },
        counting_ids(),
    );
    let id = pending(r.lookup("origin.example", t0));
    let mut servers = Vec::new();
    let mut now = t0;
    for _ in 0..10 {
        servers.extend(sent(&mut r).into_iter().map(|q| q.server));
        let Some(due) = r.poll_at() else { break };
        assert_eq!(due, now + Duration::from_secs(5));
        now = due;
        r.poll(now);
    }
    // attempts (2) rounds over both servers, one query at a time, 5 s each.
    assert_eq!(servers, [ns(NS1), ns(NS2), ns(NS1), ns(NS2)]);
    assert_eq!(now, t0 + Duration::from_secs(20));
    assert_eq!(results(&mut r), [(id, Err(DnsError::Timeout))]);
    // Timeouts are not cached.
    pending(r.lookup("origin.example", now));
}

#[test]
fn a_late_answer_from_an_earlier_server_is_accepted() {
    let t0 = Instant::now();
    let mut r = Resolver::new(
        conf(&[NS1, NS2]),
        ResolverLimits { families: AddressFamilies::Ipv4, ..ResolverLimits::default() },
        counting_ids(),
    );
    let id = pending(r.lookup("origin.example", t0));
    let first = sent(&mut r).remove(0);
    r.poll(t0 + Duration::from_secs(5));
    assert_eq!(sent(&mut r)[0].server, ns(NS2));
    let (rcode, records) = zone(&first);
    r.receive(ns(NS1), &reply(&first, rcode, records, vec![]), t0 + Duration::from_secs(6));
    assert_eq!(results(&mut r), [(id, Ok(ips(&["192.0.2.10", "192.0.2.11"])))]);
    // NS2 was never asked this question's first transmission: an answer "from" it before it was
    // asked would have been ignored, which the spoofing test covers.
}

#[test]
fn server_failure_moves_on_at_once_and_is_reported() {
    let now = Instant::now();
    let mut r = Resolver::new(
        conf(&[NS1, NS2]),
        ResolverLimits { families: AddressFamilies::Ipv4, ..ResolverLimits::default() },
        counting_ids(),
    );
    let id = pending(r.lookup("origin.example", now));
    let mut servers = Vec::new();
    for _ in 0..10 {
        let queries = sent(&mut r);
        if queries.is_empty() {
            break;
        }
        for query in queries {
            servers.push(query.server);
            r.receive(query.server, &reply(&query, ResponseCode::ServFail, vec![], vec![]), now);
        }
    }
    assert_eq!(servers, [ns(NS1), ns(NS2), ns(NS1), ns(NS2)], "no waiting for a timeout");
    assert_eq!(results(&mut r), [(id, Err(DnsError::ServerFailure { rcode: 2 }))]);
}

#[test]
fn search_list_and_ndots() {
    let now = Instant::now();
    let mut search = conf(&[NS1]);
    search.search = vec!["corp.example".into(), "example".into()];
    let mut r = resolver(search.clone());
    // No dot: search domains first. db.corp.example has an A record.
    let id = pending(r.lookup("db", now));
    let asked: Vec<String> = answer_all(&mut r, now).into_iter().map(|q| q.name).collect();
    assert_eq!(asked, ["db.corp.example.", "db.corp.example."]);
    assert_eq!(results(&mut r), [(id, Ok(ips(&["10.0.0.5"])))]);
    // One dot with ndots 1: as given first; NXDOMAIN moves on through the search list.
    let id = pending(r.lookup("nope.test", now));
    let mut asked = Vec::new();
    for _ in 0..5 {
        asked.extend(answer_all(&mut r, now).into_iter().map(|q| q.name));
    }
    asked.dedup();
    assert_eq!(asked, ["nope.test.", "nope.test.corp.example.", "nope.test.example."]);
    // NXDOMAIN everywhere, cached for the SOA's MINIMUM (120 s).
    assert_eq!(results(&mut r), [(id, Err(DnsError::NxDomain))]);
    assert_eq!(r.lookup("nope.test", now + Duration::from_secs(119)), LookupStart::Ready(Err(DnsError::NxDomain)));
    pending(r.lookup("nope.test", now + Duration::from_secs(120)));
    // A trailing dot: exactly that name.
    let mut r = resolver(search.clone());
    pending(r.lookup("db.", now));
    let asked: Vec<String> = sent(&mut r).into_iter().map(|q| q.name).collect();
    assert_eq!(asked, ["db.", "db."]);
    // ndots 2: a name with one dot goes through the search list first.
    search.ndots = 2;
    let mut r = resolver(search);
    pending(r.lookup("a.b", now));
    assert_eq!(sent(&mut r)[0].name, "a.b.corp.example.");
}

#[test]
fn nodata_is_no_addresses() {
    let now = Instant::now();
    let mut r = Resolver::new(
        conf(&[NS1]),
        ResolverLimits { families: AddressFamilies::Ipv6, ..ResolverLimits::default() },
        counting_ids(),
    );
    let id = pending(r.lookup("v4only.example", now));
    answer_all(&mut r, now);
    assert_eq!(results(&mut r), [(id, Err(DnsError::NoAddresses))]);
    // Both families: the A answer is enough.
    let mut r = resolver(conf(&[NS1]));
    let id = pending(r.lookup("v4only.example", now));
    answer_all(&mut r, now);
    assert_eq!(results(&mut r), [(id, Ok(ips(&["198.51.100.1"])))]);
}

#[test]
fn one_family_answering_is_enough_when_the_other_times_out() {
    let t0 = Instant::now();
    let mut r = resolver(conf(&[NS1]));
    let id = pending(r.lookup("origin.example", t0));
    let queries = sent(&mut r);
    let a = queries.iter().find(|q| q.qtype == RecordType::A).unwrap();
    let (rcode, records) = zone(a);
    r.receive(a.server, &reply(a, rcode, records, vec![]), t0);
    assert!(results(&mut r).is_empty(), "waits for AAAA");
    for _ in 0..4 {
        let Some(due) = r.poll_at() else { break };
        r.poll(due);
    }
    assert_eq!(results(&mut r), [(id, Ok(ips(&["192.0.2.10", "192.0.2.11"])))]);
}

#[test]
fn only_malformed_answers_end_as_malformed() {
    let t0 = Instant::now();
    let mut r = Resolver::new(
        conf(&[NS1]),
        ResolverLimits { families: AddressFamilies::Ipv4, ..ResolverLimits::default() },
        counting_ids(),
    );
    let id = pending(r.lookup("origin.example", t0));
    for _ in 0..4 {
        for query in sent(&mut r) {
            let mut bytes = query.id.to_be_bytes().to_vec();
            bytes.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1]);
            r.receive(query.server, &bytes, t0);
        }
        if let Some(due) = r.poll_at() {
            r.poll(due);
        }
    }
    assert_eq!(results(&mut r), [(id, Err(DnsError::Malformed))]);
}

#[test]
fn truncated_answers_fail_without_tcp() {
    let now = Instant::now();
    let mut r = Resolver::new(
        conf(&[NS1]),
        ResolverLimits { families: AddressFamilies::Ipv4, ..ResolverLimits::default() },
        counting_ids(),
    );
    let id = pending(r.lookup("origin.example", now));
    for _ in 0..4 {
        for query in sent(&mut r) {
            let mut message = Message::from_vec(&reply(&query, ResponseCode::NoError, vec![], vec![])).unwrap();
            message.metadata.truncation = true;
            r.receive(query.server, &message.to_vec().unwrap(), now);
        }
    }
    assert_eq!(results(&mut r), [(id, Err(DnsError::Truncated))]);
}

#[test]
fn concurrent_lookups_share_and_cancel() {
    let now = Instant::now();
    let mut r = resolver(conf(&[NS1]));
    let first = pending(r.lookup("origin.example", now));
    assert_eq!(r.lookup("ORIGIN.example", now), LookupStart::Pending(first));
    assert_eq!(sent(&mut r).len(), 2, "one set of queries for both");
    let other = pending(r.lookup("v4only.example", now));
    let other_queries = sent(&mut r);
    r.cancel(other);
    for query in &other_queries {
        let (rcode, records) = zone(query);
        r.receive(query.server, &reply(query, rcode, records, vec![]), now);
    }
    assert!(results(&mut r).is_empty(), "a cancelled lookup reports nothing");
    assert_eq!(r.lookups_in_flight(), 1);
    r.cancel(first);
    assert_eq!((r.lookups_in_flight(), r.poll_at()), (0, None));
}

#[test]
fn lookups_in_flight_are_bounded() {
    let now = Instant::now();
    let limits = ResolverLimits { lookups_max: 3, ..ResolverLimits::default() };
    let mut r = Resolver::new(conf(&[NS1]), limits, counting_ids());
    for i in 0..3 {
        pending(r.lookup(&format!("h{i}.example"), now));
    }
    assert_eq!(r.lookup("h3.example", now), LookupStart::Ready(Err(DnsError::TooManyLookups)));
    // A source of ids that repeats itself cannot make two questions share an id.
    let mut stuck = Resolver::new(conf(&[NS1]), ResolverLimits::default(), Box::new(|| 7));
    let id = pending(stuck.lookup("origin.example", now));
    assert_eq!(results(&mut stuck), [(id, Err(DnsError::TooManyLookups))]);
}

#[test]
fn rotate_starts_each_lookup_at_the_next_server() {
    let now = Instant::now();
    let mut rotating = conf(&[NS1, NS2]);
    rotating.rotate = true;
    let mut r = Resolver::new(
        rotating,
        ResolverLimits { families: AddressFamilies::Ipv4, ..ResolverLimits::default() },
        counting_ids(),
    );
    let mut firsts = Vec::new();
    for i in 0..4 {
        pending(r.lookup(&format!("h{i}.example"), now));
        firsts.push(sent(&mut r)[0].server);
    }
    assert_eq!(firsts, [ns(NS2), ns(NS1), ns(NS2), ns(NS1)]);
}

proptest! {
    /// Arbitrary datagrams (some carrying live ids) from servers and strangers, with the clock
    /// moving: no panic, every lookup ends exactly once, and nothing outlives it.
    #[test]
    fn arbitrary_datagrams_never_panic_and_every_lookup_ends(
        datagrams in prop::collection::vec((any::<bool>(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..80)), 0..40),
        hosts in prop::collection::vec("[a-z]{1,8}(\\.[a-z]{1,8}){0,2}", 1..6),
        steps in prop::collection::vec(0u64..4000, 1..10),
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let seen_ids: Rc<Cell<u16>> = Rc::new(Cell::new(0));
        let ids = seen_ids.clone();
        let mut state = 0x9e37u16;
        let random: Box<dyn FnMut() -> u16> = Box::new(move || {
            state ^= state << 7;
            state ^= state >> 9;
            state ^= state << 8;
            ids.set(state);
            state
        });
        let mut search = conf(&[NS1, NS2]);
        search.search = vec!["corp.example".into()];
        let mut r = Resolver::new(search, ResolverLimits { lookups_max: 4, ..ResolverLimits::default() }, random);
        let mut pending_ids = std::collections::HashSet::new();
        for host in &hosts {
            if let LookupStart::Pending(id) = r.lookup(host, now) {
                pending_ids.insert(id);
            }
        }
        let mut ended = std::collections::HashSet::new();
        for (i, (from_server, live_id, mut bytes)) in datagrams.into_iter().enumerate() {
            if live_id && bytes.len() >= 2 {
                bytes[..2].copy_from_slice(&seen_ids.get().to_be_bytes());
            }
            let from = if from_server { ns(NS1) } else { ns("198.51.100.7:53") };
            r.receive(from, &bytes, now);
            while r.poll_transmit().is_some() {}
            now += Duration::from_millis(steps[i % steps.len()]);
            r.poll(now);
            for (id, _) in std::iter::from_fn(|| r.poll_result()) {
                prop_assert!(ended.insert(id), "a lookup ended twice");
            }
        }
        for _ in 0..200 {
            let Some(due) = r.poll_at() else { break };
            r.poll(due);
            while r.poll_transmit().is_some() {}
        }
        for (id, _) in std::iter::from_fn(|| r.poll_result()) {
            prop_assert!(ended.insert(id), "a lookup ended twice");
        }
        prop_assert_eq!(&ended, &pending_ids);
        prop_assert_eq!(r.lookups_in_flight(), 0);
        prop_assert_eq!(r.poll_at(), None);
        prop_assert!(r.by_id.is_empty() && r.deadlines.is_empty() && r.by_host.is_empty());
    }
}

//! DNS messages on the wire, through `hickory-proto`: A/AAAA queries out, answers in, checked
//! against the query they claim to answer.
//!
//! The answer comes from whoever can put a UDP datagram on our socket, so it is parsed by a
//! well-kept crate (hickory-proto's decoder is fuzzed by its project and bounds-checks every
//! read), then trusted only as far as it matches: same id, a response to a standard query, the
//! same single question, and only records on the CNAME chain that starts at our name.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

/// EDNS(0) UDP payload we advertise: the DNS flag day 2020 value, which avoids IP
/// fragmentation on every common path while making truncation of A/AAAA answers rare.
pub(super) const UDP_PAYLOAD_BYTES: u16 = 1232;

/// CNAMEs followed inside one answer before giving up (a loop, or a hostile chain).
pub(super) const CNAME_CHAIN_MAX: usize = 16;

/// Addresses kept from one answer; more are dropped (a connection tries a few at most).
pub(super) const ADDRESSES_MAX: usize = 32;

/// What one question asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Question {
    pub(super) name: Name,
    pub(super) qtype: RecordType,
}

/// What a matching answer said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    /// Addresses of the asked type (at the end of any CNAME chain), and the smallest TTL on the
    /// way, in seconds.
    Addresses { addrs: Vec<IpAddr>, ttl_secs: u32 },
    /// The name does not exist (NXDOMAIN); TTL for caching that, from the SOA if any.
    NxDomain { ttl_secs: Option<u32> },
    /// The name exists but has no record of this type.
    NoData { ttl_secs: Option<u32> },
    /// The server failed or refused (SERVFAIL, REFUSED, NOTIMP, FORMERR, ...): try another.
    ServerFailure { rcode: u16 },
    /// The answer did not fit (TC): it would need TCP, which this resolver does not speak.
    Truncated,
}

/// Why a datagram was not taken as the answer to a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mismatch {
    /// Not a DNS message at all.
    Malformed,
    /// A DNS message, but not the answer to this question (another id, a query, another
    /// question): possibly spoofed, possibly late. Ignored.
    NotOurs,
}

/// Builds the query for `question` with `id`: recursion desired, EDNS(0) with our payload size.
pub(super) fn build_query(id: u16, question: &Question) -> Option<Vec<u8>> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(question.name.clone(), question.qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(UDP_PAYLOAD_BYTES);
    message.set_edns(edns);
    message.to_vec().ok()
}

/// The id a datagram claims, to find its question without parsing it (None if shorter than a
/// header).
pub(super) fn peek_id(bytes: &[u8]) -> Option<u16> {
    let [high, low, ..] = bytes else { return None };
    Some(u16::from_be_bytes([*high, *low]))
}

/// Parses `bytes` as the answer to `question` sent with `id`.
pub(super) fn parse_answer(bytes: &[u8], id: u16, question: &Question) -> Result<Answer, Mismatch> {
    let message = Message::from_vec(bytes).map_err(|_| Mismatch::Malformed)?;
    let metadata = &message.metadata;
    if metadata.id != id || metadata.message_type != MessageType::Response || metadata.op_code != OpCode::Query {
        return Err(Mismatch::NotOurs);
    }
    // RFC 5452 §9.1: the question must come back unchanged (names compare case-insensitively).
    let [echoed] = message.queries.as_slice() else {
        return Err(Mismatch::NotOurs);
    };
    if echoed.name() != &question.name || echoed.query_type() != question.qtype || echoed.query_class() != DNSClass::IN
    {
        return Err(Mismatch::NotOurs);
    }
    if metadata.truncation {
        return Ok(Answer::Truncated);
    }
    match metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Ok(Answer::NxDomain { ttl_secs: negative_ttl(&message) }),
        other => return Ok(Answer::ServerFailure { rcode: u16::from(other) }),
    }
    // Follow the chain from our name: only records owned by a name on it count, so a server
    // cannot slip in addresses for an unrelated name.
    let mut owner = question.name.clone();
    let mut ttl_secs = u32::MAX;
    for _ in 0..=CNAME_CHAIN_MAX {
        let mut addrs = Vec::new();
        let mut address_ttl = u32::MAX;
        let mut alias = None;
        for record in message.answers.iter().filter(|r| r.dns_class == DNSClass::IN && r.name == owner) {
            let address = match (&record.data, question.qtype) {
                (RData::A(a), RecordType::A) => Some(IpAddr::V4(a.0)),
                (RData::AAAA(aaaa), RecordType::AAAA) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            };
            match (&record.data, address) {
                (_, Some(ip)) => {
                    if addrs.len() < ADDRESSES_MAX && !addrs.contains(&ip) {
                        addrs.push(ip);
                    }
                    address_ttl = address_ttl.min(record.ttl);
                }
                (RData::CNAME(target), _) if alias.is_none() => alias = Some((target.0.clone(), record.ttl)),
                _ => {}
            }
        }
        if !addrs.is_empty() {
            return Ok(Answer::Addresses { addrs, ttl_secs: ttl_secs.min(address_ttl) });
        }
        let Some((target, ttl)) = alias else {
            return Ok(Answer::NoData { ttl_secs: negative_ttl(&message) });
        };
        ttl_secs = ttl_secs.min(ttl);
        owner = target;
    }
    // A chain this long is a loop or an attack; treat it as a failing server.
    Ok(Answer::ServerFailure { rcode: u16::from(ResponseCode::ServFail) })
}

/// RFC 2308 §5: a negative answer may be cached for the smaller of the SOA record's TTL and its
/// MINIMUM field.
fn negative_ttl(message: &Message) -> Option<u32> {
    message.authorities.iter().find_map(|record| match &record.data {
        RData::SOA(soa) => Some(record.ttl.min(soa.minimum)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA};

    use super::*;

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    fn question(text: &str, qtype: RecordType) -> Question {
        Question { name: name(text), qtype }
    }

    /// An answer as a recursive server would send it, built with the crate.
    pub(crate) fn answer(id: u16, q: &Question, rcode: ResponseCode, answers: Vec<Record>) -> Message {
        let mut message = Message::new(id, MessageType::Response, OpCode::Query);
        message.metadata.response_code = rcode;
        message.metadata.recursion_available = true;
        message.add_query(Query::query(q.name.clone(), q.qtype));
        for record in answers {
            message.add_answer(record);
        }
        message
    }

    fn a(owner: &str, ttl: u32, ip: [u8; 4]) -> Record {
        Record::from_rdata(name(owner), ttl, RData::A(A(Ipv4Addr::from(ip))))
    }

    fn cname(owner: &str, ttl: u32, target: &str) -> Record {
        Record::from_rdata(name(owner), ttl, RData::CNAME(CNAME(name(target))))
    }

    fn soa(owner: &str, ttl: u32, minimum: u32) -> Record {
        let soa = SOA::new(name("ns.example."), name("root.example."), 1, 7200, 900, 86400, minimum);
        Record::from_rdata(name(owner), ttl, RData::SOA(soa))
    }

    #[test]
    fn query_round_trips_through_the_crate() {
        let q = question("www.example.com.", RecordType::AAAA);
        let bytes = build_query(0xbeef, &q).unwrap();
        assert_eq!(peek_id(&bytes), Some(0xbeef));
        let parsed = Message::from_vec(&bytes).unwrap();
        assert!(parsed.metadata.recursion_desired);
        assert_eq!(parsed.metadata.message_type, MessageType::Query);
        assert_eq!(parsed.queries, [Query::query(q.name.clone(), RecordType::AAAA)]);
        assert_eq!(parsed.edns.map(|e| e.max_payload()), Some(UDP_PAYLOAD_BYTES));
    }

    #[test]
    fn follows_a_cname_chain_and_takes_the_smallest_ttl() {
        let q = question("www.example.com.", RecordType::A);
        let records = vec![
            cname("www.example.com.", 300, "edge.cdn.example."),
            // Not on the chain: ignored, whatever it claims.
            a("bank.example.", 5, [6, 6, 6, 6]),
            cname("edge.cdn.example.", 60, "edge-7.cdn.example."),
            a("EDGE-7.cdn.example.", 120, [192, 0, 2, 7]),
            a("edge-7.cdn.example.", 90, [192, 0, 2, 8]),
            a("edge-7.cdn.example.", 90, [192, 0, 2, 8]),
        ];
        let bytes = answer(7, &q, ResponseCode::NoError, records).to_vec().unwrap();
        let expected =
            Answer::Addresses { addrs: vec![IpAddr::from([192, 0, 2, 7]), IpAddr::from([192, 0, 2, 8])], ttl_secs: 60 };
        assert_eq!(parse_answer(&bytes, 7, &q), Ok(expected));
    }

    #[test]
    fn aaaa_nodata_nxdomain_and_failures() {
        let q = question("v6.example.", RecordType::AAAA);
        let record = Record::from_rdata(name("v6.example."), 30, RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)));
        let bytes = answer(1, &q, ResponseCode::NoError, vec![record]).to_vec().unwrap();
        assert_eq!(
            parse_answer(&bytes, 1, &q),
            Ok(Answer::Addresses { addrs: vec![IpAddr::V6(Ipv6Addr::LOCALHOST)], ttl_secs: 30 })
        );
        // An A record in an AAAA answer is no address of the asked type.
        let bytes = answer(1, &q, ResponseCode::NoError, vec![a("v6.example.", 30, [1, 2, 3, 4])]).to_vec().unwrap();
        assert_eq!(parse_answer(&bytes, 1, &q), Ok(Answer::NoData { ttl_secs: None }));
        let mut message = answer(1, &q, ResponseCode::NXDomain, vec![]);
        message.add_authority(soa("example.", 3600, 300));
        assert_eq!(parse_answer(&message.to_vec().unwrap(), 1, &q), Ok(Answer::NxDomain { ttl_secs: Some(300) }));
        let bytes = answer(1, &q, ResponseCode::ServFail, vec![]).to_vec().unwrap();
        assert_eq!(parse_answer(&bytes, 1, &q), Ok(Answer::ServerFailure { rcode: 2 }));
        let bytes = answer(1, &q, ResponseCode::Refused, vec![]).to_vec().unwrap();
        assert_eq!(parse_answer(&bytes, 1, &q), Ok(Answer::ServerFailure { rcode: 5 }));
        let mut message = answer(1, &q, ResponseCode::NoError, vec![]);
        message.metadata.truncation = true;
        assert_eq!(parse_answer(&message.to_vec().unwrap(), 1, &q), Ok(Answer::Truncated));
    }

    #[test]
    fn mismatched_answers_are_not_ours() {
        let q = question("example.com.", RecordType::A);
        let good = answer(9, &q, ResponseCode::NoError, vec![a("example.com.", 1, [1, 1, 1, 1])]);
        assert!(matches!(parse_answer(&good.to_vec().unwrap(), 9, &q), Ok(Answer::Addresses { .. })));
        assert_eq!(parse_answer(&good.to_vec().unwrap(), 10, &q), Err(Mismatch::NotOurs), "another id");
        let other = question("example.org.", RecordType::A);
        assert_eq!(parse_answer(&good.to_vec().unwrap(), 9, &other), Err(Mismatch::NotOurs), "another name");
        let aaaa = question("example.com.", RecordType::AAAA);
        assert_eq!(parse_answer(&good.to_vec().unwrap(), 9, &aaaa), Err(Mismatch::NotOurs), "another type");
        let mut query = good.clone();
        query.metadata.message_type = MessageType::Query;
        assert_eq!(parse_answer(&query.to_vec().unwrap(), 9, &q), Err(Mismatch::NotOurs), "a query");
        let mut two = good.clone();
        two.add_query(Query::query(name("example.com."), RecordType::A));
        assert_eq!(parse_answer(&two.to_vec().unwrap(), 9, &q), Err(Mismatch::NotOurs), "two questions");
        let mut none = good;
        none.queries.clear();
        assert_eq!(parse_answer(&none.to_vec().unwrap(), 9, &q), Err(Mismatch::NotOurs), "no question");
        assert_eq!(parse_answer(b"\x00\x09garbage", 9, &q), Err(Mismatch::Malformed));
        assert_eq!(parse_answer(b"", 9, &q), Err(Mismatch::Malformed));
        // Case differences in the echoed name are fine (RFC 4343).
        let upper = answer(9, &question("EXAMPLE.com.", RecordType::A), ResponseCode::NoError, vec![]);
        assert_eq!(parse_answer(&upper.to_vec().unwrap(), 9, &q), Ok(Answer::NoData { ttl_secs: None }));
    }

    #[test]
    fn cname_loops_and_long_chains_fail() {
        let q = question("a.example.", RecordType::A);
        let looped = vec![cname("a.example.", 60, "b.example."), cname("b.example.", 60, "a.example.")];
        let bytes = answer(3, &q, ResponseCode::NoError, looped).to_vec().unwrap();
        assert_eq!(parse_answer(&bytes, 3, &q), Ok(Answer::ServerFailure { rcode: 2 }));
        // A chain that ends without an address is NODATA for the name.
        let dangling = vec![cname("a.example.", 60, "b.example.")];
        let bytes = answer(3, &q, ResponseCode::NoError, dangling).to_vec().unwrap();
        assert_eq!(parse_answer(&bytes, 3, &q), Ok(Answer::NoData { ttl_secs: None }));
    }
}

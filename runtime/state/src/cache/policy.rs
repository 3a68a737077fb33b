//! Whether and for how long `cache.put` stores a response, as Cloudflare's Cache API does (its
//! documentation, workerd's `api/cache.c++` and miniflare's implementation agree on these):
//! - refused with a `TypeError`: a `206 Partial Content` response, and a `Vary` header naming
//!   `*` (the Cache API specification requires it); non-GET requests are refused by the caller;
//! - silently not stored: `304 Not Modified` (workerd discards it: caching a 304 would answer
//!   unconditional requests with an empty body), `Cache-Control: no-store`, `private` and
//!   `no-cache` (this is a shared cache, and one that cannot revalidate, so a response that
//!   must be revalidated on every use is never fresh), and any response still carrying
//!   `Set-Cookie` (Cloudflare never caches those, as they may hold per-user data);
//! - `private="Set-Cookie"` (or `no-cache="..."`) names headers to drop instead: the response is
//!   stored without them, which is how a Worker caches a response that sets a cookie;
//! - lifetime: `s-maxage` wins over `max-age`, which wins over `Expires` (minus `Date` when
//!   present, else minus now); without any of them, Cloudflare's default edge TTLs by status:
//!   200, 206 and 301 for 120 minutes, 302 and 303 for 20 minutes, 404 and 410 for 3 minutes,
//!   anything else not stored. A lifetime of zero (or an unparsable `Expires`) is not stored.
//!
//! `Vary` (other than `*`) is stored with the response but not honoured on `match`, as in
//! Workers: the cache key is the URL alone, so a Worker that varies on a request header must put
//! that header's value into the URL it uses as the key.
//!
//! Pure functions: no I/O, no clock (time is passed in).

use super::CacheError;

/// What `put` does with a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Store it, without the listed headers (lower-case names), until `expires_at_ms`.
    Store { expires_at_ms: u64, strip_headers: Vec<String> },
    /// Do not store it; `put` still succeeds.
    Skip(SkipReason),
}

/// Why a response was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, displaydoc::Display)]
pub enum SkipReason {
    /// 304 Not Modified is never cached
    NotModified,
    /// Cache-Control: no-store
    NoStore,
    /// Cache-Control: private
    Private,
    /// Cache-Control: no-cache
    NoCache,
    /// the response sets a cookie
    SetCookie,
    /// the response is already stale
    Stale,
    /// no lifetime and a status Cloudflare does not cache by default
    StatusNotCacheable,
    /// larger than the cache's entry limit
    TooLarge,
}

/// Decides for a response with this status and these headers, put at `now_ms`.
pub fn decide(status: u16, headers: &[(String, String)], now_ms: u64) -> Result<Decision, CacheError> {
    if status == 206 {
        return Err(CacheError::PartialContent);
    }
    let values =
        |name: &'static str| headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    if values("vary").any(|v| v.split(',').any(|field| field.trim() == "*")) {
        return Err(CacheError::VaryStar);
    }
    if status == 304 {
        return Ok(Decision::Skip(SkipReason::NotModified));
    }
    let directives: Vec<(String, Option<String>)> = values("cache-control").flat_map(parse_cache_control).collect();
    let directive = |name: &str| directives.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());

    if directive("no-store").is_some() {
        return Ok(Decision::Skip(SkipReason::NoStore));
    }
    let mut strip_headers = Vec::new();
    for (name, reason) in [("private", SkipReason::Private), ("no-cache", SkipReason::NoCache)] {
        match directive(name) {
            Some(None) => return Ok(Decision::Skip(reason)),
            Some(Some(fields)) => {
                strip_headers
                    .extend(fields.split(',').map(|f| f.trim().to_ascii_lowercase()).filter(|f| !f.is_empty()));
            }
            None => {}
        }
    }
    if headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        && !strip_headers.iter().any(|h| h == "set-cookie")
    {
        return Ok(Decision::Skip(SkipReason::SetCookie));
    }

    let seconds = |name: &str| directive(name).map(|v| v.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0));
    let lifetime_ms = if let Some(s_maxage) = seconds("s-maxage") {
        s_maxage.saturating_mul(1000)
    } else if let Some(max_age) = seconds("max-age") {
        max_age.saturating_mul(1000)
    } else if let Some(expires) = values("expires").next() {
        let date = values("date").next().and_then(http_date_ms).unwrap_or(now_ms);
        // An invalid Expires (such as "0") means already expired (RFC 9111 section 5.3).
        http_date_ms(expires).map_or(0, |expires| expires.saturating_sub(date))
    } else {
        match status {
            200 | 301 => 120 * 60 * 1000,
            302 | 303 => 20 * 60 * 1000,
            404 | 410 => 3 * 60 * 1000,
            _ => return Ok(Decision::Skip(SkipReason::StatusNotCacheable)),
        }
    };
    if lifetime_ms == 0 {
        return Ok(Decision::Skip(SkipReason::Stale));
    }
    Ok(Decision::Store { expires_at_ms: now_ms.saturating_add(lifetime_ms), strip_headers })
}

fn http_date_ms(value: &str) -> Option<u64> {
    let time = httpdate::parse_http_date(value.trim()).ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

/// `max-age=60, private="set-cookie, x-a", no-store` -> [(name, value)], names lower-case.
fn parse_cache_control(value: &str) -> Vec<(String, Option<String>)> {
    let mut directives = Vec::new();
    let mut rest = value;
    while !rest.trim().is_empty() {
        let rest_trimmed = rest.trim_start_matches([' ', '\t', ',']);
        let name_end = rest_trimmed.find(['=', ',']).unwrap_or(rest_trimmed.len());
        let name = rest_trimmed.get(..name_end).unwrap_or_default().trim().to_ascii_lowercase();
        let after_name = rest_trimmed.get(name_end..).unwrap_or_default();
        let (argument, remainder) = if let Some(after_eq) = after_name.strip_prefix('=') {
            let after_eq = after_eq.trim_start();
            if let Some(quoted) = after_eq.strip_prefix('"') {
                // A quoted list may hold commas; it ends at the next quote.
                let end = quoted.find('"').unwrap_or(quoted.len());
                (Some(quoted.get(..end).unwrap_or_default().to_owned()), quoted.get(end + 1..).unwrap_or_default())
            } else {
                let end = after_eq.find(',').unwrap_or(after_eq.len());
                (
                    Some(after_eq.get(..end).unwrap_or_default().trim().to_owned()),
                    after_eq.get(end..).unwrap_or_default(),
                )
            }
        } else {
            (None, after_name)
        };
        if !name.is_empty() {
            directives.push((name, argument));
        }
        if remainder.len() >= rest.len() {
            break;
        }
        rest = remainder;
    }
    directives
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    fn ttl_secs(status: u16, pairs: &[(&str, &str)]) -> Option<u64> {
        match decide(status, &h(pairs), NOW).unwrap() {
            Decision::Store { expires_at_ms, .. } => Some((expires_at_ms - NOW) / 1000),
            Decision::Skip(_) => None,
        }
    }

    #[test]
    fn lifetimes() {
        assert_eq!(ttl_secs(200, &[("Cache-Control", "max-age=60")]), Some(60));
        assert_eq!(ttl_secs(200, &[("cache-control", "max-age=60, s-maxage=10")]), Some(10), "s-maxage wins");
        assert_eq!(ttl_secs(200, &[("cache-control", "public, max-age=300")]), Some(300));
        assert_eq!(ttl_secs(200, &[("cache-control", "max-age=0")]), None);
        assert_eq!(ttl_secs(200, &[("cache-control", "max-age=oops")]), None);
        assert_eq!(
            ttl_secs(200, &[("Expires", "Fri, 01 Jan 2027 00:00:30 GMT"), ("Date", "Fri, 01 Jan 2027 00:00:00 GMT")]),
            Some(30)
        );
        assert_eq!(ttl_secs(200, &[("expires", "0")]), None, "invalid Expires is already expired");
        assert_eq!(
            ttl_secs(200, &[("expires", "Fri, 01 Jan 2027 00:00:30 GMT"), ("cache-control", "max-age=5")]),
            Some(5)
        );
        // Cloudflare's default edge TTLs when nothing is said.
        assert_eq!(ttl_secs(200, &[]), Some(7200));
        assert_eq!(ttl_secs(301, &[]), Some(7200));
        assert_eq!(ttl_secs(302, &[]), Some(1200));
        assert_eq!(ttl_secs(404, &[]), Some(180));
        assert_eq!(ttl_secs(500, &[]), None);
        assert_eq!(ttl_secs(500, &[("cache-control", "max-age=9")]), Some(9));
    }

    #[test]
    fn refusals_and_skips() {
        assert_eq!(decide(206, &[], NOW), Err(CacheError::PartialContent));
        assert_eq!(decide(200, &h(&[("Vary", "Accept, *")]), NOW), Err(CacheError::VaryStar));
        assert!(matches!(decide(200, &h(&[("Vary", "Accept")]), NOW), Ok(Decision::Store { .. })));
        let skip = |pairs: &[(&str, &str)]| match decide(200, &h(pairs), NOW).unwrap() {
            Decision::Skip(reason) => Some(reason),
            Decision::Store { .. } => None,
        };
        assert_eq!(skip(&[("cache-control", "no-store, max-age=60")]), Some(SkipReason::NoStore));
        assert_eq!(skip(&[("cache-control", "private, max-age=60")]), Some(SkipReason::Private));
        assert_eq!(skip(&[("cache-control", "no-cache")]), Some(SkipReason::NoCache));
        assert_eq!(skip(&[("set-cookie", "a=b"), ("cache-control", "max-age=60")]), Some(SkipReason::SetCookie));
        assert_eq!(decide(304, &[], NOW), Ok(Decision::Skip(SkipReason::NotModified)));
        match decide(
            200,
            &h(&[("Set-Cookie", "a=b"), ("cache-control", "private=\"Set-Cookie, X-A\", max-age=60")]),
            NOW,
        ) {
            Ok(Decision::Store { strip_headers, expires_at_ms }) => {
                assert_eq!(strip_headers, vec!["set-cookie", "x-a"]);
                assert_eq!(expires_at_ms, NOW + 60_000);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cache_control_parsing_is_total() {
        for junk in
            ["", ",,,", "=", "max-age=", "private=\"", "a=\"b,c", "\u{0}\u{ffff}=,", "max-age=99999999999999999999999"]
        {
            let _ = parse_cache_control(junk);
            let _ = decide(200, &h(&[("cache-control", junk), ("expires", junk), ("vary", junk)]), NOW);
        }
        assert_eq!(
            parse_cache_control("Max-Age=5, private=\"a, b\",no-store"),
            vec![
                ("max-age".to_string(), Some("5".to_string())),
                ("private".to_string(), Some("a, b".to_string())),
                ("no-store".to_string(), None)
            ]
        );
    }
}

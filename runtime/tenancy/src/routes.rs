//! Routing a request to a tenant by its `Host` header and path.
//!
//! A route is written `HOST[/PATH]`: `example.com` (that host only), `*.example.com` (any
//! subdomain, one or more labels deep, but not `example.com` itself) or `*` (any host), optionally
//! followed by a path prefix that matches whole segments (`/shop` matches `/shop`, `/shop/x` and
//! `/shop?q=1`, not `/shopping`).
//!
//! A request goes to the most specific route that matches both its host and its path: an exact
//! host beats the longest matching wildcard suffix, which beats `*`; among the routes of one host
//! pattern the longest path prefix wins. A route without a path prefix is the route for `/`.
//! If no route of the exact host matches the path, the wildcards and then `*` are tried, so
//! `example.com/shop` and `*` together send `example.com/blog` to the `*` route.
//!
//! [`Router::route`] runs once per request, so it does no allocation except to lower-case a
//! `Host` header that has upper-case letters: exact hosts and wildcard suffixes are hash-map
//! keys, a wildcard lookup walks the labels of the host from the longest suffix to the
//! shortest, and each host pattern keeps its path prefixes sorted longest first.
//!
//! Paths are compared byte for byte, case-sensitively and without percent-decoding or removing
//! dot segments: routing only decides which tenant receives the request, and each tenant sees the
//! path exactly as the client sent it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::Ipv6Addr;

/// The longest host name DNS allows, in characters (without a trailing dot).
const HOST_LEN_MAX: usize = 253;
/// The longest label DNS allows, in characters.
const LABEL_LEN_MAX: usize = 63;
/// The longest path prefix a route may have; a bound so that one route cannot make every
/// request compare kilobytes.
pub const PATH_PREFIX_LEN_MAX: usize = 1024;

/// Why a route was rejected. Each message is written to follow `route "TEXT": `.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("a route cannot be empty; write a host such as `example.com`, `*.example.com` or `*`")]
    Empty,
    #[error("a route has no host before its path; use `*/path` to match the path on every host")]
    MissingHost,
    #[error("a route has no scheme; write `example.com/path`, not `https://example.com/path`")]
    Scheme,
    #[error("a route cannot name a port; the port in the Host header is ignored")]
    Port,
    #[error("invalid character {0:?} in the host; a host is letters, digits, `-`, `_` and dots")]
    HostCharacter(char),
    #[error("empty label in the host (two dots in a row, or a leading dot)")]
    EmptyLabel,
    #[error("a label of the host is longer than {LABEL_LEN_MAX} characters")]
    LabelTooLong,
    #[error("the host is longer than {HOST_LEN_MAX} characters")]
    HostTooLong,
    #[error("a wildcard must be the leftmost label")]
    WildcardNotLeftmost,
    #[error("a wildcard must be a whole label: `*.example.com`, not `*example.com`")]
    WildcardNotWholeLabel,
    #[error("a wildcard needs a domain after `*.`; use `*` alone to match every host")]
    WildcardWithoutDomain,
    #[error("invalid IPv6 address in the host; write it in brackets, such as `[::1]`")]
    Ipv6,
    #[error("a path prefix must start with `/`")]
    PrefixWithoutSlash,
    #[error("a path prefix already matches every path below it; drop the `*`")]
    PrefixWildcard,
    #[error("invalid character {0:?} in the path prefix; a prefix is a plain path without `?`, `#` or spaces")]
    PrefixCharacter(char),
    #[error("the path prefix is longer than {PATH_PREFIX_LEN_MAX} bytes")]
    PrefixTooLong,
    #[error("duplicate route: another route has the same host and path prefix")]
    Duplicate,
}

/// Which hosts a route matches. Host names are stored lower-case, without a trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// This host only, e.g. `example.com`, `127.0.0.1` or `[::1]` (IPv6 in its canonical form).
    Exact(String),
    /// Any host that ends in `.` + this suffix, e.g. `example.com` for `*.example.com`; the suffix
    /// itself does not match.
    Wildcard(String),
    /// Every host, including a request without a Host header.
    Any,
}

/// One route: a host pattern and an optional path prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    pub host: HostPattern,
    /// `None` matches every path (it is the same as `/`). Otherwise the prefix starts with `/`,
    /// does not end with `/`, and matches itself and every path below it.
    pub path_prefix: Option<String>,
}

impl Route {
    /// Parses `HOST[/PATH]`, e.g. `example.com`, `*.example.com/api` or `*/static`.
    ///
    /// Hosts are lower-cased and lose a trailing dot; a trailing `/` of the path is dropped, so
    /// `example.com/`, `example.com` and `EXAMPLE.com.` are the same route, and so are
    /// `example.com/shop/` and `example.com/shop`.
    pub fn parse(text: &str) -> Result<Route, RouteError> {
        if text.is_empty() {
            return Err(RouteError::Empty);
        }
        if text.contains("://") {
            return Err(RouteError::Scheme);
        }
        // An IPv6 literal contains `:` and may not contain `/`, so split after its `]`.
        let host_end = if text.starts_with('[') {
            text.find(']').map_or(text.len(), |end| end + 1)
        } else {
            text.find('/').unwrap_or(text.len())
        };
        let (host, path) = text.split_at(host_end);
        if path.starts_with(':') {
            return Err(RouteError::Port);
        }
        if path.is_empty() { Route::new(host, None) } else { Route::new(host, Some(path)) }
    }

    /// Builds a route from a host pattern (`example.com`, `*.example.com`, `*`) and an optional
    /// path prefix, which must start with `/`.
    pub fn new(host: &str, path_prefix: Option<&str>) -> Result<Route, RouteError> {
        let host = parse_host_pattern(host)?;
        let path_prefix = match path_prefix {
            None => None,
            Some(prefix) => parse_path_prefix(prefix)?,
        };
        Ok(Route { host, path_prefix })
    }
}

/// Writes the route back in the form [`Route::parse`] reads.
impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Exact(host) => f.write_str(host)?,
            HostPattern::Wildcard(suffix) => write!(f, "*.{suffix}")?,
            HostPattern::Any => f.write_str("*")?,
        }
        f.write_str(self.path_prefix.as_deref().unwrap_or(""))
    }
}

fn parse_host_pattern(text: &str) -> Result<HostPattern, RouteError> {
    if text.is_empty() {
        return Err(RouteError::MissingHost);
    }
    if text == "*" {
        return Ok(HostPattern::Any);
    }
    if text.starts_with('[') {
        return parse_ipv6_literal(text).map(HostPattern::Exact);
    }
    if text.contains("://") {
        return Err(RouteError::Scheme);
    }
    if text.contains(':') {
        return Err(RouteError::Port);
    }
    let text = text.strip_suffix('.').unwrap_or(text);
    match text.strip_prefix("*.") {
        Some("") => Err(RouteError::WildcardWithoutDomain),
        Some(suffix) => Ok(HostPattern::Wildcard(parse_host_name(suffix)?)),
        None if text == "*" => Err(RouteError::WildcardWithoutDomain),
        None if text.starts_with('*') => Err(RouteError::WildcardNotWholeLabel),
        None => Ok(HostPattern::Exact(parse_host_name(text)?)),
    }
}

/// Validates a host name without wildcard and returns it lower-cased.
fn parse_host_name(text: &str) -> Result<String, RouteError> {
    for label in text.split('.') {
        if label.is_empty() {
            return Err(RouteError::EmptyLabel);
        }
        if label.contains('*') {
            return Err(if label == "*" { RouteError::WildcardNotLeftmost } else { RouteError::WildcardNotWholeLabel });
        }
        if let Some(bad) = label.chars().find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
            return Err(RouteError::HostCharacter(bad));
        }
        if label.len() > LABEL_LEN_MAX {
            return Err(RouteError::LabelTooLong);
        }
    }
    if text.len() > HOST_LEN_MAX {
        return Err(RouteError::HostTooLong);
    }
    Ok(text.to_ascii_lowercase())
}

/// `[v6]` to its canonical text (`[0:0::1]` becomes `[::1]`), so that any spelling matches.
fn parse_ipv6_literal(text: &str) -> Result<String, RouteError> {
    let inner = text.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).ok_or(RouteError::Ipv6)?;
    let address: Ipv6Addr = inner.parse().map_err(|_| RouteError::Ipv6)?;
    Ok(format!("[{address}]"))
}

fn parse_path_prefix(text: &str) -> Result<Option<String>, RouteError> {
    if !text.starts_with('/') {
        return Err(RouteError::PrefixWithoutSlash);
    }
    if text.contains('*') {
        return Err(RouteError::PrefixWildcard);
    }
    if let Some(bad) = text.chars().find(|&c| c == '?' || c == '#' || c.is_whitespace() || c.is_control()) {
        return Err(RouteError::PrefixCharacter(bad));
    }
    if text.len() > PATH_PREFIX_LEN_MAX {
        return Err(RouteError::PrefixTooLong);
    }
    let trimmed = text.trim_end_matches('/');
    Ok(if trimmed.is_empty() { None } else { Some(trimmed.to_owned()) })
}

/// The routes of one host pattern: path prefixes sorted longest first, so the first match is
/// the longest. The root prefix is stored as `""`, which every path matches.
struct Prefixes<T> {
    entries: Vec<(String, T)>,
}

impl<T> Prefixes<T> {
    fn new() -> Self {
        Prefixes { entries: Vec::new() }
    }

    fn insert(&mut self, prefix: String, target: T) -> Result<(), RouteError> {
        if self.entries.iter().any(|(existing, _)| *existing == prefix) {
            return Err(RouteError::Duplicate);
        }
        // Two different prefixes of one length cannot both match a path, so their relative
        // order does not matter; only longer-before-shorter does.
        let at = self.entries.partition_point(|(existing, _)| existing.len() >= prefix.len());
        self.entries.insert(at, (prefix, target));
        Ok(())
    }

    fn find(&self, path: &str) -> Option<&T> {
        self.entries.iter().find(|(prefix, _)| prefix_matches(prefix, path)).map(|(_, target)| target)
    }
}

/// `prefix` (no trailing `/`, or `""` for the root) matches `path` (query already removed) on a
/// segment boundary.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.is_empty() || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Maps requests to targets (`T` is whatever the caller stores per tenant, e.g. `Arc<str>`).
pub struct Router<T> {
    exact: HashMap<String, Prefixes<T>>,
    wildcard: HashMap<String, Prefixes<T>>,
    any: Prefixes<T>,
    len: usize,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Router::new()
    }
}

impl<T> fmt::Debug for Router<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("exact_hosts", &self.exact.len())
            .field("wildcard_suffixes", &self.wildcard.len())
            .field("routes", &self.len)
            .finish()
    }
}

impl<T> Router<T> {
    pub fn new() -> Self {
        Router { exact: HashMap::new(), wildcard: HashMap::new(), any: Prefixes::new(), len: 0 }
    }

    /// Adds a route; fails with [`RouteError::Duplicate`] if a route with the same host pattern
    /// and path prefix is already there (the router is then unchanged).
    pub fn add(&mut self, route: Route, target: T) -> Result<(), RouteError> {
        let prefix = route.path_prefix.unwrap_or_default();
        let prefixes = match route.host {
            HostPattern::Exact(host) => self.exact.entry(host).or_insert_with(Prefixes::new),
            HostPattern::Wildcard(suffix) => self.wildcard.entry(suffix).or_insert_with(Prefixes::new),
            HostPattern::Any => &mut self.any,
        };
        prefixes.insert(prefix, target)?;
        self.len += 1;
        Ok(())
    }

    /// The target for a request. `host` is the raw Host header value (any case, maybe with a
    /// `:port`, maybe `""` when the request had none); `path` is the request target's path,
    /// maybe with a `?query`.
    pub fn route(&self, host: &str, path: &str) -> Option<&T> {
        let path = path.find(['?', '#']).map_or(path, |end| &path[..end]);
        let host = host_without_port(host);
        let host: Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };

        if !self.exact.is_empty() {
            let mut buffer = [0u8; IPV6_LITERAL_LEN_MAX];
            let key = canonical_ipv6_literal(&host, &mut buffer).unwrap_or(&host);
            if let Some(found) = self.exact.get(key).and_then(|prefixes| prefixes.find(path)) {
                return Some(found);
            }
        }
        if !self.wildcard.is_empty() {
            // Strict suffixes after each dot, longest first: `a.b.c` tries `b.c`, then `c`.
            let mut rest = host.as_ref();
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot + 1..];
                if let Some(found) = self.wildcard.get(rest).and_then(|prefixes| prefixes.find(path)) {
                    return Some(found);
                }
            }
        }
        self.any.find(path)
    }

    /// The number of routes added.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The host part of a Host header value: without `:port` and without one trailing dot.
fn host_without_port(header: &str) -> &str {
    let host = if header.starts_with('[') {
        header.find(']').map_or(header, |end| &header[..=end])
    } else {
        header.find(':').map_or(header, |colon| &header[..colon])
    };
    host.strip_suffix('.').unwrap_or(host)
}

/// Room for the longest canonical IPv6 literal, `[ffff:...:255.255.255.255]`, with some spare.
const IPV6_LITERAL_LEN_MAX: usize = 64;

/// Rewrites `[v6]` into its canonical spelling in `buffer` (no allocation), so `[0::1]` finds the
/// route for `[::1]`. `None` for anything else, including invalid literals.
fn canonical_ipv6_literal<'b>(host: &str, buffer: &'b mut [u8; IPV6_LITERAL_LEN_MAX]) -> Option<&'b str> {
    use std::io::Write;
    let address: Ipv6Addr = host.strip_prefix('[')?.strip_suffix(']')?.parse().ok()?;
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    write!(cursor, "[{address}]").ok()?;
    let len = usize::try_from(cursor.position()).ok()?;
    std::str::from_utf8(&buffer[..len]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(text: &str) -> Route {
        Route::parse(text).unwrap_or_else(|error| panic!("route {text:?}: {error}"))
    }

    fn router(routes: &[&str]) -> Router<String> {
        let mut router = Router::new();
        for text in routes {
            router.add(route(text), (*text).to_owned()).unwrap();
        }
        router
    }

    fn hit<'a>(router: &'a Router<String>, host: &str, path: &str) -> Option<&'a str> {
        router.route(host, path).map(String::as_str)
    }

    // ---- Route::parse ----

    #[test]
    fn parses_exact_wildcard_and_any_hosts() {
        assert_eq!(route("example.com"), Route { host: HostPattern::Exact("example.com".into()), path_prefix: None });
        assert_eq!(
            route("*.example.com"),
            Route { host: HostPattern::Wildcard("example.com".into()), path_prefix: None }
        );
        assert_eq!(route("*"), Route { host: HostPattern::Any, path_prefix: None });
        assert_eq!(route("localhost").host, HostPattern::Exact("localhost".into()));
        assert_eq!(route("127.0.0.1").host, HostPattern::Exact("127.0.0.1".into()));
        assert_eq!(route("my_host-1.example.com").host, HostPattern::Exact("my_host-1.example.com".into()));
    }

    #[test]
    fn parses_path_prefixes() {
        assert_eq!(route("example.com/shop").path_prefix.as_deref(), Some("/shop"));
        assert_eq!(route("*.example.com/a/b").path_prefix.as_deref(), Some("/a/b"));
        assert_eq!(route("*/static").path_prefix.as_deref(), Some("/static"));
        assert_eq!(route("example.com/shop/").path_prefix.as_deref(), Some("/shop"), "trailing slash dropped");
        assert_eq!(route("example.com/").path_prefix, None, "`/` is the same as no prefix");
        assert_eq!(route("example.com//").path_prefix, None);
    }

    #[test]
    fn normalizes_case_and_trailing_dot() {
        assert_eq!(route("EXAMPLE.Com."), route("example.com"));
        assert_eq!(route("*.Example.COM./Shop"), route("*.example.com/Shop"), "the path keeps its case");
        assert_eq!(route("example.com/"), route("example.com"));
    }

    #[test]
    fn parses_ipv6_literals_canonically() {
        assert_eq!(route("[::1]").host, HostPattern::Exact("[::1]".into()));
        assert_eq!(route("[0:0:0:0:0:0:0:1]/x"), route("[::1]/x"));
        assert_eq!(route("[FE80::A]").host, HostPattern::Exact("[fe80::a]".into()));
        assert_eq!(Route::parse("[::1"), Err(RouteError::Ipv6));
        assert_eq!(Route::parse("[nope]"), Err(RouteError::Ipv6));
        assert_eq!(Route::parse("[::1]:80"), Err(RouteError::Port));
    }

    #[test]
    fn displays_the_normal_form() {
        for (text, shown) in [
            ("Example.com./shop/", "example.com/shop"),
            ("*.example.com", "*.example.com"),
            ("*", "*"),
            ("*/a", "*/a"),
            ("example.com/", "example.com"),
            ("[0::1]/x", "[::1]/x"),
        ] {
            assert_eq!(route(text).to_string(), shown);
            assert_eq!(route(shown), route(text), "Display output parses back to the same route");
        }
    }

    #[test]
    fn rejects_bad_routes_with_a_reason() {
        for (text, error) in [
            ("", RouteError::Empty),
            ("/shop", RouteError::MissingHost),
            ("https://example.com/", RouteError::Scheme),
            ("example.com:8080", RouteError::Port),
            ("exa mple.com", RouteError::HostCharacter(' ')),
            ("ex%ample.com", RouteError::HostCharacter('%')),
            ("exämple.com", RouteError::HostCharacter('ä')),
            ("example..com", RouteError::EmptyLabel),
            (".example.com", RouteError::EmptyLabel),
            ("example.com..", RouteError::EmptyLabel),
            ("a.*.com", RouteError::WildcardNotLeftmost),
            ("*.*.com", RouteError::WildcardNotLeftmost),
            ("example.*", RouteError::WildcardNotLeftmost),
            ("*example.com", RouteError::WildcardNotWholeLabel),
            ("**.example.com", RouteError::WildcardNotWholeLabel),
            ("a.b*.com", RouteError::WildcardNotWholeLabel),
            ("*.", RouteError::WildcardWithoutDomain),
            ("*..", RouteError::WildcardWithoutDomain),
            ("example.com/shop*", RouteError::PrefixWildcard),
            ("example.com/shop?x=1", RouteError::PrefixCharacter('?')),
            ("example.com/a#b", RouteError::PrefixCharacter('#')),
            ("example.com/a b", RouteError::PrefixCharacter(' ')),
        ] {
            assert_eq!(Route::parse(text), Err(error), "route {text:?}");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        assert_eq!(Route::parse(&long_label), Err(RouteError::LabelTooLong));
        let long_host = ["a".repeat(63).as_str(); 4].join(".");
        assert_eq!(long_host.len(), 255);
        assert_eq!(Route::parse(&long_host), Err(RouteError::HostTooLong));
        let long_prefix = format!("example.com/{}", "a".repeat(PATH_PREFIX_LEN_MAX));
        assert_eq!(Route::parse(&long_prefix), Err(RouteError::PrefixTooLong));
    }

    #[test]
    fn new_checks_host_and_prefix_separately() {
        assert_eq!(Route::new("example.com", Some("shop")), Err(RouteError::PrefixWithoutSlash));
        assert_eq!(Route::new("example.com", Some("")), Err(RouteError::PrefixWithoutSlash));
        assert_eq!(Route::new("example.com/shop", None), Err(RouteError::HostCharacter('/')));
        assert_eq!(Route::new("example.com", Some("/shop")).unwrap(), route("example.com/shop"));
    }

    #[test]
    fn messages_say_what_to_write() {
        assert_eq!(RouteError::WildcardNotLeftmost.to_string(), "a wildcard must be the leftmost label");
        assert!(RouteError::Scheme.to_string().contains("`example.com/path`"));
        assert!(RouteError::HostCharacter('%').to_string().contains("'%'"));
        assert!(RouteError::WildcardWithoutDomain.to_string().contains("use `*` alone"));
    }

    // ---- Router::add ----

    #[test]
    fn rejects_duplicate_routes() {
        let mut router = router(&["example.com", "example.com/shop", "*.example.com", "*"]);
        for text in ["example.com", "EXAMPLE.com./", "example.com/shop/", "*.example.com/", "*"] {
            assert_eq!(router.add(route(text), text.to_owned()), Err(RouteError::Duplicate), "{text}");
        }
        assert_eq!(router.len(), 4, "a rejected route is not counted");
        assert_eq!(hit(&router, "example.com", "/"), Some("example.com"), "the first route is kept");
        router.add(route("example.com/shop/cart"), "cart".to_owned()).unwrap();
        assert_eq!(router.len(), 5);
        assert!(!router.is_empty());
        assert!(Router::<u8>::new().is_empty());
    }

    // ---- Router::route: hosts ----

    #[test]
    fn exact_host_matches_only_that_host() {
        let router = router(&["example.com"]);
        assert_eq!(hit(&router, "example.com", "/"), Some("example.com"));
        assert_eq!(hit(&router, "www.example.com", "/"), None);
        assert_eq!(hit(&router, "example.co", "/"), None);
        assert_eq!(hit(&router, "xexample.com", "/"), None);
        assert_eq!(hit(&router, "", "/"), None);
    }

    #[test]
    fn host_is_case_insensitive_and_ignores_port_and_trailing_dot() {
        let router = router(&["example.com", "*.wild.test"]);
        for host in ["EXAMPLE.COM", "Example.com:8080", "example.com.", "example.com.:443", "example.com:"] {
            assert_eq!(hit(&router, host, "/"), Some("example.com"), "{host}");
        }
        for host in ["A.Wild.Test", "a.wild.test.:80"] {
            assert_eq!(hit(&router, host, "/"), Some("*.wild.test"), "{host}");
        }
    }

    #[test]
    fn ipv6_hosts_match_with_or_without_port_in_any_spelling() {
        let router = router(&["[::1]", "127.0.0.1/v4"]);
        for host in ["[::1]", "[::1]:8080", "[0:0::1]:80", "[0:0:0:0:0:0:0:1]"] {
            assert_eq!(hit(&router, host, "/"), Some("[::1]"), "{host}");
        }
        assert_eq!(hit(&router, "[::2]:8080", "/"), None);
        assert_eq!(hit(&router, "[::1", "/"), None, "a broken literal matches nothing");
        assert_eq!(hit(&router, "127.0.0.1:8080", "/v4/x"), Some("127.0.0.1/v4"));
    }

    #[test]
    fn wildcard_matches_subdomains_at_any_depth_but_not_the_apex() {
        let router = router(&["*.example.com"]);
        assert_eq!(hit(&router, "a.example.com", "/"), Some("*.example.com"));
        assert_eq!(hit(&router, "a.b.c.example.com", "/x"), Some("*.example.com"));
        assert_eq!(hit(&router, "example.com", "/"), None, "the apex is not a subdomain");
        assert_eq!(hit(&router, "aexample.com", "/"), None, "suffix must start at a label boundary");
        assert_eq!(hit(&router, "example.com.evil.net", "/"), None);
        assert_eq!(hit(&router, ".example.com", "/"), Some("*.example.com"), "an empty label is still a subdomain");
    }

    #[test]
    fn any_matches_every_host_including_none() {
        let router = router(&["*"]);
        for host in ["example.com", "", "[::1]:1", "WEIRD host"] {
            assert_eq!(hit(&router, host, "/anything"), Some("*"), "{host:?}");
        }
    }

    #[test]
    fn exact_beats_longest_wildcard_beats_any() {
        let router = router(&["*", "*.com", "*.example.com", "*.shop.example.com", "shop.example.com"]);
        assert_eq!(hit(&router, "shop.example.com", "/"), Some("shop.example.com"));
        assert_eq!(hit(&router, "a.shop.example.com", "/"), Some("*.shop.example.com"));
        assert_eq!(hit(&router, "a.b.shop.example.com", "/"), Some("*.shop.example.com"));
        assert_eq!(hit(&router, "blog.example.com", "/"), Some("*.example.com"));
        assert_eq!(hit(&router, "example.com", "/"), Some("*.com"));
        assert_eq!(hit(&router, "example.org", "/"), Some("*"));
    }

    #[test]
    fn exact_host_beats_a_longer_path_on_a_wildcard() {
        let router = router(&["example.com", "*.com/shop", "*/shop/cart"]);
        assert_eq!(hit(&router, "example.com", "/shop/cart"), Some("example.com"));
    }

    // ---- Router::route: paths ----

    #[test]
    fn prefix_matches_on_segment_boundaries() {
        let router = router(&["example.com/shop"]);
        for path in ["/shop", "/shop/", "/shop/x", "/shop/x/y", "/shop?q=1", "/shop/?q=1", "/shop#top"] {
            assert_eq!(hit(&router, "example.com", path), Some("example.com/shop"), "{path}");
        }
        for path in ["/shopping", "/shop.html", "/", "", "/Shop", "/x/shop", "?/shop", "*"] {
            assert_eq!(hit(&router, "example.com", path), None, "{path}");
        }
    }

    #[test]
    fn root_and_missing_prefix_match_everything() {
        let router = router(&["example.com/", "other.com"]);
        for path in ["/", "", "/x", "/x/y?z", "*", "?q"] {
            assert_eq!(hit(&router, "example.com", path), Some("example.com/"), "{path:?}");
            assert_eq!(hit(&router, "other.com", path), Some("other.com"), "{path:?}");
        }
    }

    #[test]
    fn longest_prefix_wins_within_a_host_pattern() {
        let router = router(&["example.com", "example.com/a", "example.com/a/b/c", "example.com/a/b"]);
        assert_eq!(hit(&router, "example.com", "/"), Some("example.com"));
        assert_eq!(hit(&router, "example.com", "/ab"), Some("example.com"));
        assert_eq!(hit(&router, "example.com", "/a"), Some("example.com/a"));
        assert_eq!(hit(&router, "example.com", "/a/bc"), Some("example.com/a"));
        assert_eq!(hit(&router, "example.com", "/a/b"), Some("example.com/a/b"));
        assert_eq!(hit(&router, "example.com", "/a/b/c/d?e"), Some("example.com/a/b/c"));
    }

    #[test]
    fn a_host_without_a_matching_prefix_falls_through_to_less_specific_hosts() {
        let router = router(&["example.com/shop", "*.com/blog", "*"]);
        assert_eq!(hit(&router, "example.com", "/shop/x"), Some("example.com/shop"));
        assert_eq!(hit(&router, "example.com", "/blog"), Some("*.com/blog"));
        assert_eq!(hit(&router, "example.com", "/other"), Some("*"));
        let without_any = router_without_fallback();
        assert_eq!(hit(&without_any, "example.com", "/other"), None);
    }

    fn router_without_fallback() -> Router<String> {
        router(&["example.com/shop", "*.com/blog"])
    }

    #[test]
    fn paths_are_case_sensitive_and_not_decoded() {
        let router = router(&["example.com/Shop"]);
        assert_eq!(hit(&router, "example.com", "/Shop/x"), Some("example.com/Shop"));
        assert_eq!(hit(&router, "example.com", "/shop"), None);
        assert_eq!(hit(&router, "example.com", "/%53hop"), None);
    }

    #[test]
    fn empty_router_routes_nothing() {
        let router: Router<String> = Router::default();
        assert_eq!(router.route("example.com", "/"), None);
        assert_eq!(router.len(), 0);
        assert!(format!("{router:?}").contains("routes: 0"));
    }

    // ---- a randomized comparison with a plain model of the rules ----

    /// A small deterministic generator (xorshift64*), so a failure reproduces from its seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() % items.len() as u64) as usize]
        }
    }

    /// The rules written as directly as possible: a route matches if its host pattern matches
    /// and its prefix matches; the winner has the best (host rank, prefix length).
    fn model<'a>(routes: &'a [(Route, String)], host: &str, path: &str) -> Option<&'a str> {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let host = host_without_port(host).to_ascii_lowercase();
        let host = canonical_ipv6(&host).unwrap_or(host);
        routes
            .iter()
            .filter_map(|(route, target)| {
                let host_rank = match &route.host {
                    HostPattern::Exact(exact) => (*exact == host).then_some(usize::MAX),
                    HostPattern::Wildcard(suffix) => host.ends_with(&format!(".{suffix}")).then_some(suffix.len() + 1),
                    HostPattern::Any => Some(0),
                }?;
                let prefix = route.path_prefix.as_deref().unwrap_or("");
                let segment_match = prefix.is_empty()
                    || path == prefix
                    || (path.starts_with(prefix) && path[prefix.len()..].starts_with('/'));
                segment_match.then_some(((host_rank, prefix.len()), target.as_str()))
            })
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, target)| target)
    }

    fn canonical_ipv6(host: &str) -> Option<String> {
        let address: Ipv6Addr = host.strip_prefix('[')?.strip_suffix(']')?.parse().ok()?;
        Some(format!("[{address}]"))
    }

    #[test]
    fn router_agrees_with_a_plain_model_of_the_rules() {
        const HOST_PATTERNS: &[&str] =
            &["a.com", "b.a.com", "*.a.com", "*.b.a.com", "*.com", "*", "A.com", "x.y", "*.y", "[::1]"];
        const PREFIXES: &[&str] = &["", "/", "/p", "/p/q", "/pq", "/p/", "/q"];
        const HOSTS: &[&str] = &[
            "a.com",
            "A.COM:80",
            "b.a.com",
            "c.b.a.com",
            "c.a.com",
            "com",
            "z.com",
            "x.y",
            "w.x.y",
            "y",
            "",
            "[::1]:8080",
            "[0::1]",
            "a.com.",
            "other.net",
        ];
        const PATHS: &[&str] = &["/", "", "/p", "/p/", "/p/q", "/p/q/r", "/pq", "/pqr", "/q?x", "/p?q", "/P", "*"];

        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut routed = 0;
        for round in 0..300 {
            let mut router = Router::new();
            let mut routes = Vec::new();
            for _ in 0..rng.next() % 12 {
                let text = format!("{}{}", rng.pick(HOST_PATTERNS), rng.pick(PREFIXES));
                let parsed = route(&text);
                let duplicate = routes.iter().any(|(existing, _)| *existing == parsed);
                let added = router.add(parsed.clone(), text.clone());
                assert_eq!(added.is_err(), duplicate, "round {round}: add {text}");
                if !duplicate {
                    routes.push((parsed, text));
                }
            }
            assert_eq!(router.len(), routes.len());
            for host in HOSTS {
                for path in PATHS {
                    let got = router.route(host, path).map(String::as_str);
                    assert_eq!(got, model(&routes, host, path), "round {round}: {host:?} {path:?} with {routes:?}");
                    routed += usize::from(got.is_some());
                }
            }
        }
        // Most requests must find a route, or the comparison says little.
        assert!(routed > 300 * HOSTS.len() * PATHS.len() / 3, "only {routed} requests were routed");
    }
}

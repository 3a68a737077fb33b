//! resolv.conf(5), as glibc reads it: `nameserver`, `search`/`domain` and the `options` the
//! resolver uses (`ndots:`, `timeout:`, `attempts:`, `rotate`). Lines it does not understand
//! are ignored, as glibc ignores them, and reported so the operator can be told.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Nameservers used, at most (glibc's MAXNS); later `nameserver` lines are ignored.
pub const NAMESERVERS_MAX: usize = 3;
/// Search domains kept, at most (glibc's historical MAXDNSRCH); later ones are ignored.
pub const SEARCH_DOMAINS_MAX: usize = 6;
/// A domain name's longest text form (RFC 1035 §2.3.4: 255 octets on the wire).
pub const NAME_BYTES_MAX: usize = 253;

/// resolv.conf is a few lines; a larger file is refused rather than read.
pub const RESOLV_CONF_BYTES_MAX: usize = 64 * 1024;

/// The caps glibc applies to `options` values.
const NDOTS_MAX: u8 = 15;
const TIMEOUT_SECS_MAX: u64 = 30;
const ATTEMPTS_MAX: u8 = 5;

/// What the resolver needs from resolv.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    /// Where queries go, in order, port 53; at most [`NAMESERVERS_MAX`].
    pub nameservers: Vec<SocketAddr>,
    /// Suffixes tried for names with fewer than `ndots` dots; at most [`SEARCH_DOMAINS_MAX`],
    /// lowercase, without the trailing dot.
    pub search: Vec<String>,
    /// A name with at least this many dots is tried as given before the search list.
    pub ndots: u8,
    /// How long to wait for one answer before trying the next server.
    pub timeout: Duration,
    /// Rounds over the nameserver list before giving up.
    pub attempts: u8,
    /// Start each lookup at the next server rather than always the first.
    pub rotate: bool,
}

impl Default for ResolvConf {
    /// glibc's defaults for an empty file: the local nameserver, no search list, ndots 1,
    /// 5 s, 2 attempts.
    fn default() -> Self {
        Self {
            nameservers: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53)],
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
            rotate: false,
        }
    }
}

/// A line of resolv.conf that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredLine {
    /// From 1.
    pub number: usize,
    pub reason: &'static str,
}

impl ResolvConf {
    /// Nameservers given directly (`isobar.dns=` on a guest's command line), with glibc's other
    /// defaults. An empty list is kept empty: lookups then fail with `NoServers`.
    pub fn from_nameservers(servers: &[IpAddr]) -> Self {
        let nameservers = servers.iter().take(NAMESERVERS_MAX).map(|&ip| SocketAddr::new(ip, 53)).collect();
        Self { nameservers, ..Self::default() }
    }

    /// Reads and parses resolv.conf at `path` (control thread: it reads a file, through
    /// kernel-shim, at most [`RESOLV_CONF_BYTES_MAX`]). A missing file is the caller's choice:
    /// glibc then uses [`ResolvConf::default`].
    pub fn load(path: &std::path::Path) -> std::io::Result<(Self, Vec<IgnoredLine>)> {
        let bytes = kernel_shim::file::read_bounded(path, RESOLV_CONF_BYTES_MAX)?;
        Ok(Self::parse(&String::from_utf8_lossy(&bytes)))
    }

    /// Parses the text of resolv.conf. Never fails: like glibc, it skips what it does not
    /// understand (reported in the second value) and falls back to the local nameserver when
    /// none is listed. The caller bounds the text it reads (the file is the operator's).
    pub fn parse(text: &str) -> (Self, Vec<IgnoredLine>) {
        let mut conf = Self { nameservers: Vec::new(), ..Self::default() };
        let mut ignored = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let mut ignore = |reason| ignored.push(IgnoredLine { number: index + 1, reason });
            // Comments start with `;` or `#` in the first column; glibc also ends a value at
            // either character later on the line.
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else { continue };
            match keyword {
                "nameserver" => match words.next().and_then(parse_nameserver) {
                    Some(_) if conf.nameservers.len() >= NAMESERVERS_MAX => ignore("more than 3 nameservers"),
                    Some(addr) => conf.nameservers.push(addr),
                    None => ignore("not an IP address"),
                },
                // The last of `domain` and `search` wins.
                "domain" => match words.next().and_then(parse_domain) {
                    Some(domain) => conf.search = vec![domain],
                    None => ignore("not a domain name"),
                },
                "search" => {
                    conf.search.clear();
                    for word in words {
                        match parse_domain(word) {
                            Some(_) if conf.search.len() >= SEARCH_DOMAINS_MAX => {
                                ignore("more than 6 search domains");
                                break;
                            }
                            Some(domain) => conf.search.push(domain),
                            None => ignore("not a domain name"),
                        }
                    }
                }
                "options" => {
                    for option in words {
                        if !conf.apply_option(option) {
                            ignore("unknown or invalid option");
                        }
                    }
                }
                // sortlist, lookup (BSD) and the like: not used.
                _ => ignore("unknown keyword"),
            }
        }
        if conf.nameservers.is_empty() {
            conf.nameservers = Self::default().nameservers;
        }
        (conf, ignored)
    }

    /// Applies one `options` word; false if it is not one we use (or its value is bad).
    fn apply_option(&mut self, option: &str) -> bool {
        let (name, value) = option.split_once(':').unwrap_or((option, ""));
        let number = || value.parse::<u64>().ok();
        match name {
            "ndots" => number().map(|n| self.ndots = n.min(u64::from(NDOTS_MAX)) as u8).is_some(),
            // glibc treats a timeout of 0 as 1.
            "timeout" => number().map(|n| self.timeout = Duration::from_secs(n.clamp(1, TIMEOUT_SECS_MAX))).is_some(),
            "attempts" => number().map(|n| self.attempts = n.clamp(1, u64::from(ATTEMPTS_MAX)) as u8).is_some(),
            "rotate" => {
                self.rotate = true;
                true
            }
            // Options that change nothing for this resolver: it always sends A and AAAA in
            // parallel, always uses EDNS(0), never uses TCP.
            "edns0"
            | "single-request"
            | "single-request-reopen"
            | "no-tld-query"
            | "use-vc"
            | "trust-ad"
            | "no-aaaa"
            | "inet6"
            | "debug" => true,
            _ => false,
        }
    }
}

/// `nameserver` takes an IPv4 or IPv6 address (with an optional `%scope`, which link-local
/// servers need and which we drop: the lead's socket picks the interface).
fn parse_nameserver(word: &str) -> Option<SocketAddr> {
    let address = word.split('%').next()?;
    address.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
}

/// A search domain: a valid name, lowercased, without its trailing dot.
fn parse_domain(word: &str) -> Option<String> {
    let domain = word.strip_suffix('.').unwrap_or(word);
    let valid = !domain.is_empty()
        && domain.len() <= NAME_BYTES_MAX
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    valid.then(|| domain.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_typical_file() {
        let text = "# generated by NetworkManager\n\
                    search Corp.Example.com. lab.example\n\
                    nameserver 10.0.0.2\n\
                    nameserver fe80::1%eth0\n\
                    nameserver 2001:db8::53 # a comment\n\
                    options ndots:2 timeout:3 attempts:4 rotate edns0\n";
        let (conf, ignored) = ResolvConf::parse(text);
        assert_eq!(ignored, []);
        assert_eq!(
            conf.nameservers,
            ["10.0.0.2:53".parse().unwrap(), "[fe80::1]:53".parse().unwrap(), "[2001:db8::53]:53".parse().unwrap()]
        );
        assert_eq!(conf.search, ["corp.example.com", "lab.example"]);
        assert_eq!((conf.ndots, conf.timeout, conf.attempts, conf.rotate), (2, Duration::from_secs(3), 4, true));
    }

    #[test]
    fn defaults_and_last_of_domain_or_search_wins() {
        let (conf, ignored) = ResolvConf::parse("");
        assert_eq!((conf, ignored), (ResolvConf::default(), vec![]));
        let (conf, _) = ResolvConf::parse("search a.example b.example\ndomain c.example\n");
        assert_eq!(conf.search, ["c.example"]);
        let (conf, _) = ResolvConf::parse("domain c.example\nsearch a.example b.example\n");
        assert_eq!(conf.search, ["a.example", "b.example"]);
    }

    #[test]
    fn bounds_and_bad_lines() {
        let text = "nameserver 1.1.1.1\nnameserver 1.0.0.1\nnameserver 8.8.8.8\nnameserver 9.9.9.9\n\
                    nameserver example.com\n\
                    search a b c d e f g h\n\
                    options ndots:99 timeout:0 attempts:100 bogus ndots:x\n\
                    sortlist 130.155.160.0/255.255.240.0\n\
                    search bad..name ok.example\n\
                    ;nameserver 4.4.4.4\n";
        let (conf, ignored) = ResolvConf::parse(text);
        assert_eq!(conf.nameservers.len(), NAMESERVERS_MAX);
        assert_eq!(conf.nameservers[2], "8.8.8.8:53".parse().unwrap());
        assert_eq!((conf.ndots, conf.timeout, conf.attempts), (15, Duration::from_secs(1), 5));
        assert_eq!(conf.search, ["ok.example"]);
        let lines: Vec<usize> = ignored.iter().map(|i| i.number).collect();
        assert_eq!(lines, [4, 5, 6, 7, 7, 8, 9]);
        let long = format!("search {}.example\n", "a".repeat(64));
        assert!(ResolvConf::parse(&long).0.search.is_empty());
    }

    #[test]
    fn loads_a_file() {
        let path = std::env::temp_dir().join(format!("netstack-resolv-{}.conf", std::process::id()));
        std::fs::write(&path, "nameserver 192.0.2.1\noptions ndots:3\n").unwrap();
        let (conf, ignored) = ResolvConf::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!((conf.nameservers, conf.ndots, ignored), (vec!["192.0.2.1:53".parse().unwrap()], 3, vec![]));
        assert!(ResolvConf::load(std::path::Path::new("/nonexistent/resolv.conf")).is_err());
    }

    #[test]
    fn from_nameservers_keeps_an_empty_list() {
        assert!(ResolvConf::from_nameservers(&[]).nameservers.is_empty());
        let conf = ResolvConf::from_nameservers(&["192.0.2.1".parse().unwrap(), "::1".parse().unwrap()]);
        assert_eq!(conf.nameservers, ["192.0.2.1:53".parse().unwrap(), "[::1]:53".parse().unwrap()]);
    }
}

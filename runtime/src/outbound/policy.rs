//! Which destinations a tenant's subrequests may reach (server-side request forgery defence).
//!
//! Under `serve`, a tenant is a stranger: by default it may not reach loopback, link-local,
//! private (RFC 1918, unique-local), unspecified, multicast or broadcast addresses, the host's own
//! addresses, or any listener of isobar itself (the admin API above all). The operator's
//! `[egress]` configuration may allow networks or addresses explicitly (an internal API, say), and
//! deny more. `isobar run` (a developer's local Worker, like `wrangler dev`) allows local
//! destinations by default so a Worker can proxy a local dev server; isobar's own listeners stay
//! refused there too.
//!
//! The check is made on the address a connection is actually opened to, after DNS, so a name
//! that resolves to a private address is refused as well.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub use isobar_tenancy::egress::IpNet;

use isobar_tenancy::egress::canonical;

/// Whether `ip` is not a public unicast address: loopback, private, link-local, unique-local,
/// unspecified, multicast, broadcast, documentation, shared (CGNAT) or reserved.
pub fn is_local(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
                || a >= 240 // reserved
                || v4 == Ipv4Addr::new(192, 0, 0, 8)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site local (deprecated)
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || v6 == Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0) // NAT64 well-known prefix base
        }
    }
}

/// The egress rules of one isobar process.
#[derive(Clone, Debug, Default)]
pub struct EgressPolicy {
    /// Local destinations (see [`is_local`]) are allowed (`isobar run`), unless denied below.
    pub allow_local: bool,
    /// Networks allowed even though they are local.
    pub allow: Vec<IpNet>,
    /// Networks refused even though they are public.
    pub deny: Vec<IpNet>,
    /// isobar's own listeners (the server, the admin API): never reachable by a tenant.
    pub own_listeners: Vec<SocketAddr>,
    /// The host's own addresses: refused unless allowed.
    pub host_addrs: Vec<IpAddr>,
}

/// Why a destination was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    OwnListener,
    Denied,
    Local,
    HostAddress,
}

impl EgressPolicy {
    /// The policy of `serve`: only public destinations.
    pub fn strict() -> EgressPolicy {
        EgressPolicy::default()
    }

    /// The policy of `isobar run`: local destinations too.
    pub fn local_allowed() -> EgressPolicy {
        EgressPolicy { allow_local: true, ..EgressPolicy::default() }
    }

    /// Whether a tenant may connect to `addr`.
    pub fn check(&self, addr: SocketAddr) -> Result<(), Refused> {
        let ip = canonical(addr.ip());
        let is_own_listener = self.own_listeners.iter().any(|own| {
            own.port() == addr.port()
                && (canonical(own.ip()) == ip
                    || own.ip().is_unspecified() && (is_local(ip) || self.host_addrs.contains(&ip)))
        });
        if is_own_listener {
            return Err(Refused::OwnListener);
        }
        if self.deny.iter().any(|net| net.contains(ip)) {
            return Err(Refused::Denied);
        }
        if self.allow.iter().any(|net| net.contains(ip)) {
            return Ok(());
        }
        if self.host_addrs.iter().any(|own| canonical(*own) == ip) && !self.allow_local {
            return Err(Refused::HostAddress);
        }
        if is_local(ip) && !self.allow_local {
            return Err(Refused::Local);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn serve_refuses_every_kind_of_local_destination() {
        let policy = EgressPolicy::strict();
        for local in [
            "127.0.0.1:80",
            "127.1.2.3:443",
            "10.0.0.1:80",
            "172.16.5.4:80",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "0.0.0.0:80",
            "100.64.0.1:80",
            "[::1]:80",
            "[fe80::1]:80",
            "[fd12::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:10.1.1.1]:80",
            "255.255.255.255:80",
            "224.0.0.1:80",
        ] {
            assert_eq!(policy.check(addr(local)), Err(Refused::Local), "{local}");
        }
        assert_eq!(policy.check(addr("93.184.216.34:443")), Ok(()));
        assert_eq!(policy.check(addr("[2606:2800:220:1::1]:443")), Ok(()));
    }

    #[test]
    fn operators_allow_and_deny_networks_and_own_listeners_are_always_refused() {
        let mut policy = EgressPolicy::strict();
        policy.allow.push(IpNet::parse("10.1.0.0/16").unwrap());
        policy.deny.push(IpNet::parse("93.184.0.0/16").unwrap());
        policy.own_listeners.push(addr("0.0.0.0:9000"));
        policy.own_listeners.push(addr("10.1.2.3:8080"));
        assert_eq!(policy.check(addr("10.1.2.3:80")), Ok(()));
        assert_eq!(policy.check(addr("10.1.2.3:8080")), Err(Refused::OwnListener));
        assert_eq!(policy.check(addr("127.0.0.1:9000")), Err(Refused::OwnListener));
        assert_eq!(policy.check(addr("10.2.0.1:80")), Err(Refused::Local));
        assert_eq!(policy.check(addr("93.184.216.34:443")), Err(Refused::Denied));
        let run = EgressPolicy { own_listeners: vec![addr("127.0.0.1:8080")], ..EgressPolicy::local_allowed() };
        assert_eq!(run.check(addr("127.0.0.1:3000")), Ok(()));
        assert_eq!(run.check(addr("127.0.0.1:8080")), Err(Refused::OwnListener));
        assert!(IpNet::parse("10.0.0.0/33").is_none());
        assert!(IpNet::parse("nonsense").is_none());
    }
}

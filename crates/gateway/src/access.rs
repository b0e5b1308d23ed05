//! Access rules for proxied requests: mod_access_compat's `Order`/`Allow`/`Deny` and
//! mod_authz_core's `Require`, evaluated against the downstream address.

use std::net::IpAddr;

use ipnet::IpNet;

/// mod_access_compat `Order`. Default `Deny,Allow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    DenyAllow,
    AllowDeny,
    MutualFailure,
}

/// One `Allow from`/`Deny from` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMatch {
    All,
    Net(IpNet),
}

/// A `Require` expression (mod_authz_core).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Require {
    AllGranted,
    AllDenied,
    Ip(Vec<IpNet>),
    NotIp(Vec<IpNet>),
    /// `<RequireAll>`: granted when nothing denies and something grants.
    All(Vec<Require>),
    /// `<RequireAny>` (and several top-level `Require` lines): granted when anything grants.
    Any(Vec<Require>),
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AccessPolicy {
    pub order: Order,
    pub allow: Vec<HostMatch>,
    pub deny: Vec<HostMatch>,
    /// Top-level `Require` lines (implicitly RequireAny); `None` when there are none.
    pub require: Option<Require>,
}

fn matches(list: &[HostMatch], ip: IpAddr) -> bool {
    list.iter().any(|m| match m {
        HostMatch::All => true,
        HostMatch::Net(n) => net_contains(n, ip),
    })
}

fn net_contains(n: &IpNet, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    n.contains(&ip)
}

impl Require {
    /// `Some(true)` granted, `Some(false)` denied, `None` neutral.
    fn eval(&self, ip: IpAddr) -> Option<bool> {
        match self {
            Require::AllGranted => Some(true),
            Require::AllDenied => Some(false),
            Require::Ip(nets) => nets.iter().any(|n| net_contains(n, ip)).then_some(true),
            Require::NotIp(nets) => nets.iter().any(|n| net_contains(n, ip)).then_some(false),
            Require::All(children) => {
                let results: Vec<Option<bool>> = children.iter().map(|c| c.eval(ip)).collect();
                if results.contains(&Some(false)) {
                    Some(false)
                } else if results.contains(&Some(true)) {
                    Some(true)
                } else {
                    None
                }
            }
            Require::Any(children) => {
                let results: Vec<Option<bool>> = children.iter().map(|c| c.eval(ip)).collect();
                if results.contains(&Some(true)) {
                    Some(true)
                } else if results.contains(&Some(false)) {
                    Some(false)
                } else {
                    None
                }
            }
        }
    }
}

impl AccessPolicy {
    /// Whether `ip` may pass. Both the compat rules and `Require` must agree (Apache's
    /// default `Satisfy All`).
    pub fn allows(&self, ip: IpAddr) -> bool {
        // mod_access_compat.c check_dir_access.
        let compat = match self.order {
            Order::AllowDeny => matches(&self.allow, ip) && !matches(&self.deny, ip),
            Order::DenyAllow => !matches(&self.deny, ip) || matches(&self.allow, ip),
            Order::MutualFailure => matches(&self.allow, ip) && !matches(&self.deny, ip),
        };
        let has_compat = !(self.order == Order::DenyAllow && self.allow.is_empty() && self.deny.is_empty());
        let compat = if has_compat { compat } else { true };
        let authz = match &self.require {
            None => true,
            Some(r) => r.eval(ip) == Some(true),
        };
        compat && authz
    }

    pub fn describe(&self) -> String {
        format!("order={:?} allow={:?} deny={:?} require={:?}", self.order, self.allow, self.deny, self.require)
    }
}

/// Parse one `Allow from`/`Deny from` address: `all`, a full or partial IPv4 (`10.1`),
/// `a.b.c.d/w.x.y.z`, CIDR, or IPv6. Host names are refused (they need double reverse DNS).
pub fn parse_host_match(s: &str) -> Result<HostMatch, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(HostMatch::All);
    }
    parse_net(s).map(HostMatch::Net)
}

/// Parse an address form shared by `Allow from` and `Require ip`.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    if let Some((a, m)) = s.split_once('/') {
        let ip: IpAddr = a.parse().map_err(|_| format!("'{s}' is not an address/mask"))?;
        if let Ok(bits) = m.parse::<u8>() {
            return IpNet::new(ip, bits).map(|n| n.trunc()).map_err(|_| format!("'{s}' has a prefix length too long"));
        }
        let mask: IpAddr = m.parse().map_err(|_| format!("'{s}' has a mask that is neither a length nor an address"))?;
        return IpNet::with_netmask(ip, mask).map(|n| n.trunc()).map_err(|_| format!("'{s}' has a non-contiguous netmask"));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        return Ok(IpNet::new(ip, bits).expect("full length"));
    }
    // Partial IPv4: 1 to 3 leading octets, optionally with a trailing dot.
    let t = s.strip_suffix('.').unwrap_or(s);
    let parts: Vec<&str> = t.split('.').collect();
    if !t.is_empty() && parts.len() <= 3 && parts.iter().all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit())) {
        let mut octets = [0u8; 4];
        for (i, p) in parts.iter().enumerate() {
            octets[i] = p.parse::<u8>().map_err(|_| format!("'{s}' is not a partial IP address"))?;
        }
        let ip = IpAddr::from(octets);
        return Ok(IpNet::new(ip, (parts.len() * 8) as u8).expect("valid"));
    }
    Err(format!("'{s}' is not an IP address, partial IP, CIDR or network/netmask (host names are not supported: they need DNS lookups on every request)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn host_match_forms() {
        let cases = [
            ("all", Some("all")),
            ("10.1", Some("10.1.0.0/16")),
            ("10.1.", Some("10.1.0.0/16")),
            ("192.168.1.7", Some("192.168.1.7/32")),
            ("10.0.0.0/8", Some("10.0.0.0/8")),
            ("10.0.0.0/255.255.0.0", Some("10.0.0.0/16")),
            ("2001:db8::/32", Some("2001:db8::/32")),
            ("::1", Some("::1/128")),
            ("example.com", None),
            ("10.0.0.0/255.0.255.0", None),
            ("300.1", None),
        ];
        for (input, want) in cases {
            let got = parse_host_match(input).ok().map(|m| match m {
                HostMatch::All => "all".to_string(),
                HostMatch::Net(n) => n.to_string(),
            });
            assert_eq!(got.as_deref(), want, "input {input}");
        }
    }

    #[test]
    fn order_semantics_follow_mod_access_compat() {
        let net = |s: &str| HostMatch::Net(parse_net(s).unwrap());
        // (order, allow, deny, peer, allowed)
        type Row = (Order, Vec<HostMatch>, Vec<HostMatch>, &'static str, bool);
        let rows: Vec<Row> = vec![
            (Order::DenyAllow, vec![HostMatch::All], vec![], "1.2.3.4", true),
            (Order::DenyAllow, vec![], vec![HostMatch::All], "1.2.3.4", false),
            (Order::DenyAllow, vec![net("10.0.0.0/8")], vec![HostMatch::All], "10.1.1.1", true),
            (Order::DenyAllow, vec![net("10.0.0.0/8")], vec![HostMatch::All], "11.1.1.1", false),
            (Order::AllowDeny, vec![], vec![], "1.2.3.4", false),
            (Order::AllowDeny, vec![HostMatch::All], vec![net("10.1")], "10.1.2.3", false),
            (Order::AllowDeny, vec![HostMatch::All], vec![net("10.1")], "10.2.2.3", true),
            (Order::MutualFailure, vec![net("127.0.0.1")], vec![], "127.0.0.1", true),
            (Order::MutualFailure, vec![net("127.0.0.1")], vec![net("127.0.0.0/8")], "127.0.0.1", false),
            (Order::DenyAllow, vec![net("127.0.0.1")], vec![HostMatch::All], "::ffff:127.0.0.1", true),
        ];
        for (order, allow, deny, peer, want) in rows {
            let p = AccessPolicy { order, allow: allow.clone(), deny: deny.clone(), require: None };
            assert_eq!(p.allows(ip(peer)), want, "{order:?} allow={allow:?} deny={deny:?} peer={peer}");
        }
    }

    #[test]
    fn require_semantics() {
        let n = |s: &str| parse_net(s).unwrap();
        let rows = vec![
            (Require::AllGranted, "1.1.1.1", true),
            (Require::AllDenied, "1.1.1.1", false),
            (Require::Ip(vec![n("10.0.0.0/8")]), "10.9.9.9", true),
            (Require::Ip(vec![n("10.0.0.0/8")]), "11.9.9.9", false),
            (Require::All(vec![Require::AllGranted, Require::NotIp(vec![n("10.0.0.0/8")])]), "10.9.9.9", false),
            (Require::All(vec![Require::AllGranted, Require::NotIp(vec![n("10.0.0.0/8")])]), "11.9.9.9", true),
            (Require::All(vec![Require::NotIp(vec![n("10.0.0.0/8")])]), "11.9.9.9", false),
            (Require::Any(vec![Require::Ip(vec![n("10.0.0.0/8")]), Require::Ip(vec![n("::1")])]), "::1", true),
        ];
        for (r, peer, want) in rows {
            let p = AccessPolicy { require: Some(r.clone()), ..Default::default() };
            assert_eq!(p.allows(ip(peer)), want, "{r:?} {peer}");
        }
    }
}

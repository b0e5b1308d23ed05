//! mod_remoteip: the proxies in front of the gateway whose forwarding headers are believed.
//! (Trove keeps their X-Forwarded-For and appends to it; from anyone else it is removed, where
//! Apache would append to whatever a client sent.)

use super::{Cx, Handler, Line};

pub(super) const DIRECTIVES: &[(&str, Handler)] = &[("remoteiptrustedproxy", trusted_proxy), ("remoteipinternalproxy", trusted_proxy)];

fn trusted_proxy(cx: &mut Cx<'_>, l: &Line) {
    for a in &l.args {
        match super::super::toml::parse_net(a) {
            Some(n) => cx.server().trusted_downstream.push(n),
            None => cx.d.error(&l.origin, format!("{} '{a}' is not an IP address or network", l.name), "give addresses or CIDR networks, like 10.0.0.0/8"),
        }
    }
}

//! Access to proxied requests: mod_authz_core's `Require` and its `<RequireAll>`/`<RequireAny>`
//! sections, mod_authz_host's `Require ip|local`, and mod_access_compat's `Order`, `Allow`,
//! `Deny` and `Satisfy`. They only take effect inside `<Proxy>` (see `crate::access`).

use super::super::Diagnostics;
use super::{Ctx, Cx, Handler, Line};
use crate::access::{AccessPolicy, Order, Require, parse_host_match, parse_net};

pub(super) const DIRECTIVES: &[(&str, Handler)] = &[
    ("<requireall", require_all),
    ("<requireany", require_any),
    ("</requireall", end_require_all),
    ("</requireany", end_require_any),
    ("<requirenone", require_none),
    ("order", order),
    ("allow", allow),
    ("deny", deny),
    ("satisfy", satisfy),
    ("require", require),
];

fn require_all(cx: &mut Cx<'_>, _: &Line) {
    cx.stack.push(Ctx::RequireAll(vec![]));
}

fn require_any(cx: &mut Cx<'_>, _: &Line) {
    cx.stack.push(Ctx::RequireAny(vec![]));
}

fn end_require_all(cx: &mut Cx<'_>, l: &Line) {
    end_require_section(cx, l, true);
}

fn end_require_any(cx: &mut Cx<'_>, l: &Line) {
    end_require_section(cx, l, false);
}

fn end_require_section(cx: &mut Cx<'_>, l: &Line, all: bool) {
    let done = match cx.stack.pop() {
        Some(Ctx::RequireAll(v)) if all => Require::All(v),
        Some(Ctx::RequireAny(v)) if !all => Require::Any(v),
        other => {
            if let Some(o) = other {
                cx.stack.push(o);
            }
            cx.d.error(&l.origin, format!("{}> without a matching opener", l.name), "balance the Require sections");
            return;
        }
    };
    add_require(&mut cx.stack, done, l, cx.d);
}

fn require_none(cx: &mut Cx<'_>, l: &Line) {
    cx.d.error(&l.origin, "<RequireNone> is not supported", "use <RequireAll> with 'Require not ip …'");
    cx.stack.push(Ctx::Skip { name: "requirenone".into() });
}

fn order(cx: &mut Cx<'_>, l: &Line) {
    let o = match l.args.first().map(|s| s.to_ascii_lowercase()).as_deref() {
        Some("deny,allow") if l.args.len() == 1 => Order::DenyAllow,
        Some("allow,deny") if l.args.len() == 1 => Order::AllowDeny,
        Some("mutual-failure") if l.args.len() == 1 => Order::MutualFailure,
        _ => {
            cx.d.error(
                &l.origin,
                format!("Order '{}' is not valid (Order takes no spaces)", l.args.join(" ")),
                "write 'Order Deny,Allow', 'Order Allow,Deny' or 'Order Mutual-failure'",
            );
            return;
        }
    };
    if let Some(p) = proxy_policy(&mut cx.stack, l, cx.d) {
        p.order = o;
    }
}

fn allow(cx: &mut Cx<'_>, l: &Line) {
    host_rule(cx, l, true);
}

fn deny(cx: &mut Cx<'_>, l: &Line) {
    host_rule(cx, l, false);
}

/// `Allow from …` / `Deny from …`.
fn host_rule(cx: &mut Cx<'_>, l: &Line, allow: bool) {
    if l.args.first().map(|s| s.eq_ignore_ascii_case("from")) != Some(true) || l.args.len() < 2 {
        cx.d.error(&l.origin, format!("{} needs 'from' and addresses", l.name), format!("write for example '{} from all'", l.name));
        return;
    }
    let mut ms = Vec::new();
    for a in &l.args[1..] {
        if a.starts_with("env=") {
            cx.d.error(&l.origin, format!("'{a}' (environment-variable access) is not supported"), "use addresses or CIDR ranges");
            continue;
        }
        match parse_host_match(a) {
            Ok(m) => ms.push(m),
            Err(e) => cx.d.error(&l.origin, e, "write an IP, a partial IP like 10.1, a CIDR like 10.0.0.0/8, or 'all'"),
        }
    }
    if let Some(p) = proxy_policy(&mut cx.stack, l, cx.d) {
        if allow {
            p.allow.extend(ms);
        } else {
            p.deny.extend(ms);
        }
    }
}

fn satisfy(cx: &mut Cx<'_>, l: &Line) {
    cx.d.note(&l.origin, "Satisfy is accepted; trove always requires both Order/Allow/Deny and Require to pass");
}

fn require(cx: &mut Cx<'_>, l: &Line) {
    let r = match parse_require(&l.args) {
        Ok(r) => r,
        Err(e) => {
            cx.d.error(&l.origin, e, "supported: Require all granted|denied, Require ip …, Require local, Require not ip … (inside <RequireAll>)");
            return;
        }
    };
    if matches!(r, Require::NotIp(_)) && !matches!(cx.stack.last(), Some(Ctx::RequireAll(_))) {
        cx.d.error(&l.origin, "'Require not' only works inside <RequireAll>", "wrap it: <RequireAll> Require all granted / Require not ip … </RequireAll>");
        return;
    }
    add_require(&mut cx.stack, r, l, cx.d);
}

fn proxy_policy<'a>(stack: &'a mut [Ctx], l: &Line, d: &mut Diagnostics) -> Option<&'a mut AccessPolicy> {
    let found = stack.iter_mut().rev().find_map(|c| if let Ctx::Proxy { policy, .. } = c { Some(policy) } else { None });
    if found.is_none() {
        d.error(&l.origin, format!("{} outside <Proxy> has no effect on proxied requests", l.name), "put access rules inside <Proxy *> … </Proxy>");
    }
    found
}

fn add_require(stack: &mut [Ctx], r: Require, l: &Line, d: &mut Diagnostics) {
    match stack.last_mut() {
        Some(Ctx::RequireAll(v)) | Some(Ctx::RequireAny(v)) => v.push(r),
        _ => {
            if let Some(p) = proxy_policy(stack, l, d) {
                p.require = Some(match p.require.take() {
                    None => r,
                    Some(Require::Any(mut v)) => {
                        v.push(r);
                        Require::Any(v)
                    }
                    Some(prev) => Require::Any(vec![prev, r]),
                });
            }
        }
    }
}

fn parse_require(args: &[String]) -> Result<Require, String> {
    let lower: Vec<String> = args.iter().map(|a| a.to_ascii_lowercase()).collect();
    let (neg, rest) = if lower.first().map(String::as_str) == Some("not") { (true, &args[1..]) } else { (false, args) };
    let kind = rest.first().map(|s| s.to_ascii_lowercase()).unwrap_or_default();
    let r = match kind.as_str() {
        "all" => match rest.get(1).map(|s| s.to_ascii_lowercase()).as_deref() {
            Some("granted") => Require::AllGranted,
            Some("denied") => Require::AllDenied,
            _ => return Err("Require all takes 'granted' or 'denied'".into()),
        },
        "ip" => {
            if rest.len() < 2 {
                return Err("Require ip needs at least one address".into());
            }
            let nets = rest[1..].iter().map(|a| parse_net(a)).collect::<Result<Vec<_>, _>>()?;
            Require::Ip(nets)
        }
        "local" => Require::Ip(vec![parse_net("127.0.0.0/8").unwrap(), parse_net("::1").unwrap()]),
        other => return Err(format!("Require {other} is not supported")),
    };
    if neg {
        return match r {
            Require::Ip(n) => Ok(Require::NotIp(n)),
            _ => Err("only 'Require not ip …' is supported among the negations".into()),
        };
    }
    Ok(r)
}

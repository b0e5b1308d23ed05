//! mod_proxy_balancer with mod_lbmethod_byrequests / mod_lbmethod_bybusyness and
//! mod_proxy_hcheck: `<Proxy balancer://name>` sections of `BalancerMember` lines, `ProxySet`,
//! and the balancer a `ProxyPass … balancer://name/path` route goes to
//! (<https://httpd.apache.org/docs/2.4/mod/mod_proxy_balancer.html>,
//! <https://httpd.apache.org/docs/2.4/mod/mod_proxy_hcheck.html>).

use std::time::Duration;

use super::super::{Balancer, Diagnostics, HcMethod, HealthCheck, LbMethod, Member, Origin, Upstream, parse_apache_duration};
use super::{Ctx, Cx, Handler, Line, build_upstream};

pub(super) const DIRECTIVES: &[(&str, Handler)] = &[
    ("balancermember", balancer_member),
    ("proxyset", proxy_set),
    ("balancergrowth", no_effect),
    ("balancerpersist", no_effect),
    ("balancerinherit", no_effect),
];

/// A `<Proxy balancer://name>` as written: its members and its `ProxySet` parameters.
#[derive(Clone, Debug)]
pub(super) struct BalancerDraft {
    /// Lower case, without the scheme (`mycluster`); Apache compares balancer names so.
    pub name: String,
    pub members: Vec<MemberDraft>,
    pub params: Vec<(String, String, Origin)>,
}

#[derive(Clone, Debug)]
pub(super) struct MemberDraft {
    pub url: String,
    pub params: Vec<(String, String, Origin)>,
    pub origin: Origin,
}

/// `balancer://NAME/path` → (`name` in lower case, `/path`).
pub(super) fn split_balancer_url(url: &str) -> Option<(String, String)> {
    let rest = url.get(..11).filter(|s| s.eq_ignore_ascii_case("balancer://")).map(|_| &url[11..])?;
    let (name, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    (!name.is_empty()).then(|| (name.to_ascii_lowercase(), path.to_string()))
}

/// The balancer a line speaks of: its first argument when that is `balancer://name` (taken
/// off `args`), else the `<Proxy balancer://name>` it is in.
fn which_balancer(cx: &Cx<'_>, args: &mut &[String]) -> Option<String> {
    if let Some((name, _)) = args.first().and_then(|a| split_balancer_url(a)) {
        *args = &args[1..];
        return Some(name);
    }
    cx.stack.iter().rev().find_map(|c| match c {
        Ctx::Proxy { pattern, .. } => split_balancer_url(pattern).map(|(n, _)| n),
        _ => None,
    })
}

fn draft<'c>(cx: &'c mut Cx<'_>, name: &str) -> &'c mut BalancerDraft {
    match cx.balancers.iter().position(|b| b.name == name) {
        Some(i) => &mut cx.balancers[i],
        None => {
            cx.balancers.push(BalancerDraft { name: name.to_string(), members: vec![], params: vec![] });
            cx.balancers.last_mut().expect("just pushed")
        }
    }
}

fn key_values(cx: &mut Cx<'_>, l: &Line, args: &[String]) -> Vec<(String, String, Origin)> {
    let mut out = Vec::new();
    for a in args {
        match a.split_once('=') {
            Some((k, v)) => out.push((k.to_ascii_lowercase(), v.to_string(), l.origin.clone())),
            None => cx.d.error(&l.origin, format!("{} parameter '{a}' is not key=value", l.name), "write parameters as key=value, like loadfactor=2"),
        }
    }
    out
}

/// `BalancerMember [balancer://name] URL [key=value …]`.
fn balancer_member(cx: &mut Cx<'_>, l: &Line) {
    let mut args = &l.args[..];
    let Some(name) = which_balancer(cx, &mut args) else {
        cx.d.error(&l.origin, "BalancerMember outside a <Proxy balancer://…> section", "put it inside <Proxy \"balancer://mycluster\"> … </Proxy>, or name the balancer first: 'BalancerMember balancer://mycluster http://host:port'");
        return;
    };
    let Some(url) = args.first().cloned() else {
        cx.d.error(&l.origin, "BalancerMember needs the node's URL", "write for example 'BalancerMember \"http://127.0.0.1:7991\"'");
        return;
    };
    let params = key_values(cx, l, &args[1..]);
    draft(cx, &name).members.push(MemberDraft { url, params, origin: l.origin.clone() });
}

/// `ProxySet [balancer://name] key=value …`: the balancer's parameters.
fn proxy_set(cx: &mut Cx<'_>, l: &Line) {
    let mut args = &l.args[..];
    let Some(name) = which_balancer(cx, &mut args) else {
        cx.d.error(
            &l.origin,
            "ProxySet for a single origin is not supported, only for a balancer",
            "give the parameters on the ProxyPass line, or put ProxySet inside <Proxy \"balancer://…\">",
        );
        return;
    };
    let params = key_values(cx, l, args);
    draft(cx, &name).params.extend(params);
}

fn no_effect(cx: &mut Cx<'_>, l: &Line) {
    cx.d.note(&l.origin, format!("{} is accepted and has no effect in trove (balancers are defined once, at start and on reload)", l.name));
}

/// The balancer a route `ProxyPass PATH balancer://name/path [params]` goes to: its members
/// with the route's path joined, and the parameters of `ProxySet` and then of the ProxyPass
/// line. `Err` says what is wrong with the route (its line is the caller's).
pub(super) fn build(
    target: &str,
    route_params: &[(String, String, Origin)],
    drafts: &[BalancerDraft],
    default_timeout: Duration,
    d: &mut Diagnostics,
) -> Result<Balancer, String> {
    let (name, path) = split_balancer_url(target).ok_or_else(|| format!("'{target}' is not balancer://name/path"))?;
    let draft = drafts.iter().find(|b| b.name == name).ok_or_else(|| format!("{target}: no <Proxy \"balancer://{name}\"> with BalancerMember lines defines this balancer"))?;
    let mut b = Balancer { name: format!("balancer://{name}"), url: target.to_string(), method: LbMethod::ByRequests, members: vec![], max_attempts: 0 };
    let mut max_attempts = None;
    for (k, v, o) in draft.params.iter().chain(route_params) {
        match k.as_str() {
            "lbmethod" => {
                b.method = match v.to_ascii_lowercase().as_str() {
                    "byrequests" => LbMethod::ByRequests,
                    "bybusyness" => LbMethod::ByBusyness,
                    "bytraffic" | "heartbeat" => {
                        d.error(o, format!("lbmethod={v} is not implemented by trove"), "write lbmethod=byrequests (the default) or lbmethod=bybusyness");
                        LbMethod::ByRequests
                    }
                    _ => return Err(format!("lbmethod={v}: unknown method (Apache refuses it too)")),
                }
            }
            "maxattempts" => max_attempts = Some(v.parse::<usize>().map_err(|_| format!("maxattempts={v}: not a number"))?),
            "stickysession" | "stickysessionsep" | "scolonpathdelim" | "nofailover" => d.warn(
                o,
                format!("balancer parameter {k} is ignored: trove keeps no sticky sessions (Trove's sessions work on every node)"),
                format!("remove {k}={v}"),
            ),
            "failonstatus" | "failontimeout" => {
                d.error(o, format!("balancer parameter {k} is not implemented by trove, and it changes which node answers"), format!("remove {k}={v}"))
            }
            "timeout" | "growth" | "forcerecovery" | "lbset" => d.note(o, format!("balancer parameter {k} is accepted and has no effect in trove")),
            _ => return Err(format!("unknown balancer parameter '{k}' (Apache refuses it too)")),
        }
    }
    for m in &draft.members {
        match member(m, &path, default_timeout, d) {
            Ok(Some(member)) => b.members.push(member),
            Ok(None) => {}
            Err(e) => d.error(&m.origin, e, "see docs/gateway.md, \"Several server nodes\", for the BalancerMember parameters"),
        }
    }
    b.max_attempts = max_attempts.unwrap_or(b.members.len().saturating_sub(1));
    Ok(b)
}

/// One `BalancerMember`: its balancer parameters here, its worker parameters (`timeout`,
/// `retry`, `max`, …) as a ProxyPass's. `Ok(None)` when the URL is wrong (reported).
fn member(m: &MemberDraft, path: &str, default_timeout: Duration, d: &mut Diagnostics) -> Result<Option<Member>, String> {
    let mut worker_params = Vec::new();
    let mut out_member = (1u32, None::<String>, false, false, false);
    let (mut hc_method, mut hc_uri, mut hc_interval, mut hc_passes, mut hc_fails) = (None, String::new(), Duration::from_secs(30), 1u32, 1u32);
    for (k, v, o) in &m.params {
        let count = || v.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| format!("{k}={v}: not a count of 1 or more"));
        match k.as_str() {
            "loadfactor" => {
                out_member.0 = v.parse::<u32>().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| format!("loadfactor={v}: not a number from 1 to 100"))?;
            }
            "route" => out_member.1 = Some(v.clone()),
            "status" => {
                let mut on = true;
                for c in v.chars() {
                    match c.to_ascii_uppercase() {
                        '+' => on = true,
                        '-' => on = false,
                        'H' | 'R' => out_member.2 = on,
                        'D' | 'S' => out_member.3 = on,
                        'N' => out_member.4 = on,
                        'I' | 'E' | 'C' => d.note(o, format!("status flag {c} is accepted and has no effect in trove")),
                        _ => return Err(format!("status={v}: unknown flag '{c}' (the flags are D, H, N, S, R, I, E, C)")),
                    }
                }
            }
            "hcmethod" => {
                hc_method = match v.to_ascii_uppercase().as_str() {
                    "NONE" => None,
                    "TCP" => Some(HcMethod::Tcp),
                    "GET" | "GET11" => Some(HcMethod::Get),
                    "HEAD" | "HEAD11" => Some(HcMethod::Head),
                    "OPTIONS" | "OPTIONS11" => Some(HcMethod::Options),
                    "CPING" | "PROVIDER" => return Err(format!("hcmethod={v} is not implemented by trove; write hcmethod=GET, HEAD, OPTIONS or TCP")),
                    _ => return Err(format!("hcmethod={v}: unknown method (Apache refuses it too)")),
                }
            }
            "hcuri" => hc_uri = v.clone(),
            "hcinterval" => hc_interval = parse_apache_duration(v).filter(|d| !d.is_zero()).ok_or_else(|| format!("hcinterval={v}: not a number of seconds above 0"))?,
            "hcpasses" => hc_passes = count()?,
            "hcfails" => hc_fails = count()?,
            "hcexpr" | "hctemplate" => return Err(format!("{k} is not implemented by trove; a 2xx or 3xx answer passes, as Apache's default")),
            "lbset" | "redirect" => d.note(o, format!("balancer member parameter {k} is accepted and has no effect in trove")),
            _ => worker_params.push((k.clone(), v.clone(), o.clone())),
        }
    }
    let url = format!("{}{path}", m.url.trim_end_matches('/'));
    let upstream: Upstream = match build_upstream(&url, &worker_params, default_timeout, d) {
        Ok(u) => u,
        Err(e) => {
            d.error(&m.origin, e, "write the node as http://host:port");
            return Ok(None);
        }
    };
    // mod_proxy_hcheck: `hcuri` is appended to the worker's own URL (its path, not the route's).
    let worker_path = super::super::split_origin_url(&m.url).map(|(_, _, p)| p).unwrap_or_default();
    let check_path = match (worker_path.trim_end_matches('/'), hc_uri.as_str()) {
        ("", "") => "/".to_string(),
        (w, "") => w.to_string(),
        (w, u) if u.starts_with('/') => format!("{w}{u}"),
        (w, u) => format!("{w}/{u}"),
    };
    let health = hc_method.map(|method| HealthCheck {
        method,
        path: check_path,
        interval: hc_interval,
        passes: hc_passes,
        fails: hc_fails,
        timeout: upstream.timeout.min(hc_interval.max(Duration::from_secs(1))),
    });
    let (loadfactor, route, hot_standby, disabled, drain) = out_member;
    Ok(Some(Member { upstream, loadfactor, route, hot_standby, disabled, drain, health }))
}

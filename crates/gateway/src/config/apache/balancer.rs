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
        cx.d.error(
            &l.origin,
            "BalancerMember outside a <Proxy balancer://…> section",
            "put it inside <Proxy \"balancer://mycluster\"> … </Proxy>, or name the balancer first: 'BalancerMember balancer://mycluster http://host:port'",
        );
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
    let draft = drafts
        .iter()
        .find(|b| b.name == name)
        .ok_or_else(|| format!("{target}: no <Proxy \"balancer://{name}\"> with BalancerMember lines defines this balancer"))?;
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
            "hcinterval" => {
                hc_interval = parse_apache_duration(v).filter(|d| !d.is_zero()).ok_or_else(|| format!("hcinterval={v}: not a number of seconds above 0"))?
            }
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{Diagnostics, GatewayConfig, HcMethod, LbMethod, Severity};

    fn parse(text: &str) -> (GatewayConfig, Diagnostics) {
        crate::config::apache::parse_str(Path::new("httpd.conf"), text)
    }

    fn errors(d: &Diagnostics) -> Vec<String> {
        d.errors().map(|e| e.to_string()).collect()
    }

    /// The seed's `/stash` layout on two nodes, with every parameter trove reads.
    #[test]
    fn every_balancer_parameter_is_read() {
        let (c, d) = parse(
            r#"Listen 8080
Timeout 120
<Proxy "balancer://mycluster">
    BalancerMember "http://127.0.0.1:7991" route=node1 loadfactor=3 hcmethod=GET hcuri=/stash/status hcinterval=5 hcpasses=2 hcfails=3 retry=10 timeout=30 connectiontimeout=2
    BalancerMember "http://127.0.0.1:7992" route=node2 status=+H hcmethod=HEAD11
    BalancerMember "http://127.0.0.1:7993" status=+N
    BalancerMember "http://127.0.0.1:7994" status=+D hcmethod=TCP
    ProxySet lbmethod=bybusyness
</Proxy>
BalancerMember balancer://mycluster http://127.0.0.1:7995 status=-H+N-N
ProxyPass /stash balancer://mycluster/stash maxattempts=2
ProxyPassReverse /stash balancer://mycluster/stash
"#,
        );
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        let r = &c.servers[0].routes[0];
        let b = r.balancer.as_ref().expect("a balancer");
        assert_eq!(
            (b.name.as_str(), b.url.as_str(), b.method, b.max_attempts),
            ("balancer://mycluster", "balancer://mycluster/stash", LbMethod::ByBusyness, 2)
        );
        assert_eq!(b.members.len(), 5);
        let m = &b.members[0];
        assert_eq!(m.upstream.url, "http://127.0.0.1:7991/stash");
        assert_eq!((m.upstream.path.as_str(), m.upstream.port), ("/stash", 7991));
        assert_eq!((m.loadfactor, m.route.as_deref()), (3, Some("node1")));
        assert_eq!(
            (m.upstream.retry, m.upstream.timeout, m.upstream.connect_timeout),
            (Duration::from_secs(10), Duration::from_secs(30), Duration::from_secs(2))
        );
        let h = m.health.as_ref().expect("a health check");
        assert_eq!((h.method, h.path.as_str(), h.interval, h.passes, h.fails), (HcMethod::Get, "/stash/status", Duration::from_secs(5), 2, 3));
        assert_eq!(h.timeout, Duration::from_secs(5), "a check never outlasts its interval");
        let m = &b.members[1];
        assert!(m.hot_standby && !m.drain && !m.disabled);
        assert_eq!(m.upstream.timeout, Duration::from_secs(120), "Timeout, as a ProxyPass worker's");
        let h = m.health.as_ref().unwrap();
        assert_eq!((h.method, h.path.as_str(), h.interval, h.passes, h.fails), (HcMethod::Head, "/", Duration::from_secs(30), 1, 1));
        assert!(b.members[2].drain && b.members[2].health.is_none());
        assert!(b.members[3].disabled && b.members[3].health.as_ref().unwrap().method == HcMethod::Tcp);
        assert!(!b.members[4].hot_standby && !b.members[4].drain);
        // The route's own upstream is the first node's; ProxyPassReverse maps every node back.
        assert_eq!(r.upstream.as_ref().unwrap().url, "http://127.0.0.1:7991/stash");
        let rev: Vec<&str> = c.servers[0].reverse.iter().map(|r| r.origin_url.as_str()).collect();
        assert_eq!(
            rev,
            [
                "http://127.0.0.1:7991/stash",
                "http://127.0.0.1:7992/stash",
                "http://127.0.0.1:7993/stash",
                "http://127.0.0.1:7994/stash",
                "http://127.0.0.1:7995/stash"
            ]
        );
        // Defaults: byrequests, every other node a retry.
        let (c, d) = parse("Listen 80\n<Proxy balancer://c>\nBalancerMember http://a:1\nBalancerMember http://b:2\n</Proxy>\nProxyPass / balancer://c/\n");
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        let b = c.servers[0].routes[0].balancer.as_ref().unwrap();
        assert_eq!((b.method, b.max_attempts, b.members[0].loadfactor, b.members[0].upstream.retry), (LbMethod::ByRequests, 1, 1, Duration::from_secs(60)));
        assert_eq!(b.members[1].upstream.url, "http://b:2/");
    }

    #[test]
    fn balancer_mistakes_are_errors_on_their_line() {
        let rows: &[(&str, &str)] = &[
            ("Listen 80\nBalancerMember http://a:1\n", "httpd.conf:2: error: BalancerMember outside a <Proxy balancer://…> section"),
            ("Listen 80\n<Proxy balancer://c>\nBalancerMember\n</Proxy>\n", "httpd.conf:3: error: BalancerMember needs the node's URL"),
            (
                "Listen 80\n<Proxy balancer://c>\nBalancerMember http://a:1 loadfactor\n</Proxy>\n",
                "httpd.conf:3: error: BalancerMember parameter 'loadfactor' is not key=value",
            ),
            ("Listen 80\nProxySet lbmethod=byrequests\n", "httpd.conf:2: error: ProxySet for a single origin is not supported"),
            ("Listen 80\nProxyPass /stash balancer://nope/stash\n", "httpd.conf:2: error: balancer://nope/stash: no <Proxy \"balancer://nope\">"),
            (
                "Listen 80\n<Proxy balancer://c>\nBalancerMember http://a:1 loadfactor=101\n</Proxy>\nProxyPass / balancer://c/\n",
                "httpd.conf:3: error: loadfactor=101: not a number from 1 to 100",
            ),
            (
                "Listen 80\n<Proxy balancer://c>\nBalancerMember http://a:1 status=+X\n</Proxy>\nProxyPass / balancer://c/\n",
                "httpd.conf:3: error: status=+X: unknown flag 'X'",
            ),
            (
                "Listen 80\n<Proxy balancer://c>\nBalancerMember http://a:1 hcmethod=CPING\n</Proxy>\nProxyPass / balancer://c/\n",
                "httpd.conf:3: error: hcmethod=CPING is not implemented",
            ),
            (
                "Listen 80\n<Proxy balancer://c>\nBalancerMember http://a:1 hcmethod=BREW\n</Proxy>\nProxyPass / balancer://c/\n",
                "httpd.conf:3: error: hcmethod=BREW: unknown method",
            ),
            (
                "Listen 80\n<Proxy balancer://c>\nBalancerMember http://a:1 hcexpr=ok\n</Proxy>\nProxyPass / balancer://c/\n",
                "httpd.conf:3: error: hcexpr is not implemented",
            ),
            (
                "Listen 80\n<Proxy balancer://c>\nBalancerMember http://a:1 hcinterval=0\n</Proxy>\nProxyPass / balancer://c/\n",
                "httpd.conf:3: error: hcinterval=0: not a number",
            ),
            (
                "Listen 80\n<Proxy balancer://c>\nBalancerMember http://a:1 hcfails=0\n</Proxy>\nProxyPass / balancer://c/\n",
                "httpd.conf:3: error: hcfails=0: not a count",
            ),
            (
                "Listen 80\n<Proxy balancer://c>\nBalancerMember http://a:1 frob=1\n</Proxy>\nProxyPass / balancer://c/\n",
                "httpd.conf:3: error: unknown ProxyPass parameter 'frob'",
            ),
            (
                "Listen 80\n<Proxy balancer://c>\nBalancerMember https://a:1\n</Proxy>\nProxyPass / balancer://c/\n",
                "httpd.conf:3: error: origin scheme of 'https://a:1/' is not supported",
            ),
            (
                "Listen 80\n<Proxy balancer://c>\nBalancerMember http://a:1\nProxySet lbmethod=bytraffic\n</Proxy>\nProxyPass / balancer://c/\n",
                "httpd.conf:4: error: lbmethod=bytraffic is not implemented by trove",
            ),
            (
                "Listen 80\n<Proxy balancer://c>\nBalancerMember http://a:1\n</Proxy>\nProxyPass / balancer://c/ failonstatus=503\n",
                "httpd.conf:5: error: balancer parameter failonstatus is not implemented by trove",
            ),
            (
                "Listen 80\n<Proxy balancer://c>\nBalancerMember http://a:1\n</Proxy>\nProxyPass / balancer://c/ lbmethod=fastest\n",
                "httpd.conf:5: error: lbmethod=fastest: unknown method",
            ),
            (
                "Listen 80\n<Proxy balancer://c>\nBalancerMember http://a:1/x\nBalancerMember http://b:1/y\n</Proxy>\nProxyPass / balancer://c/\n",
                "httpd.conf:6: error: the nodes of balancer://c have different paths",
            ),
        ];
        for (conf, want) in rows {
            let (_, d) = parse(conf);
            let e = errors(&d);
            assert!(e.iter().any(|e| e.starts_with(want)), "{conf:?}: want {want:?}, got {e:?}");
            assert!(e.iter().all(|e| e.contains(" — ")), "every error says the fix: {e:?}");
        }
    }

    #[test]
    fn sticky_sessions_warn_and_settings_with_no_effect_are_noted() {
        let (c, d) = parse(
            "Listen 80\nBalancerGrowth 4\nBalancerPersist On\nBalancerInherit On\n<Proxy balancer://c>\nBalancerMember http://a:1 lbset=1 redirect=x status=+I\nProxySet stickysession=JSESSIONID growth=2\n</Proxy>\nProxyPass / balancer://c/\n",
        );
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        assert!(c.servers[0].routes[0].balancer.is_some());
        let at = |sev: Severity, line: usize| d.items.iter().filter(|i| i.severity == sev && i.origin.line == line).count();
        assert_eq!((at(Severity::Note, 2), at(Severity::Note, 3), at(Severity::Note, 4)), (1, 1, 1));
        assert_eq!(at(Severity::Note, 6), 3, "lbset, redirect and the I flag");
        assert_eq!((at(Severity::Warning, 7), at(Severity::Note, 7)), (1, 1), "stickysession warns, growth is noted");
    }

    #[test]
    fn balancer_modules_count_as_loaded() {
        let (c, d) = parse(
            "LoadModule proxy_module m.so\nLoadModule proxy_http_module m.so\nLoadModule proxy_balancer_module m.so\nLoadModule lbmethod_byrequests_module m.so\nLoadModule slotmem_shm_module m.so\nLoadModule proxy_hcheck_module m.so\nListen 80\n<IfModule proxy_balancer_module>\n<Proxy balancer://c>\nBalancerMember http://a:1\n</Proxy>\nProxyPass / balancer://c/\n</IfModule>\n",
        );
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        assert!(!d.items.iter().any(|i| i.message.contains("does not implement")), "{:?}", d.items);
        assert!(c.servers[0].routes[0].balancer.is_some());
    }
}

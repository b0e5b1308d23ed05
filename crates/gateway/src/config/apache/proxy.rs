//! mod_proxy and mod_proxy_http: `<Proxy>` sections, routes (`ProxyPass`), rewrites of the
//! origin's answers (`ProxyPassReverse`, its cookie forms), and the per-server proxy settings
//! (<https://httpd.apache.org/docs/2.4/mod/mod_proxy.html>).

use super::super::{ProxySection, ReverseRule, Via, split_origin_url};
use super::{Ctx, Cx, Handler, Line, RouteDraft, current_location, on_off, seconds};
use crate::access::AccessPolicy;

pub(super) const DIRECTIVES: &[(&str, Handler)] = &[
    ("<proxy", proxy_section),
    ("<proxymatch", proxy_match_section),
    ("</proxy", end_proxy_section),
    ("</proxymatch", end_proxy_section),
    ("proxyrequests", proxy_requests),
    ("proxypass", proxy_pass),
    ("proxypassmatch", proxy_pass_match),
    ("proxypassreverse", proxy_pass_reverse),
    ("proxypassreversecookiepath", proxy_pass_reverse_cookie_path),
    ("proxypassreversecookiedomain", proxy_pass_reverse_cookie_domain),
    ("proxypreservehost", proxy_preserve_host),
    ("proxyaddheaders", proxy_add_headers),
    ("proxytimeout", proxy_timeout),
    ("proxyvia", proxy_via),
    ("proxyerroroverride", no_effect),
    ("proxybadheader", no_effect),
    ("proxyiobuffersize", no_effect),
    ("proxyreceivebuffersize", no_effect),
];

fn proxy_section(cx: &mut Cx<'_>, l: &Line) {
    let pattern = l.args.first().cloned().unwrap_or_else(|| "*".into());
    cx.stack.push(Ctx::Proxy { pattern, policy: AccessPolicy::default() });
}

fn proxy_match_section(cx: &mut Cx<'_>, l: &Line) {
    cx.d.error(&l.origin, "<ProxyMatch> (regular expressions) is not supported", "use <Proxy URL-prefix> or <Proxy *>");
    proxy_section(cx, l);
}

fn end_proxy_section(cx: &mut Cx<'_>, l: &Line) {
    if let Some(Ctx::Proxy { pattern, policy, .. }) = cx.stack.last() {
        let sec = ProxySection { pattern: pattern.clone(), policy: policy.clone() };
        cx.stack.pop();
        // A `<Proxy balancer://…>` that only lists members sets no access rule: in Apache the
        // rules of `<Proxy *>` still apply to its requests (sections merge), so it must not
        // become the last matching section here, which would decide alone.
        if sec.pattern.to_ascii_lowercase().starts_with("balancer://") && sec.policy == AccessPolicy::default() {
            return;
        }
        cx.server().proxy_sections.push(sec);
    } else {
        cx.d.error(&l.origin, format!("{}> without a matching opener", l.name), "remove it or add the opening section");
    }
}

fn proxy_requests(cx: &mut Cx<'_>, l: &Line) {
    if on_off(l, cx.d) == Some(true) {
        cx.d.error(&l.origin, "ProxyRequests On would make an open forward proxy, which trove never is", "remove the line or write 'ProxyRequests Off'");
    }
}

fn proxy_pass(cx: &mut Cx<'_>, l: &Line) {
    let loc = current_location(&cx.stack);
    let (path, rest) = match &loc {
        Some(p) => (Some(p.clone()), &l.args[..]),
        None => (l.args.first().cloned(), l.args.get(1..).unwrap_or(&[])),
    };
    let (Some(path), Some(target)) = (path, rest.first()) else {
        cx.d.error(&l.origin, "ProxyPass needs a path and a URL (or !)", "write for example 'ProxyPass /stash http://localhost:7990/stash'");
        return;
    };
    let mut rd = RouteDraft {
        path,
        target: if target == "!" { None } else { Some(target.clone()) },
        params: vec![],
        nocanon: false,
        noquery: false,
        origin: l.origin.clone(),
    };
    for p in &rest[1..] {
        match p.as_str() {
            "nocanon" => rd.nocanon = true,
            "noquery" => rd.noquery = true,
            "interpolate" => cx.d.error(&l.origin, "ProxyPass interpolate is not supported", "write the values literally"),
            kv => match kv.split_once('=') {
                Some((k, v)) => rd.params.push((k.to_ascii_lowercase(), v.to_string(), l.origin.clone())),
                None => cx.d.error(&l.origin, format!("unknown ProxyPass flag '{kv}'"), "worker parameters are written key=value"),
            },
        }
    }
    if !rd.path.starts_with('/') {
        cx.d.error(&l.origin, format!("ProxyPass path '{}' must start with '/'", rd.path), "write for example 'ProxyPass /stash …'");
    }
    if let Some(t) = &rd.target {
        // Apache warns nowhere; we do: `/mis/` → `http://b:29000` glues path and host.
        if rd.path.ends_with('/') != t.ends_with('/') && split_origin_url(t).map(|(_, _, p)| !p.is_empty() || rd.path.ends_with('/')).unwrap_or(false) {
            cx.d.warn(
                &l.origin,
                format!("ProxyPass {} {}: trailing slashes differ, so request paths will be glued wrongly (Apache turns /mis/echo into …echo)", rd.path, t),
                "end both the path and the URL with '/', or neither",
            );
        }
    }
    cx.server().routes.push(rd);
}

fn proxy_pass_match(cx: &mut Cx<'_>, l: &Line) {
    cx.d.error(&l.origin, "ProxyPassMatch (regular expressions) is not supported", "use prefix ProxyPass rules; they are tried in order")
}

fn proxy_pass_reverse(cx: &mut Cx<'_>, l: &Line) {
    let loc = current_location(&cx.stack);
    let (path, url) = match &loc {
        Some(p) => (Some(p.clone()), l.args.first().cloned()),
        None => (l.args.first().cloned(), l.args.get(1).cloned()),
    };
    match (path, url) {
        (Some(p), Some(u)) => cx.server().reverse.push(ReverseRule { public_path: p, origin_url: u }),
        _ => cx.d.error(&l.origin, "ProxyPassReverse needs a path and a URL", "write for example 'ProxyPassReverse /stash http://localhost:7990/stash'"),
    }
}

/// `ProxyPassReverseCookiePath` / `…Domain INTERNAL PUBLIC`: the pair, or `None` (an error).
fn cookie_pair(cx: &mut Cx<'_>, l: &Line) -> Option<(String, String)> {
    if l.args.len() < 2 {
        cx.d.error(&l.origin, format!("{} needs the internal and the public value", l.name), format!("write '{} INTERNAL PUBLIC'", l.name));
        return None;
    }
    Some((l.args[0].clone(), l.args[1].clone()))
}

fn proxy_pass_reverse_cookie_path(cx: &mut Cx<'_>, l: &Line) {
    if let Some(pair) = cookie_pair(cx, l) {
        cx.server().cookie_paths.push(pair);
    }
}

fn proxy_pass_reverse_cookie_domain(cx: &mut Cx<'_>, l: &Line) {
    if let Some(pair) = cookie_pair(cx, l) {
        cx.server().cookie_domains.push(pair);
    }
}

fn proxy_preserve_host(cx: &mut Cx<'_>, l: &Line) {
    if let Some(v) = on_off(l, cx.d) {
        cx.server().preserve_host = Some(v);
    }
}

fn proxy_add_headers(cx: &mut Cx<'_>, l: &Line) {
    if let Some(v) = on_off(l, cx.d) {
        cx.server().add_headers = Some(v);
    }
}

fn proxy_timeout(cx: &mut Cx<'_>, l: &Line) {
    if let Some(v) = seconds(l, cx.d) {
        cx.server().proxy_timeout = Some(v);
    }
}

fn proxy_via(cx: &mut Cx<'_>, l: &Line) {
    let v = match l.args.first().map(|s| s.to_ascii_lowercase()).as_deref() {
        Some("off") => Via::Off,
        Some("on") => Via::On,
        Some("full") => Via::Full,
        Some("block") => Via::Block,
        _ => {
            cx.d.error(&l.origin, "ProxyVia takes Off, On, Full or Block", "write for example 'ProxyVia On'");
            return;
        }
    };
    cx.server().via = Some(v);
}

fn no_effect(cx: &mut Cx<'_>, l: &Line) {
    cx.d.note(&l.origin, format!("{} is accepted and has no effect in trove", l.name));
}

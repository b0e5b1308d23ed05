//! Apache's core (server/core.c, http_core.c) and the MPM's `Listen` (mpm_common.c), with
//! mod_so's `LoadModule`: sections (`<IfModule>`, `<VirtualHost>`, `<Location>`, …), server
//! names, connection limits, and the core directives that cannot change proxying (noted).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::super::VhostAddr;
use super::{BUILT_IN_MODULES, Ctx, Cx, EMULATED_MODULES, Handler, Line, ServerDraft, apache_modules, module_id, on_off, pop, seconds, section_body};
use crate::config::apache_modules::Verdict;

pub(super) const DIRECTIVES: &[(&str, Handler)] = &[
    ("<ifmodule", if_module),
    ("</ifmodule", end_if),
    ("<ifdefine", if_unconditional),
    ("<ifversion", if_unconditional),
    ("</ifdefine", end_if),
    ("</ifversion", end_if),
    ("<virtualhost", virtual_host),
    ("</virtualhost", end_virtual_host),
    ("<location", location),
    ("</location", end_location),
    ("<locationmatch", location_match),
    // Sections whose contents govern local files, not proxying: skipped with a note.
    ("<directory", local_files_section),
    ("<directorymatch", local_files_section),
    ("<files", local_files_section),
    ("<filesmatch", local_files_section),
    ("<limit", local_files_section),
    ("<limitexcept", local_files_section),
    ("loadmodule", load_module),
    ("listen", listen),
    ("servername", server_name),
    ("serveralias", server_alias),
    ("timeout", timeout),
    ("keepalive", keep_alive),
    ("keepalivetimeout", keep_alive_timeout),
    ("maxkeepaliverequests", max_keep_alive_requests),
    ("limitrequestfieldsize", limit_request_field_size),
    ("serverroot", server_root),
    // Core and MPM directives that cannot change proxy behaviour: accepted with a note.
    ("pidfile", noted),
    ("user", noted),
    ("group", noted),
    ("serveradmin", noted),
    ("servertokens", noted),
    ("serversignature", noted),
    ("startservers", noted),
    ("minsparethreads", noted),
    ("maxsparethreads", noted),
    ("minspareservers", noted),
    ("maxspareservers", noted),
    ("threadlimit", noted),
    ("threadsperchild", noted),
    ("maxrequestworkers", noted),
    ("maxclients", noted),
    ("serverlimit", noted),
    ("maxconnectionsperchild", noted),
    ("maxrequestsperchild", noted),
    ("mutex", noted),
    ("defaultruntimedir", noted),
    ("hostnamelookups", noted),
    ("accessfilename", noted),
    ("adddefaultcharset", noted),
    ("traceenable", noted),
    ("enablesendfile", noted),
    ("enablemmap", noted),
    ("usecanonicalname", noted),
    ("protocols", noted),
    ("h2direct", noted),
    ("acceptfilter", noted),
    ("listenbacklog", noted),
    ("documentroot", noted),
    ("maxmemfree", noted),
];

fn if_module(cx: &mut Cx<'_>, l: &Line) {
    let arg = l.args.first().cloned().unwrap_or_default();
    let (neg, m) = match arg.strip_prefix('!') {
        Some(m) => (true, m.to_string()),
        None => (false, arg),
    };
    let m = module_id(&m);
    let present = cx.loaded.contains(&m);
    cx.stack.push(Ctx::IfModule { active: present != neg });
}

fn end_if(cx: &mut Cx<'_>, l: &Line) {
    pop(&mut cx.stack, l, cx.d, |c| matches!(c, Ctx::IfModule { .. }));
}

fn if_unconditional(cx: &mut Cx<'_>, l: &Line) {
    cx.d.note(&l.origin, format!("{}> contents are read unconditionally", l.name));
    cx.stack.push(Ctx::IfModule { active: true });
}

fn virtual_host(cx: &mut Cx<'_>, l: &Line) {
    if cx.in_vhost {
        cx.d.error(&l.origin, "<VirtualHost> cannot be nested", "close the outer </VirtualHost> first");
    }
    let mut v = ServerDraft { origin: l.origin.clone(), ..Default::default() };
    if l.args.is_empty() {
        cx.d.error(&l.origin, "<VirtualHost> needs an address", "write for example <VirtualHost *:443>");
    }
    for a in &l.args {
        match parse_vhost_addr(a) {
            Ok(va) => v.addrs.push(va),
            Err(e) => cx.d.error(&l.origin, e, "write the address as *:PORT, IP:PORT or _default_:PORT"),
        }
    }
    cx.vhosts.push(v);
    cx.stack.push(Ctx::VirtualHost);
}

fn end_virtual_host(cx: &mut Cx<'_>, l: &Line) {
    pop(&mut cx.stack, l, cx.d, |c| matches!(c, Ctx::VirtualHost));
}

fn location(cx: &mut Cx<'_>, l: &Line) {
    let p = l.args.first().cloned().unwrap_or_default();
    // `<Location /server-status> SetHandler server-status`: Apache serves the path
    // itself (Debian's stock mods-enabled/status.conf). The gateway serves no local
    // content, so the section is skipped, unless a route would proxy that path:
    // there Apache's handler wins over ProxyPass, which the gateway cannot copy.
    if let Some(h) = section_body(cx.lines, cx.idx).iter().find(|b| b.name.eq_ignore_ascii_case("sethandler")).and_then(|b| b.args.first())
        && !h.eq_ignore_ascii_case("none")
        && !h.to_ascii_lowercase().starts_with("proxy:")
    {
        let module = apache_modules::handler_module(h);
        cx.ignored.add(
            &l.origin,
            &format!("<Location {p}> with SetHandler {h}"),
            module,
            "serves the path from a local handler, which the gateway does not have",
        );
        cx.server().local_handlers.push((p, h.clone(), module, l.origin.clone()));
        cx.stack.push(Ctx::Skip { name: "location".into() });
        return;
    }
    if !p.starts_with('/') {
        cx.d.error(&l.origin, format!("<Location {p}> must name a path starting with '/'"), "write for example <Location /stash>");
    }
    cx.stack.push(Ctx::Location { path: p });
}

fn end_location(cx: &mut Cx<'_>, l: &Line) {
    pop(&mut cx.stack, l, cx.d, |c| matches!(c, Ctx::Location { .. }));
}

fn location_match(cx: &mut Cx<'_>, l: &Line) {
    // RHEL's stock welcome.conf: `<LocationMatch "^/+$"> Options -Indexes
    // ErrorDocument 403 …`. Regular expressions are not supported, but a section
    // holding only directives that cannot change a proxied request needs none.
    let body = section_body(cx.lines, cx.idx);
    let all_ignorable =
        body.iter().all(|b| matches!(apache_modules::lookup(&b.name.to_ascii_lowercase(), &b.args), Some(k) if matches!(k.verdict, Verdict::Ignored(_))));
    if all_ignorable {
        for b in body {
            if let Some(apache_modules::Known { module, verdict: Verdict::Ignored(why) }) = apache_modules::lookup(&b.name.to_ascii_lowercase(), &b.args) {
                cx.ignored.add(&b.origin, &b.name, module, why);
            }
        }
    } else {
        cx.d.error(&l.origin, "<LocationMatch> (regular expressions) is not supported", "use <Location /prefix>, or ProxyPass rules, which are tried in order");
    }
    cx.stack.push(Ctx::Skip { name: "locationmatch".into() });
}

fn local_files_section(cx: &mut Cx<'_>, l: &Line) {
    cx.d.note(&l.origin, format!("{}> governs local files, which the gateway does not serve; its contents are skipped", l.name));
    let name = l.name.to_ascii_lowercase();
    cx.stack.push(Ctx::Skip { name: name[1..].to_string() });
}

fn load_module(cx: &mut Cx<'_>, l: &Line) {
    let Some(m) = l.args.first() else {
        cx.d.error(&l.origin, "LoadModule needs a module name and a file", "write for example 'LoadModule proxy_module modules/mod_proxy.so'");
        return;
    };
    if !EMULATED_MODULES.contains(&m.as_str()) && !BUILT_IN_MODULES.contains(&m.as_str()) && !cx.not_emulated.contains(m) {
        cx.not_emulated.push(m.clone());
    }
    cx.loaded.insert(m.clone());
}

fn listen(cx: &mut Cx<'_>, l: &Line) {
    let Some(a) = l.args.first() else {
        cx.d.error(&l.origin, "Listen needs a port or address:port", "write for example 'Listen 443'");
        return;
    };
    match parse_listen(a) {
        Ok(addr) => cx.listens.push((addr, l.args.get(1).map(|s| s.to_ascii_lowercase()), l.origin.clone())),
        Err(e) => cx.d.error(&l.origin, e, "write 'Listen PORT' or 'Listen IP:PORT'"),
    }
}

fn server_name(cx: &mut Cx<'_>, l: &Line) {
    match l.args.first() {
        Some(n) => {
            let host = n.split("://").last().unwrap_or(n);
            let host = host.rsplit_once(':').map(|(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { host }).unwrap_or(host);
            cx.server().server_name = Some(host.to_ascii_lowercase());
        }
        None => cx.d.error(&l.origin, "ServerName needs a host name", "write for example 'ServerName mycompany.com'"),
    }
}

fn server_alias(cx: &mut Cx<'_>, l: &Line) {
    let v = cx.server();
    v.aliases.extend(l.args.iter().map(|a| a.to_ascii_lowercase()));
}

fn timeout(cx: &mut Cx<'_>, l: &Line) {
    if let Some(v) = seconds(l, cx.d) {
        cx.limits.timeout = v;
    }
}

fn keep_alive(cx: &mut Cx<'_>, l: &Line) {
    if let Some(v) = on_off(l, cx.d) {
        cx.limits.keep_alive = v;
    }
}

fn keep_alive_timeout(cx: &mut Cx<'_>, l: &Line) {
    if let Some(v) = seconds(l, cx.d) {
        cx.limits.keep_alive_timeout = v;
    }
}

fn max_keep_alive_requests(cx: &mut Cx<'_>, l: &Line) {
    match l.args.first().and_then(|a| a.parse::<u32>().ok()) {
        Some(v) => cx.limits.max_keep_alive_requests = v,
        None => cx.d.error(&l.origin, "MaxKeepAliveRequests takes a number (0 = unlimited)", "write for example 'MaxKeepAliveRequests 100'"),
    }
}

fn limit_request_field_size(cx: &mut Cx<'_>, l: &Line) {
    match l.args.first().and_then(|a| a.parse::<usize>().ok()) {
        Some(v) => cx.limits.max_header_bytes = v.max(1024) * 8,
        None => cx.d.error(&l.origin, "LimitRequestFieldSize takes a number of bytes", "write for example 'LimitRequestFieldSize 8190'"),
    }
}

/// `ServerRoot` is noted like the other core directives (once), and relative log paths are
/// read under it.
fn server_root(cx: &mut Cx<'_>, l: &Line) {
    cx.server_root = l.args.first().map(PathBuf::from);
    if cx.server_root_noted {
        return;
    }
    cx.server_root_noted = true;
    noted(cx, l);
}

/// A directive that cannot change how the gateway proxies: accepted with a note. Other
/// families list theirs with this handler too.
pub(super) fn noted(cx: &mut Cx<'_>, l: &Line) {
    cx.d.note(&l.origin, format!("{} is accepted; it does not change how trove proxies", l.name));
}

pub(super) fn parse_listen(a: &str) -> Result<SocketAddr, String> {
    if let Ok(p) = a.parse::<u16>() {
        // Apache's `Listen 80` binds every address; we bind IPv4 and IPv6 any.
        return Ok(SocketAddr::from(([0, 0, 0, 0], p)));
    }
    if let Ok(sa) = a.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Some((h, p)) = a.rsplit_once(':')
        && h == "localhost"
        && let Ok(p) = p.parse::<u16>()
    {
        return Ok(SocketAddr::from(([127, 0, 0, 1], p)));
    }
    Err(format!("Listen '{a}' is not a port or IP:port"))
}

fn parse_vhost_addr(a: &str) -> Result<VhostAddr, String> {
    let (host, port) = match a.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && (p == "*" || p.chars().all(|c| c.is_ascii_digit())) => (h, Some(p)),
        _ => (a, None),
    };
    let port = match port {
        None | Some("*") => None,
        Some(p) => Some(p.parse::<u16>().map_err(|_| format!("bad port in '{a}'"))?),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host {
        "*" | "_default_" => None,
        "localhost" => Some(IpAddr::from([127, 0, 0, 1])),
        h => Some(h.parse::<IpAddr>().map_err(|_| format!("VirtualHost address '{a}' must be an IP, * or _default_ (host names need DNS at start)"))?),
    };
    Ok(VhostAddr { ip, port })
}

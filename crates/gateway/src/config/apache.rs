//! The Apache httpd.conf front-end: reads the directives the seed has administrators write
//! (and the rest of a whole httpd.conf) into the one gateway model.
//!
//! Every directive is either honoured, accepted with a note (it cannot change proxy behaviour),
//! or an error naming file and line; nothing is silently ignored.
//!
//! This file reads the text (continuation lines, `Include`, `${VAR}`), walks the lines keeping
//! the open sections, and builds the model at the end (`assemble`). What each directive does is
//! in a handler in the module of its Apache module family, found by name in `DIRECTIVES`:
//! `core` (sections, `Listen`, server names, connection limits), `proxy` (mod_proxy), `authz`
//! (`Require`, `Order`/`Allow`/`Deny`), `ssl` (mod_ssl), `headers` (mod_headers), `log`
//! (mod_log_config and the error log), `alias` (the HTTPS redirect), `remoteip`, `reqtimeout`.
//! Directives of modules trove does not implement are listed in `apache_modules`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::apache_modules::{self, Verdict};
use super::{
    ConfigError, ConnLimits, Diagnostics, GatewayConfig, HeaderEdit, ListenerConfig, LogConfig, LogDest, Origin, PassphraseSetting, ProxySection, ReverseRule,
    Route, Severity, TlsSite, Upstream, VhostAddr, Via, VirtualServer, parse_apache_duration, split_origin_url,
};
use crate::access::{AccessPolicy, Require};

// The directive handlers, one module per Apache module family (see `DIRECTIVES`).
mod alias;
mod authz;
mod balancer;
mod core;
mod headers;
mod log;
mod proxy;
mod remoteip;
mod reqtimeout;
mod ssl;

// What the tests below use from where it moved.
#[cfg(test)]
use super::BodyRate;
#[cfg(test)]
use reqtimeout::{ReadStage, ReadStages, parse_request_read_timeout};

/// A directive with its arguments, after continuation joining and Include expansion.
#[derive(Clone, Debug)]
struct Line {
    origin: Origin,
    /// `<Name` for a section opener, `</Name` for a closer, else the directive name.
    name: String,
    args: Vec<String>,
}

/// Modules whose directives we emulate (or that carry no behaviour of their own).
const EMULATED_MODULES: &[&str] = &[
    "proxy_module",
    "proxy_http_module",
    "proxy_wstunnel_module",
    "ssl_module",
    "headers_module",
    "log_config_module",
    "access_compat_module",
    "authz_core_module",
    "authz_host_module",
    "socache_shmcb_module",
    "unixd_module",
    "mpm_event_module",
    "mpm_worker_module",
    "mpm_prefork_module",
    "reqtimeout_module",
    "remoteip_module",
    "http2_module",
    "version_module",
    "logio_module",
    "proxy_balancer_module",
    "lbmethod_byrequests_module",
    "lbmethod_bybusyness_module",
    "slotmem_shm_module",
    "proxy_hcheck_module",
];

/// Modules compiled into Debian's and RHEL's `httpd` (`apache2 -l`): present without LoadModule.
const BUILT_IN_MODULES: &[&str] =
    &["core_module", "so_module", "watchdog_module", "http_module", "log_config_module", "logio_module", "version_module", "unixd_module"];

struct Reader<'a> {
    diags: &'a mut Diagnostics,
    server_root: Option<PathBuf>,
    seen: HashSet<PathBuf>,
    depth: usize,
    vars: Vars,
}

/// Where `${NAME}` in a directive takes its value from, in Apache's order (`ap_resolve_env`):
/// names given with `Define`, then the environment. Debian's `apache2ctl` sources `envvars`
/// beside apache2.conf before starting Apache, so its exports are read as the environment and
/// win over the process's own, as they do under apache2ctl.
#[derive(Default)]
struct Vars {
    defines: HashMap<String, String>,
    envvars: HashMap<String, String>,
}

impl Vars {
    fn get(&self, name: &str) -> Option<String> {
        self.defines.get(name).or_else(|| self.envvars.get(name)).cloned().or_else(|| std::env::var(name).ok())
    }

    /// Replace every `${NAME}`; names with no value are left as written (as Apache does,
    /// with its warning AH00111) and returned.
    fn expand(&self, s: &str) -> (String, Vec<String>) {
        let mut out = String::new();
        let mut missing = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            match after.find('}') {
                Some(j) => {
                    let name = &after[..j];
                    match self.get(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str(&rest[i..i + 3 + j]);
                            missing.push(name.to_string());
                        }
                    }
                    rest = &after[j + 1..];
                }
                None => {
                    out.push_str(&rest[i..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        (out, missing)
    }
}

/// The `export NAME=value` lines of Debian's `/etc/apache2/envvars` (a shell script that
/// apache2ctl sources). `$SUFFIX` is what the script makes of the folder name: `-NAME` for
/// `/etc/apache2-NAME`, else empty (Debian's multiple-instance layout).
fn parse_envvars(text: &str, conf_dir: &Path) -> HashMap<String, String> {
    let dir_name = conf_dir.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let suffix = dir_name.strip_prefix("apache2-").map(|s| format!("-{s}")).unwrap_or_default();
    let mut known: HashMap<String, String> = HashMap::new();
    known.insert("SUFFIX".into(), suffix);
    known.insert("APACHE_CONFDIR".into(), conf_dir.display().to_string());
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(assign) = line.strip_prefix("export ") else { continue };
        let Some((name, value)) = assign.split_once('=') else { continue };
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
        // `$NAME` and `${NAME}` from what the script set before this line.
        let mut v = String::new();
        let mut chars = value.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '$' {
                v.push(c);
                continue;
            }
            let braced = chars.peek() == Some(&'{');
            if braced {
                chars.next();
            }
            let mut var = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    var.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            if braced && chars.peek() == Some(&'}') {
                chars.next();
            }
            v.push_str(&known.get(&var).cloned().or_else(|| std::env::var(&var).ok()).unwrap_or_default());
        }
        known.insert(name.to_string(), v.clone());
        out.insert(name.to_string(), v);
    }
    out
}

impl Reader<'_> {
    fn read_file(&mut self, path: &Path, out: &mut Vec<Line>, from: Option<&Origin>) -> Result<(), ConfigError> {
        let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if self.depth > 16 || self.seen.contains(&canon) {
            let o = from.cloned().unwrap_or_default();
            self.diags.error(&o, format!("Include of {} loops back on itself", path.display()), "remove the circular Include");
            return Ok(());
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                if let Some(o) = from {
                    self.diags.error(o, format!("cannot read included file {}: {e}", path.display()), "fix the path or use IncludeOptional");
                    return Ok(());
                }
                return Err(ConfigError::Read { path: path.to_path_buf(), source: e });
            }
        };
        self.read_text(path, canon, &text, out)
    }

    /// The lines of one file's `text` (read from `path`, or given in memory), with its Includes.
    fn read_text(&mut self, path: &Path, canon: PathBuf, text: &str, out: &mut Vec<Line>) -> Result<(), ConfigError> {
        self.seen.insert(canon.clone());
        self.depth += 1;
        let mut pending = String::new();
        let mut start_line = 0;
        for (i, raw) in text.lines().enumerate() {
            let lineno = i + 1;
            if pending.is_empty() {
                start_line = lineno;
            }
            let raw = raw.trim_end_matches('\r');
            // Apache: a backslash as the last character continues the line.
            if let Some(stripped) = raw.strip_suffix('\\') {
                pending.push_str(stripped);
                pending.push(' ');
                continue;
            }
            pending.push_str(raw);
            let logical = std::mem::take(&mut pending);
            let trimmed = logical.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let origin = Origin { file: path.to_path_buf(), line: start_line };
            let tokens = match tokenize(trimmed) {
                Ok(t) => t,
                Err(e) => {
                    self.diags.error(&origin, e, "close the quote");
                    continue;
                }
            };
            let mut tokens = tokens.into_iter();
            let Some(first) = tokens.next() else { continue };
            let mut args: Vec<String> = Vec::new();
            for t in tokens {
                let (v, missing) = self.vars.expand(&t);
                for name in missing {
                    self.diags.warn(
                        &origin,
                        format!("${{{name}}} is not defined, so it stays as written (Apache leaves it too, with warning AH00111)"),
                        format!("export {name} in the environment (Debian: in envvars beside apache2.conf) or add 'Define {name} VALUE' above"),
                    );
                }
                args.push(v);
            }
            let name = if let Some(sec) = first.strip_prefix('<') {
                // `<VirtualHost *:443>`: the closing '>' ends the last argument (or the name).
                let mut name = format!("<{sec}");
                if name.ends_with('>') {
                    name.pop();
                } else if let Some(last) = args.last_mut() {
                    if last.ends_with('>') {
                        last.pop();
                        if last.is_empty() {
                            args.pop();
                        }
                    } else {
                        self.diags.error(&origin, format!("section opener '{trimmed}' has no closing '>'"), "end the line with '>'");
                        continue;
                    }
                } else {
                    self.diags.error(&origin, format!("section opener '{trimmed}' has no closing '>'"), "end the line with '>'");
                    continue;
                }
                name
            } else {
                first
            };
            let lname = name.to_ascii_lowercase();
            // `Define` acts while the file is read, so later lines (and Includes) see it. It is
            // applied even inside an <IfModule> that turns out inactive: a rare difference
            // that can only define a variable nothing then uses.
            if lname == "define" || lname == "undefine" {
                match args.first() {
                    Some(n) if lname == "define" => {
                        self.vars.defines.insert(n.clone(), args.get(1).cloned().unwrap_or_default());
                    }
                    Some(n) => {
                        self.vars.defines.remove(n);
                    }
                    None => self.diags.error(&origin, format!("{name} needs a name"), format!("write for example '{name} NAME'")),
                }
                continue;
            }
            if lname == "include" || lname == "includeoptional" {
                let optional = lname == "includeoptional";
                for pat in &args {
                    let files = self.expand_include(pat, &origin, optional);
                    for f in files {
                        self.read_file(&f, out, Some(&origin))?;
                    }
                }
                continue;
            }
            if lname == "serverroot"
                && let Some(a) = args.first()
            {
                self.server_root = Some(PathBuf::from(a));
            }
            out.push(Line { origin, name, args });
        }
        self.depth -= 1;
        self.seen.remove(&canon);
        Ok(())
    }

    fn resolve(&self, p: &str, from: &Origin) -> PathBuf {
        let pb = PathBuf::from(p);
        if pb.is_absolute() {
            return pb;
        }
        match &self.server_root {
            Some(root) => root.join(pb),
            None => from.file.parent().map(|d| d.join(&pb)).unwrap_or(pb),
        }
    }

    fn expand_include(&mut self, pat: &str, origin: &Origin, optional: bool) -> Vec<PathBuf> {
        let full = self.resolve(pat, origin);
        let has_wild = full.to_string_lossy().contains(['*', '?', '[']);
        if !has_wild {
            if full.is_dir() {
                let mut v: Vec<PathBuf> =
                    std::fs::read_dir(&full).map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect()).unwrap_or_default();
                v.sort();
                return v;
            }
            if !full.exists() && optional {
                return vec![];
            }
            return vec![full];
        }
        let dir = full.parent().map(Path::to_path_buf).unwrap_or_default();
        let file_pat = full.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let mut v: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd.filter_map(|e| e.ok()).filter(|e| wildcard_match(&file_pat, &e.file_name().to_string_lossy())).map(|e| e.path()).collect(),
            Err(e) => {
                if !optional {
                    self.diags.error(origin, format!("cannot list {} for Include: {e}", dir.display()), "fix the path or use IncludeOptional");
                }
                vec![]
            }
        };
        v.sort();
        if v.is_empty() && !optional {
            // Apache 2.4 accepts a wildcard that matches nothing.
            self.diags.note(origin, format!("Include {pat} matched no files"));
        }
        v
    }
}

/// Shell-style `*` and `?` matching for Include file names.
pub(crate) fn wildcard_match(pat: &str, s: &str) -> bool {
    fn rec(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => rec(&p[1..], s) || (!s.is_empty() && rec(p, &s[1..])),
            (Some(b'?'), Some(_)) => rec(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => rec(&p[1..], &s[1..]),
            _ => false,
        }
    }
    rec(pat.as_bytes(), s.as_bytes())
}

/// Split a directive line into words; double or single quotes group, backslash escapes a quote.
fn tokenize(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' || c == '\'' {
            let q = c;
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == '\\' && matches!(chars.peek(), Some(&n) if n == q || n == '\\') {
                    word.push(chars.next().unwrap());
                } else if c == q {
                    closed = true;
                    break;
                } else {
                    word.push(c);
                }
            }
            if !closed {
                return Err(format!("unterminated quote in '{s}'"));
            }
            // A quoted word may be followed directly by '>' in a section opener.
            if chars.peek() == Some(&'>') {
                chars.next();
                word.push('>');
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        out.push(word);
    }
    Ok(out)
}

fn on_off(l: &Line, d: &mut Diagnostics) -> Option<bool> {
    match l.args.first().map(|s| s.to_ascii_lowercase()).as_deref() {
        Some("on") if l.args.len() == 1 => Some(true),
        Some("off") if l.args.len() == 1 => Some(false),
        _ => {
            d.error(&l.origin, format!("{} takes On or Off", l.name), format!("write '{} On' or '{} Off'", l.name, l.name));
            None
        }
    }
}

fn seconds(l: &Line, d: &mut Diagnostics) -> Option<Duration> {
    match l.args.first().and_then(|a| parse_apache_duration(a)) {
        Some(v) if l.args.len() == 1 => Some(v),
        _ => {
            d.error(&l.origin, format!("{} takes a number of seconds", l.name), format!("write for example '{} 60'", l.name));
            None
        }
    }
}

/// Settings a virtual server may leave unset to inherit from the main server.
#[derive(Default, Clone)]
struct ServerDraft {
    addrs: Vec<VhostAddr>,
    server_name: Option<String>,
    aliases: Vec<String>,
    routes: Vec<RouteDraft>,
    reverse: Vec<ReverseRule>,
    cookie_paths: Vec<(String, String)>,
    cookie_domains: Vec<(String, String)>,
    preserve_host: Option<bool>,
    add_headers: Option<bool>,
    trusted_downstream: Vec<ipnet::IpNet>,
    via: Option<Via>,
    proxy_timeout: Option<Duration>,
    proxy_sections: Vec<ProxySection>,
    request_headers: Vec<HeaderEdit>,
    response_headers: Vec<HeaderEdit>,
    ssl_engine: Option<bool>,
    redirect: Option<String>,
    tls: TlsDraft,
    /// `<Location PATH>` sections handed to a local handler (`SetHandler server-status`):
    /// (path, handler, module, where).
    local_handlers: Vec<(String, String, &'static str, Origin)>,
    origin: Origin,
}

#[derive(Default, Clone)]
struct TlsDraft {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    chain: Option<PathBuf>,
    protocol: Option<String>,
    cipher: Option<String>,
    origin: Option<Origin>,
}

#[derive(Clone)]
struct RouteDraft {
    path: String,
    target: Option<String>,
    params: Vec<(String, String, Origin)>,
    nocanon: bool,
    noquery: bool,
    origin: Origin,
}

enum Ctx {
    Main,
    VirtualHost,
    Proxy { pattern: String, policy: AccessPolicy },
    Location { path: String },
    RequireAll(Vec<Require>),
    RequireAny(Vec<Require>),
    IfModule { active: bool },
    Skip { name: String },
}

/// Read an httpd.conf (and everything it includes) into a `GatewayConfig`.
pub fn load(path: &Path) -> Result<(GatewayConfig, Diagnostics), ConfigError> {
    load_from(path, None)
}

/// `load`, with the top file's text given (`None`: read from `path`). Includes are read from
/// disk either way, relative to `path`'s directory and `ServerRoot`.
fn load_from(path: &Path, text: Option<&str>) -> Result<(GatewayConfig, Diagnostics), ConfigError> {
    let mut diags = Diagnostics::default();
    let mut lines = Vec::new();
    {
        let mut vars = Vars::default();
        let conf_dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let envvars = conf_dir.join("envvars");
        if let Ok(text) = std::fs::read_to_string(&envvars) {
            vars.envvars = parse_envvars(&text, &conf_dir.canonicalize().unwrap_or_else(|_| conf_dir.to_path_buf()));
            diags.note(
                &Origin { file: envvars.clone(), line: 1 },
                format!("${{…}} variables are taken from {} first, as Debian's apache2ctl does", envvars.display()),
            );
        }
        let mut r = Reader { diags: &mut diags, server_root: None, seen: HashSet::new(), depth: 0, vars };
        match text {
            Some(t) => r.read_text(path, path.to_path_buf(), t, &mut lines)?,
            None => r.read_file(path, &mut lines, None)?,
        }
    }
    let mut cfg = compile(path, &lines, &mut diags);
    super::validate(&mut cfg, &mut diags);
    Ok((cfg, diags))
}

/// Parses httpd.conf text held in memory, as if read from `path` (which names it in
/// diagnostics; nothing is written to disk).
pub fn parse_str(path: &Path, text: &str) -> (GatewayConfig, Diagnostics) {
    match load_from(path, Some(text)) {
        Ok(x) => x,
        // Only reading the top file can fail, and here it is not read.
        Err(e) => unreachable!("in-memory httpd.conf: {e}"),
    }
}

/// What the directive handlers read and change while `compile` walks the lines: the servers
/// being drafted, the open sections, and the settings of the whole gateway.
struct Cx<'a> {
    path: &'a Path,
    lines: &'a [Line],
    /// Where the current line is in `lines` (a section handler reads its body from there).
    idx: usize,
    d: &'a mut Diagnostics,
    main: ServerDraft,
    vhosts: Vec<ServerDraft>,
    stack: Vec<Ctx>,
    /// Whether the current line is inside a `<VirtualHost>` (as it was when the line began).
    in_vhost: bool,
    listens: Vec<(SocketAddr, Option<String>, Origin)>,
    limits: ConnLimits,
    log: LogConfig,
    formats: Vec<(String, String)>,
    custom_log: Option<(String, String, Origin)>,
    loaded: HashSet<String>,
    not_emulated: Vec<String>,
    ignored: Ignored,
    server_root: Option<PathBuf>,
    passphrase: PassphraseSetting,
    server_root_noted: bool,
    /// `<Proxy balancer://…>` sections, for every server (Apache's `BalancerInherit On`).
    balancers: Vec<balancer::BalancerDraft>,
}

impl Cx<'_> {
    /// The server the current line configures: the open `<VirtualHost>`, else the main server.
    fn server(&mut self) -> &mut ServerDraft {
        if self.in_vhost { self.vhosts.last_mut().expect("in vhost") } else { &mut self.main }
    }
}

/// Handles one directive (or section opener or closer) in the compile context.
type Handler = fn(&mut Cx<'_>, &Line);

/// Every directive the reader knows, by the Apache module family it belongs to: lower-case
/// names (Apache's are case-insensitive), a section opener as `<name`, a closer as `</name`.
/// A name in none of them is an unknown section, or a directive of a module trove does not
/// implement (`apache_modules`), or unknown.
const DIRECTIVES: &[&[(&str, Handler)]] = &[
    core::DIRECTIVES,
    proxy::DIRECTIVES,
    authz::DIRECTIVES,
    ssl::DIRECTIVES,
    headers::DIRECTIVES,
    log::DIRECTIVES,
    alias::DIRECTIVES,
    remoteip::DIRECTIVES,
    reqtimeout::DIRECTIVES,
    balancer::DIRECTIVES,
];

/// The handler for a directive name, in any case.
fn handler(name: &str) -> Option<Handler> {
    DIRECTIVES.iter().flat_map(|family| family.iter()).find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, h)| *h)
}

fn compile(path: &Path, lines: &[Line], d: &mut Diagnostics) -> GatewayConfig {
    // `<IfModule>` asks what is loaded. A file with LoadModule lines (Debian's and RHEL's stock
    // layouts, anything `apache2 -t` accepts) says so itself, plus the modules compiled in; a
    // file written for trove alone, with none, has every module trove emulates.
    let explicit_modules = lines.iter().any(|l| l.name.eq_ignore_ascii_case("loadmodule"));
    let loaded: HashSet<String> =
        if explicit_modules { BUILT_IN_MODULES.iter().map(|s| s.to_string()).collect() } else { EMULATED_MODULES.iter().map(|s| s.to_string()).collect() };
    let mut cx = Cx {
        path,
        lines,
        idx: 0,
        d,
        main: ServerDraft { origin: Origin { file: path.to_path_buf(), line: 1 }, ..Default::default() },
        vhosts: Vec::new(),
        stack: vec![Ctx::Main],
        in_vhost: false,
        listens: Vec::new(),
        limits: ConnLimits::default(),
        log: LogConfig::default(),
        formats: vec![("combined".into(), super::COMBINED.into()), ("common".into(), super::COMMON.into())],
        custom_log: None,
        loaded,
        not_emulated: Vec::new(),
        ignored: Ignored::default(),
        server_root: None,
        passphrase: PassphraseSetting::None,
        server_root_noted: false,
        balancers: Vec::new(),
    };

    for (idx, l) in lines.iter().enumerate() {
        let lname = l.name.to_ascii_lowercase();
        // Inside a skipped section, only track nesting.
        if let Some(Ctx::Skip { name }) = cx.stack.last() {
            if lname == format!("</{name}") {
                cx.stack.pop();
            } else if lname.starts_with('<') && !lname.starts_with("</") {
                let inner = lname.trim_start_matches('<').to_string();
                cx.stack.push(Ctx::Skip { name: inner });
            }
            continue;
        }
        if let Some(Ctx::IfModule { active: false }) = cx.stack.last() {
            if lname == "</ifmodule" {
                cx.stack.pop();
            } else if lname == "<ifmodule" {
                cx.stack.push(Ctx::IfModule { active: false });
            }
            continue;
        }
        cx.idx = idx;
        cx.in_vhost = cx.stack.iter().any(|c| matches!(c, Ctx::VirtualHost));
        match handler(&lname) {
            Some(h) => h(&mut cx, l),
            None => unknown(&mut cx, l, &lname),
        }
    }
    assemble(cx)
}

/// A name no family knows: a stray closer, an unknown section, a directive of a module trove
/// does not implement (ignored or refused, `apache_modules`), or an unknown directive.
fn unknown(cx: &mut Cx<'_>, l: &Line, lname: &str) {
    if lname.starts_with("</") {
        cx.d.error(&l.origin, format!("{}> without a matching opener", l.name), "remove it or add the opening section");
    } else if let Some(section) = lname.strip_prefix('<') {
        cx.d.error(&l.origin, format!("unknown section {}>", l.name), "remove it; see docs/gateway.md for the supported directives");
        cx.stack.push(Ctx::Skip { name: section.to_string() });
    } else {
        match apache_modules::lookup(lname, &l.args) {
            Some(apache_modules::Known { module, verdict: Verdict::Ignored(why) }) => cx.ignored.add(&l.origin, &l.name, module, why),
            Some(apache_modules::Known { module, verdict: Verdict::Refused(what) }) => cx.d.error(
                &l.origin,
                format!("{} ({module}) is not implemented by trove, and it {what}", l.name),
                "remove it, or keep Apache for this site; docs/gateway.md lists every supported directive",
            ),
            None => cx.d.error(
                &l.origin,
                format!("unknown directive '{}'", l.name),
                "remove it or check the spelling; docs/gateway.md lists every supported directive",
            ),
        }
    }
}

/// After the last line: report what was ignored and left open, and build the model from the
/// drafts (virtual servers inherit from the main server, listeners learn TLS from them).
fn assemble(cx: Cx<'_>) -> GatewayConfig {
    let Cx {
        path,
        lines,
        d,
        main,
        vhosts,
        stack,
        listens,
        limits,
        mut log,
        formats,
        custom_log,
        not_emulated,
        ignored,
        server_root,
        passphrase,
        balancers,
        ..
    } = cx;
    if !not_emulated.is_empty() {
        d.note(
            &Origin { file: path.to_path_buf(), line: 1 },
            format!(
                "loaded modules that trove does not implement: {}; their directives are ignored where they cannot change a proxied request, refused where they can",
                not_emulated.join(", ")
            ),
        );
    }
    ignored.report(d);
    for c in stack.iter().skip(1) {
        let what = match c {
            Ctx::VirtualHost => "<VirtualHost>",
            Ctx::Proxy { .. } => "<Proxy>",
            Ctx::Location { .. } => "<Location>",
            Ctx::IfModule { .. } => "<IfModule>",
            Ctx::RequireAll(_) => "<RequireAll>",
            Ctx::RequireAny(_) => "<RequireAny>",
            _ => "section",
        };
        let o = Origin { file: path.to_path_buf(), line: lines.last().map(|l| l.origin.line).unwrap_or(1) };
        d.error(&o, format!("{what} is never closed"), format!("add the closing {}", what.replace('<', "</")));
    }

    // Access log.
    if let Some((p, fmt, _o)) = custom_log {
        log.access = log_dest(&p, server_root.as_deref());
        log.access_format = formats.iter().rev().find(|(n, _)| *n == fmt).map(|(_, f)| f.clone()).unwrap_or(fmt);
    } else {
        log.access = LogDest::Off;
    }

    // Listeners.
    let mut listeners: Vec<ListenerConfig> = Vec::new();
    for (addr, proto, origin) in &listens {
        let tls_vhost = vhosts.iter().any(|v| v.ssl_engine == Some(true) && v.addrs.iter().any(|a| a.port.is_none_or(|p| p == addr.port())));
        let tls = proto.as_deref() == Some("https") || tls_vhost;
        listeners.push(ListenerConfig { addr: *addr, tls, origin: origin.clone() });
    }
    if listeners.is_empty() {
        d.error(&Origin { file: path.to_path_buf(), line: 1 }, "no Listen directive: the gateway would accept nothing", "add for example 'Listen 80'");
    }

    // Virtual servers: vhosts inherit what they leave unset from the main server.
    let main_timeout = main.proxy_timeout.unwrap_or(limits.timeout);
    let mut tls_sites = Vec::new();
    let mut servers = Vec::new();
    let build = |draft: &ServerDraft, is_main: bool, d: &mut Diagnostics, tls_sites: &mut Vec<TlsSite>| -> VirtualServer {
        let mut v = VirtualServer::new(draft.origin.clone());
        v.addrs = draft.addrs.clone();
        v.server_name = draft.server_name.clone().or_else(|| main.server_name.clone());
        v.aliases = draft.aliases.clone();
        v.preserve_host = draft.preserve_host.or(main.preserve_host).unwrap_or(false);
        v.add_forwarded = draft.add_headers.or(main.add_headers).unwrap_or(true);
        v.trusted_downstream = main.trusted_downstream.iter().chain(&draft.trusted_downstream).copied().collect();
        v.via = draft.via.or(main.via).unwrap_or(Via::Off);
        let timeout = draft.proxy_timeout.unwrap_or(main_timeout);
        let mut route_drafts: Vec<&RouteDraft> = Vec::new();
        let mut rev = Vec::new();
        let mut cp = Vec::new();
        let mut cd = Vec::new();
        let mut access = Vec::new();
        let mut rh = Vec::new();
        let mut resp_h = Vec::new();
        if !is_main {
            // mod_proxy merge_proxy_config: the main server's rules come first.
            route_drafts.extend(main.routes.iter());
            rev.extend(main.reverse.iter().cloned());
            cp.extend(main.cookie_paths.iter().cloned());
            cd.extend(main.cookie_domains.iter().cloned());
            access.extend(main.proxy_sections.iter().cloned());
            rh.extend(main.request_headers.iter().cloned());
            resp_h.extend(main.response_headers.iter().cloned());
        }
        route_drafts.extend(draft.routes.iter());
        // A `<Location>` handed to a local handler: Apache runs that handler even where a
        // ProxyPass matches (SetHandler overrides mod_proxy's handler in the fixups phase), so
        // the gateway, which would proxy it, must refuse the overlap.
        let handlers = if is_main { &draft.local_handlers[..0] } else { &main.local_handlers[..] };
        for (loc, h, module, o) in handlers.iter().chain(draft.local_handlers.iter()) {
            if let Some(rd) = route_drafts.iter().find(|r| loc.starts_with(r.path.as_str()))
                && rd.target.is_some()
            {
                d.error(
                    o,
                    format!(
                        "<Location {loc}> hands requests to {module}'s {h} handler in Apache, but ProxyPass {} ({}) would proxy them in trove",
                        rd.path, rd.origin
                    ),
                    format!("exclude the path with 'ProxyPass {loc} !' before the ProxyPass, or remove the <Location> section"),
                );
            }
        }
        rev.extend(draft.reverse.iter().cloned());
        // `ProxyPassReverse /stash balancer://mycluster/stash` maps every member's URL back.
        let rev: Vec<ReverseRule> = rev
            .into_iter()
            .flat_map(|r| match balancer::split_balancer_url(&r.origin_url) {
                None => vec![r],
                Some((name, bpath)) => balancers
                    .iter()
                    .find(|b| b.name == name)
                    .map(|b| {
                        b.members
                            .iter()
                            .map(|m| ReverseRule { public_path: r.public_path.clone(), origin_url: format!("{}{bpath}", m.url.trim_end_matches('/')) })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        cp.extend(draft.cookie_paths.iter().cloned());
        cd.extend(draft.cookie_domains.iter().cloned());
        access.extend(draft.proxy_sections.iter().cloned());
        rh.extend(draft.request_headers.iter().cloned());
        resp_h.extend(draft.response_headers.iter().cloned());
        let mut workers: Vec<Upstream> = Vec::new();
        for rd in route_drafts {
            if let Some(t) = rd.target.as_deref().filter(|t| balancer::split_balancer_url(t).is_some()) {
                match balancer::build(t, &rd.params, &balancers, timeout, d) {
                    Ok(b) if !b.members.is_empty() => {
                        let upstream = Some(b.members[0].upstream.clone());
                        v.routes.push(Route {
                            path: rd.path.clone(),
                            upstream,
                            nocanon: rd.nocanon,
                            noquery: rd.noquery,
                            balancer: Some(b),
                            origin: rd.origin.clone(),
                        });
                    }
                    Ok(b) => d.error(&rd.origin, format!("{} has no usable BalancerMember", b.name), "add BalancerMember lines to its <Proxy> section"),
                    Err(e) => d.error(&rd.origin, e, "define the balancer with <Proxy \"balancer://NAME\"> and BalancerMember lines, and name it in ProxyPass"),
                }
                continue;
            }
            let upstream = match &rd.target {
                None => None,
                Some(t) => match build_upstream(t, &rd.params, timeout, d) {
                    Ok(u) => {
                        // Apache shares a worker whose URL prefixes a later one's, silently
                        // dropping the later parameters. We keep each route's own and warn.
                        if let Some(w) = workers.iter().find(|w| u.url.starts_with(&w.url) && w.url != u.url && !rd.params.is_empty()) {
                            d.warn(
                                &rd.origin,
                                format!("Apache would silently reuse the worker for {} and ignore these parameters; trove honours them", w.url),
                                "give both routes the same parameters to behave the same under Apache",
                            );
                        }
                        workers.push(u.clone());
                        Some(u)
                    }
                    Err(e) => {
                        d.error(&rd.origin, e, "write the origin as http://host:port/path");
                        None
                    }
                },
            };
            if rd.target.is_some() && upstream.is_none() {
                continue;
            }
            v.routes.push(Route { path: rd.path.clone(), upstream, nocanon: rd.nocanon, noquery: rd.noquery, balancer: None, origin: rd.origin.clone() });
        }
        v.reverse = rev;
        v.cookie_paths = cp;
        v.cookie_domains = cd;
        v.proxy_access = access;
        v.request_headers = rh;
        v.response_headers = resp_h;
        v.redirect_https = draft.redirect.clone();
        if draft.ssl_engine == Some(true) {
            let t = &draft.tls;
            let o = t.origin.clone().unwrap_or_else(|| draft.origin.clone());
            match &t.cert {
                None => {
                    d.error(&o, "SSLEngine On without SSLCertificateFile", "add SSLCertificateFile (or run 'trove cert self-signed --host NAME --out DIR')")
                }
                Some(cert) => {
                    let mut names: Vec<String> = v.server_name.iter().cloned().collect();
                    names.extend(v.aliases.iter().cloned());
                    tls_sites.push(TlsSite {
                        names,
                        cert: cert.clone(),
                        key: t.key.clone(),
                        chain: t.chain.clone(),
                        protocol: t.protocol.clone(),
                        cipher_suite: t.cipher.clone(),
                        passphrase: PassphraseSetting::None,
                        origin: o,
                    });
                    v.tls_site = Some(tls_sites.len() - 1);
                }
            }
        } else if draft.tls.cert.is_some() {
            let o = draft.tls.origin.clone().unwrap_or_else(|| draft.origin.clone());
            d.warn(&o, "SSL certificate set but SSLEngine is not On: this server speaks plain HTTP", "add 'SSLEngine On' to the <VirtualHost>");
        }
        v
    };
    for vh in &vhosts {
        let v = build(vh, false, d, &mut tls_sites);
        servers.push(v);
    }
    let main_server = build(&main, true, d, &mut tls_sites);
    servers.push(main_server);
    for s in &mut tls_sites {
        s.passphrase = passphrase.clone();
    }
    for v in &servers {
        for a in &v.addrs {
            if let Some(p) = a.port
                && !listeners.iter().any(|l| l.addr.port() == p)
            {
                d.warn(&v.origin, format!("<VirtualHost> on port {p} has no matching Listen; it will never be used"), format!("add 'Listen {p}'"));
            }
        }
    }

    GatewayConfig { source: path.to_path_buf(), listeners, servers, limits, log, admin_listen: None, tls_sites, drain_timeout: Duration::from_secs(30) }
}

fn pop(stack: &mut Vec<Ctx>, l: &Line, d: &mut Diagnostics, f: impl Fn(&Ctx) -> bool) {
    if stack.len() > 1 && stack.last().is_some_and(&f) {
        stack.pop();
    } else {
        d.error(&l.origin, format!("{}> without a matching opener", l.name), "remove it or add the opening section");
    }
}

fn current_location(stack: &[Ctx]) -> Option<String> {
    stack.iter().rev().find_map(|c| if let Ctx::Location { path } = c { Some(path.clone()) } else { None })
}

fn build_upstream(url: &str, params: &[(String, String, Origin)], default_timeout: Duration, d: &mut Diagnostics) -> Result<Upstream, String> {
    let (host, port, path) = split_origin_url(url)?;
    let mut u = Upstream {
        url: url.to_string(),
        authority: Upstream::authority_of(&host, port)?,
        host,
        port,
        path,
        connect_timeout: default_timeout,
        timeout: default_timeout,
        retry: Duration::from_secs(60),
        tcp_keepalive: false,
        disable_reuse: false,
        ttl: None,
        max: 0,
        upgrade: Some("websocket".into()),
    };
    let mut connect_set = false;
    for (k, v, o) in params {
        let dur = || parse_apache_duration(v).ok_or_else(|| format!("{k}={v}: not a number of seconds (or NNNms)"));
        let bad = |what: &str| format!("{k}={v}: {what}");
        match k.as_str() {
            "connectiontimeout" => {
                u.connect_timeout = dur()?;
                connect_set = true;
            }
            "timeout" => u.timeout = dur()?,
            "retry" => u.retry = dur()?,
            "keepalive" => {
                u.tcp_keepalive = match v.to_ascii_lowercase().as_str() {
                    "on" => true,
                    "off" => false,
                    _ => return Err(bad("takes On or Off")),
                }
            }
            "disablereuse" => {
                u.disable_reuse = match v.to_ascii_lowercase().as_str() {
                    "on" => true,
                    "off" => false,
                    _ => return Err(bad("takes On or Off")),
                }
            }
            "enablereuse" => {
                u.disable_reuse = match v.to_ascii_lowercase().as_str() {
                    "on" => false,
                    "off" => true,
                    _ => return Err(bad("takes On or Off")),
                }
            }
            "ttl" => u.ttl = Some(dur()?),
            "max" => u.max = v.parse().map_err(|_| bad("takes a number"))?,
            "upgrade" => u.upgrade = Some(v.to_ascii_lowercase()),
            "min" | "smax" | "acquire" | "flushpackets" | "flushwait" | "iobuffersize" | "receivebuffersize" | "ping" | "responsefieldsize" | "lbset"
            | "route" | "redirect" | "status" | "loadfactor" => {
                d.note(o, format!("worker parameter {k} is accepted and has no effect in trove"));
            }
            _ => return Err(format!("unknown ProxyPass parameter '{k}' (Apache refuses it too)")),
        }
    }
    if !connect_set {
        u.connect_timeout = u.timeout;
    }
    Ok(u)
}

/// A relative log file is under ServerRoot, as Apache's `ap_server_root_relative` makes it
/// (RHEL's stock `ErrorLog "logs/error_log"`).
fn log_dest(p: &str, server_root: Option<&Path>) -> LogDest {
    match p {
        "/dev/stderr" => LogDest::Stderr,
        "/dev/stdout" => LogDest::Stdout,
        "off" | "/dev/null" => LogDest::Off,
        p if p.starts_with('|') => LogDest::Stderr,
        p => match server_root {
            Some(root) if Path::new(p).is_relative() => LogDest::File(root.join(p)),
            _ => LogDest::File(PathBuf::from(p)),
        },
    }
}

/// The lines between a section opener at `idx` and its matching closer.
fn section_body(lines: &[Line], idx: usize) -> &[Line] {
    let name = lines[idx].name.to_ascii_lowercase();
    let close = format!("</{}", name.trim_start_matches('<'));
    let mut depth = 0usize;
    for (i, l) in lines.iter().enumerate().skip(idx + 1) {
        let n = l.name.to_ascii_lowercase();
        if n == name {
            depth += 1;
        } else if n == close {
            if depth == 0 {
                return &lines[idx + 1..i];
            }
            depth -= 1;
        }
    }
    &lines[idx + 1..]
}

/// Directives of modules trove does not implement that cannot change a proxied request:
/// each listed once, at its first use, with its module and how often it appears.
#[derive(Default)]
struct Ignored {
    items: Vec<(String, String, &'static str, &'static str, Origin, usize)>,
}

impl Ignored {
    fn add(&mut self, origin: &Origin, name: &str, module: &'static str, why: &'static str) {
        let key = name.to_ascii_lowercase();
        match self.items.iter_mut().find(|i| i.0 == key) {
            Some(i) => i.5 += 1,
            None => self.items.push((key, name.to_string(), module, why, origin.clone(), 1)),
        }
    }

    fn report(self, d: &mut Diagnostics) {
        for (_, name, module, why, origin, n) in self.items {
            let times = if n == 1 { String::new() } else { format!(", {n} times") };
            d.push(Severity::Ignored, &origin, format!("{name} ({module}{times}): it {why}"), None);
        }
    }
}

/// `mod_proxy.c` / `proxy_module` both name the same module in `<IfModule>`.
fn module_id(m: &str) -> String {
    let m = m.trim();
    if let Some(stem) = m.strip_prefix("mod_").and_then(|s| s.strip_suffix(".c")) {
        return format!("{stem}_module");
    }
    m.to_string()
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Severity;

    fn parse(text: &str) -> (GatewayConfig, Diagnostics) {
        parse_str(Path::new("httpd.conf"), text)
    }

    fn errors(d: &Diagnostics) -> Vec<String> {
        d.errors().map(|e| e.to_string()).collect()
    }

    #[test]
    fn the_seeds_config_loads() {
        let (c, d) = parse(
            "LoadModule proxy_module modules/mod_proxy.so\n\
             LoadModule proxy_http_module modules/mod_proxy_http.so\n\
             Listen 8080\n\
             ProxyRequests Off\n\
             <Proxy *>\n    Order Deny,Allow\n    Allow from all\n</Proxy>\n\
             ProxyPass        /stash http://localhost:7990/stash connectiontimeout=5 timeout=300\n\
             ProxyPassReverse /stash http://localhost:7990/stash\n",
        );
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        let s = c.servers.last().unwrap();
        assert_eq!(s.routes.len(), 1);
        let u = s.routes[0].upstream.as_ref().unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("localhost", 7990, "/stash"));
        assert_eq!(u.connect_timeout, Duration::from_secs(5));
        assert_eq!(u.timeout, Duration::from_secs(300));
        assert_eq!(s.reverse[0].origin_url, "http://localhost:7990/stash");
        assert_eq!(s.proxy_access.len(), 1);
        assert_eq!(c.listeners[0].addr.port(), 8080);
    }

    #[test]
    fn request_read_timeout_table() {
        let st = |timeout, max, min_rate| Some(ReadStage { timeout, max, min_rate });
        let rows: &[(&str, Result<ReadStages, ()>)] = &[
            ("body=20,MinRate=500", Ok(ReadStages { body: st(20, None, Some(500)), ..Default::default() })),
            (
                "header=20-40,MinRate=500 body=20,MinRate=500",
                Ok(ReadStages { header: st(20, Some(40), Some(500)), body: st(20, None, Some(500)), ..Default::default() }),
            ),
            ("handshake=5 header=10 body=30", Ok(ReadStages { handshake: st(5, None, None), header: st(10, None, None), body: st(30, None, None) })),
            ("body=10-60,minrate=1000", Ok(ReadStages { body: st(10, Some(60), Some(1000)), ..Default::default() })),
            ("body=0", Ok(ReadStages { body: st(0, None, None), ..Default::default() })),
            ("", Err(())),
            ("body", Err(())),
            ("body=x", Err(())),
            ("body=-5", Err(())),
            ("body=10-20", Err(())),
            ("body=20-10,MinRate=5", Err(())),
            ("body=10,Rate=5", Err(())),
            ("trailer=10", Err(())),
        ];
        for (line, want) in rows {
            let args: Vec<String> = line.split_whitespace().map(String::from).collect();
            let got = parse_request_read_timeout(&args).map_err(|_| ());
            assert_eq!(&got, want, "{line:?}");
        }
    }

    #[test]
    fn request_read_timeout_sets_the_body_rate_and_the_header_timeout() {
        let (c, d) = parse("Listen 80\nRequestReadTimeout header=10-40,MinRate=500 body=30-600,MinRate=1000\n");
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        assert_eq!(c.limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.limits.body_read, BodyRate { timeout: Duration::from_secs(30), min_rate: 1000, max_timeout: Duration::from_secs(600) });
        // Without it, Apache's default: body=20,MinRate=500.
        let (c, _) = parse("Listen 80\n");
        assert_eq!(c.limits.body_read, BodyRate { timeout: Duration::from_secs(20), min_rate: 500, max_timeout: Duration::ZERO });
        // body=0 turns the body deadline off; header=0 is refused with a warning.
        let (c, d) = parse("Listen 80\nRequestReadTimeout header=0 body=0\n");
        assert!(c.limits.body_read.timeout.is_zero());
        assert_eq!(c.limits.header_read_timeout, Duration::from_secs(20));
        assert!(d.items.iter().any(|i| i.severity == Severity::Warning && i.to_string().contains("header=0")), "{d:?}");
        let (_, d) = parse("Listen 80\nRequestReadTimeout body=10-5,MinRate=1\n");
        assert_eq!(errors(&d).len(), 1);
    }

    #[test]
    fn unknown_directive_is_an_error_with_file_and_line() {
        let (_, d) = parse("Listen 80\n\nFrobnicate yes\n");
        let e = errors(&d);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("httpd.conf:3: error: unknown directive 'Frobnicate'"), "{}", e[0]);
        assert!(e[0].contains(" — "), "has a fix: {}", e[0]);
    }

    #[test]
    fn continuation_lines_join_and_keep_the_first_line_number() {
        let (c, d) = parse("Listen 80\nProxyPass /a \\\n   http://127.0.0.1:9/a \\\n   timeout=7\nBogus\n");
        assert_eq!(c.servers[0].routes[0].upstream.as_ref().unwrap().timeout, Duration::from_secs(7));
        assert!(errors(&d)[0].starts_with("httpd.conf:5:"), "{:?}", errors(&d));
    }

    #[test]
    fn worker_parameter_table() {
        // (params, Ok(connect_ms, timeout_ms, disable_reuse, max) or Err substring)
        type Row = (&'static str, Result<(u128, u128, bool, usize), &'static str>);
        let rows: Vec<Row> = vec![
            ("", Ok((60000, 60000, false, 0))),
            ("timeout=300", Ok((300000, 300000, false, 0))),
            ("connectiontimeout=5 timeout=300", Ok((5000, 300000, false, 0))),
            ("connectiontimeout=250ms", Ok((250, 60000, false, 0))),
            ("disablereuse=On max=20 ttl=30 retry=0 keepalive=On", Ok((60000, 60000, true, 20))),
            ("enablereuse=off", Ok((60000, 60000, true, 0))),
            ("bogus=1", Err("unknown ProxyPass parameter 'bogus'")),
            ("timeout=abc", Err("not a number")),
            ("keepalive=maybe", Err("On or Off")),
        ];
        for (params, want) in rows {
            let (c, d) = parse(&format!("Listen 80\nProxyPass / http://127.0.0.1:9/ {params}\n"));
            match want {
                Ok((cm, tm, dr, max)) => {
                    assert!(errors(&d).is_empty(), "{params}: {:?}", errors(&d));
                    let u = c.servers[0].routes[0].upstream.as_ref().unwrap();
                    assert_eq!((u.connect_timeout.as_millis(), u.timeout.as_millis(), u.disable_reuse, u.max), (cm, tm, dr, max), "{params}");
                }
                Err(s) => assert!(errors(&d).iter().any(|e| e.contains(s)), "{params}: {:?}", errors(&d)),
            }
        }
    }

    #[test]
    fn proxy_timeout_and_timeout_feed_the_worker_default() {
        let (c, _) = parse("Listen 80\nTimeout 300\nProxyPass / http://127.0.0.1:9/\n");
        assert_eq!(c.servers[0].routes[0].upstream.as_ref().unwrap().timeout, Duration::from_secs(300));
        let (c, _) = parse("Listen 80\nTimeout 300\nProxyTimeout 42\nProxyPass / http://127.0.0.1:9/\n");
        assert_eq!(c.servers[0].routes[0].upstream.as_ref().unwrap().timeout, Duration::from_secs(42));
    }

    #[test]
    fn exclusions_and_location_form() {
        let (c, d) = parse(
            "Listen 80\nProxyPass /static !\nProxyPass / http://127.0.0.1:9/\n<Location /app>\nProxyPass http://127.0.0.1:9/app\nProxyPassReverse http://127.0.0.1:9/app\n</Location>\n",
        );
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        let r = &c.servers[0].routes;
        assert!(r[0].upstream.is_none());
        assert_eq!(r[2].path, "/app");
        assert_eq!(c.servers[0].reverse[0].public_path, "/app");
    }

    #[test]
    fn proxy_requests_on_is_refused() {
        let (_, d) = parse("Listen 80\nProxyRequests On\n");
        assert!(errors(&d)[0].contains("open forward proxy"));
    }

    #[test]
    fn core_directives_are_noted_and_unemulated_modules_listed() {
        let (_, d) = parse(
            "ServerRoot /etc/apache2\nPidFile /run/a.pid\nUser www-data\nGroup www-data\nLoadModule rewrite_module m.so\nLoadModule proxy_module m.so\nListen 80\n",
        );
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        let notes = d.items.iter().filter(|i| i.severity == Severity::Note).count();
        assert!(notes >= 3);
        assert!(d.items.iter().any(|i| i.severity == Severity::Note && i.message.contains("not implement: rewrite_module;")), "{:?}", d.items);
    }

    fn notes(d: &Diagnostics) -> Vec<String> {
        d.items.iter().filter(|i| i.severity <= Severity::Ignored).map(|i| i.to_string()).collect()
    }

    #[test]
    fn local_file_directives_are_listed_once_as_ignored_with_their_module() {
        let (_, d) = parse(
            "Listen 80\nLoadModule mime_module m.so\nLoadModule setenvif_module m.so\n<IfModule mod_mime.c>\nAddLanguage da .dk\nAddLanguage de .de\nAddCharset UTF-8 .utf8\n</IfModule>\nBrowserMatch Mozilla/2 nokeepalive\n",
        );
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        let n = notes(&d);
        let lang: Vec<&String> = n.iter().filter(|m| m.contains("AddLanguage")).collect();
        assert_eq!(lang.len(), 1, "{n:?}");
        assert!(lang[0].starts_with("httpd.conf:5: ignored: AddLanguage (mod_mime, 2 times)"), "{}", lang[0]);
        assert!(n.iter().any(|m| m.starts_with("httpd.conf:7: ignored: AddCharset (mod_mime)")), "{n:?}");
        assert!(n.iter().any(|m| m.starts_with("httpd.conf:9: ignored: BrowserMatch (mod_setenvif)")), "{n:?}");
    }

    #[test]
    fn directives_that_change_proxied_requests_are_refused_with_their_module() {
        let (_, d) =
            parse("Listen 80\nRewriteEngine On\nRewriteRule ^/old /stash [R]\nAddOutputFilterByType SUBSTITUTE text/html\nSetEnv proxy-nokeepalive 1\n");
        let e = errors(&d);
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e[0].starts_with("httpd.conf:2: error: RewriteEngine (mod_rewrite) is not implemented by trove"), "{}", e[0]);
        assert!(e[1].starts_with("httpd.conf:3: error: RewriteRule (mod_rewrite)"), "{}", e[1]);
        assert!(e[2].starts_with("httpd.conf:4: error: AddOutputFilterByType (mod_filter)"), "{}", e[2]);
        assert!(e[3].starts_with("httpd.conf:5: error: SetEnv (mod_env)"), "{}", e[3]);
        assert!(e.iter().all(|e| e.contains(" — ")), "each says the fix: {e:?}");
    }

    #[test]
    fn ifmodule_follows_the_load_module_lines_when_the_file_has_them() {
        // With LoadModule lines, as on Debian: ssl_module is not loaded, so no Listen 443.
        let (c, d) = parse(
            "LoadModule proxy_module m.so\nListen 80\n<IfModule ssl_module>\nListen 443\n</IfModule>\n<IfModule mod_version.c>\nListen 81\n</IfModule>\n",
        );
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        assert_eq!(c.listeners.iter().map(|l| l.addr.port()).collect::<Vec<_>>(), [80, 81]);
        // Without any, every module trove emulates counts as loaded.
        let (c, _) = parse("Listen 80\n<IfModule ssl_module>\nListen 443\n</IfModule>\n");
        assert_eq!(c.listeners.len(), 2);
    }

    #[test]
    fn variables_come_from_define_then_envvars_then_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("envvars"), "unset HOME\nexport APACHE_LOG_DIR=/var/log/apache2$SUFFIX\nexport APACHE_X=\"${APACHE_LOG_DIR}/x\"\n")
            .unwrap();
        let main = dir.path().join("apache2.conf");
        std::fs::write(&main, "Listen 80\nDefine PORT 7990\nErrorLog ${APACHE_X}/error.log\nProxyPass / http://127.0.0.1:${PORT}/\nCustomLog ${TROVE_SURELY_UNSET_VAR}/a.log combined\n").unwrap();
        let (c, d) = load(&main).unwrap();
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        assert_eq!(c.log.error, LogDest::File("/var/log/apache2/x/error.log".into()));
        assert_eq!(c.servers[0].routes[0].upstream.as_ref().unwrap().port, 7990);
        // Apache leaves an undefined name as written and warns (AH00111); so do we, with the fix.
        assert_eq!(c.log.access, LogDest::File("${TROVE_SURELY_UNSET_VAR}/a.log".into()));
        let w: Vec<String> = d.items.iter().filter(|i| i.severity == Severity::Warning).map(|i| i.to_string()).collect();
        assert!(w.iter().any(|w| w.contains(":5: warning: ${TROVE_SURELY_UNSET_VAR} is not defined") && w.contains("Define TROVE_SURELY_UNSET_VAR")), "{w:?}");
    }

    #[test]
    fn relative_log_paths_are_under_server_root() {
        let (c, d) = parse("ServerRoot /etc/httpd\nListen 80\nErrorLog \"logs/error_log\"\nCustomLog logs/access_log combined\n");
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        assert_eq!(c.log.error, LogDest::File("/etc/httpd/logs/error_log".into()));
        assert_eq!(c.log.access, LogDest::File("/etc/httpd/logs/access_log".into()));
    }

    #[test]
    fn location_with_a_local_handler_is_skipped_unless_a_route_would_proxy_it() {
        let status = "<Location /server-status>\nSetHandler server-status\nRequire local\n</Location>\n";
        let (_, d) = parse(&format!("Listen 80\n{status}ProxyPass /stash http://127.0.0.1:7990/stash\n"));
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        assert!(notes(&d).iter().any(|n| n.starts_with("httpd.conf:2: ignored: <Location /server-status> with SetHandler server-status (mod_status)")));
        // Apache would answer /server-status itself; trove would proxy it: refused.
        let (_, d) = parse(&format!("Listen 80\n{status}ProxyPass / http://127.0.0.1:7990/\n"));
        let e = errors(&d);
        assert!(
            e.len() == 1 && e[0].starts_with("httpd.conf:2: error: <Location /server-status> hands requests to mod_status's server-status handler"),
            "{e:?}"
        );
        // Excluding the path first, as the fix says, is accepted.
        let (_, d) = parse(&format!("Listen 80\n{status}ProxyPass /server-status !\nProxyPass / http://127.0.0.1:7990/\n"));
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
    }

    #[test]
    fn rhel_profile_system_cipher_suite_is_read_as_unset() {
        let (c, d) = parse(
            "Listen 443 https\n<VirtualHost _default_:443>\nSSLEngine on\nSSLCipherSuite PROFILE=SYSTEM\nSSLCertificateFile /etc/pki/tls/certs/localhost.crt\n</VirtualHost>\n",
        );
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        assert_eq!(c.tls_sites[0].cipher_suite, None);
        assert!(notes(&d).iter().any(|n| n.starts_with("httpd.conf:4: note: SSLCipherSuite PROFILE=SYSTEM")), "{:?}", notes(&d));
    }

    #[test]
    fn location_match_with_only_ignorable_directives_is_skipped() {
        let (_, d) = parse("Listen 80\n<LocationMatch \"^/+$\">\nOptions -Indexes\nErrorDocument 403 /.noindex.html\n</LocationMatch>\n");
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        let (_, d) = parse("Listen 80\n<LocationMatch \"^/git\">\nRequestHeader set X-A b\n</LocationMatch>\n");
        assert!(errors(&d).iter().any(|e| e.contains("<LocationMatch> (regular expressions) is not supported")), "{:?}", errors(&d));
    }

    #[test]
    fn access_sections_parse_every_form() {
        let (c, d) = parse(
            "Listen 80\n<Proxy *>\nOrder Allow,Deny\nAllow from 10.1 192.168.0.0/255.255.0.0 ::1\nDeny from 10.1.2.3\n</Proxy>\n\
             <Proxy http://127.0.0.1:9/admin>\n<RequireAll>\nRequire all granted\nRequire not ip 10.0.0.0/8\n</RequireAll>\n</Proxy>\n",
        );
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        let p = &c.servers[0].proxy_access;
        assert_eq!(p.len(), 2);
        assert!(p[0].policy.allows("10.1.9.9".parse().unwrap()));
        assert!(!p[0].policy.allows("10.1.2.3".parse().unwrap()));
        assert!(!p[0].policy.allows("8.8.8.8".parse().unwrap()));
        assert!(!p[1].policy.allows("10.1.1.1".parse().unwrap()));
        assert!(p[1].policy.allows("11.1.1.1".parse().unwrap()));
    }

    #[test]
    fn bad_order_and_require_not_outside_requireall() {
        let (_, d) = parse("Listen 80\n<Proxy *>\nOrder Deny, Allow\nRequire not ip 10.0.0.1\n</Proxy>\n");
        let e = errors(&d);
        assert!(e.iter().any(|e| e.contains("takes no spaces")), "{e:?}");
        assert!(e.iter().any(|e| e.contains("only works inside <RequireAll>")), "{e:?}");
    }

    #[test]
    fn vhost_inherits_main_server_settings_and_routes_come_main_first() {
        let (c, d) = parse(
            "Listen 80\nListen 443\nServerName example.test\nProxyPreserveHost On\nProxyPass /a http://127.0.0.1:1/a\n\
             <VirtualHost *:443>\nProxyPass / http://127.0.0.1:2/\n</VirtualHost>\n",
        );
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        let vh = &c.servers[0];
        assert_eq!(vh.server_name.as_deref(), Some("example.test"));
        assert!(vh.preserve_host);
        assert_eq!(vh.routes.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(), ["/a", "/"]);
    }

    #[test]
    fn includes_are_followed_and_loops_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        std::fs::write(dir.path().join("conf.d/a.conf"), "ProxyPass /a http://127.0.0.1:1/a\n").unwrap();
        std::fs::write(dir.path().join("conf.d/b.conf"), "ProxyPass /b http://127.0.0.1:1/b\n").unwrap();
        std::fs::write(dir.path().join("loop.conf"), "Include loop.conf\n").unwrap();
        let main = dir.path().join("httpd.conf");
        std::fs::write(&main, "Listen 80\nInclude conf.d/*.conf\nIncludeOptional nothing/*.conf\n").unwrap();
        let (c, d) = load(&main).unwrap();
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        assert_eq!(c.servers[0].routes.len(), 2);
        std::fs::write(&main, "Listen 80\nInclude loop.conf\n").unwrap();
        let (_, d) = load(&main).unwrap();
        assert!(errors(&d).iter().any(|e| e.contains("loops back")), "{:?}", errors(&d));
    }

    #[test]
    fn unclosed_and_stray_sections_are_errors() {
        let (_, d) = parse("Listen 80\n<Proxy *>\nAllow from all\n");
        assert!(errors(&d).iter().any(|e| e.contains("never closed")));
        let (_, d) = parse("Listen 80\n</VirtualHost>\n");
        assert!(errors(&d).iter().any(|e| e.contains("without a matching opener")));
    }

    #[test]
    fn trailing_slash_mismatch_warns() {
        let (_, d) = parse("Listen 80\nProxyPass /mis/ http://127.0.0.1:9\n");
        assert!(d.items.iter().any(|i| i.severity == Severity::Warning && i.message.contains("trailing slashes")), "{:?}", d.items);
    }

    #[test]
    fn header_edits_parse_for_requests_and_responses() {
        let (c, d) = parse(
            "Listen 80\nRequestHeader set X-Forwarded-Proto \"https\"\nHeader always set Strict-Transport-Security \"max-age=600\"\nHeader unset Server\n",
        );
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        assert_eq!(c.servers[0].request_headers.len(), 1);
        assert_eq!(c.servers[0].response_headers.len(), 2);
        let (_, d) = parse("Listen 80\nHeader edit X a b\n");
        assert!(errors(&d).iter().any(|e| e.contains("Header action 'edit'")), "{:?}", errors(&d));
    }

    #[test]
    fn whole_site_redirect_to_https() {
        let (c, d) = parse("Listen 80\n<VirtualHost *:80>\nRedirect permanent / https://git.example/\n</VirtualHost>\n");
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        assert_eq!(c.servers[0].redirect_https.as_deref(), Some("https://git.example"));
        let (_, d) = parse("Listen 80\nRedirect /old http://x/\n");
        assert!(errors(&d).iter().any(|e| e.contains("only the whole-site HTTPS redirect")), "{:?}", errors(&d));
    }

    #[test]
    fn log_settings() {
        let (c, d) = parse("Listen 80\nLogFormat \"%h %>s\" short\nCustomLog /tmp/x.log short\nErrorLog /dev/stderr\nLogLevel debug\n");
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        assert_eq!(c.log.access_format, "%h %>s");
        assert_eq!(c.log.access, LogDest::File("/tmp/x.log".into()));
        assert_eq!(c.log.level, "debug");
    }

    #[test]
    fn ssl_vhost_makes_a_tls_listener_and_site() {
        let (c, d) = parse(
            "Listen 443\n<VirtualHost *:443>\nServerName git.example\nSSLEngine On\nSSLCertificateFile \"/etc/s.crt\"\nSSLCertificateKeyFile /etc/s.key\nProxyPass / http://127.0.0.1:7990/\n</VirtualHost>\n",
        );
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        assert!(c.listeners[0].tls);
        assert_eq!(c.tls_sites[0].names, ["git.example"]);
        assert_eq!(c.tls_sites[0].cert, PathBuf::from("/etc/s.crt"));
        assert_eq!(c.servers[0].tls_site, Some(0));
    }

    /// Every name the reader accepted when it was one `match` in `compile` (its arms, the
    /// noted core directives and the skipped local-file sections), so that cutting it into
    /// handler tables lost none.
    const ACCEPTED_BEFORE_THE_TABLE: &[&str] = &[
        "<ifmodule",
        "</ifmodule",
        "<ifdefine",
        "<ifversion",
        "</ifdefine",
        "</ifversion",
        "<virtualhost",
        "</virtualhost",
        "<proxy",
        "<proxymatch",
        "</proxy",
        "</proxymatch",
        "<location",
        "</location",
        "<requireall",
        "<requireany",
        "</requireall",
        "</requireany",
        "<requirenone",
        "<locationmatch",
        "<directory",
        "<directorymatch",
        "<files",
        "<filesmatch",
        "<limit",
        "<limitexcept",
        "loadmodule",
        "listen",
        "servername",
        "serveralias",
        "proxyrequests",
        "proxypass",
        "proxypassmatch",
        "proxypassreverse",
        "proxypassreversecookiepath",
        "proxypassreversecookiedomain",
        "proxypreservehost",
        "remoteiptrustedproxy",
        "remoteipinternalproxy",
        "proxyaddheaders",
        "proxytimeout",
        "proxyvia",
        "proxyerroroverride",
        "proxybadheader",
        "proxyiobuffersize",
        "proxyreceivebuffersize",
        "order",
        "allow",
        "deny",
        "satisfy",
        "require",
        "timeout",
        "keepalive",
        "requestreadtimeout",
        "keepalivetimeout",
        "maxkeepaliverequests",
        "limitrequestfieldsize",
        "errorlog",
        "customlog",
        "transferlog",
        "logformat",
        "loglevel",
        "requestheader",
        "sslengine",
        "sslcertificatefile",
        "sslcertificatekeyfile",
        "sslcertificatechainfile",
        "sslprotocol",
        "sslciphersuite",
        "sslpassphrasedialog",
        "redirect",
        "redirectpermanent",
        "header",
        "serverroot",
        "pidfile",
        "user",
        "group",
        "serveradmin",
        "servertokens",
        "serversignature",
        "startservers",
        "minsparethreads",
        "maxsparethreads",
        "minspareservers",
        "maxspareservers",
        "threadlimit",
        "threadsperchild",
        "maxrequestworkers",
        "maxclients",
        "serverlimit",
        "maxconnectionsperchild",
        "maxrequestsperchild",
        "mutex",
        "defaultruntimedir",
        "hostnamelookups",
        "accessfilename",
        "adddefaultcharset",
        "traceenable",
        "enablesendfile",
        "enablemmap",
        "usecanonicalname",
        "sslrandomseed",
        "sslsessioncache",
        "sslsessioncachetimeout",
        "sslstaplingcache",
        "sslhonorcipherorder",
        "sslcompression",
        "sslsessiontickets",
        "protocols",
        "h2direct",
        "acceptfilter",
        "listenbacklog",
        "sslproxyengine",
        "sslcryptodevice",
        "sslproxyciphersuite",
        "sslproxyprotocol",
        "documentroot",
        "errorlogformat",
        "maxmemfree",
        // mod_proxy_balancer (a module of its own since the balancer was implemented).
        "balancermember",
        "proxyset",
        "balancergrowth",
        "balancerpersist",
        "balancerinherit",
    ];

    #[test]
    fn every_directive_accepted_before_the_table_has_a_handler_in_any_case() {
        for name in ACCEPTED_BEFORE_THE_TABLE {
            assert!(handler(name).is_some(), "{name} has no handler");
            assert!(handler(&name.to_ascii_uppercase()).is_some(), "{name} in upper case has no handler");
        }
        let table: Vec<&str> = DIRECTIVES.iter().flat_map(|family| family.iter().map(|(n, _)| *n)).collect();
        for (i, n) in table.iter().enumerate() {
            assert_eq!(*n, n.to_ascii_lowercase(), "table names are lower case");
            assert!(!table[..i].contains(n), "{n} is in the table twice");
            assert!(ACCEPTED_BEFORE_THE_TABLE.contains(n), "{n} is new: add it to the list above");
        }
        assert_eq!(table.len(), ACCEPTED_BEFORE_THE_TABLE.len());
        // Names that are not the reader's own are not in the table: modules trove does not
        // implement, and what nothing knows.
        for n in ["addlanguage", "rewriteengine", "sethandler", "frobnicate", "<frob", "</nope", "</directory"] {
            assert!(handler(n).is_none(), "{n}");
        }
    }

    #[test]
    fn unknown_names_give_the_same_diagnostics_as_before_the_table() {
        let (_, d) = parse(
            "Listen 80\nFrobnicate yes\nfROBNICATE\n<Frob x>\nListen nonsense\n</Frob>\n</Nope>\n</Directory>\nRewriteEngine on\nAddLanguage da .dk\nAddLanguage de .de\n",
        );
        assert_eq!(
            d.items.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
            [
                "httpd.conf:2: error: unknown directive 'Frobnicate' — remove it or check the spelling; docs/gateway.md lists every supported directive",
                "httpd.conf:3: error: unknown directive 'fROBNICATE' — remove it or check the spelling; docs/gateway.md lists every supported directive",
                "httpd.conf:4: error: unknown section <Frob> — remove it; see docs/gateway.md for the supported directives",
                "httpd.conf:7: error: </Nope> without a matching opener — remove it or add the opening section",
                "httpd.conf:8: error: </Directory> without a matching opener — remove it or add the opening section",
                "httpd.conf:9: error: RewriteEngine (mod_rewrite) is not implemented by trove, and it rewrites or redirects requests before they are proxied — remove it, or keep Apache for this site; docs/gateway.md lists every supported directive",
                "httpd.conf:10: ignored: AddLanguage (mod_mime, 2 times): it maps the file names of local files to types, languages, charsets and handlers; proxied responses keep the origin's headers",
            ]
        );
    }
}

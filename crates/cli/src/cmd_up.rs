//! `trove up`: the seed's whole set-up in one command. The Git server and the TLS gateway in
//! one process, on embedded defaults, with a local CA, a server certificate and an admin
//! account made on first start, and everything reused on the next.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use trove_gateway::tls::{ReloadableCerts, build_server_config_with_resolver};
use trove_tls as tls;

use crate::data_lock::DataLock;
use trove_store::{BaseUrl, ContextPath, GlobalPermission, Password, UserName};

#[derive(clap::Args)]
pub struct Args {
    /// Data directory: repositories, database, certificates, gateway config. Default ./trove-data.
    #[arg(long, value_name = "DIR", default_value = "trove-data")]
    pub data: PathBuf,
    /// The URL people and git use (the base URL). Default https://localhost:8443.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Plain-HTTP listener that redirects to HTTPS, or `off`. Default 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// HTTPS listener. Default 127.0.0.1:8443.
    #[arg(long, value_name = "ADDR")]
    pub https: Option<String>,
    /// Where the Git server listens (behind the gateway). Default 127.0.0.1:7990.
    #[arg(long, value_name = "ADDR")]
    pub server: Option<String>,
    /// PostgreSQL instead of the data directory's SQLite (Data Center mode, docs/cluster.md):
    /// `postgres://user@host:5432/dbname`, the password in TROVE_DATABASE_PASSWORD.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Git over SSH listener, or `off`. Default 127.0.0.1:7999.
    #[arg(long, value_name = "ADDR")]
    pub ssh: Option<String>,
}

/// What `trove up` set up in a data directory; `trove doctor --data` reads it too.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct UpState {
    pub public_url: String,
    pub http: Option<String>,
    pub https: String,
    pub server: String,
    /// The SSH listener, or `off`; state files from before SSH get the default.
    #[serde(default = "default_ssh")]
    pub ssh: String,
}

fn default_ssh() -> String {
    "127.0.0.1:7999".into()
}

pub const STATE_FILE: &str = "up.toml";
pub const GATEWAY_FILE: &str = "gateway.toml";

impl UpState {
    pub fn load(data: &Path) -> anyhow::Result<Option<UpState>> {
        let p = data.join(STATE_FILE);
        match std::fs::read_to_string(&p) {
            Ok(t) => Ok(Some(toml::from_str(&t).with_context(|| format!("{}: not a trove up state file; remove it to start afresh", p.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
        }
    }
    fn to_text(&self) -> anyhow::Result<String> {
        Ok(format!("# written by `trove up`; flags given to `trove up` override these\n{}", toml::to_string(self)?))
    }
}

fn parse_addr(s: &str, what: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(p) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], p)));
    }
    s.parse().with_context(|| format!("--{what} {s:?} is not IP:PORT (like 127.0.0.1:8443) or a port"))
}

/// Host names and IPs the certificate must cover: the public URL's host, plus loopback.
fn cert_names(public: &BaseUrl) -> (Vec<String>, Vec<std::net::IpAddr>) {
    let authority = public.authority();
    let host = if authority.starts_with('[') {
        authority.trim_start_matches('[').split(']').next().unwrap_or("").to_string()
    } else {
        authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(authority).to_string()
    };
    let mut hosts = vec!["localhost".to_string()];
    let mut ips: Vec<std::net::IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) if !ips.contains(&ip) => ips.push(ip),
        Ok(_) => {}
        Err(_) if !hosts.contains(&host.to_ascii_lowercase()) => hosts.insert(0, host.to_ascii_lowercase()),
        Err(_) => {}
    }
    (hosts, ips)
}

fn random_password() -> String {
    use rand::RngExt as _;
    const CHARS: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut r = trove_store::os_rng();
    (0..20).map(|_| CHARS[r.random_range(0..CHARS.len())] as char).collect()
}

/// Certificates this start needs and the data directory lacks, made in memory; nothing is
/// written until the start commits.
struct NewCerts {
    ca: Option<tls::CertAuthority>,
    server: Option<(tls::GeneratedCert, Vec<String>)>,
}

/// Whether `crt` exists, covers every host, and stays valid for 30 more days.
fn cert_still_good(crt: &Path, hosts: &[String]) -> bool {
    let check = || {
        let certs = tls::load_certificates(crt, tls::FileRole::Certificate).ok()?;
        let info = tls::CertInfo::from_der(certs.first()?.as_ref()).ok()?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64 + 30 * 86400;
        Some(hosts.iter().all(|h| info.covers(h)) && !info.is_expired_at(now))
    };
    check() == Some(true)
}

/// Decides which of the CA and the server certificate (for the public host and loopback) to
/// make, and makes them in memory.
fn plan_certs(tls_dir: &Path, public: &BaseUrl) -> anyhow::Result<NewCerts> {
    let (hosts, ips) = cert_names(public);
    let ca = if tls_dir.join("ca.crt").exists() { None } else { Some(tls::make_ca("Trove local CA", 3650)?) };
    // A new CA means a new server certificate: the old one was signed by the CA that is gone.
    if ca.is_none() && cert_still_good(&tls_dir.join("server.crt"), &hosts) {
        return Ok(NewCerts { ca, server: None });
    }
    let loaded;
    let signer = match &ca {
        Some(c) => c,
        None => {
            loaded = tls::load_ca(tls_dir)?;
            &loaded
        }
    };
    let cert = tls::issue(signer, &hosts, &ips, 397, tls::KeyKind::EcdsaP256)?;
    Ok(NewCerts { ca, server: Some((cert, hosts)) })
}

/// Files written beside their final place (`NAME.new`) and renamed there only when the start
/// commits, so that a start that fails leaves every file as it was; rename(2) replaces a file
/// atomically. Staged files of a start that fails are removed.
#[derive(Default)]
struct Staged {
    moves: Vec<(PathBuf, PathBuf)>,
    committed: bool,
}

impl Staged {
    /// Stages `contents` for `dest` (mode 0600 when `private`); returns the staged path.
    fn file(&mut self, dest: &Path, contents: &[u8], private: bool) -> anyhow::Result<PathBuf> {
        let mut name = dest.file_name().unwrap_or_default().to_os_string();
        name.push(".new");
        let staged = dest.with_file_name(name);
        tls::write_file(&staged, contents, private, true)?;
        self.moves.push((staged.clone(), dest.to_path_buf()));
        Ok(staged)
    }

    /// The staged path for `dest`, if one was staged.
    fn staged_for(&self, dest: &Path) -> Option<&Path> {
        self.moves.iter().find(|(_, d)| d == dest).map(|(s, _)| s.as_path())
    }

    /// Moves every staged file into place, in the order staged.
    fn commit(&mut self) -> anyhow::Result<()> {
        for (from, to) in &self.moves {
            std::fs::rename(from, to).with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            for (from, _) in &self.moves {
                let _ = std::fs::remove_file(from);
                // A directory made for staging (`tls/` on a first start) goes too; one with
                // anything else in it stays (remove_dir only removes an empty one).
                if let Some(dir) = from.parent() {
                    let _ = std::fs::remove_dir(dir);
                }
            }
        }
    }
}

/// What `trove up` derives into `gateway.toml` from its state. Only these values are ever
/// changed in an existing file, and only where they are still what `trove up` wrote.
#[derive(Debug, Clone, PartialEq)]
struct Derived {
    https: String,
    http: Option<String>,
    /// The public URL's host: the first of the sites' `names`.
    host: String,
    /// Where plain HTTP redirects: the public URL's scheme and authority.
    origin: String,
    route_path: String,
    upstream: String,
    cert: String,
    key: String,
}

impl Derived {
    fn new(state: &UpState, crt: &Path, key: &Path) -> anyhow::Result<Derived> {
        let public = BaseUrl::parse(&state.public_url).with_context(|| format!("public URL {:?}", state.public_url))?;
        let context = public.path().trim_end_matches('/').to_string();
        let server: SocketAddr = state.server.parse().with_context(|| format!("server address {:?}", state.server))?;
        let target = format!("http://{server}{context}");
        Ok(Derived {
            https: state.https.clone(),
            http: state.http.clone(),
            host: host_of(&public),
            origin: format!("{}://{}", public.scheme(), public.authority()),
            route_path: if context.is_empty() { "/".to_string() } else { context.clone() },
            upstream: if context.is_empty() { format!("{target}/") } else { target },
            cert: crt.display().to_string(),
            key: key.display().to_string(),
        })
    }

    /// `names` of the HTTPS site: the public host, and `localhost` for local tools, once each.
    fn names(&self) -> Vec<String> {
        let mut names = vec![self.host.clone()];
        if !self.host.eq_ignore_ascii_case("localhost") {
            names.push("localhost".to_string());
        }
        names
    }
}

fn toml_list(items: &[String]) -> String {
    items.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>().join(", ")
}

/// The gateway config for a data directory that has none.
fn gateway_toml(d: &Derived) -> String {
    let mut s = String::new();
    s.push_str("# The gateway `trove up` runs. Every key is documented in docs/gateway.md.\n");
    s.push_str("# Edit freely: when the addresses or the public URL change, `trove up` updates only the values\n");
    s.push_str("# it wrote here (listen addresses, names, the redirect, the route) where they are still as it\n");
    s.push_str("# wrote them, and keeps everything else, comments included (docs/up.md).\n\n");
    s.push_str(&format!("[[listen]]\naddr = \"{}\"\ntls = true\n\n", d.https));
    if let Some(h) = &d.http {
        s.push_str(&format!("[[listen]]\naddr = \"{h}\"\n\n"));
        s.push_str(&format!(
            "# Plain HTTP only redirects to HTTPS.\n[[server]]\nnames = [\"{host}\"]\nlisten = [\"{h}\"]\nredirect_https = \"{origin}\"\n\n",
            host = d.host,
            origin = d.origin,
        ));
    }
    s.push_str(&format!(
        "[[server]]\nnames = [{names}]\nlisten = [\"{https}\"]\n\
         # Browsers keep to HTTPS for a year after a visit (Strict-Transport-Security). To turn it\n\
         # off, set hsts = 0 here first and serve that for as long as the old value (a year),\n\
         # since browsers remember it; deleting the line stops sending it but does not undo it.\n\
         hsts = 31536000\n\n[server.tls]\ncert = \"{crt}\"\nkey = \"{key}\"\n\n\
         [[server.route]]\npath = \"{path}\"\nupstream = \"{upstream}\"\nconnect_timeout = 5\n# git pushes and clones of big repositories: 300 s between bytes, as the seed has it\ntimeout = 300\n",
        names = toml_list(&d.names()),
        https = d.https,
        crt = d.cert,
        key = d.key,
        path = d.route_path,
        upstream = d.upstream,
    ));
    s
}

/// Replaces a string value, keeping the comments and spacing around it.
fn set_str(v: &mut toml_edit::Value, new: &str) {
    let decor = v.decor().clone();
    *v = new.into();
    *v.decor_mut() = decor;
}

fn str_of(t: &toml_edit::Table, key: &str) -> Option<String> {
    t.get(key).and_then(|i| i.as_str()).map(str::to_string)
}

/// In `t[key]` (a string), `old` becomes `new`.
fn swap_key(t: &mut toml_edit::Table, key: &str, old: &str, new: &str) {
    if let Some(v) = t.get_mut(key).and_then(|i| i.as_value_mut())
        && v.as_str() == Some(old)
    {
        set_str(v, new);
    }
}

/// In the array `t[key]`, every `old` becomes `new`; then duplicates go (the first stays).
fn swap_in_list(t: &mut toml_edit::Table, key: &str, swaps: &[(&str, &str)]) {
    let Some(arr) = t.get_mut(key).and_then(|i| i.as_array_mut()) else { return };
    for v in arr.iter_mut() {
        if let Some((_, new)) = swaps.iter().find(|(old, _)| v.as_str() == Some(*old)) {
            set_str(v, new);
        }
    }
    let mut seen = Vec::new();
    arr.retain(|v| match v.as_str() {
        Some(s) if seen.iter().any(|x: &String| x.eq_ignore_ascii_case(s)) => false,
        Some(s) => {
            seen.push(s.to_string());
            true
        }
        None => true,
    });
}

fn list_has(t: &toml_edit::Table, key: &str, want: &str) -> bool {
    t.get(key).and_then(|i| i.as_array()).is_some_and(|a| a.iter().any(|v| v.as_str() == Some(want)))
}

/// Carries a change of addresses or public URL into the user's `gateway.toml`: each value
/// `trove up` derives is replaced where it is still what `trove up` wrote for `old`; everything
/// else (a `[server.tls]` pointed at a purchased certificate, added routes, comments) stays.
/// A plain-HTTP listener turned on or off adds or removes its `[[listen]]` and redirect site.
fn merge_gateway_toml(text: &str, old: &Derived, new: &Derived) -> Result<String, toml_edit::TomlError> {
    use toml_edit::{DocumentMut, Item};
    let mut doc: DocumentMut = text.parse()?;
    let fresh: DocumentMut = gateway_toml(new).parse().expect("trove up writes valid TOML");
    let mut addr_swaps = vec![(old.https.as_str(), new.https.as_str())];
    if let (Some(o), Some(n)) = (&old.http, &new.http) {
        addr_swaps.push((o.as_str(), n.as_str()));
    }
    let http_dropped = old.http.is_some() && new.http.is_none();
    let http_added = old.http.is_none() && new.http.is_some();
    let fresh_http_table = |key: &str, pick: &dyn Fn(&toml_edit::Table) -> bool| {
        fresh.get(key).and_then(Item::as_array_of_tables).and_then(|a| a.iter().find(|t| pick(t)).cloned())
    };

    if let Some(listen) = doc.get_mut("listen").and_then(Item::as_array_of_tables_mut) {
        let mut drop = Vec::new();
        for (i, t) in listen.iter_mut().enumerate() {
            let addr = str_of(t, "addr");
            if http_dropped && addr.as_deref() == old.http.as_deref() {
                drop.push(i);
                continue;
            }
            if let Some((_, n)) = addr_swaps.iter().find(|(o, _)| addr.as_deref() == Some(*o)) {
                swap_key(t, "addr", addr.as_deref().unwrap_or_default(), n);
            }
        }
        for i in drop.into_iter().rev() {
            listen.remove(i);
        }
        if http_added && let Some(t) = fresh_http_table("listen", &|t| str_of(t, "addr") == new.http) {
            listen.push(t);
        }
    }

    if let Some(servers) = doc.get_mut("server").and_then(Item::as_array_of_tables_mut) {
        let mut drop = Vec::new();
        for (i, t) in servers.iter_mut().enumerate() {
            let is_redirect = str_of(t, "redirect_https").as_deref() == Some(old.origin.as_str());
            if is_redirect {
                if http_dropped && old.http.as_deref().is_some_and(|h| list_has(t, "listen", h)) {
                    drop.push(i);
                    continue;
                }
                swap_key(t, "redirect_https", &old.origin, &new.origin);
                swap_in_list(t, "names", &[(old.host.as_str(), new.host.as_str())]);
                swap_in_list(t, "listen", &addr_swaps);
                continue;
            }
            swap_in_list(t, "listen", &addr_swaps);
            if list_has(t, "listen", &new.https) {
                let names: Option<Vec<String>> =
                    t.get("names").and_then(|i| i.as_array()).map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect());
                match t.get_mut("names").and_then(|i| i.as_array_mut()) {
                    // As `trove up` wrote them: the new ones (`localhost` joins or leaves with the host).
                    Some(arr) if names.as_deref() == Some(old.names().as_slice()) => {
                        arr.clear();
                        for n in new.names() {
                            arr.push(n);
                        }
                    }
                    _ => swap_in_list(t, "names", &[(old.host.as_str(), new.host.as_str())]),
                }
            }
            if let Some(tls) = t.get_mut("tls").and_then(Item::as_table_mut) {
                swap_key(tls, "cert", &old.cert, &new.cert);
                swap_key(tls, "key", &old.key, &new.key);
            }
            if let Some(routes) = t.get_mut("route").and_then(Item::as_array_of_tables_mut) {
                for r in routes.iter_mut() {
                    if str_of(r, "upstream").as_deref() == Some(old.upstream.as_str()) {
                        swap_key(r, "upstream", &old.upstream, &new.upstream);
                        swap_key(r, "path", &old.route_path, &new.route_path);
                    }
                }
            }
        }
        for i in drop.into_iter().rev() {
            servers.remove(i);
        }
        if http_added && let Some(t) = fresh_http_table("server", &|t| str_of(t, "redirect_https").is_some()) {
            // Before the HTTPS site, as in a fresh file; the order only matters for the default
            // site of an address, and the two listen on different addresses.
            let rest: Vec<toml_edit::Table> = servers.iter().cloned().collect();
            servers.clear();
            servers.push(t);
            for r in rest {
                servers.push(r);
            }
        }
    }
    Ok(doc.to_string())
}

fn host_of(u: &BaseUrl) -> String {
    let a = u.authority();
    if a.starts_with('[') {
        return a.split(']').next().unwrap_or(a).to_string() + "]";
    }
    a.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_else(|| a.to_string())
}

/// The protocol and cipher settings `tls_setup::tls_for` applies (the first TLS site's), for a
/// server configuration whose certificates are settled later (see `LateCerts`).
fn tls_options(cfg: &trove_gateway::GatewayConfig) -> anyhow::Result<tls::TlsOptions> {
    let mut opts = tls::TlsOptions::default();
    if let Some(site) = cfg.tls_sites.first() {
        if let Some(p) = &site.protocol {
            opts.protocols = tls::parse_ssl_protocol(p)?.0;
        }
        if let Some(c) = &site.cipher_suite {
            opts.apply_cipher_setting(tls::parse_ssl_cipher_suite(c)?.0);
        }
    }
    Ok(opts)
}

/// The gateway's certificates when this start makes new ones: the listeners are bound before
/// the new files are moved into place (a start that cannot bind must change nothing), and the
/// certificates, loaded from their final paths so that SIGHUP reloads them, are set once moved.
/// No handshake happens in between: nothing is accepted before `serve`.
#[derive(Debug, Default)]
struct LateCerts(std::sync::OnceLock<std::sync::Arc<ReloadableCerts>>);

impl rustls::server::ResolvesServerCert for LateCerts {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        self.0.get().and_then(|c| c.resolve(hello))
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let data = args.data.clone();
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create data directory {}", data.display()))?;
    let data = data.canonicalize()?;
    // One `trove up` or `trove server` per data directory: two would serve side by side and
    // overwrite each other's state.
    let mut lock = DataLock::acquire(&data, "trove up")?;
    let saved = UpState::load(&data)?;
    let first_start = saved.is_none();
    let base = saved.clone().unwrap_or(UpState {
        public_url: "https://localhost:8443".into(),
        http: Some("127.0.0.1:8080".into()),
        https: "127.0.0.1:8443".into(),
        server: "127.0.0.1:7990".into(),
        ssh: default_ssh(),
    });
    let https = match &args.https {
        Some(h) => parse_addr(h, "https")?.to_string(),
        None => base.https.clone(),
    };
    // Without --public-url, a public URL that was only the default follows the HTTPS port.
    let derived = |addr: &str| format!("https://localhost:{}", addr.rsplit(':').next().unwrap_or("8443"));
    let public_url = match &args.public_url {
        Some(u) => u.clone(),
        None if base.public_url == derived(&base.https) => derived(&https),
        None => base.public_url.clone(),
    };
    let state = UpState {
        public_url,
        http: match args.http.as_deref() {
            Some("off") => None,
            Some(h) => Some(parse_addr(h, "http")?.to_string()),
            None => base.http,
        },
        https,
        server: match &args.server {
            Some(h) => parse_addr(h, "server")?.to_string(),
            None => base.server,
        },
        ssh: match args.ssh.as_deref() {
            Some("off") => "off".into(),
            Some(h) => parse_addr(h, "ssh")?.to_string(),
            None => base.ssh,
        },
    };
    let public = BaseUrl::parse(&state.public_url).with_context(|| format!("--public-url {:?}", state.public_url))?;
    if public.scheme() != "https" {
        bail!("--public-url {} must be https: trove up always serves HTTPS (use `trove server` alone for plain HTTP)", state.public_url);
    }
    let context = public.path().trim_end_matches('/').to_string();
    let stored_context = if context.is_empty() { None } else { Some(ContextPath::parse(&context)?) };
    let env_password = std::env::var("TROVE_ADMIN_PASSWORD").ok().filter(|p| !p.is_empty());

    // A start that fails must change nothing (issue 15): first check everything and make what
    // is new beside its place (`Staged`), then bind every listener, and only then commit the
    // files and the store.
    let tls_dir = data.join("tls");
    let (ca_crt, crt, key) = (tls_dir.join("ca.crt"), tls_dir.join("server.crt"), tls_dir.join("server.key"));
    let new_certs = plan_certs(&tls_dir, &public)?;
    let wanted = Derived::new(&state, &crt, &key)?;
    let gw_path = data.join(GATEWAY_FILE);
    let old_text = match std::fs::read_to_string(&gw_path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", gw_path.display())),
    };
    let gw_text = match (&old_text, &saved) {
        (None, _) => gateway_toml(&wanted),
        (Some(t), Some(prev)) if prev != &state => {
            let old = Derived::new(prev, &crt, &key)?;
            merge_gateway_toml(t, &old, &wanted).map_err(|e| {
                anyhow::anyhow!("{}: not valid TOML: {e}\nfix it, or move it away to have trove up write a fresh one (nothing was changed)", gw_path.display())
            })?
        }
        // The same state, or a file written by hand before the first `trove up`: it is the
        // user's, as it is.
        (Some(t), _) => t.clone(),
    };
    let gw_changed = old_text.as_deref() != Some(gw_text.as_str());
    let (gw_cfg, diags) = trove_gateway::config::toml::parse_str(&gw_path, &gw_text);
    if diags.has_errors() {
        let errors: Vec<String> = diags.items.iter().filter(|d| d.severity >= trove_gateway::Severity::Error).map(|d| d.to_string()).collect();
        bail!("{}\n{} has errors; fix it, or move it away to have trove up write a fresh one (nothing was changed)", errors.join("\n"), gw_path.display());
    }
    for d in diags.items.iter().filter(|d| d.severity >= trove_gateway::Severity::Warning) {
        eprintln!("{d}");
    }

    let mut staged = Staged::default();
    if let Some(ca) = &new_certs.ca {
        std::fs::create_dir_all(&tls_dir).with_context(|| format!("cannot create {}", tls_dir.display()))?;
        staged.file(&tls_dir.join("ca.key"), ca.key_pem.as_bytes(), true)?;
        staged.file(&ca_crt, ca.cert_pem.as_bytes(), false)?;
    }
    if let Some((cert, _)) = &new_certs.server {
        staged.file(&key, cert.key_pem.as_bytes(), true)?;
        staged.file(&crt, cert.cert_pem.as_bytes(), false)?;
    }
    if gw_changed {
        if let Some(old) = &old_text {
            staged.file(&data.join(format!("{GATEWAY_FILE}.bak")), old.as_bytes(), false)?;
        }
        staged.file(&gw_path, gw_text.as_bytes(), false)?;
    }
    if saved.as_ref() != Some(&state) {
        // Last: `up.toml` says what the files above were made for.
        staged.file(&data.join(STATE_FILE), state.to_text()?.as_bytes(), false)?;
    }

    // The certificates as they will be once committed: staged ones in place of the files they
    // replace, so that a bad certificate or key stops the start here.
    let mut check_cfg = gw_cfg.clone();
    let mut certs_staged = false;
    for s in &mut check_cfg.tls_sites {
        if let Some(p) = staged.staged_for(&s.cert) {
            s.cert = p.to_path_buf();
            certs_staged = true;
        }
        if let Some(p) = s.key.as_deref().and_then(|k| staged.staged_for(k)) {
            s.key = Some(p.to_path_buf());
            certs_staged = true;
        }
    }
    let checked = trove_gateway::tls_setup::tls_for(&check_cfg)
        .map_err(|e| anyhow::anyhow!("{e} (nothing was changed)"))?
        .context("the gateway config has no TLS site; give the HTTPS site a [server.tls] (nothing was changed)")?;
    for w in &checked.warnings {
        eprintln!("trove up: WARNING: {w}");
    }
    let (tls_config, late, mut certs) = if certs_staged {
        let late = std::sync::Arc::new(LateCerts::default());
        (build_server_config_with_resolver(late.clone(), &tls_options(&gw_cfg)?)?, Some(late), None)
    } else {
        (checked.server_config, None, Some(checked.certs))
    };
    crate::logging::init(&gw_cfg.log.level, &gw_cfg.log.error)?;

    let mut server_cfg = trove_server::ServerConfig::new(&data);
    server_cfg.listen = state.server.parse()?;
    if state.ssh != "off" {
        server_cfg.ssh = Some(trove_server::ssh::SshSettings::new(state.ssh.parse()?));
    }
    server_cfg.trusted_proxies = vec!["127.0.0.0/8".parse()?, "::1/128".parse()?];
    if let Some(url) = &args.database {
        crate::cmd_server::apply_database_flag(&mut server_cfg, url)?;
    }

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        // The store: what is there decides what to set; the server checks git. The database is
        // opened (made, on a first start) before the ports, so that `trove admin` works as soon
        // as a port answers; a first start's stays without an admin account until the commit, so
        // that a start that fails never loses the password shown once.
        let store = trove_server::open_store(&server_cfg).with_context(|| format!("cannot open the data directory {}", data.display()))?;
        let admin = UserName::parse("admin").expect("valid name");
        let admin_exists = store.sync(|s| s.user(&admin))?.is_some();
        // The first password, checked before anything is committed; later starts ignore the
        // variable (and say so), even a password it would refuse.
        let first_password = match (admin_exists, &env_password) {
            (true, _) => None,
            (false, Some(pw)) => Some((Password::new(pw).map_err(|e| anyhow::anyhow!("TROVE_ADMIN_PASSWORD: {e} (nothing was changed)"))?, None)),
            (false, None) => {
                let pw = random_password();
                Some((Password::new(&pw)?, Some(pw)))
            }
        };
        let stored_base = store.sync(|s| s.base_url())?;
        // An explicit --public-url always wins, also over a base URL changed with `trove admin`
        // since: it is the fix `trove doctor` gives for a base URL that differs from it.
        let set_base = first_start || args.public_url.is_some() || stored_base.is_none() || saved.as_ref().is_some_and(|s| s.public_url != state.public_url);
        let base_before = stored_base.as_ref().map(|b| b.to_string());
        server_cfg.base_url = if set_base { Some(public.clone()) } else { stored_base };
        server_cfg.context_path = Some(stored_context.clone().unwrap_or_default());
        let listen = server_cfg.listen;
        let server = trove_server::Server::open(server_cfg).context(
            "cannot start the Git server (nothing was changed); if the SSH port is taken, pick another with --ssh ADDR or turn SSH off with --ssh off",
        )?;

        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| {
            format!("cannot listen on {listen} for the Git server; is something else there? pick another port with --server ADDR (nothing was changed)")
        })?;
        let server_addr = listener.local_addr()?;
        let gw = trove_gateway::Gateway::bind(gw_cfg.clone(), Some(tls_config))
            .await
            .map_err(|e| anyhow::anyhow!("cannot start the gateway: {e}\npick other ports with --https ADDR and --http ADDR|off (nothing was changed)"))?;
        // Bound addresses in config order, with whether each speaks TLS (a user's gateway.toml
        // may list its listeners in any order, or add more).
        let bound: Vec<(SocketAddr, bool)> = gw.local_addrs().into_iter().zip(gw_cfg.listeners.iter().map(|l| l.tls)).collect();
        let https_addr = bound.iter().find(|(_, tls)| *tls).map(|(a, _)| *a).context("the gateway config has no TLS listener")?;

        // Everything is bound and checked: commit.
        staged.commit()?;
        let mut shown_password = None;
        store.sync(|s| {
            // In the audit log as `trove admin`'s changes are: by the user running the command.
            let audit = trove_server::audit::AuditLog::new(s.data_dir());
            let actor = crate::cmd_admin::cli_actor();
            if let Some((password, shown)) = first_password {
                s.create_user(&admin, &password, GlobalPermission::SysAdmin)?;
                let details = serde_json::json!({"global": "SYS_ADMIN", "by": "trove up"});
                audit.record(s, &actor, None, trove_server::audit::Action::UserCreate, &trove_server::audit::target::user(&admin), details);
                shown_password = shown;
            }
            if set_base {
                s.set_base_url(Some(&public))?;
                if base_before.as_deref() != Some(public.as_str()) {
                    let details = serde_json::json!({"from": base_before, "to": public.as_str(), "by": "trove up"});
                    audit.record(s, &actor, None, trove_server::audit::Action::SettingsUpdate, &trove_server::audit::target::setting("base_url"), details);
                }
            }
            s.set_context_path(stored_context.as_ref())
        })?;
        if let Some(late) = &late {
            let loaded = trove_gateway::tls_setup::tls_for(&gw_cfg)?.context("the gateway config has no TLS site")?;
            let _ = late.0.set(loaded.certs.clone());
            certs = Some(loaded.certs);
        }
        let certs = certs.expect("set above");
        let mut addrs: Vec<(&str, String)> = bound.iter().map(|(a, tls)| (if *tls { "https" } else { "http" }, a.to_string())).collect();
        addrs.push(("server", server_addr.to_string()));
        if let Some(a) = server.ssh_addr() {
            addrs.push(("ssh", a.to_string()));
        }
        lock.record(&addrs)?;

        // The banner is the command's output (stdout); logs and warnings go to stderr.
        let public_s = public.as_str().trim_end_matches('/').to_string();
        let host = public.authority().to_string();
        let d = data.display();
        println!();
        println!("Trove is up.");
        println!("  URL:          {public_s}");
        println!("  Git server:   http://{server_addr} (behind the gateway on {https_addr})");
        let passwd = format!("trove admin --data {d} user passwd admin");
        match (&shown_password, admin_exists, &env_password) {
            (Some(pw), _, _) => println!("  Admin login:  admin / {pw}   (shown once; change it with `{passwd}`)"),
            (None, false, _) => println!("  Admin login:  admin / the password in TROVE_ADMIN_PASSWORD"),
            (None, true, Some(_)) => println!(
                "  Admin login:  admin (password as set before; TROVE_ADMIN_PASSWORD is ignored: it only sets the first password. Change it with `{passwd}`)"
            ),
            (None, true, None) => println!("  Admin login:  admin (password as set before; forgotten? set a new one with `{passwd}`)"),
        }
        if let Some(a) = server.ssh_addr() {
            println!("  SSH:          ssh://git@{}:{}  (add your public key on your account page)", host_of(&public), a.port());
            for (alg, fp) in server.ssh_fingerprints() {
                println!("                host key {alg} {fp}");
            }
        }
        println!("  CA:           {}  (trust this, not GIT_SSL_NO_VERIFY)", ca_crt.display());
        if new_certs.ca.is_some() {
            println!("                (a new local certificate authority, valid 10 years)");
        }
        if let Some((_, hosts)) = &new_certs.server {
            println!("  Certificate:  {} (new, for {}, valid 397 days)", crt.display(), hosts.join(", "));
        }
        if gw_changed && old_text.is_some() {
            println!("  Gateway:      {} updated for the new addresses; your other settings kept (previous: {GATEWAY_FILE}.bak)", gw_path.display());
        }
        println!();
        let tp = trove_store::ProjectKey::parse("TP").expect("valid key");
        let owner = trove_store::Owner::Project(tp);
        let (project_exists, repo_exists) = store.sync(|s| {
            Ok::<_, trove_store::StoreError>((
                s.project_info(&owner)?.is_some(),
                s.repo(&owner, &trove_store::RepoSlug::parse("test").expect("valid slug"))?.is_some(),
            ))
        })?;
        drop(store);
        if repo_exists {
            println!("Clone the repository:");
        } else {
            println!("Make a repository and clone it:");
            if !project_exists {
                println!("  trove admin --data {d} project add TP");
            }
            println!("  trove admin --data {d} repo add TP/test");
        }
        // `clone -c` keeps the setting in the clone, so fetch and push trust the CA too.
        println!("  git clone -c http.sslCAInfo={} https://admin@{host}{context}/scm/tp/test.git", ca_crt.display());
        println!();
        println!("Data: {d}   Gateway config: {}   Stop: Ctrl-C", gw_path.display());
        use std::io::Write as _;
        let _ = std::io::stdout().flush();

        let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
        let mut srv_stop = stop_tx.subscribe();
        let mut gw_stop = stop_tx.subscribe();
        let srv = server.clone();
        let srv_task = tokio::spawn(async move {
            srv.serve(listener, async move {
                let _ = srv_stop.recv().await;
            })
            .await
        });
        let gw_task = tokio::spawn(gw.serve(async move {
            let _ = gw_stop.recv().await;
        }));
        tokio::spawn(async move {
            let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
            while hup.recv().await.is_some() {
                match certs.reload() {
                    Ok(_) => tracing::warn!("certificates reloaded"),
                    Err(e) => tracing::error!("certificate reload failed, keeping the old ones: {e}"),
                }
            }
        });
        crate::cmd_gateway::shutdown_signal().await;
        eprintln!("trove up: stopping; letting open requests finish");
        let _ = stop_tx.send(());
        let _ = gw_task.await;
        match srv_task.await {
            Ok(r) => r.context("git server")?,
            Err(e) => bail!("git server task failed: {e}"),
        }
        eprintln!("trove up: stopped");
        drop(lock);
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_names_cover_the_public_host_and_loopback() {
        let (h, ips) = cert_names(&BaseUrl::parse("https://git.example.com:8443/stash").unwrap());
        assert_eq!(h, ["git.example.com", "localhost"]);
        assert_eq!(ips.len(), 2);
        let (h, ips) = cert_names(&BaseUrl::parse("https://10.0.0.5").unwrap());
        assert_eq!(h, ["localhost"]);
        assert_eq!(ips.len(), 3);
    }

    #[test]
    fn generated_gateway_config_is_valid_and_routes_the_context_path() {
        let state = UpState {
            public_url: "https://localhost:8443/stash".into(),
            http: Some("127.0.0.1:8080".into()),
            https: "127.0.0.1:8443".into(),
            server: "127.0.0.1:7990".into(),
            ssh: default_ssh(),
        };
        let text = gateway_toml(&Derived::new(&state, Path::new("/d/server.crt"), Path::new("/d/server.key")).unwrap());
        let (cfg, d) = trove_gateway::config::toml::parse_str(Path::new("gateway.toml"), &text);
        assert!(!d.has_errors(), "{:?}\n{text}", d.items);
        assert_eq!(cfg.listeners.len(), 2);
        let https = cfg.servers.iter().find(|s| s.tls_site.is_some()).unwrap();
        assert_eq!(https.routes[0].path, "/stash");
        assert_eq!(https.routes[0].upstream.as_ref().unwrap().url, "http://127.0.0.1:7990/stash");
        let redirect = cfg.servers.iter().find(|s| s.redirect_https.is_some()).unwrap();
        assert_eq!(redirect.redirect_https.as_deref(), Some("https://localhost:8443"));
    }

    fn state(public: &str, http: Option<&str>, https: &str) -> UpState {
        UpState { public_url: public.into(), http: http.map(str::to_string), https: https.into(), server: "127.0.0.1:7990".into(), ssh: default_ssh() }
    }

    fn derived(s: &UpState) -> Derived {
        Derived::new(s, Path::new("/d/tls/server.crt"), Path::new("/d/tls/server.key")).unwrap()
    }

    fn parse(text: &str) -> trove_gateway::GatewayConfig {
        let (cfg, d) = trove_gateway::config::toml::parse_str(Path::new("gateway.toml"), text);
        assert!(!d.has_errors(), "{:?}\n{text}", d.items);
        cfg
    }

    #[test]
    fn a_local_public_url_names_localhost_once() {
        let text = gateway_toml(&derived(&state("https://localhost:8443", Some("127.0.0.1:8080"), "127.0.0.1:8443")));
        assert!(text.contains("names = [\"localhost\"]\nlisten = [\"127.0.0.1:8443\"]"), "{text}");
    }

    #[test]
    fn a_purchased_certificate_and_comments_survive_two_public_url_changes() {
        let s1 = state("https://localhost:8443", Some("127.0.0.1:8080"), "127.0.0.1:8443");
        let mut text = gateway_toml(&derived(&s1));
        text = text.replace("cert = \"/d/tls/server.crt\"", "# bought from the CA\ncert = \"/etc/ssl/git.crt\"");
        text = text.replace("key = \"/d/tls/server.key\"", "key = \"/etc/ssl/git.key\"");
        text.push_str("\n[[server.route]]\npath = \"/extra\"\nupstream = \"http://127.0.0.1:9000/\"\n");
        let s2 = state("https://git.example.com:8443/stash", Some("127.0.0.1:8080"), "127.0.0.1:8443");
        let s3 = state("https://git.example.org", Some("0.0.0.0:80"), "0.0.0.0:443");
        let t2 = merge_gateway_toml(&text, &derived(&s1), &derived(&s2)).unwrap();
        let t3 = merge_gateway_toml(&t2, &derived(&s2), &derived(&s3)).unwrap();
        assert!(t3.contains("# bought from the CA\ncert = \"/etc/ssl/git.crt\""), "{t3}");
        assert!(t3.contains("# git pushes and clones"), "{t3}");
        let cfg = parse(&t3);
        let site = cfg.tls_sites.first().unwrap();
        assert_eq!(site.cert, Path::new("/etc/ssl/git.crt"));
        assert_eq!(site.key.as_deref(), Some(Path::new("/etc/ssl/git.key")));
        assert_eq!(site.names, ["git.example.org", "localhost"]);
        let addrs: Vec<String> = cfg.listeners.iter().map(|l| l.addr.to_string()).collect();
        assert_eq!(addrs, ["0.0.0.0:443", "0.0.0.0:80"]);
        let https = cfg.servers.iter().find(|s| s.tls_site.is_some()).unwrap();
        assert_eq!(https.routes[0].path, "/");
        assert_eq!(https.routes[0].upstream.as_ref().unwrap().url, "http://127.0.0.1:7990/");
        assert_eq!(https.routes[1].path, "/extra", "the user's own route stays");
        let redirect = cfg.servers.iter().find(|s| s.redirect_https.is_some()).unwrap();
        assert_eq!(redirect.redirect_https.as_deref(), Some("https://git.example.org"));
    }

    #[test]
    fn turning_plain_http_off_and_on_removes_and_adds_its_listener_and_redirect() {
        let on = state("https://localhost:8443", Some("127.0.0.1:8080"), "127.0.0.1:8443");
        let off = state("https://localhost:8443", None, "127.0.0.1:8443");
        let text = gateway_toml(&derived(&on));
        let t_off = merge_gateway_toml(&text, &derived(&on), &derived(&off)).unwrap();
        let cfg = parse(&t_off);
        assert_eq!(cfg.listeners.len(), 1, "{t_off}");
        assert!(cfg.servers.iter().all(|s| s.redirect_https.is_none()), "{t_off}");
        let t_on = merge_gateway_toml(&t_off, &derived(&off), &derived(&on)).unwrap();
        let cfg = parse(&t_on);
        assert_eq!(cfg.listeners.len(), 2, "{t_on}");
        assert_eq!(cfg.servers.iter().filter(|s| s.redirect_https.is_some()).count(), 1, "{t_on}");
    }

    #[test]
    fn values_the_user_changed_are_not_touched() {
        let s1 = state("https://localhost:8443", Some("127.0.0.1:8080"), "127.0.0.1:8443");
        let text = gateway_toml(&derived(&s1)).replace("upstream = \"http://127.0.0.1:7990/\"", "upstream = \"http://10.0.0.9:7990/\"");
        let s2 = state("https://localhost:9443/stash", Some("127.0.0.1:8080"), "127.0.0.1:9443");
        let merged = merge_gateway_toml(&text, &derived(&s1), &derived(&s2)).unwrap();
        let cfg = parse(&merged);
        let https = cfg.servers.iter().find(|s| s.tls_site.is_some()).unwrap();
        assert_eq!(https.routes[0].upstream.as_ref().unwrap().url, "http://10.0.0.9:7990/");
        assert_eq!(https.routes[0].path, "/", "a route the user repointed keeps its path too");
        assert_eq!(cfg.listeners[0].addr.to_string(), "127.0.0.1:9443");
    }
}

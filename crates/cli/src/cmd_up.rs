//! `trove up`: the seed's whole set-up in one command. The Git server and the TLS gateway in
//! one process, on embedded defaults, with a local CA, a server certificate and an admin
//! account made on first start, and everything reused on the next.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use trove_gateway::tls;
use trove_store::{BaseUrl, ContextPath, GlobalPermission, Password, Store, UserName};

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
}

/// What `trove up` set up in a data directory; `trove doctor --data` reads it too.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct UpState {
    pub public_url: String,
    pub http: Option<String>,
    pub https: String,
    pub server: String,
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
    fn save(&self, data: &Path) -> anyhow::Result<()> {
        let p = data.join(STATE_FILE);
        let text = format!("# written by `trove up`; flags given to `trove up` override these\n{}", toml::to_string(self)?);
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))
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
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut r = rand::thread_rng();
    (0..20).map(|_| CHARS[r.gen_range(0..CHARS.len())] as char).collect()
}

/// Make (or keep) the CA and a server certificate covering the public host.
fn ensure_certs(data: &Path, public: &BaseUrl) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let dir = data.join("tls");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ca_crt = dir.join("ca.crt");
    let (crt, key) = (dir.join("server.crt"), dir.join("server.key"));
    if !ca_crt.exists() {
        let ca = tls::make_ca("Trove local CA", 3650)?;
        tls::write_pair(&dir, "ca.crt", "ca.key", &ca.cert_pem, &ca.key_pem, true)?;
        eprintln!("trove up: made a local certificate authority: {}", ca_crt.display());
    }
    let (hosts, ips) = cert_names(public);
    let covers = std::fs::read(&crt).ok().and_then(|pem| {
        let certs = tls::load_certificates(&crt, tls::FileRole::Certificate).ok()?;
        let _ = pem;
        let info = tls::CertInfo::from_der(certs.first()?.as_ref()).ok()?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64 + 30 * 86400;
        Some(hosts.iter().all(|h| info.covers(h)) && !info.is_expired_at(now))
    });
    if covers != Some(true) {
        let ca = tls::load_ca(&dir)?;
        let cert = tls::issue(&ca, &hosts, &ips, 397, tls::KeyKind::EcdsaP256)?;
        tls::write_pair(&dir, "server.crt", "server.key", &cert.cert_pem, &cert.key_pem, true)?;
        eprintln!("trove up: issued a server certificate for {} (valid 397 days)", hosts.join(", "));
    }
    Ok((ca_crt, crt, key))
}

fn gateway_toml(state: &UpState, crt: &Path, key: &Path, public: &BaseUrl, context: &str) -> String {
    let server: SocketAddr = state.server.parse().expect("validated");
    let route_target = format!("http://{server}{context}");
    let path = if context.is_empty() { "/".to_string() } else { context.to_string() };
    let upstream = if context.is_empty() { format!("{route_target}/") } else { route_target };
    let mut s = String::new();
    s.push_str("# The gateway `trove up` runs. Edit freely: `trove up` keeps this file unless its\n");
    s.push_str("# addresses change. Every key is documented in docs/gateway.md.\n\n");
    s.push_str(&format!("[[listen]]\naddr = \"{}\"\ntls = true\n\n", state.https));
    if let Some(h) = &state.http {
        s.push_str(&format!("[[listen]]\naddr = \"{h}\"\n\n"));
        s.push_str(&format!(
            "# Plain HTTP only redirects to HTTPS.\n[[server]]\nnames = [\"{host}\"]\nlisten = [\"{h}\"]\nredirect_https = \"{origin}\"\n\n",
            host = host_of(public),
            origin = format!("{}://{}", public.scheme(), public.authority()),
        ));
    }
    s.push_str(&format!(
        "[[server]]\nnames = [\"{host}\", \"localhost\"]\nlisten = [\"{https}\"]\n\n[server.tls]\ncert = \"{crt}\"\nkey = \"{key}\"\n\n\
         [[server.route]]\npath = \"{path}\"\nupstream = \"{upstream}\"\nconnect_timeout = 5\n# git pushes and clones of big repositories: 300 s between bytes, as the seed has it\ntimeout = 300\n",
        host = host_of(public),
        https = state.https,
        crt = crt.display(),
        key = key.display(),
    ));
    s
}

fn host_of(u: &BaseUrl) -> String {
    let a = u.authority();
    if a.starts_with('[') {
        return a.split(']').next().unwrap_or(a).to_string() + "]";
    }
    a.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_else(|| a.to_string())
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let data = args.data.clone();
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create data directory {}", data.display()))?;
    let data = data.canonicalize()?;
    let saved = UpState::load(&data)?;
    let first_start = saved.is_none();
    let base = saved.clone().unwrap_or(UpState {
        public_url: "https://localhost:8443".into(),
        http: Some("127.0.0.1:8080".into()),
        https: "127.0.0.1:8443".into(),
        server: "127.0.0.1:7990".into(),
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
    };
    let public = BaseUrl::parse(&state.public_url).with_context(|| format!("--public-url {:?}", state.public_url))?;
    if public.scheme() != "https" {
        bail!("--public-url {} must be https: trove up always serves HTTPS (use `trove server` alone for plain HTTP)", state.public_url);
    }
    let context = public.path().trim_end_matches('/').to_string();

    // The store: admin account and base URL.
    let store = Store::open(&data).with_context(|| format!("cannot open the data directory {}", data.display()))?;
    let admin = UserName::parse("admin").expect("valid name");
    let mut printed_password = None;
    if store.user(&admin)?.is_none() {
        let (pw, shown) = match std::env::var("TROVE_ADMIN_PASSWORD") {
            Ok(p) if !p.is_empty() => (p, false),
            _ => (random_password(), true),
        };
        let password = Password::new(&pw).map_err(|e| anyhow::anyhow!("TROVE_ADMIN_PASSWORD: {e}"))?;
        store.create_user(&admin, &password, GlobalPermission::SysAdmin)?;
        if shown {
            printed_password = Some(pw);
        }
    }
    // An explicit --public-url always wins, also over a base URL changed with `trove admin`
    // since: it is the fix `trove doctor` gives for a base URL that differs from it.
    if first_start || args.public_url.is_some() || store.base_url()?.is_none() || saved.as_ref().is_some_and(|s| s.public_url != state.public_url) {
        store.set_base_url(Some(&public))?;
    }
    let stored_context = if context.is_empty() { None } else { Some(ContextPath::parse(&context)?) };
    store.set_context_path(stored_context.as_ref())?;
    drop(store);

    let (ca, crt, key) = ensure_certs(&data, &public)?;
    let gw_path = data.join(GATEWAY_FILE);
    if saved.as_ref() != Some(&state) || !gw_path.exists() {
        let fresh = gateway_toml(&state, &crt, &key, &public, &context);
        if let Ok(old) = std::fs::read_to_string(&gw_path)
            && old != fresh
        {
            // Addresses or the public URL changed: a fresh config, the old one kept aside.
            let bak = data.join(format!("{GATEWAY_FILE}.bak"));
            std::fs::write(&bak, old).with_context(|| format!("cannot write {}", bak.display()))?;
            eprintln!("trove up: addresses changed; wrote a fresh {} (the previous one is {})", gw_path.display(), bak.display());
        }
        std::fs::write(&gw_path, fresh).with_context(|| format!("cannot write {}", gw_path.display()))?;
    }
    state.save(&data)?;

    let (gw_cfg, diags) = match trove_gateway::config::load(&gw_path) {
        Ok(x) => x,
        Err(e) => bail!("{e}\n{} has errors; fix it or delete it to have trove up write a fresh one", gw_path.display()),
    };
    for d in diags.items.iter().filter(|d| d.severity >= trove_gateway::Severity::Warning) {
        eprintln!("{d}");
    }
    crate::logging::init(&gw_cfg.log.level, &gw_cfg.log.error)?;

    let mut server_cfg = trove_server::ServerConfig::new(&data);
    server_cfg.listen = state.server.parse()?;
    server_cfg.trusted_proxies = vec!["127.0.0.0/8".parse()?, "::1/128".parse()?];

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let server = trove_server::Server::open(server_cfg).context("cannot start the Git server")?;
        let listener = tokio::net::TcpListener::bind(server.listen_addr())
            .await
            .with_context(|| format!("cannot listen on {} for the Git server; is something else there? use --server ADDR", server.listen_addr()))?;
        let server_addr = listener.local_addr()?;
        let tls = trove_gateway::tls_setup::tls_for(&gw_cfg)?.context("the gateway config has no TLS site")?;
        for w in &tls.warnings {
            eprintln!("trove up: WARNING: {w}");
        }
        let certs = tls.certs.clone();
        let gw =
            trove_gateway::Gateway::bind(gw_cfg, Some(tls.server_config)).await.context("cannot start the gateway; use --https/--http to pick other ports")?;
        let https_addr = gw.local_addrs()[0];

        let public_s = public.as_str().trim_end_matches('/').to_string();
        let host = public.authority().to_string();
        println!();
        println!("Trove is up.");
        println!("  URL:          {public_s}");
        println!("  Git server:   http://{server_addr} (behind the gateway on {https_addr})");
        match &printed_password {
            Some(pw) => println!("  Admin login:  admin / {pw}   (shown once; change it with `trove admin --data {} user passwd admin`)", data.display()),
            None if first_start => println!("  Admin login:  admin / the password in TROVE_ADMIN_PASSWORD"),
            None => println!("  Admin login:  admin (password as set before)"),
        }
        println!("  CA:           {}  (trust this, not GIT_SSL_NO_VERIFY)", ca.display());
        println!();
        println!("Make a repository and clone it:");
        println!("  trove admin --data {} project add TP", data.display());
        println!("  trove admin --data {} repo add TP/test", data.display());
        // `clone -c` keeps the setting in the clone, so fetch and push trust the CA too.
        println!("  git clone -c http.sslCAInfo={} https://admin@{host}{context}/scm/tp/test.git", ca.display());
        println!();
        println!("Data: {}   Gateway config: {}   Stop: Ctrl-C", data.display(), gw_path.display());

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
        };
        let public = BaseUrl::parse(&state.public_url).unwrap();
        let text = gateway_toml(&state, Path::new("/d/server.crt"), Path::new("/d/server.key"), &public, "/stash");
        let (cfg, d) = trove_gateway::config::toml::parse_str(Path::new("gateway.toml"), &text);
        assert!(!d.has_errors(), "{:?}\n{text}", d.items);
        assert_eq!(cfg.listeners.len(), 2);
        let https = cfg.servers.iter().find(|s| s.tls_site.is_some()).unwrap();
        assert_eq!(https.routes[0].path, "/stash");
        assert_eq!(https.routes[0].upstream.as_ref().unwrap().url, "http://127.0.0.1:7990/stash");
        let redirect = cfg.servers.iter().find(|s| s.redirect_https.is_some()).unwrap();
        assert_eq!(redirect.redirect_https.as_deref(), Some("https://localhost:8443"));
    }
}

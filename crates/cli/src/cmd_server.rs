//! `trove server`: run the Git server (Stash's part) until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use trove_server::{DEFAULT_DATA_DIR, ServerConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (trove.toml; every key is documented in docs/server.md).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory: repositories and the metadata database. Overrides `data_dir` in the
    /// configuration. Default ./trove-data.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Address to listen on, `IP:PORT` or just `PORT` (on 127.0.0.1). Overrides `listen` in the
    /// configuration. Default 127.0.0.1:7990.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// PostgreSQL for Data Center mode, `postgres://user@host:5432/dbname`; overrides
    /// `[database] url`. The password comes from `[database] password_file` or
    /// TROVE_DATABASE_PASSWORD, never from the command line (`ps` shows it to everyone).
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Serve git over SSH on this address, `IP:PORT` or just `PORT` (on 127.0.0.1); overrides
    /// `[ssh] listen`. Default: SSH only if trove.toml has `[ssh] listen`.
    #[arg(long, value_name = "ADDR")]
    ssh: Option<String>,
}

/// `--database URL` into the configuration, keeping the file's other `[database]` settings.
pub fn apply_database_flag(config: &mut ServerConfig, url: &str) -> anyhow::Result<()> {
    if trove_server::url_has_password(url) {
        anyhow::bail!(
            "--database: the URL holds a password, which `ps` shows to every user of this machine; put it in a file named by [database] password_file (mode 600) or in {}",
            trove_server::DATABASE_PASSWORD_ENV
        );
    }
    let mut db = trove_server::DatabaseSettings::new(url).map_err(|m| anyhow::anyhow!("--database: {m}"))?;
    if let Some(old) = config.database.take() {
        db.password_file = old.password_file;
        db.pool_size = old.pool_size;
        db.timeout = old.timeout;
    }
    config.database = Some(db);
    Ok(())
}

/// `7990` → `127.0.0.1:7990`; `0.0.0.0:7990` as is.
fn parse_listen(s: &str) -> anyhow::Result<std::net::SocketAddr> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().with_context(|| format!("--listen {s:?} is not IP:PORT (like 127.0.0.1:7990) or a port number"))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => ServerConfig::load(path)?,
        None => ServerConfig::new(DEFAULT_DATA_DIR),
    };
    if let Some(d) = args.data {
        config.data_dir = d;
    }
    if let Some(l) = &args.listen {
        config.listen = parse_listen(l)?;
    }
    if let Some(url) = &args.database {
        apply_database_flag(&mut config, url)?;
    }
    if let Some(s) = &args.ssh {
        let addr = parse_listen(s).map_err(|_| anyhow::anyhow!("--ssh {s:?} is not IP:PORT (like 0.0.0.0:7999) or a port number"))?;
        match &mut config.ssh {
            Some(settings) => settings.listen = addr,
            None => config.ssh = Some(trove_server::ssh::SshSettings::new(addr)),
        }
    }
    init_logging();
    // One server per data directory: a second one on the same SQLite database would serve and
    // write beside the first (Data Center mode shares the database, never the data directory).
    let data = config.data_dir.clone();
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create the data directory {}", data.display()))?;
    let mut lock = crate::data_lock::DataLock::acquire(&data, "trove server")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let server = trove_server::Server::open(config)?;
        let addr = server.listen_addr();
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| trove_server::ServerError::Bind { addr, source })?;
        lock.record(&[("http", listener.local_addr()?.to_string())])?;
        server.serve(listener, shutdown_signal()).await?;
        drop(lock);
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TROVE_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hyper=warn,h2=warn"));
    use std::io::IsTerminal as _;
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).try_init();
}

/// Resolves on Ctrl-C or SIGTERM; open requests then finish before the server stops.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down; waiting for open requests to finish");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_accepts_a_port_or_an_address() {
        assert_eq!(parse_listen("7990").unwrap().to_string(), "127.0.0.1:7990");
        assert_eq!(parse_listen("0.0.0.0:8080").unwrap().to_string(), "0.0.0.0:8080");
        assert_eq!(parse_listen("[::1]:7990").unwrap().to_string(), "[::1]:7990");
        assert!(parse_listen("localhost").is_err());
        assert!(parse_listen("99999").is_err());
    }
}

//! `trove gateway`: run the reverse proxy from a TOML or Apache httpd.conf file, or check one.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use trove_gateway::config::{self, LogDest, Severity};

#[derive(clap::Args)]
pub struct Args {
    /// Config file to run: `*.toml` (Trove's format) or an Apache httpd.conf.
    #[arg(long, value_name = "FILE", conflicts_with = "check")]
    config: Option<PathBuf>,
    /// Validate a config file, print the normalised result or every error, and exit.
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
    /// Access log as JSON lines instead of the LogFormat.
    #[arg(long, value_name = "FORMAT", value_parser = ["apache", "json"], default_value = "apache")]
    log_format: String,
}

fn print_diagnostics(d: &trove_gateway::Diagnostics, min: Severity) {
    for item in &d.items {
        if item.severity >= min {
            eprintln!("{item}");
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(path) = args.check {
        return check(&path);
    }
    let Some(path) = args.config else {
        anyhow::bail!("give --config FILE to run, or --check FILE to validate");
    };
    let (mut cfg, diags) = match config::load(&path) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("trove gateway: {} has errors; nothing started", path.display());
            return Ok(ExitCode::from(2));
        }
    };
    // Ignored directives are listed at start too: an administrator who moves from Apache sees
    // what the gateway will not do (serve /icons/, /server-status, …) without running --check.
    print_diagnostics(&diags, Severity::Ignored);
    cfg.log.json = cfg.log.json || args.log_format == "json";
    crate::logging::init(&cfg.log.level, &cfg.log.error)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(serve(path, cfg))
}

fn check(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    match config::load(path) {
        Ok((cfg, diags)) => {
            print_diagnostics(&diags, Severity::Note);
            match trove_gateway::tls_setup::tls_for(&cfg) {
                Ok(Some(t)) => {
                    for w in &t.warnings {
                        eprintln!("{}: warning: {w}", path.display());
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    eprintln!("{}: error: {e}", path.display());
                    return Ok(ExitCode::from(2));
                }
            }
            print!("{}", cfg.render());
            Ok(ExitCode::SUCCESS)
        }
        Err(config::ConfigError::Invalid { diagnostics }) => {
            print_diagnostics(&diagnostics, Severity::Note);
            let n = diagnostics.errors().count();
            eprintln!("trove gateway: {n} error{} in {}", if n == 1 { "" } else { "s" }, path.display());
            Ok(ExitCode::from(2))
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(2))
        }
    }
}

async fn serve(path: PathBuf, cfg: trove_gateway::GatewayConfig) -> anyhow::Result<ExitCode> {
    let tls = trove_gateway::tls_setup::tls_for(&cfg).with_context(|| format!("{}: TLS set-up failed", path.display()))?;
    let (certs, server_config) = match tls {
        Some(t) => {
            for w in &t.warnings {
                tracing::warn!("{w}");
                eprintln!("trove gateway: WARNING: {w}");
            }
            (Some(t.certs), Some(t.server_config))
        }
        None => (None, None),
    };
    let listeners = cfg.listeners.clone();
    let gw = trove_gateway::Gateway::bind(cfg, server_config).await?;
    for (addr, l) in gw.local_addrs().iter().zip(listeners.iter()) {
        eprintln!("trove gateway: listening on {}://{addr}", if l.tls { "https" } else { "http" });
    }
    if let Some(a) = gw.admin_addr() {
        eprintln!("trove gateway: metrics on http://{a}/metrics");
    }
    let current = gw.current();
    let reload_path = path.clone();
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            match config::load(&reload_path) {
                Ok((new, _)) => {
                    if new.listeners.iter().map(|l| l.addr).ne(current.get().config.listeners.iter().map(|l| l.addr)) {
                        tracing::warn!("listeners changed in {}; they take effect on restart", reload_path.display());
                    }
                    match current.apply(new) {
                        Ok(()) => tracing::warn!("reloaded {}", reload_path.display()),
                        Err(e) => tracing::error!("reload of {} failed, keeping the old config: {e}", reload_path.display()),
                    }
                }
                Err(e) => tracing::error!("reload of {} failed, keeping the old config:\n{e}", reload_path.display()),
            }
            if let Some(c) = &certs {
                match c.reload() {
                    Ok(ws) => ws.iter().for_each(|w| tracing::warn!("{w}")),
                    Err(e) => tracing::error!("certificate reload failed, keeping the old certificates: {e}"),
                }
            }
        }
    });
    gw.serve(shutdown_signal()).await;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[allow(dead_code)]
fn _dest(_: &LogDest) {}

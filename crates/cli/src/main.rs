//! trove: the one binary: `gateway`, `server`, `up`, `cert`, `admin`, `doctor`.
//!
//! Each subcommand lives in its own module with its own `clap::Args` and `run`; this file only
//! dispatches, so the commands can grow independently.

mod alloc;
mod cmd_admin;
mod cmd_apache_config;
mod cmd_cert;
mod cmd_doctor;
mod cmd_gateway;
mod cmd_server;
mod cmd_up;
mod data_lock;
mod logging;

use clap::{Parser, Subcommand};

/// glibc's malloc, with 128-byte-aligned blocks (tokio's tasks) served from slabs: see `alloc`.
#[global_allocator]
static ALLOC: alloc::TroveAlloc = alloc::TroveAlloc;

#[derive(Parser)]
#[command(name = "trove", version, about = "A self-hosted Git server and the TLS reverse proxy in front of it, in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The Git server and the TLS gateway together, on safe defaults: the seed's set-up in one command.
    Up(cmd_up::Args),
    /// Run the reverse proxy (Apache httpd's part): `--config FILE` or `--check FILE`.
    Gateway(cmd_gateway::Args),
    /// Run the Git server (Stash's part).
    Server(cmd_server::Args),
    /// Make and inspect certificates (replaces the seed's openssl steps).
    #[command(subcommand)]
    Cert(cmd_cert::Command),
    /// Administration of a data directory (works while `trove up` or `trove server` runs).
    Admin(cmd_admin::Args),
    /// Check a running set-up end to end and say what to fix (the seed's troubleshooting list).
    Doctor(cmd_doctor::Args),
    /// Print the Apache httpd.conf for keeping Apache in front of the Trove server.
    ApacheConfig(cmd_apache_config::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Gateway(a) => cmd_gateway::run(a),
        Command::Server(a) => cmd_server::run(a),
        Command::Cert(c) => cmd_cert::run(c),
        Command::Admin(a) => cmd_admin::run(a),
        Command::Up(a) => cmd_up::run(a),
        Command::ApacheConfig(a) => cmd_apache_config::run(a),
        Command::Doctor(a) => cmd_doctor::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("trove: error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

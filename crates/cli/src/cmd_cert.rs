//! `trove cert`.

#[derive(clap::Subcommand)]
pub enum Command {}

pub fn run(c: Command) -> anyhow::Result<std::process::ExitCode> {
    match c {}
}

//! The error log: `LogLevel` → a tracing filter, written to stderr or a file.

use trove_gateway::config::LogDest;

/// Apache levels mapped onto tracing's five.
fn filter_for(level: &str) -> &'static str {
    match level {
        "emerg" | "alert" | "crit" | "error" => "error",
        "warn" => "warn",
        "notice" | "info" => "info",
        "debug" => "debug",
        l if l.starts_with("trace") => "trace",
        _ => "warn",
    }
}

pub fn init(level: &str, dest: &LogDest) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TROVE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{lvl},hyper=warn,h2=warn,rustls=warn", lvl = filter_for(level))));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let res = match dest {
        LogDest::File(p) => {
            let f =
                std::fs::OpenOptions::new().create(true).append(true).open(p).map_err(|e| anyhow::anyhow!("{}: cannot open error log: {e}", p.display()))?;
            builder.with_ansi(false).with_writer(std::sync::Mutex::new(f)).try_init()
        }
        LogDest::Stdout => builder.with_writer(std::io::stdout).try_init(),
        _ => builder.with_writer(std::io::stderr).try_init(),
    };
    let _ = res;
    Ok(())
}

//! Logging: mod_log_config's access log (`CustomLog`, `TransferLog`, `LogFormat`) and the
//! core's error log (`ErrorLog`, `LogLevel`, `ErrorLogFormat`).

use super::core::noted;
use super::{Cx, Handler, Line, log_dest};

pub(super) const DIRECTIVES: &[(&str, Handler)] = &[
    ("errorlog", error_log),
    ("customlog", custom_log),
    ("transferlog", custom_log),
    ("logformat", log_format),
    ("loglevel", log_level),
    ("errorlogformat", noted),
];

fn error_log(cx: &mut Cx<'_>, l: &Line) {
    match l.args.first() {
        Some(p) => cx.log.error = log_dest(p, cx.server_root.as_deref()),
        None => cx.d.error(&l.origin, "ErrorLog needs a file", "write for example 'ErrorLog /var/log/trove/error.log'"),
    }
}

/// `CustomLog FILE [FORMAT]` and `TransferLog FILE`: the one access log.
fn custom_log(cx: &mut Cx<'_>, l: &Line) {
    let Some(p) = l.args.first() else {
        cx.d.error(&l.origin, format!("{} needs a file", l.name), "write for example 'CustomLog /var/log/trove/access.log combined'");
        return;
    };
    let fmt = l.args.get(1).cloned().unwrap_or_else(|| "common".into());
    if l.args.len() > 2 {
        cx.d.warn(&l.origin, "conditional CustomLog (env=…) is not supported; every request is logged", "remove the condition");
    }
    if cx.custom_log.is_some() {
        cx.d.warn(&l.origin, "only one access log is supported; this CustomLog replaces the earlier one", "keep one CustomLog line");
    }
    cx.custom_log = Some((p.clone(), fmt, l.origin.clone()));
}

fn log_format(cx: &mut Cx<'_>, l: &Line) {
    match (l.args.first(), l.args.get(1)) {
        (Some(f), Some(nick)) => cx.formats.push((nick.clone(), f.clone())),
        (Some(f), None) => cx.formats.push(("".into(), f.clone())),
        _ => cx.d.error(&l.origin, "LogFormat needs a format", "write for example 'LogFormat \"%h %l %u %t \\\"%r\\\" %>s %b\" common'"),
    }
}

fn log_level(cx: &mut Cx<'_>, l: &Line) {
    let Some(first) = l.args.first() else {
        cx.d.error(&l.origin, "LogLevel needs a level", "write for example 'LogLevel warn'");
        return;
    };
    let lvl = first.to_ascii_lowercase();
    let known = ["emerg", "alert", "crit", "error", "warn", "notice", "info", "debug"];
    if known.contains(&lvl.as_str()) || lvl.starts_with("trace") {
        cx.log.level = lvl;
    } else if lvl.contains(':') {
        cx.d.note(&l.origin, format!("per-module LogLevel '{first}' applies to the whole gateway"));
        cx.log.level = lvl.split(':').nth(1).unwrap_or("warn").to_string();
    } else {
        cx.d.error(&l.origin, format!("unknown LogLevel '{first}'"), "use emerg, alert, crit, error, warn, notice, info, debug or trace1…8");
    }
    if l.args.len() > 1 {
        cx.d.note(&l.origin, "per-module LogLevel settings apply to the whole gateway");
    }
}

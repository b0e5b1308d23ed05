//! mod_reqtimeout: `RequestReadTimeout`, the deadlines and minimum rates for reading a
//! request's head and body (<https://httpd.apache.org/docs/2.4/mod/mod_reqtimeout.html>).

use std::time::Duration;

use super::super::{BodyRate, ConnLimits, Diagnostics};
use super::{Cx, Handler, Line};

pub(super) const DIRECTIVES: &[(&str, Handler)] = &[("requestreadtimeout", request_read_timeout)];

fn request_read_timeout(cx: &mut Cx<'_>, l: &Line) {
    match parse_request_read_timeout(&l.args) {
        Ok(stages) => apply_request_read_timeout(&stages, &mut cx.limits, l, cx.d),
        Err(e) => cx.d.error(&l.origin, e, "write for example 'RequestReadTimeout header=20-40,MinRate=500 body=20,MinRate=500'"),
    }
}

/// One stage of mod_reqtimeout's `RequestReadTimeout`: `timeout[-maxtimeout][,MinRate=rate]`
/// (<https://httpd.apache.org/docs/2.4/mod/mod_reqtimeout.html#requestreadtimeout>).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(super) struct ReadStage {
    pub(super) timeout: u64,
    pub(super) max: Option<u64>,
    pub(super) min_rate: Option<u64>,
}

/// The stages a `RequestReadTimeout` line sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(super) struct ReadStages {
    pub(super) handshake: Option<ReadStage>,
    pub(super) header: Option<ReadStage>,
    pub(super) body: Option<ReadStage>,
}

/// Parse `RequestReadTimeout`'s arguments with Apache's own checks (mod_reqtimeout.c
/// `set_reqtimeout_param`): a range needs `MinRate`, and its maximum must exceed the start.
pub(super) fn parse_request_read_timeout(args: &[String]) -> Result<ReadStages, String> {
    if args.is_empty() {
        return Err("RequestReadTimeout needs at least one of handshake=, header=, body=".into());
    }
    let mut out = ReadStages::default();
    for a in args {
        let Some((stage, spec)) = a.split_once('=') else {
            return Err(format!("RequestReadTimeout argument '{a}' is not stage=timeout[-maxtimeout][,MinRate=rate]"));
        };
        let (times, rate) = match spec.split_once(',') {
            Some((t, r)) => (t, Some(r)),
            None => (spec, None),
        };
        let num = |v: &str| v.trim().parse::<u64>().map_err(|_| format!("RequestReadTimeout '{a}': '{v}' is not a whole number"));
        let (timeout, max) = match times.split_once('-') {
            Some((t, m)) => (num(t)?, Some(num(m)?)),
            None => (num(times)?, None),
        };
        let min_rate = match rate {
            None => None,
            Some(r) => match r.split_once('=') {
                Some((k, v)) if k.trim().eq_ignore_ascii_case("minrate") => Some(num(v)?),
                _ => return Err(format!("RequestReadTimeout '{a}': after the timeout only MinRate=<bytes per second> may follow")),
            },
        };
        if let Some(m) = max {
            if min_rate.is_none_or(|r| r == 0) {
                return Err(format!("RequestReadTimeout '{a}': a timeout range needs MinRate (Apache refuses it too)"));
            }
            if m <= timeout {
                return Err(format!("RequestReadTimeout '{a}': the maximum timeout must be larger than the initial one"));
            }
        }
        let st = Some(ReadStage { timeout, max, min_rate });
        match stage.trim().to_ascii_lowercase().as_str() {
            "handshake" => out.handshake = st,
            "header" => out.header = st,
            "body" => out.body = st,
            other => return Err(format!("RequestReadTimeout: unknown stage '{other}' (handshake, header or body)")),
        }
    }
    Ok(out)
}

/// Map `RequestReadTimeout` onto the model: `body=` fully (`BodyRate`), `header=` onto the
/// fixed `header_read_timeout` (its initial timeout; trove does not extend it per byte),
/// `handshake=` is covered by the header timeout, which also bounds a TLS handshake.
fn apply_request_read_timeout(st: &ReadStages, limits: &mut ConnLimits, l: &Line, d: &mut Diagnostics) {
    if let Some(b) = st.body {
        limits.body_read =
            BodyRate { timeout: Duration::from_secs(b.timeout), min_rate: b.min_rate.unwrap_or(0), max_timeout: Duration::from_secs(b.max.unwrap_or(0)) };
    }
    if let Some(h) = st.header {
        if h.timeout == 0 {
            d.warn(
                &l.origin,
                "header=0 would leave request heads without a deadline; trove keeps its header timeout",
                format!("set header= to a number of seconds to change it (now {} s)", limits.header_read_timeout.as_secs()),
            );
        } else {
            limits.header_read_timeout = Duration::from_secs(h.timeout);
            if h.max.is_some() || h.min_rate.is_some() {
                d.note(
                    &l.origin,
                    format!("header=: trove gives a request head a fixed {} s (the initial timeout); MinRate and the range apply to body= only", h.timeout),
                );
            }
        }
    }
    if st.handshake.is_some() {
        d.note(&l.origin, "handshake=: trove bounds the TLS handshake by the header timeout");
    }
}

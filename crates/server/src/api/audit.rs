//! `GET /admin/audit`: the audit log, newest first, filtered and paged. Trove's own endpoint:
//! Bitbucket's auditing REST API (`/rest/auditing/1.0/events`) has another shape, which no
//! client of ours reads; docs/api.md describes this one.

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};
use trove_store::{AuditEntry, AuditQuery};

use super::{Api, ApiError, PageReq, envelope, ok};
use crate::audit::{iso8601, parse_time};

/// One entry as the endpoint shows it: the time both as Unix milliseconds (as Bitbucket writes
/// times) and as ISO 8601, and the details as the object they are.
pub(crate) fn entry_json(e: &AuditEntry) -> Value {
    json!({
        "id": e.id,
        "timestamp": e.at,
        "time": iso8601(e.at),
        "actor": e.actor,
        "address": e.address,
        "action": e.action,
        "target": e.target,
        "details": serde_json::from_str::<Value>(&e.details).unwrap_or_else(|_| json!({})),
    })
}

fn time_param(api: &Api, name: &str) -> Result<Option<i64>, ApiError> {
    match api.q.get(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse_time(v).map(Some).ok_or_else(|| {
            ApiError::invalid(name, format!("{name} must be Unix milliseconds or an ISO 8601 time in UTC like 2026-12-02T17:18:05Z, not {v:?}."))
        }),
    }
}

/// The query the parameters ask for, checked.
pub(crate) fn query(api: &Api, page: PageReq) -> Result<AuditQuery, ApiError> {
    let text = |name: &str| api.q.get(name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    let oldest_first = match api.q.get("order").map(|o| o.to_ascii_uppercase()) {
        None => false,
        Some(o) if o == "NEWEST" || o.is_empty() => false,
        Some(o) if o == "OLDEST" => true,
        Some(o) => return Err(ApiError::invalid("order", format!("order is NEWEST or OLDEST, not {o:?}."))),
    };
    let (from, to) = (time_param(api, "from")?, time_param(api, "to")?);
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(ApiError::invalid("from", "from is after to; nothing could match."));
    }
    Ok(AuditQuery { actor: text("actor"), action: text("action"), target: text("target"), from, to, oldest_first, start: page.start, limit: page.limit })
}

/// `GET /admin/audit?actor=&action=&target=&from=&to=&order=&start=&limit=` (global ADMIN).
pub(crate) async fn list(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        api.require_admin("see the audit log")?;
        let page = api.q.page()?;
        let q = query(api, page)?;
        let (entries, more) = api.store().audit_entries(&q)?;
        let values = entries.iter().map(entry_json).collect();
        Ok(ok(StatusCode::OK, envelope(values, page, !more)))
    })
    .await
}

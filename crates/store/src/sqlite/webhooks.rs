//! Webhooks, the event outbox and deliveries in SQLite. The single writer makes every claim
//! and every enqueue one IMMEDIATE transaction, so they take turns across processes too.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::Sqlite;
use crate::error::StoreError;
use crate::store::now_ms;
use crate::webhooks::{
    Attempt, Breaker, Claimed, Delivery, DeliveryCounts, DeliveryState, NewEvent, NewWebhook, Next, Outcome, Webhook, Webhooks, events_list, events_text, lane,
};

const HOOK_COLS: &str = "w.id, w.project_id, w.repo_id, w.name, w.url, w.events, w.active, w.secret, w.ssl_verify, w.username, w.password,
                         w.created_at, w.updated_at, w.failures, w.paused_until";
const DELIVERY_COLS: &str = "d.id, d.webhook_id, d.event_id, e.event_key, e.created_at, d.state, d.attempts, d.next_attempt_at,
                             d.last_attempt_at, d.last_outcome, d.last_status, d.last_response, d.last_duration_ms";

fn hook_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Webhook> {
    Ok(Webhook {
        id: r.get(at)?,
        hook: NewWebhook {
            project_id: r.get(at + 1)?,
            repo_id: r.get(at + 2)?,
            name: r.get(at + 3)?,
            url: r.get(at + 4)?,
            events: events_list(&r.get::<_, String>(at + 5)?),
            active: r.get(at + 6)?,
            secret: r.get(at + 7)?,
            ssl_verify: r.get(at + 8)?,
            username: r.get(at + 9)?,
            password: r.get(at + 10)?,
        },
        created_at: r.get(at + 11)?,
        updated_at: r.get(at + 12)?,
        failures: r.get(at + 13)?,
        paused_until: r.get(at + 14)?,
    })
}

fn bad(col: usize, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, format!("unknown value {value:?}").into())
}

pub(crate) fn delivery_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Delivery> {
    let state: String = r.get(at + 5)?;
    let outcome: Option<String> = r.get(at + 9)?;
    let last = match (r.get::<_, Option<i64>>(at + 8)?, outcome) {
        (Some(when), Some(o)) => Some(Attempt {
            at: when,
            outcome: Outcome::parse(&o).ok_or_else(|| bad(at + 9, &o))?,
            status: r.get(at + 10)?,
            summary: r.get::<_, Option<String>>(at + 11)?.unwrap_or_default(),
            duration_ms: r.get::<_, Option<i64>>(at + 12)?.unwrap_or(0),
        }),
        _ => None,
    };
    Ok(Delivery {
        id: r.get(at)?,
        webhook_id: r.get(at + 1)?,
        event_id: r.get(at + 2)?,
        event_key: r.get(at + 3)?,
        event_at: r.get(at + 4)?,
        state: DeliveryState::parse(&state).ok_or_else(|| bad(at + 5, &state))?,
        attempts: r.get(at + 6)?,
        next_attempt_at: r.get(at + 7)?,
        last,
    })
}

/// Writes `events` and their deliveries on `conn`, inside the caller's transaction; how many
/// deliveries. The pull-request changes call it with their own transaction.
pub(crate) fn enqueue(conn: &Connection, events: &[NewEvent]) -> rusqlite::Result<usize> {
    let mut total = 0;
    let t = now_ms();
    for e in events {
        let wanted: i64 = conn
            .prepare_cached(
                "SELECT count(*) FROM webhooks WHERE active = 1 AND instr(events, ',' || ?1 || ',') > 0
               AND project_id = ?2 AND (repo_id IS NULL OR repo_id = ?3)",
            )?
            .query_row(params![e.key, e.project_id, e.repo_id], |r| r.get(0))?;
        if wanted == 0 {
            continue;
        }
        let lane = lane(e);
        conn.prepare_cached("INSERT INTO webhook_lanes (lane, events) VALUES (?1, 1) ON CONFLICT (lane) DO UPDATE SET events = events + 1")?.execute([lane])?;
        conn.prepare_cached("INSERT INTO webhook_events (project_id, repo_id, event_key, payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![e.project_id, e.repo_id, e.key, e.payload, t])?;
        let event_id = conn.last_insert_rowid();
        total += conn
            .prepare_cached(
                "INSERT INTO webhook_deliveries (webhook_id, event_id, lane, state, attempts, next_attempt_at)
                 SELECT id, ?1, ?2, 'PENDING', 0, ?3 FROM webhooks
                  WHERE active = 1 AND instr(events, ',' || ?4 || ',') > 0 AND project_id = ?5 AND (repo_id IS NULL OR repo_id = ?6)
                  ORDER BY id",
            )?
            .execute(params![event_id, lane, t, e.key, e.project_id, e.repo_id])?;
    }
    Ok(total)
}

fn load_delivery(conn: &Connection, id: i64) -> rusqlite::Result<Option<Delivery>> {
    conn.prepare_cached(&format!("SELECT {DELIVERY_COLS} FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id WHERE d.id = ?1"))?
        .query_row([id], |r| delivery_row(r, 0))
        .optional()
}

impl Webhooks for Sqlite {
    fn create_webhook(&self, new: &NewWebhook) -> Result<Webhook, StoreError> {
        let conn = self.write();
        let t = now_ms();
        conn.prepare_cached(
            "INSERT INTO webhooks (project_id, repo_id, name, url, events, active, secret, ssl_verify, username, password, created_at, updated_at, failures)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, 0)",
        )
        .and_then(|mut st| {
            st.execute(params![
                new.project_id,
                new.repo_id,
                new.name,
                new.url,
                events_text(&new.events),
                new.active,
                new.secret,
                new.ssl_verify,
                new.username,
                new.password,
                t
            ])
        })
        .map_err(self.db())?;
        let id = conn.last_insert_rowid();
        Ok(Webhook { id, hook: new.clone(), created_at: t, updated_at: t, failures: 0, paused_until: None })
    }

    fn webhook(&self, id: i64) -> Result<Option<Webhook>, StoreError> {
        let conn = self.read();
        conn.prepare_cached(&format!("SELECT {HOOK_COLS} FROM webhooks w WHERE w.id = ?1"))
            .and_then(|mut st| st.query_row([id], |r| hook_row(r, 0)).optional())
            .map_err(self.db())
    }

    fn webhooks(&self, project_id: i64, repo_id: Option<i64>) -> Result<Vec<Webhook>, StoreError> {
        let conn = self.read();
        let mut st =
            conn.prepare_cached(&format!("SELECT {HOOK_COLS} FROM webhooks w WHERE w.project_id = ?1 AND w.repo_id IS ?2 ORDER BY w.id")).map_err(self.db())?;
        let rows = st.query_map(params![project_id, repo_id], |r| hook_row(r, 0)).map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    fn update_webhook(&self, id: i64, new: &NewWebhook) -> Result<Option<Webhook>, StoreError> {
        let conn = self.write();
        let t = now_ms();
        let n = conn
            .prepare_cached(
                "UPDATE webhooks SET name = ?1, url = ?2, events = ?3, active = ?4, secret = ?5, ssl_verify = ?6, username = ?7, password = ?8,
                        updated_at = ?9 WHERE id = ?10",
            )
            .and_then(|mut st| {
                st.execute(params![new.name, new.url, events_text(&new.events), new.active, new.secret, new.ssl_verify, new.username, new.password, t, id])
            })
            .map_err(self.db())?;
        if n == 0 {
            return Ok(None);
        }
        conn.prepare_cached(&format!("SELECT {HOOK_COLS} FROM webhooks w WHERE w.id = ?1"))
            .and_then(|mut st| st.query_row([id], |r| hook_row(r, 0)).optional())
            .map_err(self.db())
    }

    fn delete_webhook(&self, id: i64) -> Result<bool, StoreError> {
        let n = self.write().execute("DELETE FROM webhooks WHERE id = ?1", [id]).map_err(self.db())?;
        Ok(n > 0)
    }

    fn enqueue_events(&self, events: &[NewEvent]) -> Result<usize, StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db())?;
        let n = enqueue(&tx, events).map_err(self.db())?;
        tx.commit().map_err(self.db())?;
        Ok(n)
    }

    fn claim_deliveries(&self, node: &str, now: i64, lease_ms: i64, limit: usize) -> Result<Vec<Claimed>, StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db())?;
        let claim = || -> rusqlite::Result<Vec<Claimed>> {
            let ids: Vec<i64> = {
                let mut st = tx.prepare_cached(
                    "SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
                      WHERE d.state = 'PENDING' AND d.next_attempt_at <= ?1 AND (d.claim_expiry IS NULL OR d.claim_expiry <= ?1)
                        AND w.active = 1 AND (w.paused_until IS NULL OR w.paused_until <= ?1)
                        AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p
                                         WHERE p.webhook_id = d.webhook_id AND p.lane = d.lane AND p.state = 'PENDING' AND p.id < d.id)
                      ORDER BY d.id LIMIT ?2",
                )?;
                st.query_map(params![now, limit.min(i64::MAX as usize) as i64], |r| r.get(0))?.collect::<Result<_, _>>()?
            };
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                tx.prepare_cached("UPDATE webhook_deliveries SET claimed_by = ?1, claim_expiry = ?2 WHERE id = ?3")?.execute(params![
                    node,
                    now.saturating_add(lease_ms),
                    id
                ])?;
                let c = tx
                    .prepare_cached(&format!(
                        "SELECT {DELIVERY_COLS}, e.payload, {HOOK_COLS} FROM webhook_deliveries d
                           JOIN webhook_events e ON e.id = d.event_id JOIN webhooks w ON w.id = d.webhook_id WHERE d.id = ?1"
                    ))?
                    .query_row([id], |r| Ok(Claimed { delivery: delivery_row(r, 0)?, payload: r.get(13)?, webhook: hook_row(r, 14)? }))?;
                out.push(c);
            }
            Ok(out)
        };
        let out = claim().map_err(self.db())?;
        tx.commit().map_err(self.db())?;
        Ok(out)
    }

    fn finish_delivery(&self, id: i64, node: &str, a: &Attempt, next: Next, breaker: Breaker) -> Result<bool, StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db())?;
        let (state, next_at) = match next {
            Next::Done => (DeliveryState::Delivered, a.at),
            Next::RetryAt(t) => (DeliveryState::Pending, t),
            Next::GiveUp => (DeliveryState::Failed, a.at),
        };
        let finish = || -> rusqlite::Result<bool> {
            let n = tx
                .prepare_cached(
                    "UPDATE webhook_deliveries SET state = ?1, attempts = attempts + 1, next_attempt_at = ?2, claimed_by = NULL, claim_expiry = NULL,
                            last_attempt_at = ?3, last_outcome = ?4, last_status = ?5, last_response = ?6, last_duration_ms = ?7
                      WHERE id = ?8 AND claimed_by = ?9 AND state = 'PENDING'",
                )?
                .execute(params![state.as_str(), next_at, a.at, a.outcome.as_str(), a.status, a.summary, a.duration_ms, id, node])?;
            if n == 0 {
                return Ok(false);
            }
            if a.outcome == Outcome::Success {
                tx.prepare_cached(
                    "UPDATE webhooks SET failures = 0, paused_until = NULL WHERE id = (SELECT webhook_id FROM webhook_deliveries WHERE id = ?1)",
                )?
                .execute([id])?;
            } else {
                tx.prepare_cached(
                    "UPDATE webhooks SET failures = failures + 1,
                            paused_until = CASE WHEN ?2 > 0 AND failures + 1 >= ?2 THEN ?3 ELSE paused_until END
                      WHERE id = (SELECT webhook_id FROM webhook_deliveries WHERE id = ?1)",
                )?
                .execute(params![id, breaker.threshold, breaker.pause_until])?;
            }
            Ok(true)
        };
        let done = finish().map_err(self.db())?;
        tx.commit().map_err(self.db())?;
        Ok(done)
    }

    fn latest_delivery(&self, webhook_id: i64, event: Option<&str>, outcome: Option<Outcome>) -> Result<Option<Delivery>, StoreError> {
        let conn = self.read();
        let id: Option<i64> = conn
            .prepare_cached(
                "SELECT d.id FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
                  WHERE d.webhook_id = ?1 AND d.last_attempt_at IS NOT NULL AND (?2 IS NULL OR e.event_key = ?2) AND (?3 IS NULL OR d.last_outcome = ?3)
                  ORDER BY d.last_attempt_at DESC, d.id DESC LIMIT 1",
            )
            .and_then(|mut st| st.query_row(params![webhook_id, event, outcome.map(Outcome::as_str)], |r| r.get(0)).optional())
            .map_err(self.db())?;
        match id {
            Some(id) => load_delivery(&conn, id).map_err(self.db()),
            None => Ok(None),
        }
    }

    fn delivery_counts(&self, webhook_id: i64) -> Result<DeliveryCounts, StoreError> {
        let conn = self.read();
        conn.prepare_cached(
            "SELECT coalesce(sum(state <> 'PENDING' AND last_outcome = 'SUCCESS'), 0), coalesce(sum(state <> 'PENDING' AND last_outcome = 'FAILURE'), 0),
                    coalesce(sum(state <> 'PENDING' AND last_outcome = 'ERROR'), 0), coalesce(sum(state = 'PENDING'), 0)
               FROM webhook_deliveries WHERE webhook_id = ?1",
        )
        .and_then(|mut st| st.query_row([webhook_id], |r| Ok(DeliveryCounts { success: r.get(0)?, failure: r.get(1)?, error: r.get(2)?, pending: r.get(3)? })))
        .map_err(self.db())
    }

    fn pending_deliveries(&self) -> Result<i64, StoreError> {
        self.read().query_row("SELECT count(*) FROM webhook_deliveries WHERE state = 'PENDING'", [], |r| r.get(0)).map_err(self.db())
    }

    fn prune_deliveries(&self, before: i64) -> Result<u64, StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db())?;
        let n = tx.execute("DELETE FROM webhook_deliveries WHERE state <> 'PENDING' AND last_attempt_at < ?1", [before]).map_err(self.db())?;
        tx.execute("DELETE FROM webhook_events WHERE NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)", [])
            .map_err(self.db())?;
        tx.commit().map_err(self.db())?;
        Ok(n as u64)
    }
}

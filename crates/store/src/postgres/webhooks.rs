//! Webhooks, the event outbox and deliveries in PostgreSQL, shared by every node. A claim is one
//! transaction that picks due lane heads `FOR UPDATE SKIP LOCKED` and stamps them with the node
//! and a lease: two nodes never pick the same delivery, and neither waits for the other.

use postgres::Row;

use super::{Postgres, Query};
use crate::error::StoreError;
use crate::store::now_ms;
use crate::webhooks::{
    Attempt, Breaker, Claimed, Delivery, DeliveryCounts, DeliveryState, NewEvent, NewWebhook, Next, Outcome, Webhook, Webhooks, events_list, events_text, lane,
};

macro_rules! hook_cols {
    () => {
        "w.id, w.project_id, w.repo_id, w.name, w.url, w.events, w.active, w.secret, w.ssl_verify, w.username, w.password,
         w.created_at, w.updated_at, w.failures, w.paused_until"
    };
}

macro_rules! delivery_cols {
    () => {
        "d.id, d.webhook_id, d.event_id, e.event_key, e.created_at, d.state, d.attempts, d.next_attempt_at,
         d.last_attempt_at, d.last_outcome, d.last_status, d.last_response, d.last_duration_ms"
    };
}

fn hook_row(r: &Row, at: usize) -> Webhook {
    Webhook {
        id: r.get(at),
        hook: NewWebhook {
            project_id: r.get(at + 1),
            repo_id: r.get(at + 2),
            name: r.get(at + 3),
            url: r.get(at + 4),
            events: events_list(&r.get::<_, String>(at + 5)),
            active: r.get(at + 6),
            secret: r.get(at + 7),
            ssl_verify: r.get(at + 8),
            username: r.get(at + 9),
            password: r.get(at + 10),
        },
        created_at: r.get(at + 11),
        updated_at: r.get(at + 12),
        failures: r.get(at + 13),
        paused_until: r.get(at + 14),
    }
}

impl Postgres {
    fn bad_value(&self, what: &str, value: &str) -> StoreError {
        StoreError::Postgres {
            target: self.target.clone(),
            message: format!("a webhook delivery's {what} is {value:?}, which this trove does not know"),
            unavailable: false,
        }
    }

    fn delivery_row(&self, r: &Row, at: usize) -> Result<Delivery, StoreError> {
        let state: String = r.get(at + 5);
        let outcome: Option<String> = r.get(at + 9);
        let last = match (r.get::<_, Option<i64>>(at + 8), outcome) {
            (Some(when), Some(o)) => Some(Attempt {
                at: when,
                outcome: Outcome::parse(&o).ok_or_else(|| self.bad_value("outcome", &o))?,
                status: r.get(at + 10),
                summary: r.get::<_, Option<String>>(at + 11).unwrap_or_default(),
                duration_ms: r.get::<_, Option<i64>>(at + 12).unwrap_or(0),
            }),
            _ => None,
        };
        Ok(Delivery {
            id: r.get(at),
            webhook_id: r.get(at + 1),
            event_id: r.get(at + 2),
            event_key: r.get(at + 3),
            event_at: r.get(at + 4),
            state: DeliveryState::parse(&state).ok_or_else(|| self.bad_value("state", &state))?,
            attempts: r.get(at + 6),
            next_attempt_at: r.get(at + 7),
            last,
        })
    }

    /// Writes `events` and their deliveries inside the caller's transaction; how many deliveries.
    /// The lane's row lock (held to the commit) makes events of one repository take turns, so
    /// their ids rise in commit order.
    pub(crate) fn enqueue(&self, q: &mut impl Query, events: &[NewEvent]) -> Result<usize, StoreError> {
        let t = now_ms();
        let mut total = 0;
        for e in events {
            let wanted: i64 = q
                .query_one(
                    "SELECT count(*) FROM webhooks WHERE active AND strpos(events, ',' || $1 || ',') > 0
                       AND project_id = $2 AND (repo_id IS NULL OR repo_id = $3)",
                    &[&e.key, &e.project_id, &e.repo_id],
                )
                .map_err(self.err())?
                .get(0);
            if wanted == 0 {
                continue;
            }
            let lane = lane(e);
            q.execute("INSERT INTO webhook_lanes (lane, events) VALUES ($1, 1) ON CONFLICT (lane) DO UPDATE SET events = webhook_lanes.events + 1", &[&lane])
                .map_err(self.err())?;
            let event_id: i64 = q
                .query_one(
                    "INSERT INTO webhook_events (project_id, repo_id, event_key, payload, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    &[&e.project_id, &e.repo_id, &e.key, &e.payload, &t],
                )
                .map_err(self.err())?
                .get(0);
            total += q
                .execute(
                    "INSERT INTO webhook_deliveries (webhook_id, event_id, lane, state, attempts, next_attempt_at)
                     SELECT id, $1, $2, 'PENDING', 0, $3 FROM webhooks
                      WHERE active AND strpos(events, ',' || $4 || ',') > 0 AND project_id = $5 AND (repo_id IS NULL OR repo_id = $6)
                      ORDER BY id",
                    &[&event_id, &lane, &t, &e.key, &e.project_id, &e.repo_id],
                )
                .map_err(self.err())? as usize;
        }
        Ok(total)
    }

    fn load_delivery(&self, q: &mut impl Query, id: i64) -> Result<Option<Delivery>, StoreError> {
        let row = q
            .query_opt(concat!("SELECT ", delivery_cols!(), " FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id WHERE d.id = $1"), &[&id])
            .map_err(self.err())?;
        row.map(|r| self.delivery_row(&r, 0)).transpose()
    }
}

impl Webhooks for Postgres {
    fn create_webhook(&self, new: &NewWebhook) -> Result<Webhook, StoreError> {
        let t = now_ms();
        let id: i64 = self
            .conn()?
            .query_one(
                "INSERT INTO webhooks (project_id, repo_id, name, url, events, active, secret, ssl_verify, username, password, created_at, updated_at, failures)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, 0) RETURNING id",
                &[
                    &new.project_id,
                    &new.repo_id,
                    &new.name,
                    &new.url,
                    &events_text(&new.events),
                    &new.active,
                    &new.secret,
                    &new.ssl_verify,
                    &new.username,
                    &new.password,
                    &t,
                ],
            )
            .map_err(self.err())?
            .get(0);
        Ok(Webhook { id, hook: new.clone(), created_at: t, updated_at: t, failures: 0, paused_until: None })
    }

    fn webhook(&self, id: i64) -> Result<Option<Webhook>, StoreError> {
        let row = self.conn()?.query_opt(concat!("SELECT ", hook_cols!(), " FROM webhooks w WHERE w.id = $1"), &[&id]).map_err(self.err())?;
        Ok(row.map(|r| hook_row(&r, 0)))
    }

    fn webhooks(&self, project_id: i64, repo_id: Option<i64>) -> Result<Vec<Webhook>, StoreError> {
        let rows = self
            .conn()?
            .query(
                concat!("SELECT ", hook_cols!(), " FROM webhooks w WHERE w.project_id = $1 AND w.repo_id IS NOT DISTINCT FROM $2 ORDER BY w.id"),
                &[&project_id, &repo_id],
            )
            .map_err(self.err())?;
        Ok(rows.iter().map(|r| hook_row(r, 0)).collect())
    }

    fn update_webhook(&self, id: i64, new: &NewWebhook) -> Result<Option<Webhook>, StoreError> {
        let t = now_ms();
        let mut conn = self.conn()?;
        let n = conn
            .execute(
                "UPDATE webhooks SET name = $1, url = $2, events = $3, active = $4, secret = $5, ssl_verify = $6, username = $7, password = $8,
                        updated_at = $9 WHERE id = $10",
                &[&new.name, &new.url, &events_text(&new.events), &new.active, &new.secret, &new.ssl_verify, &new.username, &new.password, &t, &id],
            )
            .map_err(self.err())?;
        if n == 0 {
            return Ok(None);
        }
        let row = conn.query_opt(concat!("SELECT ", hook_cols!(), " FROM webhooks w WHERE w.id = $1"), &[&id]).map_err(self.err())?;
        Ok(row.map(|r| hook_row(&r, 0)))
    }

    fn delete_webhook(&self, id: i64) -> Result<bool, StoreError> {
        Ok(self.conn()?.execute("DELETE FROM webhooks WHERE id = $1", &[&id]).map_err(self.err())? > 0)
    }

    fn enqueue_events(&self, events: &[NewEvent]) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(self.err())?;
        let n = self.enqueue(&mut tx, events)?;
        tx.commit().map_err(self.err())?;
        Ok(n)
    }

    fn claim_deliveries(&self, node: &str, now: i64, lease_ms: i64, limit: usize) -> Result<Vec<Claimed>, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(self.err())?;
        let limit = limit.min(i64::MAX as usize) as i64;
        let until = now.saturating_add(lease_ms);
        // Lane heads only; a head another node holds locked is skipped, and the rows behind it
        // are not heads. The claim's stamp, not the lock, keeps it after the commit.
        let ids: Vec<i64> = tx
            .query(
                "UPDATE webhook_deliveries SET claimed_by = $1, claim_expiry = $2 WHERE id IN (
                    SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
                     WHERE d.state = 'PENDING' AND d.next_attempt_at <= $3 AND (d.claim_expiry IS NULL OR d.claim_expiry <= $3)
                       AND w.active AND (w.paused_until IS NULL OR w.paused_until <= $3)
                       AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p
                                        WHERE p.webhook_id = d.webhook_id AND p.lane = d.lane AND p.state = 'PENDING' AND p.id < d.id)
                     ORDER BY d.id LIMIT $4 FOR UPDATE OF d SKIP LOCKED)
                 RETURNING id",
                &[&node, &until, &now, &limit],
            )
            .map_err(self.err())?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let r = tx
                .query_one(
                    concat!(
                        "SELECT ",
                        delivery_cols!(),
                        ", e.payload, ",
                        hook_cols!(),
                        " FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id JOIN webhooks w ON w.id = d.webhook_id WHERE d.id = $1"
                    ),
                    &[&id],
                )
                .map_err(self.err())?;
            out.push(Claimed { delivery: self.delivery_row(&r, 0)?, payload: r.get(13), webhook: hook_row(&r, 14) });
        }
        tx.commit().map_err(self.err())?;
        out.sort_by_key(|c| c.delivery.id);
        Ok(out)
    }

    fn finish_delivery(&self, id: i64, node: &str, a: &Attempt, next: Next, breaker: Breaker) -> Result<bool, StoreError> {
        let (state, next_at) = match next {
            Next::Done => (DeliveryState::Delivered, a.at),
            Next::RetryAt(t) => (DeliveryState::Pending, t),
            Next::GiveUp => (DeliveryState::Failed, a.at),
        };
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(self.err())?;
        let row = tx
            .query_opt(
                "UPDATE webhook_deliveries SET state = $1, attempts = attempts + 1, next_attempt_at = $2, claimed_by = NULL, claim_expiry = NULL,
                        last_attempt_at = $3, last_outcome = $4, last_status = $5, last_response = $6, last_duration_ms = $7
                  WHERE id = $8 AND claimed_by = $9 AND state = 'PENDING' RETURNING webhook_id",
                &[&state.as_str(), &next_at, &a.at, &a.outcome.as_str(), &a.status, &a.summary, &a.duration_ms, &id, &node],
            )
            .map_err(self.err())?;
        let Some(row) = row else { return Ok(false) };
        let webhook: i64 = row.get(0);
        if a.outcome == Outcome::Success {
            tx.execute("UPDATE webhooks SET failures = 0, paused_until = NULL WHERE id = $1", &[&webhook]).map_err(self.err())?;
        } else {
            tx.execute(
                "UPDATE webhooks SET failures = failures + 1,
                        paused_until = CASE WHEN $2::BIGINT > 0 AND failures + 1 >= $2::BIGINT THEN $3::BIGINT ELSE paused_until END
                  WHERE id = $1",
                &[&webhook, &breaker.threshold, &breaker.pause_until],
            )
            .map_err(self.err())?;
        }
        tx.commit().map_err(self.err())?;
        Ok(true)
    }

    fn latest_delivery(&self, webhook_id: i64, event: Option<&str>, outcome: Option<Outcome>) -> Result<Option<Delivery>, StoreError> {
        let mut conn = self.conn()?;
        let (event, outcome) = (event.map(str::to_owned), outcome.map(|o| o.as_str().to_owned()));
        let id = conn
            .query_opt(
                "SELECT d.id FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
                  WHERE d.webhook_id = $1 AND d.last_attempt_at IS NOT NULL AND ($2::TEXT IS NULL OR e.event_key = $2) AND ($3::TEXT IS NULL OR d.last_outcome = $3)
                  ORDER BY d.last_attempt_at DESC, d.id DESC LIMIT 1",
                &[&webhook_id, &event, &outcome],
            )
            .map_err(self.err())?
            .map(|r| r.get::<_, i64>(0));
        match id {
            Some(id) => self.load_delivery(&mut *conn, id),
            None => Ok(None),
        }
    }

    fn delivery_counts(&self, webhook_id: i64) -> Result<DeliveryCounts, StoreError> {
        let r = self
            .conn()?
            .query_one(
                "SELECT count(*) FILTER (WHERE state <> 'PENDING' AND last_outcome = 'SUCCESS'), count(*) FILTER (WHERE state <> 'PENDING' AND last_outcome = 'FAILURE'),
                        count(*) FILTER (WHERE state <> 'PENDING' AND last_outcome = 'ERROR'), count(*) FILTER (WHERE state = 'PENDING')
                   FROM webhook_deliveries WHERE webhook_id = $1",
                &[&webhook_id],
            )
            .map_err(self.err())?;
        Ok(DeliveryCounts { success: r.get(0), failure: r.get(1), error: r.get(2), pending: r.get(3) })
    }

    fn pending_deliveries(&self) -> Result<i64, StoreError> {
        Ok(self.conn()?.query_one("SELECT count(*) FROM webhook_deliveries WHERE state = 'PENDING'", &[]).map_err(self.err())?.get(0))
    }

    fn prune_deliveries(&self, before: i64) -> Result<u64, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(self.err())?;
        let n = tx.execute("DELETE FROM webhook_deliveries WHERE state <> 'PENDING' AND last_attempt_at < $1", &[&before]).map_err(self.err())?;
        tx.execute("DELETE FROM webhook_events e WHERE NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id)", &[]).map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        Ok(n)
    }
}

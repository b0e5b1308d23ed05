//! Build statuses, required-builds conditions and Code Insights in SQLite (see `crate::builds`).

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};

use super::{Sqlite, corrupt};
use crate::branch_permissions::{Matcher, MatcherType};
use crate::builds::{
    Annotation, BuildState, BuildStatus, Builds, InsightReport, MAX_ANNOTATIONS, NewAnnotation, RequiredBuild, RequiredBuildSpec, TestResults,
};
use crate::error::StoreError;
use crate::store::now_ms;

fn bad(col: usize, what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, format!("unknown {what} {value:?}").into())
}

const STATUS_COLS: &str = "repo_id, commit_id, build_key, state, name, url, description, build_number, duration_ms, parent, ref_name, \
                           tests_successful, tests_failed, tests_skipped, created_at, updated_at";

fn status_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BuildStatus> {
    let state: String = r.get(3)?;
    let tests: (Option<i64>, Option<i64>, Option<i64>) = (r.get(11)?, r.get(12)?, r.get(13)?);
    Ok(BuildStatus {
        repo: r.get(0)?,
        commit: r.get(1)?,
        key: r.get(2)?,
        state: BuildState::parse(&state).ok_or_else(|| bad(3, "build state", &state))?,
        name: r.get(4)?,
        url: r.get(5)?,
        description: r.get(6)?,
        build_number: r.get(7)?,
        duration_ms: r.get(8)?,
        parent: r.get(9)?,
        ref_name: r.get(10)?,
        test_results: match tests {
            (Some(successful), Some(failed), Some(skipped)) => Some(TestResults { successful, failed, skipped }),
            _ => None,
        },
        created_at: r.get(14)?,
        updated_at: r.get(15)?,
    })
}

fn matcher(col: usize, kind: &str, id: &str) -> rusqlite::Result<Matcher> {
    let t = MatcherType::parse_ref_matcher(kind).ok_or_else(|| bad(col, "matcher type", kind))?;
    Matcher::new(t, id).map_err(|e| corrupt(col + 1, e))
}

fn required_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RequiredBuild> {
    let keys: String = r.get(2)?;
    let (mt, mid): (String, String) = (r.get(3)?, r.get(4)?);
    let (et, eid): (Option<String>, Option<String>) = (r.get(5)?, r.get(6)?);
    let exempt = match (et, eid) {
        (Some(t), Some(id)) => Some(matcher(5, &t, &id)?),
        _ => None,
    };
    Ok(RequiredBuild {
        id: r.get(0)?,
        repo: r.get(1)?,
        condition: RequiredBuildSpec {
            build_parent_keys: keys.split('\n').map(str::to_owned).collect(),
            ref_matcher: matcher(3, &mt, &mid)?,
            exempt_ref_matcher: exempt,
        },
    })
}

const REQUIRED_COLS: &str = "id, repo_id, build_keys, matcher_type, matcher_id, exempt_matcher_type, exempt_matcher_id";

fn spec_params(spec: &RequiredBuildSpec) -> (String, &'static str, &str, Option<&'static str>, Option<&str>) {
    (
        spec.build_parent_keys.join("\n"),
        spec.ref_matcher.kind().as_str(),
        spec.ref_matcher.id(),
        spec.exempt_ref_matcher.as_ref().map(|m| m.kind().as_str()),
        spec.exempt_ref_matcher.as_ref().map(|m| m.id()),
    )
}

const REPORT_COLS: &str = "id, repo_id, commit_id, report_key, title, details, result, data, reporter, link, logo_url, creator_id, created_at, updated_at";

fn report_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<InsightReport> {
    Ok(InsightReport {
        id: r.get(0)?,
        repo: r.get(1)?,
        commit: r.get(2)?,
        key: r.get(3)?,
        title: r.get(4)?,
        details: r.get(5)?,
        result: r.get(6)?,
        data: r.get(7)?,
        reporter: r.get(8)?,
        link: r.get(9)?,
        logo_url: r.get(10)?,
        creator: r.get(11)?,
        created_at: r.get(12)?,
        updated_at: r.get(13)?,
    })
}

fn report(conn: &Connection, repo: i64, commit: &str, key: &str) -> rusqlite::Result<Option<InsightReport>> {
    conn.prepare_cached(&format!("SELECT {REPORT_COLS} FROM insight_reports WHERE repo_id = ?1 AND commit_id = ?2 AND report_key = ?3"))?
        .query_row(params![repo, commit, key], report_row)
        .optional()
}

fn insert_annotation(conn: &Connection, report: i64, a: &NewAnnotation) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO insight_annotations (report_id, external_id, path, line, message, severity, kind, link, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![report, a.external_id, a.path, a.line, a.message, a.severity, a.kind, a.link, now_ms()])?;
    Ok(())
}

fn annotation_count(conn: &Connection, report: i64) -> rusqlite::Result<usize> {
    conn.query_row("SELECT count(*) FROM insight_annotations WHERE report_id = ?1", [report], |r| r.get::<_, i64>(0)).map(|n| n as usize)
}

impl Builds for Sqlite {
    fn put_build_status(&self, s: &BuildStatus) -> Result<(), StoreError> {
        let t = s.test_results;
        self.write()
            .prepare_cached(&format!(
                "INSERT INTO build_statuses ({STATUS_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                 ON CONFLICT (commit_id, build_key, (coalesce(repo_id, 0))) DO UPDATE SET state = excluded.state, name = excluded.name,
                   url = excluded.url, description = excluded.description, build_number = excluded.build_number,
                   duration_ms = excluded.duration_ms, parent = excluded.parent, ref_name = excluded.ref_name,
                   tests_successful = excluded.tests_successful, tests_failed = excluded.tests_failed,
                   tests_skipped = excluded.tests_skipped, updated_at = excluded.updated_at"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    s.repo,
                    s.commit,
                    s.key,
                    s.state.as_str(),
                    s.name,
                    s.url,
                    s.description,
                    s.build_number,
                    s.duration_ms,
                    s.parent,
                    s.ref_name,
                    t.map(|t| t.successful),
                    t.map(|t| t.failed),
                    t.map(|t| t.skipped),
                    s.created_at,
                    s.updated_at
                ])
            })
            .map_err(self.db())?;
        Ok(())
    }

    fn build_statuses(&self, commits: &[String]) -> Result<Vec<BuildStatus>, StoreError> {
        if commits.is_empty() {
            return Ok(Vec::new());
        }
        let marks = (1..=commits.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
        let conn = self.read();
        let mut st = conn
            .prepare(&format!("SELECT {STATUS_COLS} FROM build_statuses WHERE commit_id IN ({marks}) ORDER BY updated_at DESC, id DESC"))
            .map_err(self.db())?;
        let args = commits.iter().map(|c| Value::Text(c.clone()));
        let rows = st.query_map(params_from_iter(args), status_row).map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    fn delete_build_status(&self, repo: Option<i64>, commit: &str, key: &str) -> Result<bool, StoreError> {
        Ok(self
            .write()
            .execute("DELETE FROM build_statuses WHERE repo_id IS ?1 AND commit_id = ?2 AND build_key = ?3", params![repo, commit, key])
            .map_err(self.db())?
            > 0)
    }

    fn required_builds(&self, repo: i64) -> Result<Vec<RequiredBuild>, StoreError> {
        let conn = self.read();
        let mut st = conn.prepare_cached(&format!("SELECT {REQUIRED_COLS} FROM required_builds WHERE repo_id = ?1 ORDER BY id")).map_err(self.db())?;
        let rows = st.query_map([repo], required_row).map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    fn required_build(&self, id: i64) -> Result<Option<RequiredBuild>, StoreError> {
        let conn = self.read();
        conn.prepare_cached(&format!("SELECT {REQUIRED_COLS} FROM required_builds WHERE id = ?1"))
            .and_then(|mut st| st.query_row([id], required_row).optional())
            .map_err(self.db())
    }

    fn insert_required_build(&self, repo: i64, spec: &RequiredBuildSpec) -> Result<RequiredBuild, StoreError> {
        let (keys, mt, mid, et, eid) = spec_params(spec);
        let conn = self.write();
        conn.execute(
            "INSERT INTO required_builds (repo_id, build_keys, matcher_type, matcher_id, exempt_matcher_type, exempt_matcher_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![repo, keys, mt, mid, et, eid, now_ms()],
        )
        .map_err(self.db())?;
        Ok(RequiredBuild { id: conn.last_insert_rowid(), repo, condition: spec.clone() })
    }

    fn update_required_build(&self, id: i64, spec: &RequiredBuildSpec) -> Result<Option<RequiredBuild>, StoreError> {
        let (keys, mt, mid, et, eid) = spec_params(spec);
        let conn = self.write();
        conn.prepare_cached(&format!(
            "UPDATE required_builds SET build_keys = ?2, matcher_type = ?3, matcher_id = ?4, exempt_matcher_type = ?5, exempt_matcher_id = ?6
             WHERE id = ?1 RETURNING {REQUIRED_COLS}"
        ))
        .and_then(|mut st| st.query_row(params![id, keys, mt, mid, et, eid], required_row).optional())
        .map_err(self.db())
    }

    fn delete_required_build(&self, id: i64) -> Result<bool, StoreError> {
        Ok(self.write().execute("DELETE FROM required_builds WHERE id = ?1", [id]).map_err(self.db())? > 0)
    }

    fn put_insight_report(&self, r: &InsightReport) -> Result<InsightReport, StoreError> {
        let conn = self.write();
        conn.prepare_cached(&format!(
            "INSERT INTO insight_reports (repo_id, commit_id, report_key, title, details, result, data, reporter, link, logo_url, creator_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (repo_id, commit_id, report_key) DO UPDATE SET title = excluded.title, details = excluded.details,
               result = excluded.result, data = excluded.data, reporter = excluded.reporter, link = excluded.link,
               logo_url = excluded.logo_url, updated_at = excluded.updated_at
             RETURNING {REPORT_COLS}"
        ))
        .and_then(|mut st| {
            st.query_row(
                params![r.repo, r.commit, r.key, r.title, r.details, r.result, r.data, r.reporter, r.link, r.logo_url, r.creator, r.created_at, r.updated_at],
                report_row,
            )
        })
        .map_err(self.db())
    }

    fn insight_report(&self, repo: i64, commit: &str, key: &str) -> Result<Option<InsightReport>, StoreError> {
        report(&self.read(), repo, commit, key).map_err(self.db())
    }

    fn insight_reports(&self, repo: i64, commit: &str) -> Result<Vec<InsightReport>, StoreError> {
        let conn = self.read();
        let mut st = conn
            .prepare_cached(&format!("SELECT {REPORT_COLS} FROM insight_reports WHERE repo_id = ?1 AND commit_id = ?2 ORDER BY report_key"))
            .map_err(self.db())?;
        let rows = st.query_map(params![repo, commit], report_row).map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    fn delete_insight_report(&self, repo: i64, commit: &str, key: &str) -> Result<bool, StoreError> {
        // Annotations go with the row (ON DELETE CASCADE).
        Ok(self
            .write()
            .execute("DELETE FROM insight_reports WHERE repo_id = ?1 AND commit_id = ?2 AND report_key = ?3", params![repo, commit, key])
            .map_err(self.db())?
            > 0)
    }

    fn add_annotations(&self, report: i64, new: &[NewAnnotation]) -> Result<bool, StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db())?;
        if annotation_count(&tx, report).map_err(self.db())? + new.len() > MAX_ANNOTATIONS {
            return Ok(false);
        }
        for a in new {
            insert_annotation(&tx, report, a).map_err(self.db())?;
        }
        tx.commit().map_err(self.db())?;
        Ok(true)
    }

    fn put_annotation(&self, report: i64, external_id: &str, a: &NewAnnotation) -> Result<bool, StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db())?;
        let gone = tx.execute("DELETE FROM insight_annotations WHERE report_id = ?1 AND external_id = ?2", params![report, external_id]).map_err(self.db())?;
        if gone == 0 && annotation_count(&tx, report).map_err(self.db())? >= MAX_ANNOTATIONS {
            return Ok(false);
        }
        let a = NewAnnotation { external_id: Some(external_id.to_owned()), ..a.clone() };
        insert_annotation(&tx, report, &a).map_err(self.db())?;
        tx.commit().map_err(self.db())?;
        Ok(true)
    }

    fn delete_annotations(&self, report: i64, external_id: Option<&str>) -> Result<u64, StoreError> {
        let conn = self.write();
        let n = match external_id {
            Some(e) => conn.execute("DELETE FROM insight_annotations WHERE report_id = ?1 AND external_id = ?2", params![report, e]),
            None => conn.execute("DELETE FROM insight_annotations WHERE report_id = ?1", [report]),
        }
        .map_err(self.db())?;
        Ok(n as u64)
    }

    fn annotations(&self, repo: i64, commit: &str, report_key: Option<&str>) -> Result<Vec<Annotation>, StoreError> {
        let conn = self.read();
        let mut st = conn
            .prepare_cached(
                "SELECT a.id, r.report_key, a.external_id, a.path, a.line, a.message, a.severity, a.kind, a.link, a.created_at
                 FROM insight_annotations a JOIN insight_reports r ON r.id = a.report_id
                 WHERE r.repo_id = ?1 AND r.commit_id = ?2 AND (?3 IS NULL OR r.report_key = ?3)
                 ORDER BY r.report_key, a.path NULLS FIRST, a.line, a.id",
            )
            .map_err(self.db())?;
        let rows = st
            .query_map(params![repo, commit, report_key], |r| {
                Ok(Annotation {
                    id: r.get(0)?,
                    report_key: r.get(1)?,
                    annotation: NewAnnotation {
                        external_id: r.get(2)?,
                        path: r.get(3)?,
                        line: r.get(4)?,
                        message: r.get(5)?,
                        severity: r.get(6)?,
                        kind: r.get(7)?,
                        link: r.get(8)?,
                    },
                    created_at: r.get(9)?,
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }
}

//! Build statuses, required-builds conditions and Code Insights in PostgreSQL (see
//! `crate::builds`).

use postgres::Row;

use super::{Postgres, Query};
use crate::branch_permissions::{Matcher, MatcherType};
use crate::builds::{
    Annotation, BuildState, BuildStatus, Builds, InsightReport, MAX_ANNOTATIONS, NewAnnotation, RequiredBuild, RequiredBuildSpec, TestResults,
};
use crate::error::StoreError;
use crate::store::now_ms;

impl Postgres {
    /// A stored value that no longer parses: a corrupt row, or one a newer trove wrote.
    fn bad_build(&self, table: &str, what: &str, value: &str) -> StoreError {
        StoreError::Postgres {
            target: self.target.clone(),
            message: format!("{table} holds an unknown {what} {value:?}; was it written by a newer trove?"),
            unavailable: false,
        }
    }

    fn status_row(&self, r: &Row) -> Result<BuildStatus, StoreError> {
        let state: &str = r.get(3);
        let tests: (Option<i64>, Option<i64>, Option<i64>) = (r.get(11), r.get(12), r.get(13));
        Ok(BuildStatus {
            repo: r.get(0),
            commit: r.get(1),
            key: r.get(2),
            state: BuildState::parse(state).ok_or_else(|| self.bad_build("build_statuses", "build state", state))?,
            name: r.get(4),
            url: r.get(5),
            description: r.get(6),
            build_number: r.get(7),
            duration_ms: r.get(8),
            parent: r.get(9),
            ref_name: r.get(10),
            test_results: match tests {
                (Some(successful), Some(failed), Some(skipped)) => Some(TestResults { successful, failed, skipped }),
                _ => None,
            },
            created_at: r.get(14),
            updated_at: r.get(15),
        })
    }

    fn build_matcher(&self, kind: &str, id: &str) -> Result<Matcher, StoreError> {
        let t = MatcherType::parse_ref_matcher(kind).ok_or_else(|| self.bad_build("required_builds", "matcher type", kind))?;
        Matcher::new(t, id).map_err(|e| self.bad_build("required_builds", "matcher", &e.to_string()))
    }

    fn required_row(&self, r: &Row) -> Result<RequiredBuild, StoreError> {
        let keys: &str = r.get(2);
        let exempt = match (r.get::<_, Option<&str>>(5), r.get::<_, Option<&str>>(6)) {
            (Some(t), Some(id)) => Some(self.build_matcher(t, id)?),
            _ => None,
        };
        Ok(RequiredBuild {
            id: r.get(0),
            repo: r.get(1),
            condition: RequiredBuildSpec {
                build_parent_keys: keys.split('\n').map(str::to_owned).collect(),
                ref_matcher: self.build_matcher(r.get(3), r.get(4))?,
                exempt_ref_matcher: exempt,
            },
        })
    }
}

fn report_row(r: &Row) -> InsightReport {
    InsightReport {
        id: r.get(0),
        repo: r.get(1),
        commit: r.get(2),
        key: r.get(3),
        title: r.get(4),
        details: r.get(5),
        result: r.get(6),
        data: r.get(7),
        reporter: r.get(8),
        link: r.get(9),
        logo_url: r.get(10),
        creator: r.get(11),
        created_at: r.get(12),
        updated_at: r.get(13),
    }
}

const INSERT_ANNOTATION: &str = "INSERT INTO insight_annotations (report_id, external_id, path, line, message, severity, kind, link, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Locks the report's row, so that concurrent additions count against the limit one at a time.
const LOCK_REPORT: &str = "SELECT id FROM insight_reports WHERE id = $1 FOR UPDATE";

impl Builds for Postgres {
    fn put_build_status(&self, s: &BuildStatus) -> Result<(), StoreError> {
        let t = s.test_results;
        let (ts, tf, tk) = (t.map(|t| t.successful), t.map(|t| t.failed), t.map(|t| t.skipped));
        self.conn()?
            .execute(
                "INSERT INTO build_statuses (repo_id, commit_id, build_key, state, name, url, description, build_number, duration_ms, parent, ref_name,
                   tests_successful, tests_failed, tests_skipped, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                 ON CONFLICT (commit_id, build_key, (coalesce(repo_id, 0))) DO UPDATE SET state = excluded.state, name = excluded.name,
                   url = excluded.url, description = excluded.description, build_number = excluded.build_number,
                   duration_ms = excluded.duration_ms, parent = excluded.parent, ref_name = excluded.ref_name,
                   tests_successful = excluded.tests_successful, tests_failed = excluded.tests_failed,
                   tests_skipped = excluded.tests_skipped, updated_at = excluded.updated_at",
                &[
                    &s.repo,
                    &s.commit,
                    &s.key,
                    &s.state.as_str(),
                    &s.name,
                    &s.url,
                    &s.description,
                    &s.build_number,
                    &s.duration_ms,
                    &s.parent,
                    &s.ref_name,
                    &ts,
                    &tf,
                    &tk,
                    &s.created_at,
                    &s.updated_at,
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn build_statuses(&self, commits: &[String]) -> Result<Vec<BuildStatus>, StoreError> {
        if commits.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .conn()?
            .query(
                "SELECT repo_id, commit_id, build_key, state, name, url, description, build_number, duration_ms, parent, ref_name,
                   tests_successful, tests_failed, tests_skipped, created_at, updated_at
                 FROM build_statuses WHERE commit_id = ANY($1) ORDER BY updated_at DESC, id DESC",
                &[&commits],
            )
            .map_err(self.err())?;
        rows.iter().map(|r| self.status_row(r)).collect()
    }

    fn delete_build_status(&self, repo: Option<i64>, commit: &str, key: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()?
            .execute("DELETE FROM build_statuses WHERE repo_id IS NOT DISTINCT FROM $1 AND commit_id = $2 AND build_key = $3", &[&repo, &commit, &key])
            .map_err(self.err())?
            > 0)
    }

    fn required_builds(&self, repo: i64) -> Result<Vec<RequiredBuild>, StoreError> {
        let rows = self
            .conn()?
            .query(
                "SELECT id, repo_id, build_keys, matcher_type, matcher_id, exempt_matcher_type, exempt_matcher_id FROM required_builds
                 WHERE repo_id = $1 ORDER BY id",
                &[&repo],
            )
            .map_err(self.err())?;
        rows.iter().map(|r| self.required_row(r)).collect()
    }

    fn required_build(&self, id: i64) -> Result<Option<RequiredBuild>, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                "SELECT id, repo_id, build_keys, matcher_type, matcher_id, exempt_matcher_type, exempt_matcher_id FROM required_builds WHERE id = $1",
                &[&id],
            )
            .map_err(self.err())?;
        row.map(|r| self.required_row(&r)).transpose()
    }

    fn insert_required_build(&self, repo: i64, spec: &RequiredBuildSpec) -> Result<RequiredBuild, StoreError> {
        let keys = spec.build_parent_keys.join("\n");
        let (et, eid) = (spec.exempt_ref_matcher.as_ref().map(|m| m.kind().as_str()), spec.exempt_ref_matcher.as_ref().map(|m| m.id()));
        let id: i64 = self
            .conn()?
            .query_one(
                "INSERT INTO required_builds (repo_id, build_keys, matcher_type, matcher_id, exempt_matcher_type, exempt_matcher_id, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[&repo, &keys, &spec.ref_matcher.kind().as_str(), &spec.ref_matcher.id(), &et, &eid, &now_ms()],
            )
            .map_err(self.err())?
            .get(0);
        Ok(RequiredBuild { id, repo, condition: spec.clone() })
    }

    fn update_required_build(&self, id: i64, spec: &RequiredBuildSpec) -> Result<Option<RequiredBuild>, StoreError> {
        let keys = spec.build_parent_keys.join("\n");
        let (et, eid) = (spec.exempt_ref_matcher.as_ref().map(|m| m.kind().as_str()), spec.exempt_ref_matcher.as_ref().map(|m| m.id()));
        let row = self
            .conn()?
            .query_opt(
                "UPDATE required_builds SET build_keys = $2, matcher_type = $3, matcher_id = $4, exempt_matcher_type = $5, exempt_matcher_id = $6
                 WHERE id = $1 RETURNING id, repo_id, build_keys, matcher_type, matcher_id, exempt_matcher_type, exempt_matcher_id",
                &[&id, &keys, &spec.ref_matcher.kind().as_str(), &spec.ref_matcher.id(), &et, &eid],
            )
            .map_err(self.err())?;
        row.map(|r| self.required_row(&r)).transpose()
    }

    fn delete_required_build(&self, id: i64) -> Result<bool, StoreError> {
        Ok(self.conn()?.execute("DELETE FROM required_builds WHERE id = $1", &[&id]).map_err(self.err())? > 0)
    }

    fn put_insight_report(&self, r: &InsightReport) -> Result<InsightReport, StoreError> {
        let row = self
            .conn()?
            .query_one(
                "INSERT INTO insight_reports (repo_id, commit_id, report_key, title, details, result, data, reporter, link, logo_url, creator_id, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (repo_id, commit_id, report_key) DO UPDATE SET title = excluded.title, details = excluded.details,
                   result = excluded.result, data = excluded.data, reporter = excluded.reporter, link = excluded.link,
                   logo_url = excluded.logo_url, updated_at = excluded.updated_at
                 RETURNING id, repo_id, commit_id, report_key, title, details, result, data, reporter, link, logo_url, creator_id, created_at, updated_at",
                &[
                    &r.repo,
                    &r.commit,
                    &r.key,
                    &r.title,
                    &r.details,
                    &r.result,
                    &r.data,
                    &r.reporter,
                    &r.link,
                    &r.logo_url,
                    &r.creator,
                    &r.created_at,
                    &r.updated_at,
                ],
            )
            .map_err(self.err())?;
        Ok(report_row(&row))
    }

    fn insight_report(&self, repo: i64, commit: &str, key: &str) -> Result<Option<InsightReport>, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                "SELECT id, repo_id, commit_id, report_key, title, details, result, data, reporter, link, logo_url, creator_id, created_at, updated_at
                 FROM insight_reports WHERE repo_id = $1 AND commit_id = $2 AND report_key = $3",
                &[&repo, &commit, &key],
            )
            .map_err(self.err())?;
        Ok(row.as_ref().map(report_row))
    }

    fn insight_reports(&self, repo: i64, commit: &str) -> Result<Vec<InsightReport>, StoreError> {
        let rows = self
            .conn()?
            .query(
                "SELECT id, repo_id, commit_id, report_key, title, details, result, data, reporter, link, logo_url, creator_id, created_at, updated_at
                 FROM insight_reports WHERE repo_id = $1 AND commit_id = $2 ORDER BY report_key",
                &[&repo, &commit],
            )
            .map_err(self.err())?;
        Ok(rows.iter().map(report_row).collect())
    }

    fn delete_insight_report(&self, repo: i64, commit: &str, key: &str) -> Result<bool, StoreError> {
        // Annotations go with the row (ON DELETE CASCADE).
        Ok(self
            .conn()?
            .execute("DELETE FROM insight_reports WHERE repo_id = $1 AND commit_id = $2 AND report_key = $3", &[&repo, &commit, &key])
            .map_err(self.err())?
            > 0)
    }

    fn add_annotations(&self, report: i64, new: &[NewAnnotation]) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(self.err())?;
        tx.query(LOCK_REPORT, &[&report]).map_err(self.err())?;
        let n: i64 = tx.query_one("SELECT count(*) FROM insight_annotations WHERE report_id = $1", &[&report]).map_err(self.err())?.get(0);
        if n as usize + new.len() > MAX_ANNOTATIONS {
            return Ok(false);
        }
        let at = now_ms();
        for a in new {
            tx.execute(INSERT_ANNOTATION, &[&report, &a.external_id, &a.path, &a.line, &a.message, &a.severity, &a.kind, &a.link, &at]).map_err(self.err())?;
        }
        tx.commit().map_err(self.err())?;
        Ok(true)
    }

    fn put_annotation(&self, report: i64, external_id: &str, a: &NewAnnotation) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(self.err())?;
        tx.query(LOCK_REPORT, &[&report]).map_err(self.err())?;
        let gone = tx.execute("DELETE FROM insight_annotations WHERE report_id = $1 AND external_id = $2", &[&report, &external_id]).map_err(self.err())?;
        let n: i64 = tx.query_one("SELECT count(*) FROM insight_annotations WHERE report_id = $1", &[&report]).map_err(self.err())?.get(0);
        if gone == 0 && n as usize >= MAX_ANNOTATIONS {
            return Ok(false);
        }
        let ext = Some(external_id);
        tx.execute(INSERT_ANNOTATION, &[&report, &ext, &a.path, &a.line, &a.message, &a.severity, &a.kind, &a.link, &now_ms()]).map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        Ok(true)
    }

    fn delete_annotations(&self, report: i64, external_id: Option<&str>) -> Result<u64, StoreError> {
        let mut conn = self.conn()?;
        match external_id {
            Some(e) => conn.execute("DELETE FROM insight_annotations WHERE report_id = $1 AND external_id = $2", &[&report, &e]),
            None => conn.execute("DELETE FROM insight_annotations WHERE report_id = $1", &[&report]),
        }
        .map_err(self.err())
    }

    fn annotations(&self, repo: i64, commit: &str, report_key: Option<&str>) -> Result<Vec<Annotation>, StoreError> {
        let rows = self
            .conn()?
            .query(
                "SELECT a.id, r.report_key, a.external_id, a.path, a.line, a.message, a.severity, a.kind, a.link, a.created_at
                 FROM insight_annotations a JOIN insight_reports r ON r.id = a.report_id
                 WHERE r.repo_id = $1 AND r.commit_id = $2 AND ($3::TEXT IS NULL OR r.report_key = $3)
                 ORDER BY r.report_key, a.path NULLS FIRST, a.line, a.id",
                &[&repo, &commit, &report_key],
            )
            .map_err(self.err())?;
        Ok(rows
            .iter()
            .map(|r| Annotation {
                id: r.get(0),
                report_key: r.get(1),
                annotation: NewAnnotation {
                    external_id: r.get(2),
                    path: r.get(3),
                    line: r.get(4),
                    message: r.get(5),
                    severity: r.get(6),
                    kind: r.get(7),
                    link: r.get(8),
                },
                created_at: r.get(9),
            })
            .collect())
    }
}

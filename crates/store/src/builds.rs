//! Build statuses, required-builds conditions and Code Insights reports with their annotations,
//! as CI systems post them to Bitbucket Server.
//!
//! - A **build status** is keyed by (commit, key) and replaced by a later one with the same key.
//!   Bitbucket has two endpoints: the legacy `/rest/build-status/1.0/commits/{sha}`, global by
//!   commit, and the repository-scoped `…/repos/{slug}/commits/{sha}/builds` (7.14+). Trove keeps
//!   both in one table: `repo` is `None` for a legacy status. A repository sees its own statuses
//!   and the legacy ones of the commit; when both have a key, the one updated last wins
//!   ([`latest_per_key`]). The legacy endpoint sees the legacy ones and the repository-scoped ones
//!   of repositories the caller may read (the server filters). So a Jenkins that posts to either
//!   endpoint shows on the commit, as in Bitbucket.
//! - A **required-builds condition** belongs to a repository: the build keys that must be
//!   `SUCCESSFUL` on a pull request's source commit before it merges, for pull requests whose
//!   target a ref matcher covers (and an optional exempt matcher does not). The matchers are the
//!   branch permissions' ([`Matcher`]), with `ANY_REF`.
//! - A **Code Insights report** is keyed by (repository, commit, key); replacing it keeps its
//!   annotations (a scanner that wants them gone deletes them, as SonarQube does). Its `data` is
//!   JSON the server checked; the store keeps it as text.
//!
//! Times are Unix milliseconds.

use crate::branch_permissions::Matcher;
use crate::error::StoreError;

/// A build's state; the names are Bitbucket's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuildState {
    Successful,
    Failed,
    InProgress,
    Cancelled,
    Unknown,
}

impl BuildState {
    pub const ALL: [BuildState; 5] = [BuildState::Successful, BuildState::Failed, BuildState::InProgress, BuildState::Cancelled, BuildState::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            BuildState::Successful => "SUCCESSFUL",
            BuildState::Failed => "FAILED",
            BuildState::InProgress => "INPROGRESS",
            BuildState::Cancelled => "CANCELLED",
            BuildState::Unknown => "UNKNOWN",
        }
    }

    /// Exactly as Bitbucket names them (upper case).
    pub fn parse(s: &str) -> Option<BuildState> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Test counts a build reports (`testResults`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TestResults {
    pub successful: i64,
    pub failed: i64,
    pub skipped: i64,
}

/// One build status as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildStatus {
    /// `None`: posted to the legacy endpoint, seen in every repository with the commit.
    pub repo: Option<i64>,
    /// 40 lowercase hex digits.
    pub commit: String,
    pub key: String,
    pub state: BuildState,
    pub name: Option<String>,
    pub url: String,
    pub description: Option<String>,
    pub build_number: Option<String>,
    pub duration_ms: Option<i64>,
    pub parent: Option<String>,
    pub ref_name: Option<String>,
    pub test_results: Option<TestResults>,
    /// When this (commit, key) was first posted; kept when it is replaced.
    pub created_at: i64,
    pub updated_at: i64,
}

/// Of `statuses`, the one updated last for each key, newest first (what a commit "has").
pub fn latest_per_key(mut statuses: Vec<BuildStatus>) -> Vec<BuildStatus> {
    statuses.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.key.cmp(&b.key)));
    let mut seen = std::collections::HashSet::new();
    statuses.retain(|s| seen.insert(s.key.clone()));
    statuses
}

/// A required-builds condition as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredBuild {
    /// Global, never reused.
    pub id: i64,
    pub repo: i64,
    pub condition: RequiredBuildSpec,
}

/// What a condition says: the keys, and which target refs it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredBuildSpec {
    /// Non-empty; each without a newline (the server checks).
    pub build_parent_keys: Vec<String>,
    pub ref_matcher: Matcher,
    pub exempt_ref_matcher: Option<Matcher>,
}

impl RequiredBuildSpec {
    /// Whether the condition covers a pull request into `target_ref`.
    pub fn covers(&self, target_ref: &str, default_branch: Option<&str>) -> bool {
        self.ref_matcher.matches(target_ref, default_branch) && !self.exempt_ref_matcher.as_ref().is_some_and(|m| m.matches(target_ref, default_branch))
    }
}

/// A Code Insights report as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsightReport {
    pub id: i64,
    pub repo: i64,
    pub commit: String,
    pub key: String,
    pub title: String,
    pub details: Option<String>,
    /// `PASS` or `FAIL`.
    pub result: Option<String>,
    /// The `data` array as JSON text (`[]` when none).
    pub data: String,
    pub reporter: Option<String>,
    pub link: Option<String>,
    pub logo_url: Option<String>,
    /// Who created it (only they may replace it); `None` once their account is gone.
    pub creator: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An annotation to add or upsert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAnnotation {
    pub external_id: Option<String>,
    pub path: Option<String>,
    /// 0: the file as a whole (or no file).
    pub line: i64,
    pub message: String,
    /// `LOW`, `MEDIUM` or `HIGH`.
    pub severity: String,
    /// `BUG`, `CODE_SMELL` or `VULNERABILITY`.
    pub kind: Option<String>,
    pub link: Option<String>,
}

/// An annotation as stored, with the key of its report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    pub id: i64,
    pub report_key: String,
    pub annotation: NewAnnotation,
    pub created_at: i64,
}

/// Most annotations a report holds (Bitbucket's limit).
pub const MAX_ANNOTATIONS: usize = 1000;

/// The rows of build statuses, required-builds conditions and Code Insights. Each goes with its
/// repository (a legacy build status with no repository stays until it is replaced).
pub trait Builds {
    /// Inserts or replaces the status of (`s.repo`, `s.commit`, `s.key`); `created_at` is kept
    /// when one is replaced.
    fn put_build_status(&self, s: &BuildStatus) -> Result<(), StoreError>;
    /// Every status of these commits, in every repository and legacy, newest update first.
    fn build_statuses(&self, commits: &[String]) -> Result<Vec<BuildStatus>, StoreError>;
    /// Removes one status; `false` when there was none.
    fn delete_build_status(&self, repo: Option<i64>, commit: &str, key: &str) -> Result<bool, StoreError>;

    fn required_builds(&self, repo: i64) -> Result<Vec<RequiredBuild>, StoreError>;
    fn required_build(&self, id: i64) -> Result<Option<RequiredBuild>, StoreError>;
    fn insert_required_build(&self, repo: i64, spec: &RequiredBuildSpec) -> Result<RequiredBuild, StoreError>;
    /// `None` when there is no condition `id`.
    fn update_required_build(&self, id: i64, spec: &RequiredBuildSpec) -> Result<Option<RequiredBuild>, StoreError>;
    fn delete_required_build(&self, id: i64) -> Result<bool, StoreError>;

    /// Inserts or replaces the report of (`r.repo`, `r.commit`, `r.key`); on a replace the id,
    /// `creator`, `created_at` and the annotations are kept. Returns it as stored.
    fn put_insight_report(&self, r: &InsightReport) -> Result<InsightReport, StoreError>;
    fn insight_report(&self, repo: i64, commit: &str, key: &str) -> Result<Option<InsightReport>, StoreError>;
    /// The reports of a commit, by key.
    fn insight_reports(&self, repo: i64, commit: &str) -> Result<Vec<InsightReport>, StoreError>;
    /// Removes a report and its annotations.
    fn delete_insight_report(&self, repo: i64, commit: &str, key: &str) -> Result<bool, StoreError>;
    /// Adds annotations to a report, all or none; `false` (and nothing added) when the report
    /// would then hold more than [`MAX_ANNOTATIONS`].
    fn add_annotations(&self, report: i64, new: &[NewAnnotation]) -> Result<bool, StoreError>;
    /// Replaces the report's annotations with `external_id` by `a`, or adds it; `false` (nothing
    /// changed) when adding would pass [`MAX_ANNOTATIONS`].
    fn put_annotation(&self, report: i64, external_id: &str, a: &NewAnnotation) -> Result<bool, StoreError>;
    /// Removes the report's annotations with this external id, or all of them; how many.
    fn delete_annotations(&self, report: i64, external_id: Option<&str>) -> Result<u64, StoreError>;
    /// The annotations of a commit's reports (of one report if `report_key`), by report key,
    /// path, line and id.
    fn annotations(&self, repo: i64, commit: &str, report_key: Option<&str>) -> Result<Vec<Annotation>, StoreError>;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::branch_permissions::MatcherType;
    use crate::store::backends;
    use crate::{GlobalPermission, Owner, Password, ProjectKey, RepoSlug, UserName};

    const C1: &str = "1111111111111111111111111111111111111111";
    const C2: &str = "2222222222222222222222222222222222222222";

    fn status(repo: Option<i64>, commit: &str, key: &str, state: BuildState, at: i64) -> BuildStatus {
        BuildStatus {
            repo,
            commit: commit.into(),
            key: key.into(),
            state,
            name: Some(format!("{key} build")),
            url: format!("https://ci.example/{key}"),
            description: None,
            build_number: Some("7".into()),
            duration_ms: Some(1200),
            parent: Some(key.into()),
            ref_name: Some("refs/heads/main".into()),
            test_results: Some(TestResults { successful: 3, failed: 1, skipped: 0 }),
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    pub(crate) fn build_statuses_replace_by_key_keep_their_first_date_and_go_with_their_repository() {
        let (_d, s) = backends::store();
        let key = ProjectKey::parse("BS").unwrap();
        s.create_project(&key, None, false).unwrap();
        let repo = s.create_repo(&Owner::Project(key.clone()), &RepoSlug::parse("r").unwrap(), false).unwrap();
        let other = s.create_repo(&Owner::Project(key), &RepoSlug::parse("o").unwrap(), false).unwrap();
        s.put_build_status(&status(Some(repo.id), C1, "ci", BuildState::InProgress, 100)).unwrap();
        s.put_build_status(&status(Some(repo.id), C1, "ci", BuildState::Successful, 200)).unwrap();
        s.put_build_status(&status(None, C1, "ci", BuildState::Failed, 150)).unwrap();
        s.put_build_status(&status(Some(other.id), C1, "lint", BuildState::Failed, 300)).unwrap();
        s.put_build_status(&status(None, C2, "ci", BuildState::Successful, 50)).unwrap();
        let all = s.build_statuses(&[C1.to_owned()]).unwrap();
        assert_eq!(
            all.iter().map(|b| (b.repo, b.key.as_str(), b.state)).collect::<Vec<_>>(),
            vec![(Some(other.id), "lint", BuildState::Failed), (Some(repo.id), "ci", BuildState::Successful), (None, "ci", BuildState::Failed),]
        );
        let replaced = &all[1];
        assert_eq!((replaced.created_at, replaced.updated_at), (100, 200));
        assert_eq!(replaced.test_results, Some(TestResults { successful: 3, failed: 1, skipped: 0 }));
        assert_eq!(*replaced, BuildStatus { created_at: 100, ..status(Some(repo.id), C1, "ci", BuildState::Successful, 200) });
        let in_repo: Vec<_> = all.iter().filter(|b| b.repo.is_none() || b.repo == Some(repo.id)).cloned().collect();
        assert_eq!(latest_per_key(in_repo).iter().map(|b| b.state).collect::<Vec<_>>(), vec![BuildState::Successful]);
        assert_eq!(s.build_statuses(&[C1.to_owned(), C2.to_owned()]).unwrap().len(), 4);
        assert!(s.build_statuses(&[]).unwrap().is_empty());
        assert!(s.delete_build_status(None, C1, "ci").unwrap());
        assert!(!s.delete_build_status(None, C1, "ci").unwrap());
        s.delete_repo(&other).unwrap();
        assert_eq!(s.build_statuses(&[C1.to_owned()]).unwrap().iter().map(|b| b.repo).collect::<Vec<_>>(), vec![Some(repo.id)]);
    }

    #[test]
    pub(crate) fn required_builds_round_trip_update_and_go_with_their_repository() {
        let (_d, s) = backends::store();
        s.create_project(&ProjectKey::parse("RB").unwrap(), None, false).unwrap();
        let repo = s.create_repo(&Owner::Project(ProjectKey::parse("RB").unwrap()), &RepoSlug::parse("r").unwrap(), false).unwrap();
        let spec = RequiredBuildSpec {
            build_parent_keys: vec!["ci".into(), "lint".into()],
            ref_matcher: Matcher::new(MatcherType::AnyRef, "").unwrap(),
            exempt_ref_matcher: Some(Matcher::new(MatcherType::Pattern, "release/*").unwrap()),
        };
        let made = s.insert_required_build(repo.id, &spec).unwrap();
        assert_eq!(made.condition, spec);
        assert!(made.condition.covers("refs/heads/main", None));
        assert!(!made.condition.covers("refs/heads/release/1", None));
        assert_eq!(s.required_build(made.id).unwrap(), Some(made.clone()));
        let spec2 = RequiredBuildSpec {
            build_parent_keys: vec!["ci".into()],
            ref_matcher: Matcher::new(MatcherType::Branch, "main").unwrap(),
            exempt_ref_matcher: None,
        };
        let second = s.insert_required_build(repo.id, &spec2).unwrap();
        assert!(second.id > made.id);
        let updated = s.update_required_build(made.id, &spec2).unwrap().unwrap();
        assert_eq!(updated.condition, spec2);
        assert_eq!(s.required_builds(repo.id).unwrap().iter().map(|c| c.id).collect::<Vec<_>>(), vec![made.id, second.id]);
        assert_eq!(s.update_required_build(9999, &spec2).unwrap(), None);
        assert!(s.delete_required_build(second.id).unwrap());
        assert!(!s.delete_required_build(second.id).unwrap());
        s.delete_repo(&repo).unwrap();
        assert_eq!(s.required_build(made.id).unwrap(), None);
    }

    fn ann(ext: Option<&str>, path: &str, line: i64, msg: &str) -> NewAnnotation {
        NewAnnotation {
            external_id: ext.map(str::to_owned),
            path: Some(path.into()),
            line,
            message: msg.into(),
            severity: "HIGH".into(),
            kind: Some("BUG".into()),
            link: None,
        }
    }

    #[test]
    pub(crate) fn insight_reports_replace_in_place_and_annotations_upsert_count_and_go_with_them() {
        let (_d, s) = backends::store();
        let user = s.create_user(&UserName::parse("scanner").unwrap(), &Password::new("password1").unwrap(), GlobalPermission::LicensedUser).unwrap();
        s.create_project(&ProjectKey::parse("CI").unwrap(), None, false).unwrap();
        let repo = s.create_repo(&Owner::Project(ProjectKey::parse("CI").unwrap()), &RepoSlug::parse("r").unwrap(), false).unwrap();
        let report = InsightReport {
            id: 0,
            repo: repo.id,
            commit: C1.into(),
            key: "sonar".into(),
            title: "SonarQube".into(),
            details: Some("2 bugs".into()),
            result: Some("FAIL".into()),
            data: r#"[{"title":"Bugs","type":"NUMBER","value":2}]"#.into(),
            reporter: Some("Sonar".into()),
            link: None,
            logo_url: None,
            creator: Some(user.id),
            created_at: 10,
            updated_at: 10,
        };
        let made = s.put_insight_report(&report).unwrap();
        assert_eq!(made, InsightReport { id: made.id, ..report.clone() });
        assert!(s.add_annotations(made.id, &[ann(Some("a"), "src/x.rs", 3, "one"), ann(None, "src/x.rs", 1, "two")]).unwrap());
        let again = s
            .put_insight_report(&InsightReport {
                title: "Sonar 2".into(),
                result: Some("PASS".into()),
                creator: None,
                created_at: 20,
                updated_at: 20,
                ..report.clone()
            })
            .unwrap();
        assert_eq!((again.id, again.creator, again.created_at, again.updated_at, again.title.as_str()), (made.id, Some(user.id), 10, 20, "Sonar 2"));
        assert!(s.put_annotation(made.id, "a", &ann(Some("a"), "src/y.rs", 5, "moved")).unwrap());
        assert!(s.put_annotation(made.id, "b", &ann(Some("b"), "src/x.rs", 0, "file")).unwrap());
        let anns = s.annotations(repo.id, C1, None).unwrap();
        assert_eq!(
            anns.iter().map(|a| (a.annotation.path.as_deref().unwrap(), a.annotation.line, a.annotation.message.as_str())).collect::<Vec<_>>(),
            vec![("src/x.rs", 0, "file"), ("src/x.rs", 1, "two"), ("src/y.rs", 5, "moved"),]
        );
        assert!(anns.iter().all(|a| a.report_key == "sonar"));
        // The limit counts what is there: 3 + 997 fits, one more does not, and nothing is added.
        let many: Vec<NewAnnotation> = (0..997).map(|i| ann(None, "m", i, "m")).collect();
        assert!(s.add_annotations(made.id, &many).unwrap());
        assert!(!s.add_annotations(made.id, &[ann(None, "m", 1, "over")]).unwrap());
        assert!(!s.put_annotation(made.id, "new", &ann(Some("new"), "m", 1, "over")).unwrap());
        assert!(s.put_annotation(made.id, "a", &ann(Some("a"), "m", 1, "replacing is fine")).unwrap());
        assert_eq!(s.annotations(repo.id, C1, Some("sonar")).unwrap().len(), MAX_ANNOTATIONS);
        assert_eq!(s.delete_annotations(made.id, Some("b")).unwrap(), 1);
        assert_eq!(s.delete_annotations(made.id, None).unwrap(), 999);
        assert!(s.add_annotations(made.id, &[ann(None, "z", 1, "z")]).unwrap());
        let other = s.put_insight_report(&InsightReport { key: "cov".into(), ..report.clone() }).unwrap();
        assert_eq!(s.insight_reports(repo.id, C1).unwrap().iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), vec!["cov", "sonar"]);
        assert!(s.annotations(repo.id, C1, Some("cov")).unwrap().is_empty());
        assert!(s.delete_insight_report(repo.id, C1, "sonar").unwrap());
        assert!(!s.delete_insight_report(repo.id, C1, "sonar").unwrap());
        assert!(s.annotations(repo.id, C1, None).unwrap().is_empty());
        assert_eq!(s.insight_report(repo.id, C1, "cov").unwrap().map(|r| r.id), Some(other.id));
        s.delete_user(&UserName::parse("scanner").unwrap()).unwrap();
        assert_eq!(s.insight_report(repo.id, C1, "cov").unwrap().unwrap().creator, None);
        s.delete_repo(&repo).unwrap();
        assert!(s.insight_reports(repo.id, C1).unwrap().is_empty());
    }
}

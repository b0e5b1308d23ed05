//! Build status and Code Insights: which build statuses a commit has where, and what they mean
//! for merging a pull request.
//!
//! CI systems post statuses to two endpoints (see `trove_store::Builds`): the legacy one, global
//! by commit, and the repository-scoped one. A repository sees its own statuses of a commit and
//! the legacy ones; for each build key the one updated last counts ([`visible`]). The legacy
//! endpoint shows the legacy ones and the repository-scoped ones of repositories the caller may
//! read ([`readable`]).
//!
//! A pull request may merge only when (merge checks, [`merge_vetoes`]):
//! - its source commit has at least the repository's "minimum successful builds" (the
//!   `requiredSuccessfulBuilds` pull-request setting; 0 turns the check off), and
//! - each required-builds condition covering its target branch (its `refMatcher` matches and its
//!   `exemptRefMatcher` does not) has a `SUCCESSFUL` build of every one of its keys on that
//!   commit. A build key matches a status whose key or `parent` is it, so a condition on a
//!   parent key (`buildParentKeys`) is met by a build of a child job, as in Bitbucket.

use std::collections::HashMap;

use trove_store::{Authenticated, BuildState, BuildStatus, Permission, PullRequest, Repo, RequiredBuild, Store, StoreError, latest_per_key};

use crate::pull_requests::Veto;

/// The statuses each of `commits` has in the repositories `repos` (the target and source of a
/// pull request, or one repository): theirs and the legacy ones, one per key, newest first.
pub(crate) fn visible(store: &Store, repos: &[i64], commits: &[String]) -> Result<HashMap<String, Vec<BuildStatus>>, StoreError> {
    let mut by_commit: HashMap<String, Vec<BuildStatus>> = HashMap::new();
    for s in store.build_statuses(commits)? {
        if s.repo.is_none_or(|r| repos.contains(&r)) {
            by_commit.entry(s.commit.clone()).or_default().push(s);
        }
    }
    Ok(by_commit.into_iter().map(|(c, v)| (c, latest_per_key(v))).collect())
}

/// Every status of `commits` the caller may see through the legacy endpoint: the legacy ones
/// and those of repositories they may read, newest first (a key may show once per repository).
pub(crate) fn readable(store: &Store, who: Option<&Authenticated>, commits: &[String]) -> Result<Vec<BuildStatus>, StoreError> {
    let mut allowed: HashMap<i64, bool> = HashMap::new();
    let mut out = Vec::new();
    for s in store.build_statuses(commits)? {
        let ok = match s.repo {
            None => true,
            Some(id) => match allowed.get(&id) {
                Some(ok) => *ok,
                None => {
                    let ok = match store.repo_by_id(id)? {
                        Some(repo) => store.permission(who, &repo)?.is_some_and(|p| p >= Permission::Read),
                        None => false,
                    };
                    allowed.insert(id, ok);
                    ok
                }
            },
        };
        if ok {
            out.push(s);
        }
    }
    Ok(out)
}

/// Counts by state, as Bitbucket's stats endpoint shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) successful: usize,
    pub(crate) failed: usize,
    pub(crate) in_progress: usize,
    pub(crate) cancelled: usize,
    pub(crate) unknown: usize,
}

impl Summary {
    pub(crate) fn of<'a>(statuses: impl IntoIterator<Item = &'a BuildStatus>) -> Summary {
        let mut s = Summary::default();
        for b in statuses {
            match b.state {
                BuildState::Successful => s.successful += 1,
                BuildState::Failed => s.failed += 1,
                BuildState::InProgress => s.in_progress += 1,
                BuildState::Cancelled => s.cancelled += 1,
                BuildState::Unknown => s.unknown += 1,
            }
        }
        s
    }

    pub(crate) fn total(&self) -> usize {
        self.successful + self.failed + self.in_progress + self.cancelled + self.unknown
    }

    /// What the commit's builds add up to, as the pages show it: any failure is a failure, then
    /// anything still running, then success; `None` with no builds.
    pub(crate) fn overall(&self) -> Option<BuildState> {
        if self.total() == 0 {
            None
        } else if self.failed > 0 {
            Some(BuildState::Failed)
        } else if self.in_progress > 0 {
            Some(BuildState::InProgress)
        } else if self.successful == self.total() {
            Some(BuildState::Successful)
        } else if self.cancelled > 0 {
            Some(BuildState::Cancelled)
        } else {
            Some(BuildState::Unknown)
        }
    }
}

/// The merge checks of builds for `pr` (target `repo`, its required-builds `conditions`), given its target repository's default
/// branch (`refs/heads/main`) and the minimum of successful builds (0: none required). Pure
/// but for reading the rows.
pub(crate) fn merge_vetoes(
    store: &Store,
    repo: &Repo,
    pr: &PullRequest,
    conditions: &[RequiredBuild],
    default_branch: Option<&str>,
    minimum: i64,
) -> Result<Vec<Veto>, StoreError> {
    let covering: Vec<_> = conditions.iter().filter(|c| c.condition.covers(&pr.to_ref, default_branch)).collect();
    if covering.is_empty() && minimum <= 0 {
        return Ok(Vec::new());
    }
    let commit = pr.from_hash.clone();
    let statuses = visible(store, &[repo.id, pr.from_repo_id], std::slice::from_ref(&commit))?.remove(&commit).unwrap_or_default();
    Ok(vetoes(&statuses, covering.iter().flat_map(|c| c.condition.build_parent_keys.iter().map(String::as_str)), minimum, &pr.from_ref))
}

/// The vetoes for a source commit with `statuses`, the keys that must succeed, and the
/// minimum count of successful builds.
fn vetoes<'a>(statuses: &[BuildStatus], required: impl Iterator<Item = &'a str>, minimum: i64, from_ref: &str) -> Vec<Veto> {
    let mut out = Vec::new();
    let successful = statuses.iter().filter(|s| s.state == BuildState::Successful).count() as i64;
    if minimum > 0 && successful < minimum {
        let need = if minimum == 1 { "one successful build".to_owned() } else { format!("{minimum} successful builds") };
        out.push(Veto {
            summary: "Not all required builds are successful yet".into(),
            detail: format!("You need a minimum of {need} before this pull request can be merged; the latest commit has {successful}."),
        });
    }
    let mut missing: Vec<&str> = Vec::new();
    for key in required {
        let ok = statuses.iter().any(|s| s.state == BuildState::Successful && (s.key == key || s.parent.as_deref() == Some(key)));
        if !ok && !missing.contains(&key) {
            missing.push(key);
        }
    }
    let source = from_ref.strip_prefix("refs/heads/").unwrap_or(from_ref);
    for key in missing {
        let state = statuses.iter().find(|s| s.key == key || s.parent.as_deref() == Some(key)).map(|s| s.state);
        let how = match state {
            None => "has not run".to_owned(),
            Some(s) => format!("is {}", s.as_str()),
        };
        out.push(Veto {
            summary: "Not all required builds are successful yet".into(),
            detail: format!("The required build {key} {how} on the latest commit of {source}; it must be SUCCESSFUL before this pull request can be merged."),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_store::TestResults;

    fn st(key: &str, parent: Option<&str>, state: BuildState) -> BuildStatus {
        BuildStatus {
            repo: None,
            commit: "c".into(),
            key: key.into(),
            state,
            name: None,
            url: "u".into(),
            description: None,
            build_number: None,
            duration_ms: None,
            parent: parent.map(str::to_owned),
            ref_name: None,
            test_results: Some(TestResults::default()),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn required_keys_need_a_successful_build_of_the_key_or_a_child_and_the_minimum_counts_successes() {
        let statuses = [st("ci", None, BuildState::Successful), st("job/1", Some("deploy"), BuildState::Successful), st("lint", None, BuildState::Failed)];
        let cases: &[(&[&str], i64, usize)] = &[
            (&[], 0, 0),
            (&["ci"], 0, 0),
            (&["deploy"], 0, 0),
            (&["ci", "lint"], 0, 1),
            (&["ci", "lint", "docs", "docs"], 0, 2),
            (&[], 2, 0),
            (&[], 3, 1),
            (&["docs"], 3, 2),
        ];
        for (keys, minimum, n) in cases {
            let v = vetoes(&statuses, keys.iter().copied(), *minimum, "refs/heads/feature");
            assert_eq!(v.len(), *n, "{keys:?} {minimum}: {v:?}");
        }
        let v = vetoes(&statuses, ["lint", "docs"].into_iter(), 0, "refs/heads/feature");
        assert!(v[0].detail.contains("lint is FAILED on the latest commit of feature"), "{}", v[0].detail);
        assert!(v[1].detail.contains("docs has not run"), "{}", v[1].detail);
        assert_eq!(v[0].summary, "Not all required builds are successful yet");
        let v = vetoes(&[], std::iter::empty(), 1, "refs/heads/f");
        assert!(v[0].detail.starts_with("You need a minimum of one successful build"), "{}", v[0].detail);
    }

    #[test]
    fn the_overall_state_is_failed_then_running_then_successful() {
        let of = |states: &[BuildState]| Summary::of(&states.iter().map(|s| st("k", None, *s)).collect::<Vec<_>>()).overall();
        assert_eq!(of(&[]), None);
        assert_eq!(of(&[BuildState::Successful, BuildState::Failed, BuildState::InProgress]), Some(BuildState::Failed));
        assert_eq!(of(&[BuildState::Successful, BuildState::InProgress]), Some(BuildState::InProgress));
        assert_eq!(of(&[BuildState::Successful, BuildState::Successful]), Some(BuildState::Successful));
        assert_eq!(of(&[BuildState::Successful, BuildState::Cancelled]), Some(BuildState::Cancelled));
        assert_eq!(of(&[BuildState::Unknown]), Some(BuildState::Unknown));
    }
}

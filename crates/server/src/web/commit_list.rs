//! The commit list of a repository (`…/commits`): each commit with the branches and tags that
//! point at it, a graph of the history drawn on the server (one small SVG per row, from the
//! commits' parents: [`lanes`]), its date relative to now with the exact one on hover
//! (`<time datetime title>`), and its builds as one ✓/✗/● linked to the commit's builds.

use std::collections::HashMap;

use maud::{Markup, html};
use trove_store::{BuildState, BuildStatus};

use crate::builds::Summary;
use crate::repo_read::{Commit, Refs};

/// Width of one lane of the graph, and the height of a row (the list's rows are one line
/// high, so the SVGs of consecutive rows join into one drawing).
const LANE_W: usize = 14;
const ROW_H: usize = 34;
/// Lanes drawn at most; commits past them sit in the last one. Default 16.
const MAX_LANES: usize = 16;
/// Colours the lanes cycle through (`.lane-0` … in the style sheet).
const COLOURS: usize = 6;

/// One row of the graph: where the commit's dot is and the lines through the row.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct GraphRow {
    /// The commit's lane.
    pub(crate) col: usize,
    /// Lanes passing by from the row above to the row below.
    pub(crate) through: Vec<usize>,
    /// Lanes coming down into the dot (the commit's children).
    pub(crate) into: Vec<usize>,
    /// Lanes leaving the dot downwards (its parents).
    pub(crate) out: Vec<usize>,
    /// Lanes in use in this row, for its width.
    pub(crate) width: usize,
    pub(crate) merge: bool,
}

/// The graph of `commits` (id and parents, children before parents as `git log` lists them):
/// each commit takes the lane that was waiting for it (a new one if none was), lanes that also
/// waited for it end in it, its first parent continues its lane and each other parent gets the
/// lane already waiting for it or a free one.
pub(crate) fn lanes(commits: &[(String, Vec<String>)]) -> Vec<GraphRow> {
    let mut waiting: Vec<Option<&str>> = Vec::new();
    let mut rows = Vec::with_capacity(commits.len());
    for (id, parents) in commits {
        let mine: Vec<usize> = waiting.iter().enumerate().filter(|(_, w)| **w == Some(id.as_str())).map(|(i, _)| i).collect();
        let col = match mine.first() {
            Some(c) => *c,
            None => free(&mut waiting),
        };
        let through: Vec<usize> = waiting.iter().enumerate().filter(|(i, w)| w.is_some() && !mine.contains(i)).map(|(i, _)| i).collect();
        for i in &mine {
            waiting[*i] = None;
        }
        let mut out = Vec::new();
        for (n, p) in parents.iter().enumerate() {
            let lane = if n == 0 {
                // The first parent continues the commit's lane unless a lane already waits for
                // it (a branch point): then the line goes there.
                match waiting.iter().position(|w| *w == Some(p.as_str())) {
                    Some(l) => l,
                    None => {
                        waiting[col] = Some(p.as_str());
                        col
                    }
                }
            } else {
                match waiting.iter().position(|w| *w == Some(p.as_str())) {
                    Some(l) => l,
                    None => {
                        let l = free(&mut waiting);
                        waiting[l] = Some(p.as_str());
                        l
                    }
                }
            };
            out.push(lane);
        }
        while waiting.last() == Some(&None) {
            waiting.pop();
        }
        let widest = |v: &[usize]| v.iter().max().map_or(0, |m| m + 1);
        let width = [col + 1, waiting.len(), widest(&through), widest(&mine), widest(&out)].into_iter().max().unwrap_or(1);
        rows.push(GraphRow { col, through, into: mine, out, width, merge: parents.len() > 1 });
    }
    rows
}

/// The first free lane, made if there is none.
fn free(waiting: &mut Vec<Option<&str>>) -> usize {
    match waiting.iter().position(Option::is_none) {
        Some(i) => i,
        None => {
            waiting.push(None);
            waiting.len() - 1
        }
    }
}

fn x(lane: usize) -> usize {
    lane.min(MAX_LANES - 1) * LANE_W + LANE_W / 2
}

/// One row's SVG: lines through, into and out of the dot, then the dot.
fn row_svg(r: &GraphRow, width: usize) -> Markup {
    let w = width.clamp(1, MAX_LANES) * LANE_W;
    let (mid, h) = (ROW_H / 2, ROW_H);
    let lane_class = |l: usize| format!("lane-{}", l % COLOURS);
    html! {
        svg.graph width=(w) height=(h) viewBox={ "0 0 " (w) " " (h) } aria-hidden="true" focusable="false" {
            @for l in &r.through { line class=(lane_class(*l)) x1=(x(*l)) y1="0" x2=(x(*l)) y2=(h) {} }
            @for l in &r.into { path class=(lane_class(*l)) d={ "M" (x(*l)) " 0 C" (x(*l)) " " (mid / 2) " " (x(r.col)) " " (mid / 2) " " (x(r.col)) " " (mid) } {} }
            @for l in &r.out { path class=(lane_class(*l)) d={ "M" (x(r.col)) " " (mid) " C" (x(r.col)) " " (mid + mid / 2) " " (x(*l)) " " (mid + mid / 2) " " (x(*l)) " " (h) } {} }
            circle class={ (lane_class(r.col)) @if r.merge { " merge" } } cx=(x(r.col)) cy=(mid) r="4" {}
        }
    }
}

/// The branches and tags at each commit, by commit id: `(short name, kind, is default)`.
pub(crate) fn labels(refs: &Refs) -> HashMap<&str, Vec<(&str, &'static str, bool)>> {
    let mut m: HashMap<&str, Vec<(&str, &'static str, bool)>> = HashMap::new();
    for b in &refs.branches {
        m.entry(b.commit.as_str()).or_default().push((b.short.as_str(), "branch", refs.head.as_deref() == Some(b.full.as_str())));
    }
    for t in &refs.tags {
        m.entry(t.commit.as_str()).or_default().push((t.short.as_str(), "tag", false));
    }
    for v in m.values_mut() {
        // The default branch first, then branches, then tags.
        v.sort_by_key(|(name, kind, default)| (!default, *kind != "branch", *name));
    }
    m
}

/// "3 hours ago", as Bitbucket words it, from Unix seconds `ts` at `now`.
pub(crate) fn relative(ts: i64, now: i64) -> String {
    let d = now - ts;
    let plural = |n: i64, unit: &str| if n == 1 { format!("1 {unit} ago") } else { format!("{n} {unit}s ago") };
    match d {
        i64::MIN..=-60 => "in the future".to_owned(),
        -59..=59 => "just now".to_owned(),
        60..=3599 => plural(d / 60, "minute"),
        3600..=86_399 => plural(d / 3600, "hour"),
        86_400..=2_591_999 => plural(d / 86_400, "day"),
        2_592_000..=31_535_999 => plural(d / 2_592_000, "month"),
        _ => plural(d / 31_536_000, "year"),
    }
}

/// A date relative to now, the exact one (UTC) on hover and in `datetime` for machines.
pub(crate) fn when(ts: i64, now: i64) -> Markup {
    let exact = super::view::utc(ts);
    let iso =
        time::OffsetDateTime::from_unix_timestamp(ts).ok().and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()).unwrap_or_default();
    html! { time datetime=(iso) title=(exact) { (relative(ts, now)) } }
}

/// A commit's builds as one sign (✓ all passed, ✗ one failed, ● running or other), linked to
/// `href` (the commit's builds), its words for screen readers and on hover.
pub(crate) fn build_icon(href: &str, statuses: &[BuildStatus]) -> Markup {
    let sum = Summary::of(statuses);
    let Some(state) = sum.overall() else { return html! {} };
    let (class, sign, word) = match state {
        BuildState::Successful => ("build-successful", "✓", "passed"),
        BuildState::Failed => ("build-failed", "✗", "failed"),
        BuildState::InProgress => ("build-inprogress", "●", "in progress"),
        BuildState::Cancelled => ("build-cancelled", "●", "cancelled"),
        BuildState::Unknown => ("build-unknown", "●", "unknown"),
    };
    let label = format!("Builds {word}: {} of {} passed", sum.successful, sum.total());
    html! { a.build-icon class=(class) href=(href) title=(label) aria-label=(label) { (sign) } }
}

/// What the commit table shows besides the commits.
pub(crate) struct Extras<'a> {
    pub(crate) refs: &'a Refs,
    pub(crate) builds: &'a HashMap<String, Vec<BuildStatus>>,
    /// The graph rows of the listed commits, when the list is the whole history (no path).
    pub(crate) graph: Option<&'a [GraphRow]>,
    /// `…/commits`, to link each commit.
    pub(crate) base: &'a str,
    pub(crate) now: i64,
}

/// The commit table: graph, id, labels and message, author, date, builds.
pub(crate) fn table(commits: &[Commit], e: &Extras) -> Markup {
    let labels = labels(e.refs);
    let width = e.graph.map_or(0, |g| g.iter().map(|r| r.width).max().unwrap_or(1));
    html! {
        table.list.commit-list #commits .with-graph[e.graph.is_some()] {
            thead { tr {
                @if e.graph.is_some() { th.graph-col { span.visually-hidden { "Graph" } } }
                th { "Commit" } th { "Message" } th { "Author" } th { "Date" } th { "Builds" }
            } }
            tbody {
                @for (i, c) in commits.iter().enumerate() {
                    tr.commit-row data-commit=(c.id) {
                        @if let Some(g) = e.graph { td.graph-cell { @if let Some(r) = g.get(i) { (row_svg(r, width)) } } }
                        td.sha { a href={ (e.base) "/" (c.id) } { (c.short) } }
                        td.message {
                            @if let Some(ls) = labels.get(c.id.as_str()) {
                                @for (name, kind, default) in ls {
                                    span class={ "ref-label " (kind) @if *default { " default" } } title={ (if *kind == "tag" { "Tag " } else { "Branch " }) (name) } { (name) }
                                    " "
                                }
                            }
                            a.subject href={ (e.base) "/" (c.id) } { (c.subject()) }
                        }
                        td.author { (c.author_name) }
                        td.muted.date { (when(c.author_time, e.now)) }
                        td { @if let Some(b) = e.builds.get(&c.id) { (build_icon(&format!("{}/{}#builds", e.base, c.id), b)) } }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, parents: &[&str]) -> (String, Vec<String>) {
        (id.to_owned(), parents.iter().map(|p| (*p).to_owned()).collect())
    }

    #[test]
    fn a_straight_history_is_one_lane() {
        let rows = lanes(&[c("c", &["b"]), c("b", &["a"]), c("a", &[])]);
        assert!(rows.iter().all(|r| r.col == 0 && r.through.is_empty() && r.width == 1));
        assert_eq!(rows[0].into, Vec::<usize>::new(), "the tip has nothing above it");
        assert_eq!((rows[1].into.clone(), rows[1].out.clone()), (vec![0], vec![0]));
        assert_eq!(rows[2].out, Vec::<usize>::new(), "the root has nothing below it");
    }

    #[test]
    fn a_merge_opens_a_lane_for_its_second_parent_which_joins_again_at_the_fork() {
        // m merges f (feature) into b; both come from a.
        //  m
        //  |\
        //  b f
        //  |/
        //  a
        let rows = lanes(&[c("m", &["b", "f"]), c("b", &["a"]), c("f", &["a"]), c("a", &[])]);
        assert!(rows[0].merge);
        assert_eq!((rows[0].col, rows[0].out.clone(), rows[0].width), (0, vec![0, 1], 2));
        assert_eq!((rows[1].col, rows[1].through.clone(), rows[1].out.clone()), (0, vec![1], vec![0]));
        // f is in lane 1; its parent a already waits in lane 0: the line goes there.
        assert_eq!((rows[2].col, rows[2].through.clone(), rows[2].out.clone()), (1, vec![0], vec![0]));
        assert_eq!((rows[3].col, rows[3].into.clone(), rows[3].width), (0, vec![0], 1));
    }

    #[test]
    fn two_tips_of_one_history_join_where_they_meet() {
        // Two branches listed together (x and y both on a): the second tip starts its own lane.
        let rows = lanes(&[c("x", &["a"]), c("y", &["a"]), c("a", &[])]);
        assert_eq!((rows[0].col, rows[1].col), (0, 1));
        assert_eq!(rows[1].into, Vec::<usize>::new());
        assert_eq!(rows[1].out, vec![0], "y's parent already waits in lane 0");
        assert_eq!(rows[2].into, vec![0]);
    }

    #[test]
    fn a_parent_listed_before_its_child_does_not_break_the_graph() {
        let rows = lanes(&[c("a", &[]), c("b", &["a"])]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].col, 0);
    }

    #[test]
    fn graph_rows_are_svg_without_style_attributes() {
        let rows = lanes(&[c("m", &["b", "f"]), c("b", &[]), c("f", &[])]);
        let svg = row_svg(&rows[0], 2).into_string();
        assert!(svg.starts_with("<svg class=\"graph\"") && svg.contains("circle class=\"lane-0 merge\""), "{svg}");
        assert!(!svg.contains("style="), "{svg}");
    }

    #[test]
    fn dates_read_relative_to_now() {
        let now = 1_800_000_000;
        assert_eq!(relative(now - 5, now), "just now");
        assert_eq!(relative(now - 60, now), "1 minute ago");
        assert_eq!(relative(now - 3 * 3600, now), "3 hours ago");
        assert_eq!(relative(now - 86_400, now), "1 day ago");
        assert_eq!(relative(now - 40 * 86_400, now), "1 month ago");
        assert_eq!(relative(now - 800 * 86_400, now), "2 years ago");
        assert_eq!(relative(now + 3600, now), "in the future");
        let t = when(951_782_400, now).into_string();
        assert_eq!(t, "<time datetime=\"2000-02-29T00:00:00Z\" title=\"2000-02-29 00:00 UTC\">26 years ago</time>");
    }

    #[test]
    fn labels_put_the_default_branch_first_then_branches_then_tags() {
        use crate::repo_read::RefInfo;
        let r = |full: &str, short: &str, commit: &str| RefInfo { full: full.into(), short: short.into(), commit: commit.into(), tag_object: None };
        let refs = Refs {
            head: Some("refs/heads/main".into()),
            branches: vec![r("refs/heads/a", "a", "1"), r("refs/heads/main", "main", "1"), r("refs/heads/b", "b", "2")],
            tags: vec![r("refs/tags/v1", "v1", "1")],
        };
        let l = labels(&refs);
        assert_eq!(l["1"], vec![("main", "branch", true), ("a", "branch", false), ("v1", "tag", false)]);
        assert_eq!(l["2"], vec![("b", "branch", false)]);
    }
}

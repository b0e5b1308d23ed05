//! Syntax highlighting for the file view, blame and diffs: syntect's parser with two-face's
//! syntax set, rendered as `<span class="k">` runs whose colours live in the style sheet (the
//! pages' CSP allows no inline styles), cached by blob id.
//!
//! Each token's scopes are matched against a small "theme" whose foreground colour is not a
//! colour but the index of one of [`CLASSES`]; adjacent tokens of one class are merged, so a
//! line carries a few spans, not one per scope. A file past [`MAX_BYTES`] or with a line past
//! [`MAX_LINE`] is shown as plain text, as is one whose highlighting takes longer than
//! [`TIME_BUDGET`] (the lines not reached stay plain).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use syntect::highlighting::{Color, HighlightIterator, HighlightState, Highlighter, ScopeSelectors, StyleModifier, Theme, ThemeItem, ThemeSettings};
use syntect::parsing::{ParseState, ScopeStack, SyntaxReference, SyntaxSet};

/// Files larger than this are not highlighted. Default 1 MiB (the file view's own limit).
pub(crate) const MAX_BYTES: usize = 1 << 20;
/// A file with a line longer than this (minified code, data) is not highlighted: the regexes
/// of some grammars are slow on such lines. Default 5,000 bytes.
pub(crate) const MAX_LINE: usize = 5_000;
/// Most time one file's highlighting may take; the lines after it stay plain. Default 3 s.
pub(crate) const TIME_BUDGET: Duration = Duration::from_secs(3);
/// Most bytes of rendered lines the cache keeps. Default 64 MiB.
const CACHE_BYTES: usize = 64 << 20;

/// The class names a token can get (index 0: none), and the scope selectors that give them;
/// the colours are in [`CSS`]. (`l` is taken: it is a line of the file view.)
const CLASSES: [&str; 13] = ["", "k", "s", "c", "n", "f", "t", "a", "r", "h", "b", "i", "u"];
const RULES: &[(&str, u8)] = &[
    ("keyword, storage, variable.language, keyword.control, support.type.primitive", 1),
    ("keyword.operator, punctuation.separator, punctuation.accessor", 0),
    ("keyword.operator.word, keyword.operator.new, keyword.operator.logical.python", 1),
    ("string, markup.raw, markup.inline.raw, meta.string", 2),
    ("comment, punctuation.definition.comment", 3),
    ("constant.numeric, constant.language, constant.character, constant.other, support.constant, variable.other.constant", 4),
    ("entity.name.function, support.function, variable.function, meta.function-call.identifier", 5),
    (
        "entity.name.type, entity.name.class, entity.name.struct, entity.name.enum, entity.name.trait, entity.name.impl, entity.other.inherited-class, support.type, support.class, entity.name.namespace",
        6,
    ),
    ("entity.name.tag, meta.mapping.key string, entity.name.key", 6),
    ("entity.other.attribute-name, meta.attribute-with-value, variable.parameter, support.type.property-name", 7),
    ("string.regexp, constant.character.escape", 8),
    ("markup.heading, entity.name.section, markup.heading punctuation", 9),
    ("markup.bold", 10),
    ("markup.italic", 11),
    ("markup.underline.link, meta.link", 12),
    ("meta.preprocessor, keyword.control.import, keyword.other.import", 1),
];

/// The colours: every one at least 5:1 against white, the selected line's yellow and the diffs'
/// green and red (WCAG AA for small text is 4.5:1), scoped to `.hl` so the one-letter classes
/// mean nothing elsewhere.
pub(crate) const CSS: &str = r#"
.hl .k{color:#403294}.hl .s{color:#006644}.hl .c{color:#505f79;font-style:italic}.hl .n{color:#974f0c}
.hl .f{color:#0747a6}.hl .t{color:#00666e}.hl .a{color:#8f3c00}.hl .r{color:#ae2e24}.hl .h{color:#0747a6;font-weight:700}
.hl .b{font-weight:700}.hl .i{font-style:italic}.hl .u{color:#0747a6;text-decoration:underline}
"#;

static SYNTAXES: LazyLock<SyntaxSet> = LazyLock::new(two_face::syntax::extra_newlines);

static THEME: LazyLock<Theme> = LazyLock::new(|| Theme {
    name: Some("trove classes".into()),
    author: None,
    settings: ThemeSettings { foreground: Some(class_color(0)), ..ThemeSettings::default() },
    scopes: RULES
        .iter()
        .map(|(sel, class)| ThemeItem {
            scope: sel.parse::<ScopeSelectors>().expect("the rules' selectors parse"),
            style: StyleModifier { foreground: Some(class_color(*class)), background: None, font_style: None },
        })
        .collect(),
});

fn class_color(class: u8) -> Color {
    Color { r: class, g: 0, b: 0, a: 0xFF }
}

/// File names whose syntax their extension does not tell (`Dockerfile`, `Jenkinsfile`), and
/// extensions two-face's set does not list under the name people use.
const BY_NAME: &[(&str, &str)] = &[
    ("dockerfile", "Dockerfile"),
    ("containerfile", "Dockerfile"),
    ("jenkinsfile", "Groovy"),
    ("makefile", "Makefile"),
    ("gnumakefile", "Makefile"),
    ("cmakelists.txt", "CMake"),
    ("gemfile", "Ruby"),
    ("rakefile", "Ruby"),
    ("cargo.lock", "TOML"),
];
const BY_EXTENSION: &[(&str, &str)] = &[
    ("dockerfile", "Dockerfile"),
    ("kts", "Kotlin"),
    ("gradle", "Groovy"),
    ("properties", "Java Properties"),
    ("mk", "Makefile"),
    ("h", "C++"),
    ("yml", "YAML"),
    ("mjs", "JavaScript"),
    ("cjs", "JavaScript"),
    ("zsh", "Bourne Again Shell (bash)"),
];

/// The syntax for a file by its name (`Dockerfile`, `Makefile`), its extension, or else its
/// first line (`#!/bin/sh`, `<?xml`); `None` for plain text.
fn syntax_for(path: &str, first_line: &str) -> Option<&'static SyntaxReference> {
    let set = &*SYNTAXES;
    let name = path.rsplit('/').next().unwrap_or(path);
    let lower = name.to_ascii_lowercase();
    let named = |n: &str| set.find_syntax_by_name(n);
    if let Some((_, s)) = BY_NAME.iter().find(|(n, _)| *n == lower) {
        return named(s);
    }
    // `Dockerfile.dev`, `Makefile.in`
    for (prefix, s) in [("dockerfile.", "Dockerfile"), ("makefile.", "Makefile")] {
        if lower.starts_with(prefix) {
            return named(s);
        }
    }
    if let Some((_, ext)) = name.rsplit_once('.') {
        let ext_lower = ext.to_ascii_lowercase();
        if let Some((_, s)) = BY_EXTENSION.iter().find(|(e, _)| *e == ext_lower) {
            return named(s);
        }
        if let Some(s) = set.find_syntax_by_extension(ext).or_else(|| set.find_syntax_by_extension(&ext_lower)) {
            return Some(s).filter(|s| s.name != "Plain Text");
        }
    }
    if let Some(s) = set.find_syntax_by_extension(name) {
        return Some(s).filter(|s| s.name != "Plain Text");
    }
    set.find_syntax_by_first_line(first_line).filter(|s| s.name != "Plain Text")
}

/// The name of the language `path` is highlighted as (`Rust`, `TypeScript`), if any.
#[cfg(test)]
pub(crate) fn language(path: &str, first_line: &str) -> Option<&'static str> {
    syntax_for(path, first_line).map(|s| s.name.as_str())
}

/// `&`, `<` and `>` escaped: the text of an element.
pub(crate) fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

fn plain(line: &str) -> String {
    let mut s = String::with_capacity(line.len());
    escape_into(&mut s, line);
    s
}

/// One stream of lines through one syntax: a file, or one side of a diff's hunk.
pub(crate) struct Stream {
    parse: ParseState,
    state: HighlightState,
    /// Stopped after a parse error: the rest is plain.
    broken: bool,
}

impl Stream {
    fn new(syntax: &SyntaxReference) -> Stream {
        let hl = Highlighter::new(&THEME);
        Stream { parse: ParseState::new(syntax), state: HighlightState::new(&hl, ScopeStack::new()), broken: false }
    }

    /// The line (without its line end) as HTML, the state carried to the next line.
    pub(crate) fn line(&mut self, line: &str) -> String {
        if self.broken || line.len() > MAX_LINE {
            return plain(line);
        }
        // The grammars are written for lines that end in a newline.
        let with_end = format!("{line}\n");
        let ops = match self.parse.parse_line(&with_end, &SYNTAXES) {
            Ok(ops) => ops,
            Err(e) => {
                tracing::debug!(error = %e, "highlighting stopped: the grammar failed on a line");
                self.broken = true;
                return plain(line);
            }
        };
        let hl = Highlighter::new(&THEME);
        let mut out = String::with_capacity(line.len() + 32);
        let (mut open, mut run) = (0u8, String::new());
        let flush = |out: &mut String, class: u8, run: &mut String| {
            if run.is_empty() {
                return;
            }
            if class == 0 {
                out.push_str(run);
            } else {
                // Unquoted: the class is one letter, and a line has many spans.
                out.push_str("<span class=");
                out.push_str(CLASSES[class as usize]);
                out.push('>');
                out.push_str(run);
                out.push_str("</span>");
            }
            run.clear();
        };
        // Whitespace between two tokens of one class stays in their span; else it goes between
        // the spans: fewer and tighter spans.
        let mut space = String::new();
        for (style, text) in HighlightIterator::new(&mut self.state, &ops, &with_end, &hl) {
            let text = text.strip_suffix('\n').unwrap_or(text);
            if text.is_empty() {
                continue;
            }
            let start = text.len() - text.trim_start().len();
            let (lead, rest) = text.split_at(start);
            space.push_str(lead);
            if rest.is_empty() {
                continue;
            }
            let body = rest.trim_end();
            let class = style.foreground.r.min(CLASSES.len() as u8 - 1);
            if class != open {
                flush(&mut out, open, &mut run);
                escape_into(&mut out, &space);
                open = class;
            } else {
                escape_into(&mut run, &space);
            }
            space.clear();
            escape_into(&mut run, body);
            space.push_str(&rest[body.len()..]);
        }
        flush(&mut out, open, &mut run);
        escape_into(&mut out, &space);
        out
    }
}

/// A file's lines as HTML (escaped, with spans where highlighted) and the language, if it was
/// highlighted.
#[derive(Debug)]
pub(crate) struct Lines {
    pub(crate) html: Vec<String>,
    pub(crate) language: Option<&'static str>,
}

impl Lines {
    fn weight(&self) -> usize {
        self.html.iter().map(|l| l.len() + 24).sum::<usize>() + 64
    }
}

/// The lines of a text file, split as `str::lines` does (a `\r` before the `\n` dropped).
pub(crate) fn split_lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// `text` (the file at `path`) highlighted, or plain past the limits.
pub(crate) fn highlight(path: &str, text: &str) -> Lines {
    let lines = split_lines(text);
    let syntax = if text.len() > MAX_BYTES || lines.iter().any(|l| l.len() > MAX_LINE) { None } else { syntax_for(path, lines.first().copied().unwrap_or("")) };
    let Some(syntax) = syntax else { return Lines { html: lines.iter().map(|l| plain(l)).collect(), language: None } };
    let started = Instant::now();
    let mut stream = Stream::new(syntax);
    let mut html = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        if i % 256 == 255 && started.elapsed() > TIME_BUDGET {
            tracing::info!(path, lines = lines.len(), done = i, "highlighting stopped at its time budget; the rest is plain");
            stream.broken = true;
        }
        html.push(stream.line(l));
    }
    Lines { html, language: Some(syntax.name.as_str()) }
}

/// A bounded least-recently-used map of rendered files by blob id (a blob id names its
/// content, so an entry never goes stale) and path's language.
struct Cache {
    entries: HashMap<String, (Arc<Lines>, u64)>,
    order: BTreeMap<u64, String>,
    tick: u64,
    bytes: usize,
    cap: usize,
}

impl Cache {
    fn get(&mut self, key: &str) -> Option<Arc<Lines>> {
        self.tick += 1;
        let tick = self.tick;
        let (lines, used) = self.entries.get_mut(key)?;
        self.order.remove(used);
        *used = tick;
        self.order.insert(tick, key.to_owned());
        Some(lines.clone())
    }

    fn put(&mut self, key: String, lines: Arc<Lines>) {
        let weight = lines.weight();
        if weight > self.cap / 4 {
            return;
        }
        self.tick += 1;
        if let Some((old, used)) = self.entries.insert(key.clone(), (lines, self.tick)) {
            self.order.remove(&used);
            self.bytes -= old.weight();
        }
        self.order.insert(self.tick, key);
        self.bytes += weight;
        while self.bytes > self.cap {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            if let Some((old, _)) = self.entries.remove(&oldest) {
                self.bytes -= old.weight();
            }
        }
    }
}

static CACHE: LazyLock<Mutex<Cache>> =
    LazyLock::new(|| Mutex::new(Cache { entries: HashMap::new(), order: BTreeMap::new(), tick: 0, bytes: 0, cap: CACHE_BYTES }));

/// The key of a blob's rendering: its id and the language its path gives (a blob renamed to
/// another extension is highlighted anew).
fn cache_key(blob: &str, path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or(name);
    format!("{blob}\0{}", ext.to_ascii_lowercase())
}

/// How long a page waits for highlighting it has to compute before it shows the code plain;
/// the highlighting goes on (a tracked task on the blocking pool) and is cached, so the next
/// view has it. Default 400 ms: a 5,000-line file takes longer than that the first time.
#[cfg(not(test))]
pub(crate) const WAIT: Duration = Duration::from_millis(400);
/// Handler tests check the highlighted page, whatever the machine's load.
#[cfg(test)]
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// Keys being computed now: a second view meanwhile shows the code plain instead of starting
/// the same work again.
static IN_FLIGHT: LazyLock<Mutex<std::collections::HashSet<String>>> = LazyLock::new(|| Mutex::new(std::collections::HashSet::new()));

/// The cache key of blob `blob` shown at `path`.
pub(crate) fn blob_key(blob: &str, path: &str) -> String {
    cache_key(blob, path)
}

/// The cache key of a diff's lines of the file at `path`: a digest of what is shown.
pub(crate) fn diff_key<'a>(path: &str, lines: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(path.as_bytes());
    for (kind, text) in lines {
        h.update([0]);
        h.update(kind.as_bytes());
        h.update([1]);
        h.update(text.as_bytes());
    }
    let d = h.finalize();
    format!("diff\0{}", d.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The cached rendering under `key`, if there is one.
pub(crate) fn cached(key: &str) -> Option<Arc<Lines>> {
    CACHE.lock().unwrap_or_else(|e| e.into_inner()).get(key)
}

/// The rendering under `key`: cached, or computed by `work` within [`WAIT`]; `None` when it
/// takes longer (it is cached when done) or is being computed for another view.
pub(crate) async fn within_wait(state: &crate::AppState, key: String, work: impl FnOnce() -> Lines + Send + 'static) -> Option<Arc<Lines>> {
    within(state, key, WAIT, work).await
}

/// [`within_wait`] waiting `wait`.
async fn within(state: &crate::AppState, key: String, wait: Duration, work: impl FnOnce() -> Lines + Send + 'static) -> Option<Arc<Lines>> {
    if let Some(l) = cached(&key) {
        return Some(l);
    }
    if !IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone()) {
        return None;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    state.tasks.spawn(async move {
        let k = key.clone();
        let done = tokio::task::spawn_blocking(move || {
            let lines = Arc::new(work());
            CACHE.lock().unwrap_or_else(|e| e.into_inner()).put(k, lines.clone());
            lines
        })
        .await;
        IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        if let Ok(lines) = done {
            let _ = tx.send(lines);
        }
    });
    tokio::time::timeout(wait, rx).await.ok().and_then(Result::ok)
}

/// `text`'s lines escaped, not highlighted.
pub(crate) fn plain_lines(text: &str) -> Lines {
    Lines { html: split_lines(text).into_iter().map(plain).collect(), language: None }
}

/// Which side of a diff a line is on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Side {
    Old,
    New,
    Both,
}

/// Highlights a diff's lines: each hunk is read as two streams, the old side (context and
/// removed lines) and the new side (context and added lines), each from a fresh state at the
/// hunk's start (the lines above it are not in the diff). Plain text for files of no known
/// language, and once the diff has used its share of [`TIME_BUDGET`].
pub(crate) struct DiffHighlighter {
    syntax: Option<&'static SyntaxReference>,
    old: Option<Stream>,
    new: Option<Stream>,
    started: Instant,
    count: usize,
}

impl DiffHighlighter {
    /// For the file at `path` (its new name, or the old one if deleted).
    pub(crate) fn new(path: &str) -> DiffHighlighter {
        DiffHighlighter { syntax: syntax_for(path, ""), old: None, new: None, started: Instant::now(), count: 0 }
    }

    /// A new hunk starts: both sides from a fresh state.
    pub(crate) fn hunk(&mut self) {
        self.old = None;
        self.new = None;
    }

    /// The line's text (without its `+`/`-`/` ` marker) as HTML.
    pub(crate) fn line(&mut self, side: Side, text: &str) -> String {
        let Some(syntax) = self.syntax else { return plain(text) };
        self.count += 1;
        if self.count.is_multiple_of(256) && self.started.elapsed() > TIME_BUDGET {
            self.syntax = None;
            return plain(text);
        }
        match side {
            Side::Old => self.old.get_or_insert_with(|| Stream::new(syntax)).line(text),
            Side::New => self.new.get_or_insert_with(|| Stream::new(syntax)).line(text),
            Side::Both => {
                // Both states move on; the new side's rendering is shown.
                let _ = self.old.get_or_insert_with(|| Stream::new(syntax)).line(text);
                self.new.get_or_insert_with(|| Stream::new(syntax)).line(text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every language issue 25 lists, by a file name people use for it.
    #[test]
    fn each_listed_language_is_recognised_by_its_file_name() {
        let cases = [
            ("src/main.rs", "Rust"),
            ("App.java", "Java"),
            ("Main.kt", "Kotlin"),
            ("build.gradle.kts", "Kotlin"),
            ("main.go", "Go"),
            ("setup.py", "Python"),
            ("app.js", "JavaScript"),
            ("app.ts", "TypeScript"),
            ("view.tsx", "TypeScriptReact"),
            ("x.c", "C"),
            ("x.h", "C++"),
            ("x.cpp", "C++"),
            ("Program.cs", "C#"),
            ("app.rb", "Ruby"),
            ("index.php", "PHP"),
            ("run.sh", "Bourne Again Shell (bash)"),
            ("schema.sql", "SQL"),
            ("ci.yml", "YAML"),
            ("ci.yaml", "YAML"),
            ("package.json", "JSON"),
            ("pom.xml", "XML"),
            ("index.html", "HTML"),
            ("site.css", "CSS"),
            ("README.md", "Markdown"),
            ("Dockerfile", "Dockerfile"),
            ("docker/Dockerfile.dev", "Dockerfile"),
            ("Makefile", "Makefile"),
            ("rules.mk", "Makefile"),
            ("build.groovy", "Groovy"),
            ("build.gradle", "Groovy"),
            ("Jenkinsfile", "Groovy"),
            ("app.properties", "Java Properties"),
        ];
        for (path, want) in cases {
            assert_eq!(language(path, ""), Some(want), "{path}");
        }
        assert_eq!(language("bin/tool", "#!/bin/bash"), Some("Bourne Again Shell (bash)"), "by the first line");
        assert_eq!(language("notes.txt", "hello"), None);
        assert_eq!(language("LICENSE", "MIT"), None);
    }

    #[test]
    fn tokens_become_class_spans_and_text_is_escaped() {
        let l = highlight("a.rs", "// note <b>\nfn main() { let s = \"x&y\"; }\n");
        assert_eq!(l.language, Some("Rust"));
        assert_eq!(l.html.len(), 2);
        assert_eq!(l.html[0], "<span class=c>// note &lt;b&gt;</span>");
        assert!(l.html[1].contains("<span class=k>fn"), "{}", l.html[1]);
        assert!(l.html[1].contains("<span class=f>main</span>"), "{}", l.html[1]);
        assert!(l.html[1].contains("<span class=s>\"x&amp;y\"</span>"), "{}", l.html[1]);
        // State carries across lines: the second line of a block comment is a comment.
        let b = highlight("a.java", "/* one\n two */ int x;\n");
        assert!(b.html[1].starts_with(" <span class=c>two */</span> <span class=k>int</span>"), "{}", b.html[1]);
    }

    #[test]
    fn past_the_limits_files_are_plain_text() {
        let long = format!("let x = \"{}\";\n", "a".repeat(MAX_LINE));
        let l = highlight("a.rs", &long);
        assert_eq!(l.language, None);
        assert!(!l.html[0].contains("<span"));
        let big = "fn x() {}\n".repeat(MAX_BYTES / 10 + 1);
        assert_eq!(highlight("a.rs", &big).language, None);
        let unknown = highlight("data.unknownext", "<x>");
        assert_eq!((unknown.language, unknown.html[0].as_str()), (None, "&lt;x&gt;"));
    }

    #[test]
    fn the_cache_keeps_the_most_recent_within_its_bytes() {
        let mut c = Cache { entries: HashMap::new(), order: BTreeMap::new(), tick: 0, bytes: 0, cap: 1000 };
        let lines = |n: usize| Arc::new(Lines { html: vec!["x".repeat(n)], language: None });
        c.put("a".into(), lines(100));
        c.put("b".into(), lines(100));
        assert!(c.get("a").is_some(), "a used: b is now the oldest");
        for k in ["c", "d", "e", "f"] {
            c.put(k.into(), lines(100));
        }
        assert!(c.bytes <= 1000);
        assert!(c.get("b").is_none(), "the least recently used went first");
        assert!(c.get("a").is_some() && c.get("f").is_some());
        c.put("huge".into(), lines(900));
        assert!(c.get("huge").is_none(), "an entry over a quarter of the cache is not kept");
    }

    #[tokio::test]
    async fn a_slow_rendering_is_shown_plain_then_cached_and_never_started_twice() {
        let dir = tempfile::tempdir().unwrap();
        let server = crate::Server::open(crate::ServerConfig::new(dir.path())).unwrap();
        let state = &server.shared;
        let key = format!("test-slow-{}", std::process::id());
        let (go, gate) = std::sync::mpsc::channel::<()>();
        let slow = move || {
            let _ = gate.recv();
            Lines { html: vec!["done".into()], language: None }
        };
        assert!(within(state, key.clone(), Duration::ZERO, slow).await.is_none(), "not ready: the page shows it plain");
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = started.clone();
        let again = move || {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Lines { html: vec!["again".into()], language: None }
        };
        assert!(within(state, key.clone(), Duration::ZERO, again).await.is_none(), "still computing: plain again");
        go.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let done = loop {
            if let Some(l) = cached(&key) {
                break l;
            }
            assert!(Instant::now() < deadline, "the rendering never reached the cache");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(done.html, ["done"]);
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 0, "the same rendering was not started twice");
        let cached_now = || -> Lines { panic!("a cached rendering was computed again") };
        assert_eq!(within(state, key, Duration::ZERO, cached_now).await.map(|l| l.html.clone()), Some(vec!["done".to_owned()]));
    }

    #[test]
    fn a_diff_reads_each_side_as_its_own_stream() {
        let mut d = DiffHighlighter::new("x.py");
        d.hunk();
        let a = d.line(Side::Both, "s = '''start");
        assert!(a.contains("class=s"), "{a}");
        // The removed line closes the string on the old side only.
        let removed = d.line(Side::Old, "end'''");
        let added = d.line(Side::New, "still string");
        assert!(removed.starts_with("<span class=s>end"), "{removed}");
        assert!(added.starts_with("<span class=s>still string"), "{added}");
        let after = d.line(Side::Old, "x = 1");
        assert!(!after.starts_with("<span class=s>"), "old side left its string: {after}");
        assert_eq!(DiffHighlighter::new("notes.txt").line(Side::New, "<a>"), "&lt;a&gt;");
    }
}

//! Ref advertisements answered from memory: git's own answer to `info/refs?service=git-upload-pack`
//! and to a protocol v2 `ls-refs`, remembered per repository and keyed on every byte it depends on.
//!
//! `git ls-remote` is two requests, and each used to spawn `git upload-pack` (a few milliseconds
//! of CPU each, more than everything else a request costs here). What git prints for them is a
//! function of the repository's refs (`HEAD`, `packed-refs`, the loose refs under `refs/`), its
//! configuration, the git binary and the request (`GIT_PROTOCOL`, the `ls-refs` arguments); the
//! objects it peels tags to never change under the same id. So the key is those files'
//! *contents*, read again on every request: a push changes a ref file, whoever made it (our
//! receive-pack, `git push` on the server's disk, `git gc` packing refs), and the next request
//! sees a different key and asks git again. No mtime, no generation counter, nothing to forget to
//! bump. Anything the key cannot describe (config `include`s, reftable, symlinked refs) is never
//! cached: those requests run git as before.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;

/// A repository whose refs and configuration together exceed this is not cached (a key is kept
/// in memory beside its answers).
const MAX_STATE_BYTES: usize = 8 << 20;
/// Keys and answers kept in all; past this the cache starts again empty.
const MAX_TOTAL_BYTES: usize = 64 << 20;
/// Distinct questions remembered per repository state (`ls-refs` with different ref prefixes,
/// protocol versions).
const MAX_ANSWERS: usize = 32;

/// The cache: for each repository, the state its answers were given in, and the answers.
pub(crate) struct Adverts {
    /// The git executable, resolved on `PATH` as the child's `Command` would; its identity is part
    /// of every key (an upgraded git advertises other capabilities). `None`: cannot tell, so
    /// nothing is cached.
    git: Option<PathBuf>,
    /// The HOME git runs with: its `.gitconfig` is configuration too.
    home: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    repos: HashMap<PathBuf, Entry>,
    total: usize,
}

struct Entry {
    state: Vec<u8>,
    answers: HashMap<Vec<u8>, Bytes>,
}

impl Entry {
    fn size(&self) -> usize {
        self.state.len() + self.answers.iter().map(|(q, a)| q.len() + a.len()).sum::<usize>()
    }
}

impl Adverts {
    pub(crate) fn new(git: &Path, home: &Path) -> Adverts {
        Adverts { git: resolve(git, std::env::var_os("PATH").as_deref()), home: home.to_owned(), inner: Mutex::default() }
    }

    /// Everything git's advertisement for `repo` depends on, as one byte string; `None` when the
    /// repository has something the key cannot capture, or is too big to keep.
    pub(crate) fn state(&self, repo: &Path) -> Option<Vec<u8>> {
        let git = self.git.as_deref()?;
        let mut out = Vec::with_capacity(4096);
        let meta = std::fs::metadata(git).ok()?;
        {
            use std::os::unix::fs::MetadataExt as _;
            let id = [meta.dev(), meta.ino(), meta.size(), meta.mtime() as u64, meta.mtime_nsec() as u64, meta.ctime() as u64, meta.ctime_nsec() as u64];
            let id: Vec<u8> = id.iter().flat_map(|v| v.to_le_bytes()).collect();
            field(&mut out, b'G', &id);
        }
        for (tag, path) in [(b'C', repo.join("config")), (b'U', self.home.join(".gitconfig")), (b'X', self.home.join(".config/git/config"))] {
            let text = read_optional(&path)?;
            if let Some(t) = &text {
                let lower = t.to_ascii_lowercase();
                // Included files would be configuration outside the key; reftable and worktree
                // configuration keep refs or settings elsewhere.
                if [&b"include"[..], b"refstorage", b"worktreeconfig"].iter().any(|w| lower.windows(w.len()).any(|x| x == *w)) {
                    return None;
                }
            }
            optional_field(&mut out, tag, text.as_deref());
        }
        // A linked worktree's or reftable repository's refs live elsewhere.
        if repo.join("commondir").exists() || repo.join("reftable").exists() {
            return None;
        }
        for (tag, name) in [(b'H', "HEAD"), (b'P', "packed-refs"), (b'S', "shallow")] {
            let text = read_optional(&repo.join(name))?;
            optional_field(&mut out, tag, text.as_deref());
        }
        walk_refs(&repo.join("refs"), "refs", &mut out)?;
        (out.len() <= MAX_STATE_BYTES).then_some(out)
    }

    /// The answer git gave to `question` when `repo` was in `state`, if remembered.
    pub(crate) fn get(&self, repo: &Path, state: &[u8], question: &[u8]) -> Option<Bytes> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let entry = inner.repos.get(repo)?;
        if entry.state != state {
            return None;
        }
        entry.answers.get(question).cloned()
    }

    /// Remembers git's `answer` to `question` for `repo` in `state`. The caller has checked that
    /// the state was the same before and after git ran, so the answer belongs to it.
    pub(crate) fn put(&self, repo: &Path, state: Vec<u8>, question: Vec<u8>, answer: Bytes) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *inner;
        if let Some(old) = inner.repos.remove(repo) {
            inner.total -= old.size();
            if old.state == state && old.answers.len() < MAX_ANSWERS {
                let mut e = old;
                e.answers.insert(question, answer);
                inner.total += e.size();
                inner.repos.insert(repo.to_owned(), e);
                return self.trim(inner);
            }
        }
        let e = Entry { state, answers: HashMap::from([(question, answer)]) };
        inner.total += e.size();
        inner.repos.insert(repo.to_owned(), e);
        self.trim(inner)
    }

    fn trim(&self, inner: &mut Inner) {
        if inner.total > MAX_TOTAL_BYTES {
            inner.repos.clear();
            inner.total = 0;
        }
    }
}

/// Finds `git` as `Command` would: a path with a `/` is used as it is; a bare name is looked up
/// on `PATH`.
fn resolve(git: &Path, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    if git.components().count() > 1 || git.is_absolute() {
        return Some(git.to_owned());
    }
    std::env::split_paths(path?).map(|dir| dir.join(git)).find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// A file's contents, `Ok(None)` if it does not exist; `None` (outer) for anything else,
/// a symlink included (git would follow it to a place outside the key).
fn read_optional(path: &Path) -> Option<Option<Vec<u8>>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => std::fs::read(path).ok().map(Some),
        Ok(_) => None,
        Err(e) if e.kind() == ErrorKind::NotFound => Some(None),
        Err(_) => None,
    }
}

fn field(out: &mut Vec<u8>, tag: u8, data: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(data);
}

fn optional_field(out: &mut Vec<u8>, tag: u8, data: Option<&[u8]>) {
    match data {
        Some(d) => field(out, tag, d),
        None => out.push(tag.to_ascii_lowercase()),
    }
}

/// Every file under `refs/` (lock files included: they only make a key differ), by name and
/// contents, in name order; `None` for a symlink or anything but files and directories.
fn walk_refs(dir: &Path, name: &str, out: &mut Vec<u8>) -> Option<()> {
    let mut entries: Vec<(String, std::fs::FileType)> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.ok().and_then(|e| Some((e.file_name().into_string().ok()?, e.file_type().ok()?)))).collect::<Option<_>>()?,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            out.push(b'd');
            return Some(());
        }
        Err(_) => return None,
    };
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    field(out, b'D', name.as_bytes());
    for (file, ty) in entries {
        let full = format!("{name}/{file}");
        if ty.is_dir() {
            walk_refs(&dir.join(&file), &full, out)?;
        } else if ty.is_file() {
            field(out, b'N', full.as_bytes());
            match std::fs::read(dir.join(&file)) {
                Ok(data) => field(out, b'F', &data),
                // Gone between listing and reading (a ref deleted or renamed into place): the
                // state is changing under us, so this request is not one to cache.
                Err(_) => return None,
            }
        } else {
            return None;
        }
        if out.len() > MAX_STATE_BYTES {
            return None;
        }
    }
    out.push(b'E');
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bare() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("r.git");
        std::fs::create_dir_all(repo.join("refs/heads")).unwrap();
        std::fs::create_dir_all(repo.join("refs/tags")).unwrap();
        std::fs::write(repo.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(repo.join("config"), "[core]\n\tbare = true\n").unwrap();
        (dir, repo)
    }

    fn adverts(home: &Path) -> Adverts {
        Adverts::new(Path::new("git"), home)
    }

    #[test]
    fn every_ref_file_head_packed_refs_and_config_change_the_state() {
        let (dir, repo) = bare();
        let a = adverts(dir.path());
        let s0 = a.state(&repo).unwrap();
        assert_eq!(a.state(&repo).unwrap(), s0, "reading twice gives the same state");
        let mut seen = vec![s0];
        let changes: Vec<Box<dyn Fn()>> = vec![
            Box::new(|| std::fs::write(repo.join("refs/heads/main"), "1111111111111111111111111111111111111111\n").unwrap()),
            Box::new(|| std::fs::write(repo.join("refs/heads/main"), "2222222222222222222222222222222222222222\n").unwrap()),
            Box::new(|| std::fs::write(repo.join("refs/tags/v1"), "2222222222222222222222222222222222222222\n").unwrap()),
            Box::new(|| std::fs::create_dir_all(repo.join("refs/heads/topic")).unwrap()),
            Box::new(|| std::fs::write(repo.join("refs/heads/topic/x"), "2222222222222222222222222222222222222222\n").unwrap()),
            Box::new(|| std::fs::write(repo.join("packed-refs"), "# pack-refs with: peeled fully-peeled sorted \n").unwrap()),
            Box::new(|| std::fs::write(repo.join("HEAD"), "ref: refs/heads/topic/x\n").unwrap()),
            Box::new(|| std::fs::write(repo.join("config"), "[core]\n\tbare = true\n[uploadpack]\n\thideRefs = refs/tags\n").unwrap()),
            Box::new(|| std::fs::write(dir.path().join(".gitconfig"), "[lsrefs]\n\tunborn = ignore\n").unwrap()),
            Box::new(|| std::fs::remove_file(repo.join("refs/tags/v1")).unwrap()),
        ];
        for (i, change) in changes.iter().enumerate() {
            change();
            let s = a.state(&repo).unwrap();
            assert!(!seen.contains(&s), "change {i} gives a new state");
            seen.push(s);
        }
    }

    #[test]
    fn what_the_key_cannot_describe_is_never_cached() {
        let cases: &[(&str, &str)] = &[
            ("config", "[include]\n\tpath = other\n"),
            ("config", "[includeIf \"gitdir:/x\"]\n\tpath = other\n"),
            ("config", "[extensions]\n\trefStorage = reftable\n"),
            ("config", "[extensions]\n\tworktreeConfig = true\n"),
            ("commondir", "../..\n"),
        ];
        for (file, text) in cases {
            let (dir, repo) = bare();
            std::fs::write(repo.join(file), text).unwrap();
            assert!(adverts(dir.path()).state(&repo).is_none(), "{file}: {text}");
        }
        let (dir, repo) = bare();
        std::os::unix::fs::symlink(repo.join("refs/heads/main"), repo.join("refs/heads/alias")).unwrap();
        assert!(adverts(dir.path()).state(&repo).is_none(), "symlinked ref");
        let (dir, repo) = bare();
        assert!(Adverts::new(Path::new("no-such-git-binary-here"), dir.path()).state(&repo).is_none(), "unknown git");
    }

    #[test]
    fn answers_belong_to_one_state_and_question() {
        let (dir, repo) = bare();
        let a = adverts(dir.path());
        let s1 = a.state(&repo).unwrap();
        a.put(&repo, s1.clone(), b"q1".to_vec(), Bytes::from_static(b"a1"));
        a.put(&repo, s1.clone(), b"q2".to_vec(), Bytes::from_static(b"a2"));
        assert_eq!(a.get(&repo, &s1, b"q1").as_deref(), Some(&b"a1"[..]));
        assert_eq!(a.get(&repo, &s1, b"q2").as_deref(), Some(&b"a2"[..]));
        assert_eq!(a.get(&repo, &s1, b"q3"), None);
        std::fs::write(repo.join("refs/heads/main"), "1111111111111111111111111111111111111111\n").unwrap();
        let s2 = a.state(&repo).unwrap();
        assert_eq!(a.get(&repo, &s2, b"q1"), None, "a new state has no answers yet");
        a.put(&repo, s2.clone(), b"q1".to_vec(), Bytes::from_static(b"b1"));
        assert_eq!(a.get(&repo, &s2, b"q1").as_deref(), Some(&b"b1"[..]));
        assert_eq!(a.get(&repo, &s1, b"q1"), None, "the old state's answers are gone");
        assert_eq!(a.get(&repo, &s2, b"q2"), None);
    }
}

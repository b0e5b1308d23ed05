//! Where the passphrase of an encrypted key comes from: Apache's `SSLPassPhraseDialog` and the
//! non-interactive sources a service needs.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use zeroize::Zeroizing;

use super::error::{FileRole, TlsError};

/// How many times `builtin` asks before giving up, as Apache's builtin dialog does.
pub const BUILTIN_TRIES: usize = 3;

/// Where the passphrase of an encrypted private key comes from. Default: [`PassphraseSource::None`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PassphraseSource {
    /// No passphrase: an encrypted key is refused with [`TlsError::PassphraseNeeded`].
    #[default]
    None,
    /// `SSLPassPhraseDialog builtin`: prompt on the terminal (`/dev/tty`) with
    /// "Enter pass phrase for {server}:{port} (RSA):", up to [`BUILTIN_TRIES`] times.
    Builtin,
    /// `SSLPassPhraseDialog exec:/path`: run the program with the arguments `servername:port` and
    /// `RSA` (or `EC`), and take the first line of its standard output.
    Exec(PathBuf),
    /// Read the first line of this file (it must be readable by its owner only).
    File(PathBuf),
    /// Read this environment variable.
    Env(String),
}

impl PassphraseSource {
    /// Words for messages: "the terminal", "program /x", "file /y", "environment variable Z".
    pub fn describe(&self) -> String {
        match self {
            PassphraseSource::None => "nowhere".into(),
            PassphraseSource::Builtin => "the terminal (SSLPassPhraseDialog builtin)".into(),
            PassphraseSource::Exec(p) => format!("program {}", p.display()),
            PassphraseSource::File(p) => format!("file {}", p.display()),
            PassphraseSource::Env(v) => format!("environment variable {v}"),
        }
    }
}

/// Passphrases that worked, so that a second key with the same phrase, or a reload on SIGHUP,
/// does not ask again (Apache's builtin dialog also tries earlier phrases first).
#[derive(Default)]
pub struct PassphraseCache {
    phrases: Mutex<Vec<Zeroizing<String>>>,
}

impl std::fmt::Debug for PassphraseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PassphraseCache(..)")
    }
}

impl PassphraseCache {
    pub(crate) fn known(&self) -> Vec<Zeroizing<String>> {
        self.phrases.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn remember(&self, phrase: &Zeroizing<String>) {
        let mut phrases = self.phrases.lock().unwrap_or_else(|e| e.into_inner());
        if !phrases.iter().any(|p| p.as_str() == phrase.as_str()) {
            phrases.push(phrase.clone());
        }
    }
}

/// What a passphrase request is about, for the prompt and the `exec:` program's arguments.
pub(crate) struct Request<'a> {
    pub key_path: &'a Path,
    pub server: &'a str,
    pub port: u16,
    pub algorithm: &'a str,
}

/// Strips one trailing newline (`\n` or `\r\n`), as Apache does with the program's output.
fn first_line(s: &str) -> &str {
    s.split('\n').next().unwrap_or("").trim_end_matches('\r')
}

/// Gets one passphrase from a non-interactive source (everything but `Builtin` and `None`).
pub(crate) fn fetch(source: &PassphraseSource, req: &Request<'_>) -> Result<Zeroizing<String>, TlsError> {
    let unavailable = |reason: String| TlsError::PassphraseUnavailable { path: req.key_path.to_path_buf(), from: source.describe(), reason };
    match source {
        PassphraseSource::None => Err(TlsError::PassphraseNeeded { path: req.key_path.to_path_buf() }),
        PassphraseSource::Builtin => Err(unavailable("the terminal prompt is handled by the loader".into())),
        PassphraseSource::Exec(program) => {
            let out = std::process::Command::new(program)
                .arg(format!("{}:{}", req.server, req.port))
                .arg(req.algorithm)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit())
                .output()
                .map_err(|e| unavailable(format!("cannot run it: {e}; check the path and that it is executable")))?;
            if !out.status.success() {
                return Err(unavailable(format!("it exited with {}", out.status)));
            }
            let text = Zeroizing::new(String::from_utf8(out.stdout).map_err(|_| unavailable("its output is not UTF-8".into()))?);
            Ok(Zeroizing::new(first_line(&text).to_string()))
        }
        PassphraseSource::File(path) => {
            let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => TlsError::MissingFile { role: FileRole::PassphraseFile, path: path.clone() },
                _ => TlsError::UnreadableFile { role: FileRole::PassphraseFile, path: path.clone(), source: e },
            })?;
            super::load::check_private_mode(&meta, FileRole::PassphraseFile, path)?;
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| TlsError::UnreadableFile {
                role: FileRole::PassphraseFile,
                path: path.clone(),
                source: e,
            })?);
            Ok(Zeroizing::new(first_line(&text).to_string()))
        }
        PassphraseSource::Env(var) => match std::env::var(var) {
            Ok(v) => Ok(Zeroizing::new(v)),
            Err(_) => Err(unavailable("it is not set".into())),
        },
    }
}

/// Asks on the terminal, as Apache's builtin dialog does. Reads `/dev/tty`, never stdin, so that
/// a service without a terminal fails clearly instead of hanging.
pub(crate) fn prompt(req: &Request<'_>, retry: bool) -> Result<Zeroizing<String>, TlsError> {
    use std::io::Write;
    let mut tty = std::fs::OpenOptions::new().write(true).open("/dev/tty").map_err(|e| TlsError::PassphraseUnavailable {
        path: req.key_path.to_path_buf(),
        from: PassphraseSource::Builtin.describe(),
        reason: format!("there is no terminal ({e}); for a service use `SSLPassPhraseDialog exec:/path` or a passphrase file or environment variable"),
    })?;
    if retry {
        let _ = writeln!(tty, "Wrong pass phrase, try again.");
    }
    let _ = writeln!(tty, "Server {}:{} ({}), key {}", req.server, req.port, req.algorithm, req.key_path.display());
    let text = format!("Enter pass phrase for {}:{} ({}):", req.server, req.port, req.algorithm);
    rpassword::prompt_password(text).map(Zeroizing::new).map_err(|e| TlsError::PassphraseUnavailable {
        path: req.key_path.to_path_buf(),
        from: PassphraseSource::Builtin.describe(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_drops_newline_and_following_lines() {
        assert_eq!(first_line("secret\n"), "secret");
        assert_eq!(first_line("secret\r\nmore\n"), "secret");
        assert_eq!(first_line("no newline"), "no newline");
        assert_eq!(first_line(""), "");
    }
}

//! Server settings an administrator sets once: the base URL and the context path.
//!
//! Both are parsed into types that are valid by construction, so the server can build URLs by
//! plain concatenation: a `BaseUrl` never ends in `/`, a `ContextPath` is empty or starts with
//! `/` and never ends with one.

use std::fmt;

use trove_http::{HttpUrl, UrlError};

/// Why a base URL or context path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("base URL {input:?} is invalid: {reason}; give the public URL users type, like `https://mycompany.com/stash`")]
    BaseUrl { input: String, reason: &'static str },
    #[error("context path {input:?} is invalid: {reason}; give a path like `/stash`, or `/` for none")]
    ContextPath { input: String, reason: &'static str },
}

/// The public URL of the server, context path included (`https://mycompany.com/stash`).
/// Authoritative for every absolute URL the server generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    full: String,
    scheme_len: usize,
    authority_end: usize,
}

impl BaseUrl {
    pub fn parse(input: &str) -> Result<Self, SettingError> {
        let err = |reason| SettingError::BaseUrl { input: input.to_owned(), reason };
        let url = HttpUrl::parse(input.trim()).map_err(|e| {
            err(match e {
                UrlError::Whitespace => "it contains whitespace",
                UrlError::NoScheme => "it has no `http://` or `https://`",
                UrlError::Scheme => "the scheme is not `http` or `https`",
                UrlError::Userinfo => "it has a user name in it",
                UrlError::Ipv6Unclosed => "an IPv6 address has no closing `]`",
                UrlError::AfterIpv6 => "something other than a port follows the IPv6 address",
                UrlError::Port => "the port is not a number from 1 to 65535",
                UrlError::NoHost => "it has no host name",
                UrlError::Host => "the host name has characters a host name cannot have",
            })
        })?;
        if url.has_query() || url.has_fragment() {
            return Err(err("it has a query or fragment"));
        }
        if url.port() == Some(0) {
            return Err(err("the port is not a number from 1 to 65535"));
        }
        // Stricter than the URL Standard: a name of letters, digits, `.` and `-` (no `_`).
        if !url.host().chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':')) {
            return Err(err("the host name has characters a host name cannot have"));
        }
        let path = ContextPath::parse(url.path()).map_err(|_| err("its path is not a valid context path"))?;
        let (scheme, authority) = (url.scheme(), url.authority());
        let full = format!("{scheme}://{authority}{}", path.as_str());
        Ok(Self { scheme_len: scheme.len(), authority_end: scheme.len() + 3 + authority.len(), full })
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        &self.full[..self.scheme_len]
    }

    /// `host[:port]`, the port as written (`:443` stays), the host lower-cased (an IPv6
    /// address compressed, as the URL Standard writes it).
    pub fn authority(&self) -> &str {
        &self.full[self.scheme_len + 3..self.authority_end]
    }

    /// The context path part: `` or `/stash`.
    pub fn path(&self) -> &str {
        &self.full[self.authority_end..]
    }

    /// `scheme://authority` with the default port left out, for comparing with what a request
    /// says about itself.
    pub fn normalized_origin(&self) -> String {
        normalize_origin(self.scheme(), self.authority())
    }
}

/// `scheme://host[:port]`, leaving out the scheme's default port (`:80` for http, `:443` for
/// https), so `https://a:443` and `https://a` compare equal.
pub fn normalize_origin(scheme: &str, authority: &str) -> String {
    let scheme = scheme.to_ascii_lowercase();
    let authority = authority.to_ascii_lowercase();
    let default = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority.strip_suffix(default).unwrap_or(&authority);
    format!("{scheme}://{authority}")
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// The prefix under which the server answers, like `/stash`; empty for the root.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContextPath(String);

impl ContextPath {
    /// Accepts `` and `/` (both meaning the root), or `/seg[/seg…]` with an optional trailing `/`.
    pub fn parse(input: &str) -> Result<Self, SettingError> {
        let err = |reason| SettingError::ContextPath { input: input.to_owned(), reason };
        if input.is_empty() || input == "/" {
            return Ok(Self(String::new()));
        }
        if !input.starts_with('/') {
            return Err(err("it does not start with `/`"));
        }
        let trimmed = input.strip_suffix('/').unwrap_or(input);
        for seg in trimmed[1..].split('/') {
            if seg.is_empty() {
                return Err(err("it has an empty segment (`//`)"));
            }
            if seg == "." || seg == ".." {
                return Err(err("it has a `.` or `..` segment"));
            }
            if !seg.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '~')) {
                return Err(err("it has a character other than a letter, digit, `.`, `_`, `-` or `~`"));
            }
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The rest of `path` after this context path, or `None` when `path` is outside it.
    /// `/stash` → `Some("")`, `/stash/scm/x` → `Some("/scm/x")`, `/stashy` → `None`.
    pub fn strip<'a>(&self, path: &'a str) -> Option<&'a str> {
        let rest = path.strip_prefix(self.0.as_str())?;
        if rest.is_empty() || rest.starts_with('/') { Some(rest) } else { None }
    }
}

impl fmt::Display for ContextPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where settings are kept: a key-value table, read through the provided typed methods.
pub trait Settings {
    fn setting(&self, key: &str) -> Result<Option<String>, crate::StoreError>;
    /// Sets (`Some`) or clears (`None`) one setting.
    fn set_setting(&self, key: &str, value: Option<&str>) -> Result<(), crate::StoreError>;
    /// A number that changes whenever the database changes, so a server can notice settings
    /// changed by `trove admin` or another node cheaply, and read them again only then
    /// (SQLite's `PRAGMA data_version`). Cheap and never waits behind a write: asked on every
    /// request.
    fn data_version(&self) -> Result<i64, crate::StoreError>;

    /// The base URL an administrator set, if any.
    fn base_url(&self) -> Result<Option<BaseUrl>, crate::StoreError> {
        Ok(self.setting("base_url")?.map(|v| BaseUrl::parse(&v)).transpose()?)
    }

    fn set_base_url(&self, url: Option<&BaseUrl>) -> Result<(), crate::StoreError> {
        self.set_setting("base_url", url.map(|u| u.as_str()))
    }

    /// The context path an administrator set, if any.
    fn context_path(&self) -> Result<Option<ContextPath>, crate::StoreError> {
        Ok(self.setting("context_path")?.map(|v| ContextPath::parse(&v)).transpose()?)
    }

    fn set_context_path(&self, path: Option<&ContextPath>) -> Result<(), crate::StoreError> {
        self.set_setting("context_path", path.map(|p| p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_normalized_or_refused() {
        type Parts<'a> = (&'a str, &'a str, &'a str, &'a str);
        let cases: &[(&str, Option<Parts>)] = &[
            ("https://mycompany.com/stash", Some(("https://mycompany.com/stash", "https", "mycompany.com", "/stash"))),
            ("https://mycompany.com/stash/", Some(("https://mycompany.com/stash", "https", "mycompany.com", "/stash"))),
            ("HTTP://Example.COM:7990", Some(("http://example.com:7990", "http", "example.com:7990", ""))),
            ("http://localhost:7990/", Some(("http://localhost:7990", "http", "localhost:7990", ""))),
            ("http://[::1]:7990/x", Some(("http://[::1]:7990/x", "http", "[::1]:7990", "/x"))),
            ("ftp://example.com", None),
            ("example.com", None),
            ("https://", None),
            ("https://user@example.com", None),
            ("https://example.com/a?b", None),
            ("https://example.com/a#b", None),
            ("https://example.com:99999", None),
            ("https://example.com:", None),
            ("https://exa mple.com", None),
            ("https://example.com/../x", None),
            ("https://example.com//x", None),
        ];
        for (input, want) in cases {
            let got = BaseUrl::parse(input).ok();
            let got = got.as_ref().map(|b| (b.as_str(), b.scheme(), b.authority(), b.path()));
            assert_eq!(got, *want, "input {input:?}");
        }
    }

    #[test]
    fn base_url_edge_cases_and_their_reasons() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("  https://Git.Example.COM:8443/Stash/  ", Ok("https://git.example.com:8443/Stash")),
            ("https://a.example:443", Ok("https://a.example:443")),
            ("http://[0:0::1]:7990", Ok("http://[::1]:7990")),
            ("http://[::1]", Ok("http://[::1]")),
            ("http://10.0.0.5/", Ok("http://10.0.0.5")),
            ("http://ex%41mple.com", Ok("http://example.com")),
            ("https://a.example/a%20b", Err("its path is not a valid context path")),
            ("https://exa mple.com", Err("it contains whitespace")),
            ("https://a.example/\tx", Err("it contains whitespace")),
            ("a.example/stash", Err("it has no `http://` or `https://`")),
            ("a.example:7990", Err("it has no `http://` or `https://`")),
            ("ftp://a.example", Err("the scheme is not `http` or `https`")),
            ("https://a.example/?x", Err("it has a query or fragment")),
            ("https://a.example#x", Err("it has a query or fragment")),
            ("https://u:p@a.example", Err("it has a user name in it")),
            ("http://[::1", Err("an IPv6 address has no closing `]`")),
            ("http://[::1]7990", Err("something other than a port follows the IPv6 address")),
            ("http://[::1]:", Err("the port is not a number from 1 to 65535")),
            ("http://a.example:0", Err("the port is not a number from 1 to 65535")),
            ("http://a.example:65536", Err("the port is not a number from 1 to 65535")),
            ("http://", Err("it has no host name")),
            ("http://:80/x", Err("it has no host name")),
            ("http://a_b.example", Err("the host name has characters a host name cannot have")),
            ("http://a%20b", Err("the host name has characters a host name cannot have")),
            ("http://bücher.example", Err("the host name has characters a host name cannot have")),
            ("https://a.example/x/../y", Err("its path is not a valid context path")),
        ];
        for (input, want) in cases {
            let got = BaseUrl::parse(input).map(|b| b.to_string()).map_err(|e| match e {
                SettingError::BaseUrl { reason, .. } => reason,
                other => panic!("{other:?}"),
            });
            assert_eq!(got.as_deref().map_err(|r| *r), want.map(|w| w), "input {input:?}");
        }
        assert_eq!(
            BaseUrl::parse("https://u@a").unwrap_err().to_string(),
            "base URL \"https://u@a\" is invalid: it has a user name in it; give the public URL users type, like `https://mycompany.com/stash`"
        );
    }

    #[test]
    fn context_paths_are_normalized_or_refused() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", Some("")),
            ("/", Some("")),
            ("/stash", Some("/stash")),
            ("/stash/", Some("/stash")),
            ("/a/b", Some("/a/b")),
            ("stash", None),
            ("//", None),
            ("/a//b", None),
            ("/..", None),
            ("/a/./b", None),
            ("/a b", None),
            ("/a?b", None),
        ];
        for (input, want) in cases {
            let got = ContextPath::parse(input).ok();
            assert_eq!(got.as_ref().map(|c| c.as_str()), *want, "input {input:?}");
        }
    }

    #[test]
    fn context_path_strip_only_matches_whole_segments() {
        let ctx = ContextPath::parse("/stash").unwrap();
        let cases: &[(&str, Option<&str>)] = &[
            ("/stash", Some("")),
            ("/stash/", Some("/")),
            ("/stash/scm/TP/test.git", Some("/scm/TP/test.git")),
            ("/stashy", None),
            ("/scm/TP/test.git", None),
            ("/", None),
        ];
        for (input, want) in cases {
            assert_eq!(ctx.strip(input), *want, "input {input:?}");
        }
        assert_eq!(ContextPath::default().strip("/scm/x"), Some("/scm/x"));
    }

    #[test]
    fn origins_drop_default_ports() {
        assert_eq!(normalize_origin("https", "A.example:443"), "https://a.example");
        assert_eq!(normalize_origin("http", "a:80"), "http://a");
        assert_eq!(normalize_origin("http", "a:443"), "http://a:443");
    }
}

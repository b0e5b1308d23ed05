//! Route matching, pure: a request path → the ProxyPass rule that takes it and the path the
//! origin sees, with Apache 2.4's canonicalisation (mod_proxy.c `alias_match`,
//! `ap_proxy_canonenc`, server/util.c `ap_unescape_url` and `ap_normalize_path`).

use std::borrow::Cow;

use crate::config::Route;

/// Why a request path cannot be proxied; decides the status (Apache's choices).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Bad `%` escape, or dot-segments climbing above the root: 400.
    BadRequest,
    /// An encoded `/` or NUL (`AllowEncodedSlashes Off`): 404.
    EncodedSlash,
}

/// Decode `%XX` escapes and normalise: merge slash runs (`MergeSlashes On`), drop `.` and
/// resolve `..` segments. Returns decoded bytes: the path itself when it is already
/// canonical (no escapes, no empty, `.` or `..` segments), the usual case, without a copy.
pub fn canonical_path(raw: &str) -> Result<Cow<'_, [u8]>, PathError> {
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(PathError::BadRequest);
    }
    if is_canonical(b) {
        return Ok(Cow::Borrowed(b));
    }
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let (Some(h), Some(l)) = (b.get(i + 1).and_then(|&c| hex(c)), b.get(i + 2).and_then(|&c| hex(c))) else {
                return Err(PathError::BadRequest);
            };
            let v = (h * 16 + l) as u8;
            if v == b'/' || v == 0 {
                return Err(PathError::EncodedSlash);
            }
            decoded.push(v);
            i += 3;
        } else {
            decoded.push(b[i]);
            i += 1;
        }
    }
    normalize(&decoded).map(Cow::Owned)
}

/// `/`-led with no `%`, and no empty, `.` or `..` segment but for an empty last one (a
/// trailing slash): what `normalize` would give back unchanged.
fn is_canonical(b: &[u8]) -> bool {
    if b.contains(&b'%') {
        return false;
    }
    let mut segs = b[1..].split(|&c| c == b'/').peekable();
    while let Some(seg) = segs.next() {
        let last = segs.peek().is_none();
        if matches!(seg, b"." | b"..") || (seg.is_empty() && !last) {
            return false;
        }
    }
    true
}

/// Remove dot-segments (RFC 3986 §5.2.4) and merge slashes; climbing above `/` is an error.
fn normalize(p: &[u8]) -> Result<Vec<u8>, PathError> {
    let trailing = p.ends_with(b"/") || p.ends_with(b"/.") || p.ends_with(b"/..");
    let mut segs: Vec<&[u8]> = Vec::new();
    for seg in p.split(|&c| c == b'/').skip(1) {
        match seg {
            b"" | b"." => {}
            b".." => {
                if segs.pop().is_none() {
                    return Err(PathError::BadRequest);
                }
            }
            s => segs.push(s),
        }
    }
    let mut out = Vec::with_capacity(p.len());
    for s in &segs {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() || trailing {
        out.push(b'/');
    }
    Ok(out)
}

/// Apache's `alias_match`: how many bytes of `uri` the prefix `alias` covers, or `None`.
/// A run of `/` in the alias matches a run of `/` in the uri; the alias's last segment must
/// match a whole segment unless the alias ends in `/`.
pub fn alias_match(uri: &[u8], alias: &[u8]) -> Option<usize> {
    let (mut a, mut u) = (0, 0);
    while a < alias.len() && u < uri.len() {
        if alias[a] == b'/' {
            if uri[u] != b'/' {
                return None;
            }
            while a < alias.len() && alias[a] == b'/' {
                a += 1;
            }
            while u < uri.len() && uri[u] == b'/' {
                u += 1;
            }
        } else {
            if uri[u] != alias[a] {
                return None;
            }
            u += 1;
            a += 1;
        }
    }
    if u == uri.len() && a != alias.len() {
        return None;
    }
    if alias.last() != Some(&b'/') && u < uri.len() && uri[u] != b'/' {
        return None;
    }
    Some(u)
}

/// The first route (config order, as Apache) whose path matches, with the matched length.
pub fn select<'a>(routes: &'a [Route], decoded: &[u8], raw: &str) -> Option<(&'a Route, usize)> {
    routes.iter().find_map(|r| {
        let subject = if r.nocanon { raw.as_bytes() } else { decoded };
        alias_match(subject, r.path.as_bytes()).map(|n| (r, n))
    })
}

/// Re-encode a decoded path remainder as `ap_proxy_canonenc(…, enc_path, …)` does: keep
/// unreserved and path-safe characters, `%XX` (upper case) everything else. Decoded `?`, `#`,
/// CR and LF therefore never reach the origin raw (CVE-2023-25690, CVE-2024-38473).
pub fn canon_encode(out: &mut String, decoded: &[u8]) {
    const ALLOWED: &[u8] = b"~$-_.+!*'(),;:@&=/";
    for &c in decoded {
        if c.is_ascii_alphanumeric() || ALLOWED.contains(&c) {
            out.push(c as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[(c >> 4) as usize] as char);
            out.push(HEX[(c & 15) as usize] as char);
        }
    }
}

/// The origin-form target sent upstream: the worker's path + remainder (+ `?query`).
/// Apache concatenates plainly (`url + path[len(pattern):]`), so this does too.
pub fn upstream_target(route: &Route, upstream_path: &str, decoded: &[u8], raw: &str, matched: usize, query: Option<&str>) -> String {
    let mut out = String::with_capacity(upstream_path.len() + raw.len() + 16);
    out.push_str(upstream_path);
    if route.nocanon {
        out.push_str(&raw[matched.min(raw.len())..]);
    } else {
        canon_encode(&mut out, &decoded[matched.min(decoded.len())..]);
    }
    if !out.starts_with('/') {
        // `ProxyPass /x http://h:1` sends `/x/y` as `/y`; an empty path becomes `/`.
        out.insert(0, '/');
    }
    if let (Some(q), false) = (query, route.noquery) {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Origin, Route};

    fn route(path: &str) -> Route {
        Route { path: path.into(), upstream: None, nocanon: false, noquery: false, balancer: None, origin: Origin::default() }
    }

    #[test]
    fn alias_match_table() {
        // (uri, alias, matched length)
        let rows: &[(&str, &str, Option<usize>)] = &[
            ("/foo", "/foo", Some(4)),
            ("/foo/x", "/foo", Some(4)),
            ("/foobar", "/foo", None),
            ("/foo", "/foo/", None),
            ("/foo/", "/foo/", Some(5)),
            ("/foo/bar", "/foo/", Some(5)),
            ("/", "/", Some(1)),
            ("/anything", "/", Some(1)),
            ("//foo//x", "/foo/", Some(7)),
            ("/stash/scm/tp/test.git", "/stash", Some(6)),
            ("/stashx", "/stash", None),
            ("/Stash", "/stash", None),
            ("/", "/examples", None),
        ];
        for (uri, alias, want) in rows {
            assert_eq!(alias_match(uri.as_bytes(), alias.as_bytes()), *want, "{uri} vs {alias}");
        }
    }

    #[test]
    fn canonical_path_table() {
        let rows: &[(&str, Result<&str, PathError>)] = &[
            ("/a/b", Ok("/a/b")),
            ("/a/./b", Ok("/a/b")),
            ("/a/../b", Ok("/b")),
            ("/a//b", Ok("/a/b")),
            ("/a/b/", Ok("/a/b/")),
            ("/a/b/..", Ok("/a/")),
            ("/%70ath", Ok("/path")),
            ("/%2e%2e/etc", Err(PathError::BadRequest)),
            ("/../x", Err(PathError::BadRequest)),
            ("/a%2Fb", Err(PathError::EncodedSlash)),
            ("/a%00b", Err(PathError::EncodedSlash)),
            ("/a%zz", Err(PathError::BadRequest)),
            ("/a%4", Err(PathError::BadRequest)),
            ("*", Err(PathError::BadRequest)),
            ("/", Ok("/")),
            ("//", Ok("/")),
            ("/.", Ok("/")),
            ("/a/.", Ok("/a/")),
            ("/a/..b/.c", Ok("/a/..b/.c")),
            ("/a//", Ok("/a/")),
        ];
        for (raw, want) in rows {
            let got = canonical_path(raw).map(|v| String::from_utf8(v.into_owned()).unwrap());
            assert_eq!(got.as_deref().map_err(|e| *e), *want, "{raw}");
            // A path that is already canonical comes back as it is, not copied; any other
            // goes through the decoder and normaliser.
            if let (Ok(c), Ok(w)) = (canonical_path(raw), want) {
                assert_eq!(matches!(c, Cow::Borrowed(_)), raw == w, "{raw}");
            }
        }
    }

    #[test]
    fn canon_encode_table() {
        let rows: &[(&[u8], &str)] = &[
            (b"/A~\"", "/A~%22"),
            ("/ü".as_bytes(), "/%C3%BC"),
            (b"/a?b#c", "/a%3Fb%23c"),
            (b"/a\r\nb", "/a%0D%0Ab"),
            (b"/a b", "/a%20b"),
            (b"/x;y=1,z@w:v&u", "/x;y=1,z@w:v&u"),
            (b"/%", "/%25"),
        ];
        for (input, want) in rows {
            let mut s = String::new();
            canon_encode(&mut s, input);
            assert_eq!(s, *want);
        }
    }

    #[test]
    fn upstream_target_concatenates_like_apache() {
        let r = route("/stash");
        let raw = "/stash/scm/TP/test.git/info/refs";
        let dec = canonical_path(raw).unwrap();
        let (_, n) = select(std::slice::from_ref(&r), &dec, raw).unwrap();
        assert_eq!(upstream_target(&r, "/stash", &dec, raw, n, Some("service=git-upload-pack")), "/stash/scm/TP/test.git/info/refs?service=git-upload-pack");
        // Mismatched slashes glue as Apache does.
        let r = route("/mis/");
        let raw = "/mis/echo";
        let dec = canonical_path(raw).unwrap();
        assert_eq!(upstream_target(&r, "", &dec, raw, 5, None), "/echo");
        // Query appended raw; noquery drops it.
        let mut r = route("/");
        assert_eq!(upstream_target(&r, "/", b"/q", "/q", 1, Some("a=%41 ")), "/q?a=%41 ");
        r.noquery = true;
        assert_eq!(upstream_target(&r, "/", b"/q", "/q", 1, Some("a=1")), "/q");
        // nocanon sends the raw remainder.
        let mut r = route("/");
        r.nocanon = true;
        assert_eq!(upstream_target(&r, "/", b"/a\"", "/a%22%2F", 1, None), "/a%22%2F");
    }

    #[test]
    fn first_match_wins_not_longest() {
        let routes = vec![route("/"), route("/stash")];
        let (r, _) = select(&routes, b"/stash/x", "/stash/x").unwrap();
        assert_eq!(r.path, "/");
    }
}

//! Response rewriting, pure: ProxyPassReverse on `Location`-like headers and
//! ProxyPassReverseCookiePath/Domain on `Set-Cookie` (mod_proxy's
//! `ap_proxy_location_reverse_map` and `ap_proxy_cookie_reverse_map`).

use crate::config::ReverseRule;

/// The public scheme and authority a rewritten relative URL is completed with (Apache's
/// `ap_construct_url`: the vhost's scheme, the downstream Host's name and port).
#[derive(Clone, Debug)]
pub struct PublicBase<'a> {
    pub scheme: &'a str,
    /// `host[:port]`, port omitted when it is the scheme's default.
    pub authority: &'a str,
}

/// Rewrite one header value by the first matching rule. Origin URLs match case-insensitively
/// as a prefix, but unlike Apache only at a boundary (`/`, `?`, `#`, or the end), so
/// `http://127.0.0.1:29000.evil.com` is not taken for `http://127.0.0.1:29000`.
pub fn reverse_map(rules: &[ReverseRule], value: &str, base: &PublicBase<'_>) -> Option<String> {
    for r in rules {
        let real = r.origin_url.as_str();
        if value.len() < real.len() || !value.as_bytes()[..real.len()].eq_ignore_ascii_case(real.as_bytes()) {
            continue;
        }
        let rest = &value[real.len()..];
        let boundary = real.ends_with('/') || rest.is_empty() || rest.starts_with(['/', '?', '#']);
        if !boundary {
            continue;
        }
        let mut path = String::with_capacity(r.public_path.len() + rest.len());
        path.push_str(&r.public_path);
        // `ProxyPassReverse /pp/ http://h/` + `http://h/x` → `/pp/x`; avoid `//` when both sides carry one.
        if path.ends_with('/') && rest.starts_with('/') {
            path.push_str(&rest[1..]);
        } else {
            path.push_str(rest);
        }
        if path.contains("://") {
            return Some(path);
        }
        return Some(format!("{}://{}{}", base.scheme, base.authority, path));
    }
    None
}

/// Rewrite `path=` (case-sensitive prefix, replaced whole) and `domain=` (case-insensitive
/// prefix, replaced whole) attributes of one Set-Cookie value.
pub fn rewrite_cookie(value: &str, paths: &[(String, String)], domains: &[(String, String)]) -> Option<String> {
    if paths.is_empty() && domains.is_empty() {
        return None;
    }
    let mut changed = false;
    let mut parts: Vec<String> = Vec::new();
    for (i, part) in value.split(';').enumerate() {
        if i > 0 {
            let t = part.trim_start();
            let lead = &part[..part.len() - t.len()];
            if let Some((k, v)) = t.split_once('=') {
                let key = k.trim();
                if key.eq_ignore_ascii_case("path") {
                    if let Some((_, public)) = paths.iter().find(|(internal, _)| v.starts_with(internal.as_str())) {
                        parts.push(format!("{lead}{k}={public}"));
                        changed = true;
                        continue;
                    }
                } else if key.eq_ignore_ascii_case("domain")
                    && let Some((_, public)) = domains
                        .iter()
                        .find(|(internal, _)| v.len() >= internal.len() && v.as_bytes()[..internal.len()].eq_ignore_ascii_case(internal.as_bytes()))
                {
                    parts.push(format!("{lead}{k}={public}"));
                    changed = true;
                    continue;
                }
            }
        }
        parts.push(part.to_string());
    }
    changed.then(|| parts.join(";"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(p: &str, o: &str) -> ReverseRule {
        ReverseRule { public_path: p.into(), origin_url: o.into() }
    }

    #[test]
    fn reverse_map_table() {
        let base = PublicBase { scheme: "https", authority: "public.example" };
        let rules = vec![rule("/app", "http://127.0.0.1:29000"), rule("/pp/", "/"), rule("/stash", "http://localhost:7990/stash")];
        let rows: &[(&str, Option<&str>)] = &[
            ("http://127.0.0.1:29000/quux?a=1", Some("https://public.example/app/quux?a=1")),
            ("HTTP://127.0.0.1:29000/x", Some("https://public.example/app/x")),
            ("http://127.0.0.1:29000", Some("https://public.example/app")),
            ("http://127.0.0.1:29000.evil.com/x", None),
            ("/quux", Some("https://public.example/pp/quux")),
            ("http://localhost:7990/stash/projects", Some("https://public.example/stash/projects")),
            ("http://localhost:7990/stashy", None),
            ("https://elsewhere.example/", None),
        ];
        for (input, want) in rows {
            assert_eq!(reverse_map(&rules, input, &base).as_deref(), *want, "{input}");
        }
    }

    #[test]
    fn cookie_rewrite_table() {
        let paths = vec![("/internal".to_string(), "/stash".to_string())];
        let domains = vec![("backend.local".to_string(), "public.example".to_string())];
        let rows: &[(&str, Option<&str>)] = &[
            ("s=1; Path=/internal/x; HttpOnly", Some("s=1; Path=/stash; HttpOnly")),
            ("s=1; path=/internal", Some("s=1; path=/stash")),
            ("s=1; Path=/Internal", None),
            ("s=1; Domain=BACKEND.local; Path=/other", Some("s=1; Domain=public.example; Path=/other")),
            ("s=1", None),
            ("path=/internal; x=1", None),
        ];
        for (input, want) in rows {
            assert_eq!(rewrite_cookie(input, &paths, &domains).as_deref(), *want, "{input}");
        }
    }
}

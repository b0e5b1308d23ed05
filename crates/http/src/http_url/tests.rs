use super::*;

/// (scheme, host, port as written, port or default, path as written, query, fragment)
type Parts<'a> = (&'a str, &'a str, Option<u16>, u16, &'a str, bool, bool);

fn parts(u: &HttpUrl) -> Parts<'_> {
    (u.scheme(), u.host(), u.port(), u.port_or_default(), u.path(), u.has_query(), u.has_fragment())
}

#[test]
fn http_urls_edge_cases() {
    use UrlError::*;
    let ok = |p: Parts<'static>| Ok(p);
    let cases: &[(&str, Result<Parts, UrlError>)] = &[
        // Plain forms; the path exactly as written (empty, `/`, trailing `/`).
        ("http://localhost:7990/stash", ok(("http", "localhost", Some(7990), 7990, "/stash", false, false))),
        ("http://localhost:7990", ok(("http", "localhost", Some(7990), 7990, "", false, false))),
        ("http://localhost:7990/", ok(("http", "localhost", Some(7990), 7990, "/", false, false))),
        ("https://h/a/b/", ok(("https", "h", None, 443, "/a/b/", false, false))),
        // Default ports: kept as written, and the scheme's when none is.
        ("https://h:443", ok(("https", "h", Some(443), 443, "", false, false))),
        ("http://h:80/x", ok(("http", "h", Some(80), 80, "/x", false, false))),
        ("http://h:443", ok(("http", "h", Some(443), 443, "", false, false))),
        ("http://h", ok(("http", "h", None, 80, "", false, false))),
        ("http://h:0", ok(("http", "h", Some(0), 0, "", false, false))),
        ("http://h:007990", ok(("http", "h", Some(7990), 7990, "", false, false))),
        // Case: scheme and host are lower-cased, the path is not.
        ("HTTPS://Example.COM/Stash", ok(("https", "example.com", None, 443, "/Stash", false, false))),
        ("Http://H", ok(("http", "h", None, 80, "", false, false))),
        // IPv6 literals, with and without a port; compressed as the URL Standard writes them.
        ("http://[::1]:7990/x", ok(("http", "[::1]", Some(7990), 7990, "/x", false, false))),
        ("http://[::1]", ok(("http", "[::1]", None, 80, "", false, false))),
        ("http://[0:0:0:0:0:0:0:1]:8080", ok(("http", "[::1]", Some(8080), 8080, "", false, false))),
        ("http://[FE80::1]/", ok(("http", "[fe80::1]", None, 80, "/", false, false))),
        ("http://127.0.0.1:7990", ok(("http", "127.0.0.1", Some(7990), 7990, "", false, false))),
        // Percent-encoding: a path keeps it as written; a host is decoded.
        ("http://h/a%20b/%7Euser", ok(("http", "h", None, 80, "/a%20b/%7Euser", false, false))),
        ("http://ex%41mple.com", ok(("http", "example.com", None, 80, "", false, false))),
        // Query and fragment: not part of the path; callers decide.
        ("http://h/a?b=c", ok(("http", "h", None, 80, "/a", true, false))),
        ("http://h?", ok(("http", "h", None, 80, "", true, false))),
        ("http://h/a#top", ok(("http", "h", None, 80, "/a", false, true))),
        // Whitespace, even at the ends (callers trim first where they mean to).
        ("http://exa mple.com", Err(Whitespace)),
        (" http://h", Err(Whitespace)),
        ("http://h/a\tb", Err(Whitespace)),
        ("http://h/\u{7f}", Err(Whitespace)),
        // Schemes.
        ("example.com", Err(NoScheme)),
        ("localhost:7990", Err(NoScheme)),
        ("http:/h", Err(NoScheme)),
        ("http:h", Err(NoScheme)),
        ("ftp://h", Err(Scheme)),
        ("ws://h", Err(Scheme)),
        ("://h", Err(Scheme)),
        // User information.
        ("https://user@h", Err(Userinfo)),
        ("https://user:pw@h/x", Err(Userinfo)),
        ("https://@h", Err(Userinfo)),
        // IPv6 structure.
        ("http://[::1", Err(Ipv6Unclosed)),
        ("http://[::1]x", Err(AfterIpv6)),
        ("http://[::1]:", Err(Port)),
        ("http://[zz]", Err(Host)),
        ("http://[]", Err(Host)),
        // Ports.
        ("https://h:", Err(Port)),
        ("https://h:99999", Err(Port)),
        ("https://h:65536", Err(Port)),
        ("https://h:+80", Err(Port)),
        ("https://h:8a", Err(Port)),
        ("https://h:1:2", Err(Port)),
        // Hosts.
        ("https://", Err(NoHost)),
        ("https://:80", Err(NoHost)),
        ("http:///x", Err(NoHost)),
        ("http://h%20x", Err(Host)),
        ("http://a<b", Err(Host)),
        ("http://256.1.1.1", Err(Host)),
        // No Unicode back end for IDNA (Cargo.lock pins idna_adapter 1.0): `xn--` works.
        ("http://bücher.example", Err(Host)),
        ("http://xn--bcher-kva.example", ok(("http", "xn--bcher-kva.example", None, 80, "", false, false))),
    ];
    for (input, want) in cases {
        let got = HttpUrl::parse(input);
        assert_eq!(got.as_ref().map(parts), want.as_ref().map(|p| *p), "input {input:?}");
    }
}

#[test]
fn authority_keeps_the_port_as_written() {
    assert_eq!(HttpUrl::parse("https://A.example:443/x").unwrap().authority(), "a.example:443");
    assert_eq!(HttpUrl::parse("https://a.example/x").unwrap().authority(), "a.example");
    assert_eq!(HttpUrl::parse("http://[::1]:7990").unwrap().authority(), "[::1]:7990");
}

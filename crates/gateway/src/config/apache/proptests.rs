//! Property tests for the Apache reader: any text never panics it, and generated
//! `ProxyPass`/`ProxyPassReverse` configurations land in the model as written
//! (Apache's mod_proxy: <https://httpd.apache.org/docs/2.4/mod/mod_proxy.html#proxypass>).

use std::time::Duration;

use proptest::prelude::*;

use super::load;

/// Reads `text` as an httpd.conf from a file of its own (Include resolves beside it), through
/// the same entry point as `trove gateway --config`: a typed error is fine, a panic is not.
fn read(text: &str) -> Result<(crate::config::GatewayConfig, crate::config::Diagnostics), crate::config::ConfigError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("httpd.conf");
    std::fs::write(&path, text).expect("write config");
    load(&path)
}

/// Lines made of the reader's own vocabulary, so that the properties reach its sections,
/// variables, quoting and continuation lines rather than stopping at the first unknown word.
fn line() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        Just("Listen".to_string()),
        Just("ProxyPass".to_string()),
        Just("ProxyPassReverse".to_string()),
        Just("<VirtualHost".to_string()),
        Just("</VirtualHost>".to_string()),
        Just("<Location".to_string()),
        Just("</Location>".to_string()),
        Just("<Proxy".to_string()),
        Just("</Proxy>".to_string()),
        Just("<IfModule".to_string()),
        Just("</IfModule>".to_string()),
        Just("Define".to_string()),
        Just("${X}".to_string()),
        Just("Include".to_string()),
        Just("IncludeOptional".to_string()),
        Just("ServerName".to_string()),
        Just("SSLEngine".to_string()),
        Just("RequestReadTimeout".to_string()),
        Just("Require".to_string()),
        Just("Order".to_string()),
        Just("Header".to_string()),
        Just("LogFormat".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just(">".to_string()),
        Just("#".to_string()),
        Just("/".to_string()),
        Just("!".to_string()),
        Just("http://127.0.0.1:9/".to_string()),
        Just("*:443".to_string()),
        "[a-z0-9=:/.,*-]{1,12}",
        "[ -~]{1,12}",
        "\\PC{1,6}",
    ];
    (prop::collection::vec(word, 0..6), "[ \\t]{0,2}").prop_map(|(words, indent)| format!("{indent}{}", words.join(" ")))
}

fn path_segment() -> impl Strategy<Value = String> {
    "[a-z0-9_.~-]{1,8}"
}

/// A route's local path: `/` and one to three segments, with or without a trailing slash.
fn local_path() -> impl Strategy<Value = String> {
    (prop::collection::vec(path_segment(), 1..4), any::<bool>()).prop_map(|(segs, slash)| format!("/{}{}", segs.join("/"), if slash { "/" } else { "" }))
}

#[derive(Debug, Clone)]
struct GenRoute {
    host: String,
    port: u16,
    path: String,
    timeout: Option<u64>,
}

fn route() -> impl Strategy<Value = GenRoute> {
    (
        prop_oneof!["[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){0,2}", Just("127.0.0.1".to_string()), Just("localhost".to_string())],
        1u16..,
        prop::collection::vec(path_segment(), 0..3),
        prop::option::of(1u64..100_000),
    )
        .prop_map(|(host, port, segs, timeout)| GenRoute { host, port, path: segs.iter().map(|s| format!("/{s}")).collect(), timeout })
}

/// A directive name in any case: Apache's directives are case-insensitive.
fn any_case(name: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<bool>(), name.len())
        .prop_map(move |up| name.chars().zip(up).map(|(c, u)| if u { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary text never panics the reader.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}(\n\\PC{0,80}){0,5}") {
        let _ = read(&text);
    }

    /// Lines of directives, sections, variables and quotes in any order never panic it.
    #[test]
    fn directive_soup_never_panics(lines in prop::collection::vec(line(), 0..25), continued in any::<bool>()) {
        let sep = if continued { " \\\n" } else { "\n" };
        let _ = read(&lines.join(sep));
    }

    /// Generated routes and their reverse rules are in the model in the order written, each
    /// with its origin's host, port and path and its timeout (default: `Timeout`, 60 s).
    #[test]
    fn generated_proxy_pass_configs_round_trip(
        routes in prop::collection::btree_map(local_path(), route(), 1..8),
        pass in any_case("ProxyPass"),
        reverse in any_case("ProxyPassReverse"),
        indent in "[ \\t]{0,4}",
        listen in 1u16..,
    ) {
        let routes: Vec<(String, GenRoute)> = routes.into_iter().collect();
        let url = |r: &GenRoute| format!("http://{}:{}{}", r.host, r.port, r.path);
        let mut text = format!("# generated\nListen 127.0.0.1:{listen}\n");
        for (p, r) in &routes {
            let timeout = r.timeout.map(|t| format!(" timeout={t}")).unwrap_or_default();
            text.push_str(&format!("{indent}{pass} {p} {}{timeout}\n{indent}{reverse} {p} {}\n", url(r), url(r)));
        }
        let (c, d) = read(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let errors: Vec<String> = d.errors().map(|e| e.to_string()).collect();
        prop_assert!(errors.is_empty(), "{:?}\n{}", errors, text);
        prop_assert_eq!(c.listeners.len(), 1);
        prop_assert_eq!(c.listeners[0].addr.port(), listen);
        let s = c.servers.last().expect("a server");
        prop_assert_eq!(s.routes.len(), routes.len());
        prop_assert_eq!(s.reverse.len(), routes.len());
        for ((p, r), (got, rev)) in routes.iter().zip(s.routes.iter().zip(&s.reverse)) {
            prop_assert_eq!(&got.path, p);
            let u = got.upstream.as_ref().expect("not an exclusion");
            prop_assert_eq!(&u.url, &url(r));
            prop_assert_eq!((u.host.as_str(), u.port, u.path.as_str()), (r.host.as_str(), r.port, r.path.as_str()));
            prop_assert_eq!(u.timeout, Duration::from_secs(r.timeout.unwrap_or(60)));
            prop_assert_eq!(&rev.public_path, p);
            prop_assert_eq!(&rev.origin_url, &url(r));
        }
    }
}

//! mod_ssl: TLS for a `<VirtualHost>` (`SSLEngine`, the certificate, key and chain files, the
//! protocols and suites) and the pass-phrase dialog; its caches and tuning are noted (see
//! docs/tls.md).

use std::path::PathBuf;

use super::super::PassphraseSetting;
use super::core::noted;
use super::{Cx, Handler, Line, on_off};

pub(super) const DIRECTIVES: &[(&str, Handler)] = &[
    ("sslengine", ssl_engine),
    ("sslcertificatefile", tls_setting),
    ("sslcertificatekeyfile", tls_setting),
    ("sslcertificatechainfile", tls_setting),
    ("sslprotocol", tls_setting),
    ("sslciphersuite", tls_setting),
    ("sslpassphrasedialog", ssl_pass_phrase_dialog),
    // Caches, randomness and TLS to origins: they cannot change how trove proxies.
    ("sslrandomseed", noted),
    ("sslsessioncache", noted),
    ("sslsessioncachetimeout", noted),
    ("sslstaplingcache", noted),
    ("sslhonorcipherorder", noted),
    ("sslcompression", noted),
    ("sslsessiontickets", noted),
    ("sslproxyengine", noted),
    ("sslcryptodevice", noted),
    ("sslproxyciphersuite", noted),
    ("sslproxyprotocol", noted),
];

fn ssl_engine(cx: &mut Cx<'_>, l: &Line) {
    if let Some(v) = on_off(l, cx.d) {
        if !cx.in_vhost && v {
            cx.d.error(&l.origin, "SSLEngine On belongs inside a <VirtualHost>", "move it into <VirtualHost *:443>");
        }
        cx.server().ssl_engine = Some(v);
    }
}

/// `SSLCertificateFile`, `SSLCertificateKeyFile`, `SSLCertificateChainFile`, `SSLProtocol`,
/// `SSLCipherSuite`: one value each for the server's TLS site.
fn tls_setting(cx: &mut Cx<'_>, l: &Line) {
    let lname = l.name.to_ascii_lowercase();
    let Some(a) = l.args.first() else {
        cx.d.error(&l.origin, format!("{} needs a value", l.name), "see docs/tls.md");
        return;
    };
    let value = l.args.join(" ");
    // RHEL's stock ssl.conf: `PROFILE=SYSTEM` hands the choice to the system-wide
    // crypto policy (update-crypto-policies(8)), which only OpenSSL reads.
    if lname == "sslciphersuite" && value.eq_ignore_ascii_case("PROFILE=SYSTEM") {
        cx.d.note(
            &l.origin,
            "SSLCipherSuite PROFILE=SYSTEM (RHEL's crypto policy) is read as unset: trove offers its own suites, ECDHE with AES-GCM or ChaCha20-Poly1305",
        );
        return;
    }
    let t = &mut cx.server().tls;
    t.origin.get_or_insert_with(|| l.origin.clone());
    match lname.as_str() {
        "sslcertificatefile" => t.cert = Some(PathBuf::from(a)),
        "sslcertificatekeyfile" => t.key = Some(PathBuf::from(a)),
        "sslcertificatechainfile" => t.chain = Some(PathBuf::from(a)),
        "sslprotocol" => t.protocol = Some(value),
        _ => t.cipher = Some(value),
    }
}

fn ssl_pass_phrase_dialog(cx: &mut Cx<'_>, l: &Line) {
    let a = l.args.first().cloned().unwrap_or_default();
    cx.passphrase = if a.eq_ignore_ascii_case("builtin") {
        PassphraseSetting::Builtin
    } else if let Some(p) = a.strip_prefix("exec:") {
        PassphraseSetting::Exec(PathBuf::from(p))
    } else {
        cx.d.error(&l.origin, format!("SSLPassPhraseDialog '{a}' is not supported"), "use 'builtin' or 'exec:/path/to/program'");
        return;
    };
}

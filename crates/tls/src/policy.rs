//! Protocol versions, cipher suites and ALPN: Apache's `SSLProtocol` and `SSLCipherSuite` mapped
//! onto what rustls can do (TLS 1.2 and 1.3; AEAD suites with forward secrecy only).
//!
//! Anything asked for that cannot be honoured becomes a [`TlsWarning`]; a setting that leaves
//! nothing usable is an error. See Apache's mod_ssl docs for `SSLProtocol` and `SSLCipherSuite`,
//! and OpenSSL's `ciphers(1)` for the cipher-string language.

use rustls::CipherSuite;

use super::error::{TlsError, TlsWarning};

/// Which protocol versions to speak. Default: TLS 1.2 and TLS 1.3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolSetting {
    pub tls12: bool,
    pub tls13: bool,
}

impl Default for ProtocolSetting {
    fn default() -> Self {
        ProtocolSetting { tls12: true, tls13: true }
    }
}

const P_SSL2: u8 = 1;
const P_SSL3: u8 = 2;
const P_TLS1: u8 = 4;
const P_TLS11: u8 = 8;
const P_TLS12: u8 = 16;
const P_TLS13: u8 = 32;
/// Apache's `all`: every protocol except SSLv2 (mod_ssl `SSL_PROTOCOL_ALL`).
const P_ALL: u8 = P_SSL3 | P_TLS1 | P_TLS11 | P_TLS12 | P_TLS13;

fn protocol_bit(word: &str) -> Option<(u8, &'static str)> {
    Some(match word.to_ascii_lowercase().as_str() {
        "sslv2" => (P_SSL2, "SSLv2"),
        "sslv3" => (P_SSL3, "SSLv3"),
        "tlsv1" => (P_TLS1, "TLSv1"),
        "tlsv1.1" => (P_TLS11, "TLSv1.1"),
        "tlsv1.2" => (P_TLS12, "TLSv1.2"),
        "tlsv1.3" => (P_TLS13, "TLSv1.3"),
        "all" => (P_ALL, "all"),
        _ => return None,
    })
}

/// Parses an `SSLProtocol` value such as `all -SSLv3`, `-all +TLSv1.2 +TLSv1.3` or `TLSv1.2`.
///
/// As mod_ssl does: `+P` adds, `-P` removes, and a bare `P` replaces everything named before it
/// (with a warning when something was). Protocols older than TLS 1.2 that are asked for by name
/// give a [`TlsWarning::ProtocolNotSupported`]; `all` quietly means "all that trove speaks".
pub fn parse_ssl_protocol(value: &str) -> Result<(ProtocolSetting, Vec<TlsWarning>), TlsError> {
    let mut set: u8 = 0;
    let mut named_old: u8 = 0;
    let mut warnings = Vec::new();
    let mut any = false;
    for word in value.split_whitespace() {
        let (op, name) = match word.as_bytes()[0] {
            b'+' => (Some('+'), &word[1..]),
            b'-' => (Some('-'), &word[1..]),
            _ => (None, word),
        };
        let (bit, canonical) = protocol_bit(name).ok_or_else(|| TlsError::InvalidProtocol {
            value: value.to_string(),
            reason: format!("unknown protocol {name:?}; use all, TLSv1.2 or TLSv1.3 with + or - prefixes"),
        })?;
        any = true;
        match op {
            Some('-') => {
                set &= !bit;
                named_old &= !bit;
            }
            Some(_) => {
                set |= bit;
                if canonical != "all" {
                    named_old |= bit & !(P_TLS12 | P_TLS13);
                }
            }
            None => {
                if set != 0 {
                    warnings.push(TlsWarning::ProtocolOverride { value: value.to_string(), protocol: word.to_string() });
                }
                set = bit;
                named_old = if canonical == "all" { 0 } else { bit & !(P_TLS12 | P_TLS13) };
            }
        }
    }
    if !any {
        return Err(TlsError::InvalidProtocol { value: value.to_string(), reason: "no protocol given".into() });
    }
    for (bit, name) in [(P_SSL2, "SSLv2"), (P_SSL3, "SSLv3"), (P_TLS1, "TLSv1"), (P_TLS11, "TLSv1.1")] {
        if named_old & set & bit != 0 {
            warnings.push(TlsWarning::ProtocolNotSupported { protocol: name.to_string() });
        }
    }
    let setting = ProtocolSetting { tls12: set & P_TLS12 != 0, tls13: set & P_TLS13 != 0 };
    if !setting.tls12 && !setting.tls13 {
        return Err(TlsError::NoUsableProtocol { value: value.to_string() });
    }
    Ok((setting, warnings))
}

/// Which protocols an `SSLCipherSuite` line is about (`SSLCipherSuite [protocol] cipher-spec`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CipherScope {
    /// `SSL` (the default): TLS 1.2 and below.
    Tls12,
    /// `TLSv1.3`.
    Tls13,
}

/// The outcome of one `SSLCipherSuite` line: the rustls suites to offer, in preference order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CipherSetting {
    pub scope: CipherScope,
    pub suites: Vec<CipherSuite>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kx {
    Ecdhe,
    Dhe,
    Rsa,
    Psk,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Au {
    Rsa,
    Ecdsa,
    Null,
    Psk,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Enc {
    AesGcm128,
    AesGcm256,
    Chacha20,
    Aes128Cbc,
    Aes256Cbc,
    Camellia128,
    Camellia256,
    TripleDes,
    Rc4,
    Des,
    Null,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mac {
    Aead,
    Sha1,
    Sha256,
    Sha384,
    Md5,
}

/// One OpenSSL TLS 1.2-and-below cipher, with what OpenSSL's aliases select it by.
struct Cipher {
    name: &'static str,
    kx: Kx,
    au: Au,
    enc: Enc,
    mac: Mac,
    rustls: Option<CipherSuite>,
}

const fn c(name: &'static str, kx: Kx, au: Au, enc: Enc, mac: Mac, rustls: Option<CipherSuite>) -> Cipher {
    Cipher { name, kx, au, enc, mac, rustls }
}

use Au as A;
use Enc as E;
use Kx as K;
use Mac as M;

/// In OpenSSL's default preference order; the suites rustls implements carry their rustls id.
static CIPHERS: &[Cipher] = &[
    c("ECDHE-ECDSA-AES256-GCM-SHA384", K::Ecdhe, A::Ecdsa, E::AesGcm256, M::Aead, Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)),
    c("ECDHE-RSA-AES256-GCM-SHA384", K::Ecdhe, A::Rsa, E::AesGcm256, M::Aead, Some(CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)),
    c("DHE-RSA-AES256-GCM-SHA384", K::Dhe, A::Rsa, E::AesGcm256, M::Aead, None),
    c("ECDHE-ECDSA-CHACHA20-POLY1305", K::Ecdhe, A::Ecdsa, E::Chacha20, M::Aead, Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)),
    c("ECDHE-RSA-CHACHA20-POLY1305", K::Ecdhe, A::Rsa, E::Chacha20, M::Aead, Some(CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256)),
    c("DHE-RSA-CHACHA20-POLY1305", K::Dhe, A::Rsa, E::Chacha20, M::Aead, None),
    c("ECDHE-ECDSA-AES128-GCM-SHA256", K::Ecdhe, A::Ecdsa, E::AesGcm128, M::Aead, Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)),
    c("ECDHE-RSA-AES128-GCM-SHA256", K::Ecdhe, A::Rsa, E::AesGcm128, M::Aead, Some(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)),
    c("DHE-RSA-AES128-GCM-SHA256", K::Dhe, A::Rsa, E::AesGcm128, M::Aead, None),
    c("ECDHE-ECDSA-AES256-SHA384", K::Ecdhe, A::Ecdsa, E::Aes256Cbc, M::Sha384, None),
    c("ECDHE-RSA-AES256-SHA384", K::Ecdhe, A::Rsa, E::Aes256Cbc, M::Sha384, None),
    c("DHE-RSA-AES256-SHA256", K::Dhe, A::Rsa, E::Aes256Cbc, M::Sha256, None),
    c("ECDHE-ECDSA-AES128-SHA256", K::Ecdhe, A::Ecdsa, E::Aes128Cbc, M::Sha256, None),
    c("ECDHE-RSA-AES128-SHA256", K::Ecdhe, A::Rsa, E::Aes128Cbc, M::Sha256, None),
    c("DHE-RSA-AES128-SHA256", K::Dhe, A::Rsa, E::Aes128Cbc, M::Sha256, None),
    c("ECDHE-ECDSA-AES256-SHA", K::Ecdhe, A::Ecdsa, E::Aes256Cbc, M::Sha1, None),
    c("ECDHE-RSA-AES256-SHA", K::Ecdhe, A::Rsa, E::Aes256Cbc, M::Sha1, None),
    c("DHE-RSA-AES256-SHA", K::Dhe, A::Rsa, E::Aes256Cbc, M::Sha1, None),
    c("ECDHE-ECDSA-AES128-SHA", K::Ecdhe, A::Ecdsa, E::Aes128Cbc, M::Sha1, None),
    c("ECDHE-RSA-AES128-SHA", K::Ecdhe, A::Rsa, E::Aes128Cbc, M::Sha1, None),
    c("DHE-RSA-AES128-SHA", K::Dhe, A::Rsa, E::Aes128Cbc, M::Sha1, None),
    c("AES256-GCM-SHA384", K::Rsa, A::Rsa, E::AesGcm256, M::Aead, None),
    c("AES128-GCM-SHA256", K::Rsa, A::Rsa, E::AesGcm128, M::Aead, None),
    c("AES256-SHA256", K::Rsa, A::Rsa, E::Aes256Cbc, M::Sha256, None),
    c("AES128-SHA256", K::Rsa, A::Rsa, E::Aes128Cbc, M::Sha256, None),
    c("AES256-SHA", K::Rsa, A::Rsa, E::Aes256Cbc, M::Sha1, None),
    c("AES128-SHA", K::Rsa, A::Rsa, E::Aes128Cbc, M::Sha1, None),
    c("CAMELLIA256-SHA", K::Rsa, A::Rsa, E::Camellia256, M::Sha1, None),
    c("CAMELLIA128-SHA", K::Rsa, A::Rsa, E::Camellia128, M::Sha1, None),
    c("ECDHE-RSA-DES-CBC3-SHA", K::Ecdhe, A::Rsa, E::TripleDes, M::Sha1, None),
    c("DES-CBC3-SHA", K::Rsa, A::Rsa, E::TripleDes, M::Sha1, None),
    c("RC4-SHA", K::Rsa, A::Rsa, E::Rc4, M::Sha1, None),
    c("RC4-MD5", K::Rsa, A::Rsa, E::Rc4, M::Md5, None),
    c("DES-CBC-SHA", K::Rsa, A::Rsa, E::Des, M::Sha1, None),
    c("ADH-AES256-GCM-SHA384", K::Dhe, A::Null, E::AesGcm256, M::Aead, None),
    c("AECDH-AES256-SHA", K::Ecdhe, A::Null, E::Aes256Cbc, M::Sha1, None),
    c("PSK-AES256-GCM-SHA384", K::Psk, A::Psk, E::AesGcm256, M::Aead, None),
    c("NULL-SHA256", K::Rsa, A::Rsa, E::Null, M::Sha256, None),
    c("ECDHE-RSA-NULL-SHA", K::Ecdhe, A::Rsa, E::Null, M::Sha1, None),
];

impl Cipher {
    /// Symmetric strength in bits, for `@STRENGTH`.
    fn strength(&self) -> u16 {
        match self.enc {
            E::AesGcm256 | E::Aes256Cbc | E::Camellia256 | E::Chacha20 => 256,
            E::AesGcm128 | E::Aes128Cbc | E::Camellia128 | E::Rc4 => 128,
            E::TripleDes => 112,
            E::Des => 56,
            E::Null => 0,
        }
    }

    /// Whether OpenSSL's alias `alias` selects this cipher; `None` if `alias` is no alias.
    fn in_alias(&self, alias: &str) -> Option<bool> {
        let tls12_only = matches!(self.mac, M::Aead | M::Sha256 | M::Sha384);
        Some(match alias {
            "ALL" => self.enc != E::Null,
            "COMPLEMENTOFALL" | "eNULL" | "NULL" => self.enc == E::Null,
            "DEFAULT" => self.enc != E::Null && self.au != A::Null,
            "COMPLEMENTOFDEFAULT" => self.au == A::Null,
            "HIGH" => matches!(self.enc, E::AesGcm128 | E::AesGcm256 | E::Chacha20 | E::Aes128Cbc | E::Aes256Cbc | E::Camellia128 | E::Camellia256),
            "MEDIUM" => matches!(self.enc, E::TripleDes | E::Rc4),
            "LOW" => self.enc == E::Des,
            "EXP" | "EXPORT" | "EXPORT40" | "EXPORT56" => false,
            "kRSA" | "RSA" => self.kx == K::Rsa,
            "aRSA" => self.au == A::Rsa,
            "kECDHE" | "kEECDH" => self.kx == K::Ecdhe,
            "ECDHE" | "EECDH" => self.kx == K::Ecdhe && self.au != A::Null,
            "AECDH" => self.kx == K::Ecdhe && self.au == A::Null,
            "kDHE" | "kEDH" => self.kx == K::Dhe,
            "DHE" | "EDH" => self.kx == K::Dhe && self.au != A::Null,
            "ADH" => self.kx == K::Dhe && self.au == A::Null,
            "aECDSA" | "ECDSA" => self.au == A::Ecdsa,
            "aNULL" => self.au == A::Null,
            "kPSK" | "PSK" => self.kx == K::Psk,
            "aPSK" => self.au == A::Psk,
            "aDSS" | "DSS" | "kSRP" | "SRP" | "aGOST" | "kGOST" | "ARIA" | "SEED" | "IDEA" | "AESCCM" | "AESCCM8" => false,
            "AES" => matches!(self.enc, E::AesGcm128 | E::AesGcm256 | E::Aes128Cbc | E::Aes256Cbc),
            "AES128" => matches!(self.enc, E::AesGcm128 | E::Aes128Cbc),
            "AES256" => matches!(self.enc, E::AesGcm256 | E::Aes256Cbc),
            "AESGCM" => matches!(self.enc, E::AesGcm128 | E::AesGcm256),
            "CHACHA20" => self.enc == E::Chacha20,
            "CAMELLIA" => matches!(self.enc, E::Camellia128 | E::Camellia256),
            "CAMELLIA128" => self.enc == E::Camellia128,
            "CAMELLIA256" => self.enc == E::Camellia256,
            "3DES" => self.enc == E::TripleDes,
            "DES" => self.enc == E::Des,
            "RC4" => self.enc == E::Rc4,
            "AEAD" => self.mac == M::Aead,
            "SHA1" | "SHA" => self.mac == M::Sha1,
            "SHA256" => self.mac == M::Sha256,
            "SHA384" => self.mac == M::Sha384,
            "MD5" => self.mac == M::Md5,
            "TLSv1.2" => tls12_only,
            "TLSv1" | "TLSv1.0" | "SSLv3" => !tls12_only,
            _ => return None,
        })
    }

    /// Why rustls does not offer this cipher.
    fn why_not(&self) -> String {
        let mut reasons = Vec::new();
        if self.enc == E::Null {
            reasons.push("it does not encrypt");
        }
        if self.au == A::Null {
            reasons.push("it does not authenticate the server");
        }
        if matches!(self.kx, K::Rsa | K::Psk) {
            reasons.push("it has no forward secrecy");
        }
        if self.kx == K::Dhe && self.au != A::Null {
            reasons.push("finite-field DHE key exchange is not implemented by rustls (ECDHE is used instead)");
        }
        match self.enc {
            E::Rc4 => reasons.push("RC4 is broken"),
            E::TripleDes | E::Des => reasons.push("DES and 3DES are broken or too weak"),
            E::Aes128Cbc | E::Aes256Cbc | E::Camellia128 | E::Camellia256 => reasons.push("it is not an AEAD cipher (CBC mode is fragile)"),
            _ => {}
        }
        reasons.join(" and ")
    }
}

fn find_cipher(name: &str) -> Option<usize> {
    CIPHERS.iter().position(|c| c.name.eq_ignore_ascii_case(name)).or_else(|| {
        // IANA names, as rustls spells them (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`).
        CIPHERS.iter().position(|c| c.rustls.is_some_and(|s| format!("{s:?}").eq_ignore_ascii_case(name)))
    })
}

const TLS13_SUITES: &[(&str, Option<CipherSuite>)] = &[
    ("TLS_AES_256_GCM_SHA384", Some(CipherSuite::TLS13_AES_256_GCM_SHA384)),
    ("TLS_CHACHA20_POLY1305_SHA256", Some(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256)),
    ("TLS_AES_128_GCM_SHA256", Some(CipherSuite::TLS13_AES_128_GCM_SHA256)),
    ("TLS_AES_128_CCM_SHA256", None),
    ("TLS_AES_128_CCM_8_SHA256", None),
];

/// Parses an `SSLCipherSuite` value: `[SSL|TLSv1.3] cipher-spec`.
///
/// For TLS 1.2 (the default scope) the spec is an OpenSSL cipher string (`HIGH:!aNULL`,
/// `ECDHE+AESGCM:!aNULL`, `-ALL:+ECDHE-RSA-AES128-GCM-SHA256`, `@STRENGTH`...), evaluated as
/// OpenSSL does: `!` deletes for good, `-` deletes, `+` moves to the end, `A+B` selects what is in
/// both. The result keeps only suites rustls offers. A warning is given for each element that adds
/// only suites trove cannot offer (`RC4`, `AES128-SHA`, `kRSA`...) and for each unknown name.
/// For `TLSv1.3` the spec is a `:`-separated list of TLS 1.3 suite names.
pub fn parse_ssl_cipher_suite(value: &str) -> Result<(CipherSetting, Vec<TlsWarning>), TlsError> {
    let trimmed = value.trim().trim_matches('"');
    let (scope, spec) = match trimmed.split_once(char::is_whitespace) {
        Some((p, rest)) if p.eq_ignore_ascii_case("TLSv1.3") => (CipherScope::Tls13, rest.trim()),
        Some((p, rest)) if p.eq_ignore_ascii_case("SSL") => (CipherScope::Tls12, rest.trim()),
        _ => (CipherScope::Tls12, trimmed),
    };
    let mut warnings = Vec::new();
    let suites = match scope {
        CipherScope::Tls13 => {
            let mut suites = Vec::new();
            for name in spec.split(':').map(str::trim).filter(|s| !s.is_empty()) {
                match TLS13_SUITES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                    Some((_, Some(s))) => {
                        if !suites.contains(s) {
                            suites.push(*s)
                        }
                    }
                    Some((n, None)) => {
                        warnings.push(TlsWarning::CipherNotSupported { name: n.to_string(), reason: "AES-CCM suites are not implemented by rustls".into() })
                    }
                    None => warnings.push(TlsWarning::UnknownCipher { name: name.to_string() }),
                }
            }
            suites
        }
        CipherScope::Tls12 => eval_cipher_string(spec, &mut warnings),
    };
    if suites.is_empty() {
        return Err(TlsError::NoUsableCipherSuite { value: value.to_string() });
    }
    Ok((CipherSetting { scope, suites }, warnings))
}

/// OpenSSL's cipher-string evaluation (`ssl_cipher_process_rulestr`), over [`CIPHERS`].
fn eval_cipher_string(spec: &str, warnings: &mut Vec<TlsWarning>) -> Vec<CipherSuite> {
    let mut active: Vec<usize> = Vec::new();
    let mut killed = vec![false; CIPHERS.len()];
    for element in spec.split([':', ',', ' ']).map(str::trim).filter(|s| !s.is_empty()) {
        if element == "@STRENGTH" {
            active.sort_by_key(|&i| std::cmp::Reverse(CIPHERS[i].strength()));
            continue;
        }
        if element.starts_with('@') {
            // `@SECLEVEL=n`: OpenSSL's security level; rustls' fixed policy is stricter than any.
            continue;
        }
        let (op, body) = match element.as_bytes()[0] {
            b'!' | b'-' | b'+' => (element.as_bytes()[0], &element[1..]),
            _ => (b' ', element),
        };
        let mut selected: Vec<bool> = vec![true; CIPHERS.len()];
        let mut known = true;
        for part in body.split('+').filter(|p| !p.is_empty()) {
            if let Some(i) = find_cipher(part) {
                for (j, s) in selected.iter_mut().enumerate() {
                    *s &= j == i;
                }
            } else if CIPHERS[0].in_alias(part).is_some() {
                for (j, s) in selected.iter_mut().enumerate() {
                    *s &= CIPHERS[j].in_alias(part).unwrap_or(false);
                }
            } else {
                known = false;
                let reason = if TLS13_SUITES.iter().any(|(n, _)| n.eq_ignore_ascii_case(part)) {
                    Some("TLS 1.3 suites are set with `SSLCipherSuite TLSv1.3 ...`")
                } else {
                    None
                };
                warnings.push(match reason {
                    Some(r) => TlsWarning::CipherNotSupported { name: part.to_string(), reason: r.into() },
                    None => TlsWarning::UnknownCipher { name: part.to_string() },
                });
            }
        }
        if !known {
            continue;
        }
        let matched: Vec<usize> = (0..CIPHERS.len()).filter(|&i| selected[i]).collect();
        match op {
            b'!' => {
                for &i in &matched {
                    killed[i] = true;
                }
                active.retain(|i| !selected[*i]);
            }
            b'-' => active.retain(|i| !selected[*i]),
            b'+' => {
                let (moved, kept): (Vec<usize>, Vec<usize>) = active.iter().partition(|i| selected[**i]);
                active = kept;
                active.extend(moved);
            }
            _ => {
                let added: Vec<usize> = matched.iter().copied().filter(|&i| !killed[i]).collect();
                for &i in &added {
                    if !active.contains(&i) {
                        active.push(i);
                    }
                }
                if !added.is_empty() && added.iter().all(|&i| CIPHERS[i].rustls.is_none()) {
                    let reasons: Vec<String> = added.iter().map(|&i| CIPHERS[i].why_not()).collect();
                    let reason = if added.len() == 1 || reasons.iter().all(|r| *r == reasons[0]) {
                        reasons[0].clone()
                    } else {
                        "none of the suites it names is an AEAD suite with forward secrecy".to_string()
                    };
                    warnings.push(TlsWarning::CipherNotSupported { name: body.to_string(), reason });
                }
            }
        }
    }
    active.into_iter().filter_map(|i| CIPHERS[i].rustls).collect()
}

/// What ALPN (RFC 7301) offers. Default: [`Alpn::H2AndHttp11`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Alpn {
    /// `h2` then `http/1.1`: HTTP/2 when the downstream can, else HTTP/1.1.
    #[default]
    H2AndHttp11,
    /// `http/1.1` only.
    Http11Only,
}

impl Alpn {
    pub fn protocols(self) -> Vec<Vec<u8>> {
        match self {
            Alpn::H2AndHttp11 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Alpn::Http11Only => vec![b"http/1.1".to_vec()],
        }
    }
}

/// Everything about the TLS handshake except the certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    /// Default: TLS 1.2 and 1.3.
    pub protocols: ProtocolSetting,
    /// TLS 1.2 suites in preference order. `None`: rustls' defaults (ECDHE with AES-GCM or
    /// ChaCha20-Poly1305, the only TLS 1.2 suites rustls has).
    pub tls12_suites: Option<Vec<CipherSuite>>,
    /// TLS 1.3 suites in preference order. `None`: all three (AES-256-GCM, ChaCha20, AES-128-GCM).
    pub tls13_suites: Option<Vec<CipherSuite>>,
    pub alpn: Alpn,
    /// Choose the suite by our order, not the downstream's (Apache's `SSLHonorCipherOrder on`).
    /// Default: `true`; every suite offered is strong, so this only makes the choice predictable.
    pub honor_cipher_order: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions { protocols: ProtocolSetting::default(), tls12_suites: None, tls13_suites: None, alpn: Alpn::default(), honor_cipher_order: true }
    }
}

impl TlsOptions {
    /// Applies a parsed `SSLCipherSuite` line to the right protocol's suite list.
    pub fn apply_cipher_setting(&mut self, setting: CipherSetting) {
        match setting.scope {
            CipherScope::Tls12 => self.tls12_suites = Some(setting.suites),
            CipherScope::Tls13 => self.tls13_suites = Some(setting.suites),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ws: &[TlsWarning]) -> Vec<String> {
        ws.iter()
            .map(|w| match w {
                TlsWarning::ProtocolNotSupported { protocol } => format!("unsupported:{protocol}"),
                TlsWarning::ProtocolOverride { protocol, .. } => format!("override:{protocol}"),
                TlsWarning::CipherNotSupported { name, .. } => format!("cipher:{name}"),
                TlsWarning::UnknownCipher { name } => format!("unknown:{name}"),
                other => other.to_string(),
            })
            .collect()
    }

    #[test]
    fn ssl_protocol_values_map_to_tls12_and_tls13_with_warnings_for_old_ones() {
        let cases: &[(&str, bool, bool, &[&str])] = &[
            ("all -SSLv3", true, true, &[]),
            ("all", true, true, &[]),
            ("-all +TLSv1.2 +TLSv1.3", true, true, &[]),
            ("-all +TLSv1.2", true, false, &[]),
            ("TLSv1.2", true, false, &[]),
            ("TLSv1.3", false, true, &[]),
            ("tlsv1.2 +TLSV1.3", true, true, &[]),
            ("all -TLSv1 -TLSv1.1", true, true, &[]),
            ("all -TLSv1.3", true, false, &[]),
            ("+TLSv1 +TLSv1.1 +TLSv1.2", true, false, &["unsupported:TLSv1", "unsupported:TLSv1.1"]),
            ("-all +TLSv1.1 +TLSv1.2 -TLSv1.1", true, false, &[]),
            ("SSLv3 TLSv1.2", true, false, &["override:TLSv1.2"]),
            ("all +SSLv3", true, true, &["unsupported:SSLv3"]),
        ];
        for (value, tls12, tls13, warns) in cases {
            let (s, w) = parse_ssl_protocol(value).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!((s.tls12, s.tls13), (*tls12, *tls13), "{value}");
            assert_eq!(names(&w), *warns, "{value}");
        }
    }

    #[test]
    fn ssl_protocol_without_tls12_or_tls13_is_refused() {
        for value in ["TLSv1", "-all +TLSv1 +TLSv1.1", "all -TLSv1.2 -TLSv1.3", "SSLv3"] {
            assert!(matches!(parse_ssl_protocol(value), Err(TlsError::NoUsableProtocol { .. })), "{value}");
        }
    }

    #[test]
    fn ssl_protocol_with_unknown_word_or_nothing_is_invalid() {
        for value in ["TLSv1.4", "all -SSLv4", "", "   "] {
            assert!(matches!(parse_ssl_protocol(value), Err(TlsError::InvalidProtocol { .. })), "{value:?}");
        }
    }

    use CipherSuite as S;

    #[test]
    fn cipher_strings_keep_only_aead_forward_secret_suites_in_openssl_order() {
        let all6 = vec![
            S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ];
        let cases: Vec<(&str, Vec<CipherSuite>, Vec<&str>)> = vec![
            ("HIGH:!aNULL", all6.clone(), vec![]),
            ("HIGH:!aNULL:!MD5", all6.clone(), vec![]),
            ("DEFAULT", all6.clone(), vec![]),
            (
                "ALL:!aNULL:!eNULL:@STRENGTH",
                vec![
                    S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                    S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                    S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                    S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                    S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                    S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                ],
                vec![],
            ),
            (
                "ECDHE+AESGCM",
                vec![
                    S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                    S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                    S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                    S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                ],
                vec![],
            ),
            (
                "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384",
                vec![S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384],
                vec![],
            ),
            ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", vec![S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256], vec![]),
            ("ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA:RC4-SHA", vec![S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256], vec!["cipher:AES128-SHA", "cipher:RC4-SHA"]),
            ("HIGH:MEDIUM:!aNULL", all6.clone(), vec!["cipher:MEDIUM"]),
            (
                "HIGH:+CHACHA20",
                vec![
                    S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                    S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                    S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                    S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                    S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                    S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                ],
                vec![],
            ),
            ("HIGH:!ECDSA:-CHACHA20:ECDSA", vec![S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256], vec![]),
            (
                "HIGH:-CHACHA20:CHACHA20",
                vec![
                    S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                    S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                    S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                    S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                    S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                    S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                ],
                vec![],
            ),
            ("SSL ECDHE+CHACHA20", vec![S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256], vec![]),
            ("HIGH:FROBNICATE:!aNULL", all6.clone(), vec!["unknown:FROBNICATE"]),
            ("HIGH:kRSA", all6.clone(), vec!["cipher:kRSA"]),
            ("\"HIGH:!aNULL:@SECLEVEL=2\"", all6.clone(), vec![]),
        ];
        for (value, want, warns) in cases {
            let (s, w) = parse_ssl_cipher_suite(value).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(s.scope, CipherScope::Tls12, "{value}");
            assert_eq!(s.suites, want, "{value}");
            assert_eq!(names(&w), warns, "{value}");
        }
    }

    #[test]
    fn cipher_strings_naming_only_weak_suites_are_refused() {
        for value in ["RC4-SHA", "AES128-SHA:AES256-SHA", "kRSA", "HIGH:!ECDHE", "MEDIUM:LOW", "eNULL", "!ALL", "NOPE"] {
            assert!(matches!(parse_ssl_cipher_suite(value), Err(TlsError::NoUsableCipherSuite { .. })), "{value}");
        }
    }

    #[test]
    fn warnings_say_every_reason_a_named_suite_is_not_offered() {
        let cases: &[(&str, &[&str])] = &[
            ("RC4-SHA", &["forward secrecy", "RC4"]),
            ("ECDHE-RSA-AES128-SHA", &["CBC"]),
            ("DHE-RSA-AES128-GCM-SHA256", &["DHE"]),
            ("DES-CBC3-SHA", &["forward secrecy", "3DES"]),
            ("NULL-SHA256", &["does not encrypt"]),
            ("ADH-AES256-GCM-SHA384", &["does not authenticate"]),
        ];
        for (name, words) in cases {
            let (_, w) = parse_ssl_cipher_suite(&format!("HIGH:{name}")).unwrap();
            let [TlsWarning::CipherNotSupported { name: n, reason }] = &w[..] else { panic!("{name}: {w:?}") };
            assert_eq!(n, name);
            for word in *words {
                assert!(reason.contains(word), "{name}: {reason}");
            }
        }
    }

    #[test]
    fn tls13_cipher_lines_select_tls13_suites() {
        let (s, w) = parse_ssl_cipher_suite("TLSv1.3 TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_CCM_SHA256:TLS_AES_256_GCM_SHA384").unwrap();
        assert_eq!(s.scope, CipherScope::Tls13);
        assert_eq!(s.suites, vec![S::TLS13_CHACHA20_POLY1305_SHA256, S::TLS13_AES_256_GCM_SHA384]);
        assert_eq!(names(&w), vec!["cipher:TLS_AES_128_CCM_SHA256"]);
        assert!(matches!(parse_ssl_cipher_suite("TLSv1.3 TLS_AES_128_CCM_8_SHA256"), Err(TlsError::NoUsableCipherSuite { .. })));
    }

    #[test]
    fn tls13_suite_names_in_the_tls12_line_are_pointed_to_the_right_directive() {
        let (s, w) = parse_ssl_cipher_suite("TLS_AES_256_GCM_SHA384:HIGH").unwrap();
        assert_eq!(s.suites.len(), 6);
        assert!(matches!(&w[..], [TlsWarning::CipherNotSupported { name, reason }] if name == "TLS_AES_256_GCM_SHA384" && reason.contains("TLSv1.3")));
    }
}

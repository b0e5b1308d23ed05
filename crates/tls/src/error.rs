//! What can go wrong while loading, checking and making certificates, and what only deserves a warning.

use std::path::PathBuf;

/// Which file a [`TlsError`] is about, so that messages say "private key /etc/x.key", not just a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileRole {
    /// `SSLCertificateFile`: the leaf certificate, then its chain.
    Certificate,
    /// `SSLCertificateKeyFile`.
    PrivateKey,
    /// `SSLCertificateChainFile`.
    Chain,
    /// A file holding the passphrase of an encrypted key.
    PassphraseFile,
    /// A certificate authority's certificate or key (`trove cert issue --ca DIR`).
    CertificateAuthority,
    /// The SSH server's host key (`<data_dir>/ssh_host_*_key`).
    SshHostKey,
}

impl std::fmt::Display for FileRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileRole::Certificate => "certificate file",
            FileRole::PrivateKey => "private key file",
            FileRole::Chain => "certificate chain file",
            FileRole::PassphraseFile => "passphrase file",
            FileRole::CertificateAuthority => "certificate authority file",
            FileRole::SshHostKey => "SSH host key",
        })
    }
}

/// The command that makes a key every TLS stack accepts; quoted by the messages about weak keys.
pub const GOOD_KEY_COMMAND: &str = "openssl genrsa -aes256 -out server.key 3072";

/// Why a certificate, key or TLS setting was refused. Each variant names the file or value at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{role} {path} does not exist; check the path in the configuration")]
    MissingFile { role: FileRole, path: PathBuf },

    #[error("cannot read {role} {path}: {source}; check that it is a file and that trove may read it")]
    UnreadableFile {
        role: FileRole,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{role} {path} can be read by group or others (mode {mode:04o}); a private key must be readable by its owner only: run `chmod 600 {path}`",
        path = path.display()
    )]
    TooOpen { role: FileRole, path: PathBuf, mode: u32 },

    #[error("no certificate in {path}; it must hold PEM `-----BEGIN CERTIFICATE-----` blocks, the server's own certificate first, then the chain")]
    NoCertificate { path: PathBuf },

    #[error("certificate {index} in {path} is not a valid X.509 certificate: {reason}")]
    BadCertificate { path: PathBuf, index: usize, reason: String },

    #[error(
        "no private key in {path}; expected a PEM block such as `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY`, `BEGIN EC PRIVATE KEY` or `BEGIN ENCRYPTED PRIVATE KEY`"
    )]
    NoKey { path: PathBuf },

    #[error("private key {path} is malformed: {reason}")]
    BadKey { path: PathBuf, reason: String },

    #[error(
        "private key {path} is a {kind} key, which trove cannot serve; make an RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 key, e.g. `{GOOD_KEY_COMMAND}`"
    )]
    UnsupportedKey { path: PathBuf, kind: String },

    #[error("private key {path} is encrypted with {scheme}, which trove cannot decrypt; re-encrypt it with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in {path} -out new.key`", path = path.display())]
    UnsupportedEncryption { path: PathBuf, scheme: String },

    #[error("wrong passphrase for private key {path} (passphrase from {from}); check the passphrase, or decrypt the key once with `openssl pkey -in {path} -out plain.key`", path = path.display())]
    WrongPassphrase { path: PathBuf, from: String },

    #[error(
        "private key {path} is encrypted but no passphrase is configured; configure one (`SSLPassPhraseDialog builtin` or `exec:/path`, or a passphrase file or environment variable), or decrypt the key with `openssl pkey -in {path} -out plain.key`",
        path = path.display()
    )]
    PassphraseNeeded { path: PathBuf },

    #[error("cannot get the passphrase for private key {path} from {from}: {reason}")]
    PassphraseUnavailable { path: PathBuf, from: String, reason: String },

    #[error(
        "private key {key} does not belong to certificate {cert} (their public keys differ); configure the key the certificate was made for, or make a new certificate for this key"
    )]
    KeyMismatch { key: PathBuf, cert: PathBuf },

    #[error("certificate {path} is not valid before {not_before}; check the system clock, or wait until then")]
    NotYetValid { path: PathBuf, not_before: String },

    #[error(
        "{path}: the RSA key has only {bits} bits; rustls and every modern TLS client refuse RSA keys under 2048 bits (the seed's `openssl genrsa -des3 -out server.key 1024` makes such a key). Make a new key with `{GOOD_KEY_COMMAND}` and a new certificate for it, or run `trove cert self-signed --host HOST --out DIR`",
        path = path.display()
    )]
    WeakRsaKey { path: PathBuf, bits: usize },

    #[error("SSLProtocol {value:?}: {reason}")]
    InvalidProtocol { value: String, reason: String },

    #[error("SSLProtocol {value:?} leaves no protocol trove can speak; trove speaks TLS 1.2 and TLS 1.3 only: use `SSLProtocol -all +TLSv1.2 +TLSv1.3`")]
    NoUsableProtocol { value: String },

    #[error(
        "SSLCipherSuite {value:?} leaves no cipher suite trove can offer; trove offers only AEAD suites with forward secrecy (ECDHE with AES-GCM or ChaCha20-Poly1305): use `SSLCipherSuite HIGH:!aNULL` or leave it unset"
    )]
    NoUsableCipherSuite { value: String },

    #[error("no TLS site configured; give at least one certificate and key")]
    NoSites,

    #[error("cannot build the TLS configuration: {0}")]
    Config(#[source] rustls::Error),

    #[error("{path} already exists; move it away or pass --force to overwrite it")]
    AlreadyExists { path: PathBuf },

    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{name:?} is not a valid host name for a certificate; use letters, digits, '-' and '.', optionally starting with `*.`")]
    InvalidHost { name: String },

    #[error("a certificate needs at least one --host or --ip")]
    NoNames,

    #[error("cannot make the certificate: {0}")]
    Generate(#[source] rcgen::Error),

    #[error("cannot make the {kind} key: {reason}")]
    KeyGeneration { kind: String, reason: String },
}

/// Something that does not stop the gateway but that the operator must see, loudly.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsWarning {
    #[error(
        "certificate {path} EXPIRED on {not_after}; clients that verify certificates (git, browsers) will refuse it: renew it now (`trove cert self-signed` or `trove cert issue` make new ones)"
    )]
    CertificateExpired { path: PathBuf, not_after: String },

    #[error("certificate {path} names {names:?} but serves site {site:?}; clients that verify the host name will refuse it: make a certificate for {site:?}")]
    NameNotInCertificate { path: PathBuf, site: String, names: Vec<String> },

    #[error("SSLProtocol asks for {protocol}, which trove does not speak (it speaks TLS 1.2 and 1.3 only); ignored")]
    ProtocolNotSupported { protocol: String },

    #[error("SSLProtocol {value:?}: {protocol:?} has no + or - prefix and replaces the protocols named before it; is a prefix missing?")]
    ProtocolOverride { value: String, protocol: String },

    #[error("SSLCipherSuite asks for {name:?}, which trove does not offer ({reason}); ignored")]
    CipherNotSupported { name: String, reason: String },

    #[error("SSLCipherSuite: {name:?} is not a cipher or cipher class trove knows; ignored")]
    UnknownCipher { name: String },
}

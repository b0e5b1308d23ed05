//! `trove cert`: make and inspect certificates, replacing the seed's `openssl genrsa`, `req` and
//! `x509` steps (step 8c) with ones that make keys every client accepts.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use trove_tls::{self as tls, CertInfo, KeyKind, PassphraseSource};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Make a self-signed certificate and key: writes server.crt and server.key (mode 0600).
    SelfSigned(SelfSignedArgs),
    /// Make a local certificate authority: writes ca.crt (give it to clients) and ca.key (0600).
    Ca(CaArgs),
    /// Make a server certificate signed by a `trove cert ca` authority: server.crt and server.key.
    Issue(IssueArgs),
    /// Write a certificate signing request for an existing key, to buy a certificate from a CA.
    Csr(CsrArgs),
    /// Print what a certificate (or key) file holds and whether trove would serve it.
    Show(ShowArgs),
}

/// Key types `--key` accepts.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum KeyArg {
    /// ECDSA on P-256: small, fast, accepted by every current client. The default.
    EcdsaP256,
    /// RSA, 2048 bits: for very old clients that know no ECDSA.
    Rsa2048,
    /// RSA, 3072 bits.
    Rsa3072,
}

impl From<KeyArg> for KeyKind {
    fn from(k: KeyArg) -> KeyKind {
        match k {
            KeyArg::EcdsaP256 => KeyKind::EcdsaP256,
            KeyArg::Rsa2048 => KeyKind::Rsa2048,
            KeyArg::Rsa3072 => KeyKind::Rsa3072,
        }
    }
}

/// What a server certificate is for and where it goes: shared by `self-signed` and `issue`.
#[derive(clap::Args)]
pub struct LeafArgs {
    /// A host name the certificate is for (repeat for more; `*.example.com` allowed).
    #[arg(long = "host", value_name = "NAME")]
    hosts: Vec<String>,
    /// An IP address the certificate is for (repeat for more).
    #[arg(long = "ip", value_name = "ADDR")]
    ips: Vec<IpAddr>,
    /// Directory to write server.crt and server.key into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Days the certificate is valid.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Key type.
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    key: KeyArg,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
pub struct SelfSignedArgs {
    #[command(flatten)]
    leaf: LeafArgs,
}

#[derive(clap::Args)]
pub struct CaArgs {
    /// Directory to write ca.crt and ca.key into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The authority's common name, shown by clients.
    #[arg(long, default_value = "Trove local CA")]
    name: String,
    /// Days the authority is valid.
    #[arg(long, default_value_t = 3650)]
    days: u32,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
pub struct IssueArgs {
    /// Directory holding ca.crt and ca.key from `trove cert ca`.
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    #[command(flatten)]
    leaf: LeafArgs,
}

#[derive(clap::Args)]
pub struct CsrArgs {
    /// The private key (any PEM form; asks on the terminal for the passphrase of an encrypted one).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// A host name to request (repeat for more).
    #[arg(long = "host", value_name = "NAME", required = true)]
    hosts: Vec<String>,
    /// Where to write the request.
    #[arg(long, value_name = "FILE", default_value = "server.csr")]
    out: PathBuf,
    /// Read the key's passphrase from this file instead of asking.
    #[arg(long, value_name = "FILE", conflicts_with = "passphrase_env")]
    passphrase_file: Option<PathBuf>,
    /// Read the key's passphrase from this environment variable instead of asking.
    #[arg(long, value_name = "VAR")]
    passphrase_env: Option<String>,
    /// Overwrite an existing request file.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    /// A PEM certificate file (leaf then chain), or a private key file.
    file: PathBuf,
    /// Also check that the certificate is valid for this host name.
    #[arg(long = "host", value_name = "NAME")]
    host: Option<String>,
}

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::SelfSigned(a) => self_signed(a),
        Command::Ca(a) => ca(a),
        Command::Issue(a) => issue(a),
        Command::Csr(a) => csr(a),
        Command::Show(a) => show(a),
    }
}

fn example_host(hosts: &[String], ips: &[IpAddr]) -> String {
    hosts.first().cloned().or_else(|| ips.first().map(|i| i.to_string())).unwrap_or_else(|| "HOST".into())
}

fn self_signed(SelfSignedArgs { leaf: a }: SelfSignedArgs) -> anyhow::Result<ExitCode> {
    let made = tls::self_signed(&a.hosts, &a.ips, a.days, a.key.into())?;
    let (cert, key) = tls::write_pair(&a.out, "server.crt", "server.key", &made.cert_pem, &made.key_pem, a.force)?;
    println!("wrote {} (certificate, valid {} days)", cert.display(), a.days);
    println!("wrote {} (private key, mode 0600)", key.display());
    println!();
    println!("Serve it (Apache-style config):");
    println!("    SSLCertificateFile    \"{}\"", abs(&cert).display());
    println!("    SSLCertificateKeyFile \"{}\"", abs(&key).display());
    println!("Clients must be told to trust it, e.g.:");
    println!("    git clone -c http.sslCAInfo={} https://{}/git/TP/test.git", abs(&cert).display(), example_host(&a.hosts, &a.ips));
    println!("For several servers, a local CA is easier: `trove cert ca` then `trove cert issue`.");
    Ok(ExitCode::SUCCESS)
}

fn ca(a: CaArgs) -> anyhow::Result<ExitCode> {
    let made = tls::make_ca(&a.name, a.days)?;
    let (cert, key) = tls::write_pair(&a.out, "ca.crt", "ca.key", &made.cert_pem, &made.key_pem, a.force)?;
    println!("wrote {} (certificate authority, valid {} days: give this file to clients)", cert.display(), a.days);
    println!("wrote {} (its private key, mode 0600: keep it secret, it can sign for any name)", key.display());
    println!();
    println!("Next: trove cert issue --ca {} --host git.example.com --out DIR", a.out.display());
    Ok(ExitCode::SUCCESS)
}

fn issue(IssueArgs { ca, leaf: a }: IssueArgs) -> anyhow::Result<ExitCode> {
    let authority = tls::load_ca(&ca)?;
    let made = tls::issue(&authority, &a.hosts, &a.ips, a.days, a.key.into())?;
    let (cert, key) = tls::write_pair(&a.out, "server.crt", "server.key", &made.cert_pem, &made.key_pem, a.force)?;
    println!("wrote {} (certificate signed by {}, valid {} days)", cert.display(), ca.join("ca.crt").display(), a.days);
    println!("wrote {} (private key, mode 0600)", key.display());
    println!();
    println!("Clients trust it through the CA certificate, with verification on:");
    println!("    git clone -c http.sslCAInfo={} https://{}/git/TP/test.git", abs(&ca.join("ca.crt")).display(), example_host(&a.hosts, &a.ips));
    println!("(`clone -c` keeps the setting in the clone, so fetch and push verify too.)");
    Ok(ExitCode::SUCCESS)
}

fn csr(a: CsrArgs) -> anyhow::Result<ExitCode> {
    let source = match (&a.passphrase_file, &a.passphrase_env) {
        (Some(f), _) => PassphraseSource::File(f.clone()),
        (None, Some(v)) => PassphraseSource::Env(v.clone()),
        (None, None) => PassphraseSource::Builtin,
    };
    let (key, kind) = tls::load_private_key(&a.key, &source, &a.hosts[0], 443)?;
    let request = tls::csr_for_key(&key, kind, &a.hosts)?;
    tls::write_file(&a.out, request.as_bytes(), false, a.force)?;
    println!("wrote {} (signing request for {}, {kind} key)", a.out.display(), a.hosts.join(", "));
    println!("Send it to your certificate authority; install what it returns as SSLCertificateFile.");
    Ok(ExitCode::SUCCESS)
}

fn abs(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn show(a: ShowArgs) -> anyhow::Result<ExitCode> {
    let certs = match tls::load_certificates(&a.file, tls::FileRole::Certificate) {
        Ok(c) => c,
        Err(tls::TlsError::NoCertificate { .. }) => return show_key(&a.file),
        Err(e) => return Err(e.into()),
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let mut accepted = true;
    for (i, der) in certs.iter().enumerate() {
        let info = CertInfo::from_der(der).map_err(|e| anyhow::anyhow!("certificate {} in {} is not valid X.509: {e}", i + 1, a.file.display()))?;
        println!("{}: certificate {} of {}", a.file.display(), i + 1, certs.len());
        print_cert(&info, now);
        if i == 0 {
            if info.is_ca && certs.len() == 1 {
                println!("  trove:       a certificate authority: give it to clients (http.sslCAInfo), not to the gateway");
            } else {
                let mut refusals = info.refusals(now);
                if let Some(host) = &a.host
                    && !info.covers(host)
                {
                    refusals.push(format!("it is not valid for host {host:?} (it names {:?})", info.names()));
                }
                if refusals.is_empty() {
                    println!("  trove:       would serve it");
                } else {
                    accepted = false;
                    println!("  trove:       would REFUSE it: {}", refusals.join("; "));
                    if matches!(info.key_type, tls::KeyType::Rsa(b) if b < 2048) {
                        println!(
                            "               make a good key and certificate: `{}` or `trove cert self-signed --host HOST --out DIR`",
                            tls::GOOD_KEY_COMMAND
                        );
                    }
                }
                for c in info.concerns(now) {
                    println!("  warning:     {c}");
                }
            }
        }
        println!();
    }
    Ok(if accepted { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_cert(info: &CertInfo, now: i64) {
    println!("  subject:     {}", info.subject);
    println!("  issuer:      {}{}", info.issuer, if info.self_signed { " (self-signed)" } else { "" });
    let mut names: Vec<String> = info.dns_names.iter().map(|n| format!("DNS:{n}")).collect();
    names.extend(info.ip_addresses.iter().map(|i| format!("IP:{i}")));
    println!("  names:       {}", if names.is_empty() { "(no subjectAltName)".to_string() } else { names.join(", ") });
    let days_left = (info.not_after - now) / 86_400;
    let state = if info.is_expired_at(now) {
        "EXPIRED".to_string()
    } else if info.is_not_yet_valid_at(now) {
        "NOT YET VALID".to_string()
    } else {
        format!("expires in {days_left} days")
    };
    println!("  valid:       {} to {} ({state})", tls::format_time(info.not_before), tls::format_time(info.not_after));
    println!("  key:         {}", info.key_type);
    println!("  signature:   {}", info.signature_algorithm);
    println!("  CA:          {}", if info.is_ca { "yes" } else { "no" });
    println!("  sha256:      {}", info.sha256_fingerprint);
}

fn show_key(path: &Path) -> anyhow::Result<ExitCode> {
    let Some(info) = tls::describe_key_file(path)? else {
        anyhow::bail!("{} holds neither a certificate nor a private key (expected PEM blocks)", path.display());
    };
    println!("{}: private key", path.display());
    println!("  mode:        {:04o}", info.mode);
    println!("  encrypted:   {}", if info.encrypted { "yes (a passphrase is needed to serve it)" } else { "no" });
    let mut refusals = Vec::new();
    match info.key_type {
        Some(kind) => {
            println!("  key:         {kind}");
            if let Some(r) = kind.refusal() {
                refusals.push(r);
            }
        }
        None => println!("  key:         (encrypted: type and size not visible without the passphrase)"),
    }
    if info.mode & 0o077 != 0 {
        refusals.push(format!("it can be read by group or others: run `chmod 600 {}`", path.display()));
    }
    if refusals.is_empty() {
        println!("  trove:       would use it");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("  trove:       would REFUSE it: {}", refusals.join("; "));
        if matches!(info.key_type, Some(tls::KeyType::Rsa(b)) if b < 2048) {
            println!("               make a good key: `{}`", tls::GOOD_KEY_COMMAND);
        }
        Ok(ExitCode::from(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::os::unix::fs::PermissionsExt;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        c: Command,
    }

    fn cert(args: &[&str]) -> anyhow::Result<ExitCode> {
        let cli = Cli::try_parse_from(std::iter::once("cert").chain(args.iter().copied()))?;
        run(cli.c)
    }

    fn ok(code: ExitCode) -> bool {
        format!("{code:?}") == format!("{:?}", ExitCode::SUCCESS)
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("trove-cmd-cert-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn ca_issue_csr_and_show_work_together_and_keys_are_private() {
        let d = scratch("flow");
        let (ca, site) = (d.join("ca"), d.join("site"));
        let s = |p: &Path| p.to_str().unwrap().to_string();
        assert!(ok(cert(&["ca", "--out", &s(&ca)]).unwrap()));
        assert!(ok(cert(&["issue", "--ca", &s(&ca), "--host", "git.example.test", "--ip", "127.0.0.1", "--out", &s(&site), "--key", "rsa2048"]).unwrap()));
        for key in [ca.join("ca.key"), site.join("server.key")] {
            assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(ok(cert(&["show", &s(&site.join("server.crt")), "--host", "git.example.test"]).unwrap()));
        assert!(!ok(cert(&["show", &s(&site.join("server.crt")), "--host", "other.example.test"]).unwrap()));
        assert!(ok(cert(&["show", &s(&ca.join("ca.crt"))]).unwrap()));
        let csr = d.join("server.csr");
        assert!(ok(cert(&["csr", "--key", &s(&site.join("server.key")), "--host", "git.example.test", "--out", &s(&csr)]).unwrap()));
        assert!(std::fs::read_to_string(&csr).unwrap().contains("BEGIN CERTIFICATE REQUEST"));

        // Again without --force: nothing is overwritten.
        let err = cert(&["issue", "--ca", &s(&ca), "--host", "git.example.test", "--out", &s(&site)]).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");

        // A key others can read is reported as refused.
        std::fs::set_permissions(site.join("server.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!ok(cert(&["show", &s(&site.join("server.key"))]).unwrap()));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn self_signed_needs_a_name_and_knows_its_key_types() {
        let d = scratch("ss");
        let out = d.to_str().unwrap();
        assert!(cert(&["self-signed", "--out", out]).is_err());
        assert!(cert(&["self-signed", "--host", "a.example.test", "--out", out, "--key", "rsa1024"]).is_err());
        assert!(ok(cert(&["self-signed", "--host", "a.example.test", "--out", out, "--key", "ecdsa-p256"]).unwrap()));
        assert!(ok(cert(&["show", d.join("server.crt").to_str().unwrap()]).unwrap()));
        std::fs::remove_dir_all(&d).unwrap();
    }
}

//! `trove admin`: administration of an existing data directory (users, tokens, projects,
//! repositories, permissions, failed-login locks, settings). Works while the server runs
//! (SQLite handles the locking); a running server follows a changed base URL from its next request,
//! and a changed context path when it restarts. Results go to standard output, questions and
//! notes to standard error.

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use trove_server::DEFAULT_DATA_DIR;
use trove_store::{BaseUrl, ContextPath, GlobalPermission, Owner, Password, Permission, ProjectKey, RepoSlug, Store, UserName};

#[derive(clap::Args)]
pub struct Args {
    /// Data directory to administer. Default ./trove-data.
    #[arg(long, value_name = "DIR", global = true, conflicts_with = "config")]
    data: Option<PathBuf>,
    /// Administer what this server configuration names (its data directory, or its PostgreSQL
    /// database and shared storage in Data Center mode), exactly as `trove server --config FILE`
    /// would open it.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// The git executable that makes new repositories (`repo add`); give the server's
    /// `[git] binary` when git is not the one on PATH. Default `git`, looked up on PATH.
    #[arg(long, value_name = "PATH", default_value = "git", global = true)]
    git: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Create a new, empty installation in the data directory (for a set-up by hand or by a
    /// script, before `trove server` first starts); the other commands refuse a missing one.
    Init,
    /// Users: `add NAME [--admin] [--password-stdin]`, `passwd NAME [--password-stdin]`,
    /// `global NAME PERMISSION`, `unlock NAME`, `locks`.
    #[command(subcommand)]
    User(UserCommand),
    /// Personal access tokens: `add USER [--label L] [--scope read|write|admin]`.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Projects: `add KEY [--name NAME] [--public]`.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Repositories: `add KEY/slug [--public]` (or `~user/slug` for a personal repository).
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Give USER read, write or admin on a project (`KEY`) or a repository (`KEY/slug`).
    Grant {
        user: String,
        /// `KEY` for the whole project, `KEY/slug` or `~user/slug` for one repository.
        target: String,
        /// `read`, `write` or `admin`.
        permission: String,
    },
    /// Server settings: `base-url URL`, `context-path PATH`, `show`.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// The metadata database: `copy --to postgres://…` (moving to Data Center mode).
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(clap::Subcommand)]
enum DbCommand {
    /// Copy every user, project, repository record, permission, token, session and setting from
    /// this installation's SQLite database into an empty PostgreSQL database, in one
    /// transaction, and check the counts. The password comes from --password-file or
    /// TROVE_DATABASE_PASSWORD, never the URL.
    Copy {
        /// `postgres://user@host:5432/dbname`, an empty database (createdb).
        #[arg(long, value_name = "URL")]
        to: String,
        /// A file holding the database password (mode 600).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
}

#[derive(clap::Subcommand)]
enum UserCommand {
    /// Create a user (a licensed user; with --admin, a system administrator).
    Add {
        name: String,
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's global permission: LICENSED_USER, PROJECT_CREATE, ADMIN, SYS_ADMIN, or
    /// `none` (the user may no longer log in).
    Global { name: String, permission: String },
    /// Clear a user's failed logins and lock, so password logins over git and REST work again.
    Unlock { name: String },
    /// List the accounts locked after failed logins (under the default lock time, 15 minutes).
    Locks,
}

#[derive(clap::Subcommand)]
enum TokenCommand {
    /// Create a personal access token; it is printed once, on standard output.
    Add {
        user: String,
        /// A label to recognise the token by.
        #[arg(long, default_value = "cli")]
        label: String,
        /// The most the token may do: read, write or admin.
        #[arg(long, default_value = "write")]
        scope: String,
    },
}

#[derive(clap::Subcommand)]
enum ProjectCommand {
    /// Create a project.
    Add {
        key: String,
        #[arg(long)]
        name: Option<String>,
        /// Anyone, even without logging in, may read the project's repositories.
        #[arg(long)]
        public: bool,
    },
}

#[derive(clap::Subcommand)]
enum RepoCommand {
    /// Create a repository.
    Add {
        /// `KEY/slug`, or `~user/slug` for a personal repository.
        path: String,
        /// Anyone, even without logging in, may read it.
        #[arg(long)]
        public: bool,
    },
}

#[derive(clap::Subcommand)]
enum SettingsCommand {
    /// Set the base URL (the public URL users type, context path included), or `none` to clear.
    BaseUrl { url: String },
    /// Set the context path (like `/stash`), or `/` for none.
    ContextPath { path: String },
    /// Show the stored settings.
    Show,
}

fn parse_repo_path(s: &str) -> anyhow::Result<(Owner, RepoSlug)> {
    let (owner, slug) = s.split_once('/').with_context(|| format!("{s:?} is not KEY/slug (like TP/test) or ~user/slug"))?;
    Ok((Owner::parse(owner)?, RepoSlug::parse(slug.strip_suffix(".git").unwrap_or(slug))?))
}

fn read_password(name: &UserName, from_stdin: bool) -> anyhow::Result<Password> {
    let stdin = std::io::stdin();
    if from_stdin {
        if stdin.is_terminal() {
            eprintln!("reading the password for {name} from standard input (one line)...");
        }
        let mut line = String::new();
        stdin.lock().read_line(&mut line).context("cannot read the password from standard input")?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        return Ok(Password::new(line)?);
    }
    if !stdin.is_terminal() {
        bail!("standard input is not a terminal: pass --password-stdin to read the password from it");
    }
    // As passwd(1): not shown while typed, and asked twice so a typo cannot set it.
    let first = rpassword::prompt_password(format!("New password for {name}: ")).context("cannot read the password from the terminal")?;
    let password = Password::new(&first)?;
    let again = rpassword::prompt_password(format!("Retype the password for {name}: ")).context("cannot read the password from the terminal")?;
    if again != first {
        bail!("the two passwords differ; nothing was changed. Run the command again");
    }
    Ok(password)
}

/// Opens the data directory of an existing installation. Like `pg_ctl -D`, a missing one is an
/// error, not a new empty installation: a typo or the wrong working directory must not quietly
/// make a second one.
/// `db copy`: SQLite in `data` into the empty PostgreSQL database `to`.
fn db_copy(data: &std::path::Path, to: &str, password_file: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    if trove_server::url_has_password(to) {
        bail!(
            "--to: the URL holds a password, which `ps` shows to every user of this machine; give --password-file FILE (mode 600) or set {}",
            trove_server::DATABASE_PASSWORD_ENV
        );
    }
    let mut db = trove_server::DatabaseSettings::new(to).map_err(|m| anyhow::anyhow!("--to: {m}"))?;
    db.password_file = password_file.map(|p| p.to_owned());
    let password = db.password().map_err(|m| anyhow::anyhow!(m))?;
    let source = data.join("trove.db");
    if !source.is_file() {
        bail!("{} holds no Trove installation (no trove.db); give --data DIR of the installation to copy", data.display());
    }
    let opts = trove_store::PgOptions { url: db.url.clone(), password, pool_size: 2, timeout: db.timeout };
    let report = trove_store::copy_sqlite_to_postgres(&source, &opts)?;
    for (table, n) in &report.tables {
        println!("{table:<20} {n:>8} rows");
    }
    println!("copied {} into {}; point every node's [database] url at it (docs/cluster.md)", source.display(), db.url);
    Ok(ExitCode::SUCCESS)
}

fn open_existing(data: &std::path::Path, git: &std::path::Path) -> anyhow::Result<Store> {
    let shown = std::path::absolute(data).unwrap_or_else(|_| data.to_owned());
    if !data.join("trove.db").is_file() {
        let what = if data.is_dir() { "holds no Trove installation (no trove.db)" } else { "does not exist" };
        bail!(
            "data directory {} {what}; give --data DIR of an installation (`trove up` and `trove server` create one in ./{DEFAULT_DATA_DIR} on first start, `trove admin --data DIR init` an empty one)",
            shown.display()
        );
    }
    Store::open_with_git(data, git).with_context(|| format!("cannot open data directory {}", shown.display()))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let data = args.data.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    if let Command::Init = args.command {
        let shown = std::path::absolute(&data).unwrap_or_else(|_| data.clone());
        if data.join("trove.db").is_file() {
            bail!("{} already holds a Trove installation; nothing was changed", shown.display());
        }
        Store::open(&data).with_context(|| format!("cannot create data directory {}", shown.display()))?;
        println!("created an empty installation in {}", shown.display());
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Db(DbCommand::Copy { to, password_file }) = &args.command {
        return db_copy(&data, to, password_file.as_deref());
    }
    let store = match &args.config {
        Some(file) => {
            let config = trove_server::ServerConfig::load(file)?;
            if config.database.is_none() {
                // SQLite: the same check as --data, so a wrong data_dir is not a new installation.
                open_existing(&config.data_dir, &config.git.binary)?
            } else {
                trove_server::open_store(&config).with_context(|| format!("cannot open what {} names", file.display()))?
            }
        }
        None => open_existing(&data, &args.git)?,
    };
    match args.command {
        Command::Init | Command::Db(_) => unreachable!("handled above"),
        Command::User(UserCommand::Add { name, admin, password_stdin }) => {
            let name = UserName::parse(&name)?;
            if store.user(&name)?.is_some() {
                bail!("user {name} already exists; use `trove admin user passwd {name}` to change the password");
            }
            let password = read_password(&name, password_stdin)?;
            let global = if admin { GlobalPermission::SysAdmin } else { GlobalPermission::LicensedUser };
            store.create_user(&name, &password, global)?;
            println!("created user {name} ({global})");
        }
        Command::User(UserCommand::Passwd { name, password_stdin }) => {
            let name = UserName::parse(&name)?;
            if store.user(&name)?.is_none() {
                bail!("user {name} does not exist; create it with `trove admin user add {name}`");
            }
            let password = read_password(&name, password_stdin)?;
            store.set_password(&name, &password)?;
            println!("password for {name} changed (and any failed-login lock cleared)");
        }
        Command::User(UserCommand::Global { name, permission }) => {
            let name = UserName::parse(&name)?;
            let global = match permission.to_ascii_lowercase().as_str() {
                "none" => None,
                _ => Some(permission.parse::<GlobalPermission>()?),
            };
            store.set_global_permission(&name, global)?;
            match global {
                Some(g) => println!("{name} now has global permission {g}"),
                None => println!("{name} has no global permission and may no longer log in"),
            }
        }
        Command::User(UserCommand::Unlock { name }) => {
            let name = UserName::parse(&name)?;
            if store.clear_login_lock(&name)? {
                println!("failed logins of {name} cleared; password logins over git and REST work again");
            } else {
                println!("{name} had no failed logins to clear");
            }
        }
        Command::User(UserCommand::Locks) => {
            let locks = store.login_locks(&trove_store::LoginPolicy::default())?;
            if locks.is_empty() {
                println!("no account is locked");
            }
            for l in locks {
                let until = match l.until {
                    Some(t) => format!("until {}", trove_server::format_unix_utc(t)),
                    None => "until cleared".to_owned(),
                };
                println!("{}\t{} failed logins\tlocked {until}\t(clear: trove admin user unlock {})", l.user, l.failures, l.user);
            }
        }
        Command::Token(TokenCommand::Add { user, label, scope }) => {
            let user = UserName::parse(&user)?;
            let scope: Permission = scope.parse()?;
            let token = store.create_token(&user, &label, scope)?;
            println!("{}", token.secret);
            eprintln!("created {scope} token {label:?} for {user}; it is shown only now. Use it as the password with git, or as `Authorization: Bearer …`");
        }
        Command::Project(ProjectCommand::Add { key, name, public }) => {
            let key = ProjectKey::parse(&key)?;
            store.create_project(&key, name.as_deref(), public)?;
            println!("created project {key}{}", if public { " (public)" } else { "" });
        }
        Command::Repo(RepoCommand::Add { path, public }) => {
            let (owner, slug) = parse_repo_path(&path)?;
            let repo = store.create_repo(&owner, &slug, public)?;
            let scm = format!("scm/{}/{slug}.git", owner.to_string().to_ascii_lowercase());
            println!("created repository {owner}/{slug} at {}", store.repo_path(&repo).display());
            match store.base_url()? {
                Some(base) => println!("clone it: git clone {base}/{scm}"),
                None => println!("clone it from /{scm} under the server's URL (no base URL is set; `trove admin settings base-url URL` sets one)"),
            }
        }
        Command::Grant { user, target, permission } => {
            let user = UserName::parse(&user)?;
            let permission: Permission = permission.parse()?;
            if target.contains('/') {
                let (owner, slug) = parse_repo_path(&target)?;
                store.grant_repo(&user, &owner, &slug, permission)?;
                println!("{user} now has {permission} on repository {owner}/{slug}");
            } else {
                let key = ProjectKey::parse(&target)?;
                store.grant_project(&user, &key, permission)?;
                println!("{user} now has {permission} on project {key}");
            }
        }
        Command::Settings(SettingsCommand::BaseUrl { url }) => {
            if url == "none" {
                store.set_base_url(None)?;
                println!("base URL cleared; a running server follows each request's URL again from its next request");
            } else {
                let url = BaseUrl::parse(&url)?;
                store.set_base_url(Some(&url))?;
                println!("base URL set to {url}; a running server uses it from its next request");
                if let Some(ctx) = store.context_path()?
                    && ctx.as_str() != url.path()
                {
                    eprintln!("note: the context path is {:?} but the base URL's path is {:?}", ctx.as_str(), url.path());
                }
            }
        }
        Command::Settings(SettingsCommand::ContextPath { path }) => {
            let ctx = ContextPath::parse(&path)?;
            store.set_context_path(Some(&ctx))?;
            println!("context path set to {:?}; restart the server for it to take effect (its routes move)", ctx.as_str());
            if let Some(url) = store.base_url()?
                && ctx.as_str() != url.path()
            {
                eprintln!("note: the base URL is {url}; its path should usually be the context path");
            }
        }
        Command::Settings(SettingsCommand::Show) => {
            let base = store.base_url()?.map(|b| b.to_string()).unwrap_or_else(|| "(not set: taken from each request)".into());
            let ctx = store.context_path()?.map(|c| format!("{:?}", c.as_str())).unwrap_or_else(|| "(not set: the root)".into());
            println!("base_url = {base}");
            println!("context_path = {ctx}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_paths_need_an_owner_and_a_valid_slug() {
        let ok = [("TP/test", "TP/test"), ("tp/test.git", "TP/test"), ("~alice/dots", "~alice/dots")];
        for (input, want) in ok {
            let (o, s) = parse_repo_path(input).unwrap();
            assert_eq!(format!("{o}/{s}"), want);
        }
        for bad in ["TP", "TP/../x", "TP/-x", "../TP/x", "TP/a/b", "/test"] {
            assert!(parse_repo_path(bad).is_err(), "{bad}");
        }
    }
}

//! `trove admin`: administration of an existing data directory (users, groups, tokens, projects,
//! repositories, permissions, failed-login locks, settings). Works while the server runs
//! (SQLite handles the locking); a running server follows a changed base URL from its next request,
//! and a changed context path when it restarts. Results go to standard output, questions and
//! notes to standard error. Every change is an audit log entry (the database and the data
//! directory's `audit.log`, as the server writes them) with the actor `cli:<os user>`.

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use trove_server::DEFAULT_DATA_DIR;
use trove_server::audit::{Action, AuditLog, target};
use trove_server::webhooks::{NetworkRules, parse_network};
use trove_store::{BaseUrl, ContextPath, GlobalPermission, GroupName, Owner, Password, Permission, ProjectKey, RepoSlug, Store, UserName};

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
    /// Groups: `add NAME`, `delete NAME`, `list`, `members NAME`, `add-user GROUP USER`,
    /// `remove-user GROUP USER`, `global GROUP PERMISSION`, `grant GROUP TARGET PERMISSION`,
    /// `revoke GROUP TARGET`. Every member holds what the group is granted.
    #[command(subcommand)]
    Group(GroupCommand),
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
    /// Copy every user, group, project, repository record, permission, token, session and
    /// setting from this installation's SQLite database into an empty PostgreSQL database, in
    /// one transaction, and check the counts. The password comes from --password-file or
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
enum GroupCommand {
    /// Create a group. Names ignore case (`Developers` and `developers` are one group).
    Add { name: String },
    /// Delete a group, with its memberships and its grants.
    Delete { name: String },
    /// List the groups, with their global permissions and how many members each has.
    List,
    /// List a group's members.
    Members { name: String },
    /// Make USER a member of GROUP.
    AddUser { group: String, user: String },
    /// End USER's membership of GROUP.
    RemoveUser { group: String, user: String },
    /// Set a group's global permission: LICENSED_USER, PROJECT_CREATE, ADMIN, SYS_ADMIN, or
    /// `none`. Every member holds it.
    Global { group: String, permission: String },
    /// Give GROUP read, write or admin on a project (`KEY`) or a repository (`KEY/slug`).
    Grant {
        group: String,
        /// `KEY` for the whole project, `KEY/slug` or `~user/slug` for one repository.
        target: String,
        /// `read`, `write` or `admin`.
        permission: String,
    },
    /// Take GROUP's permission on a project (`KEY`) or a repository (`KEY/slug`) away.
    Revoke { group: String, target: String },
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
        /// Days until the token stops working (1 to 3650). Default: it never expires.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..=3650))]
        expiry_days: Option<i64>,
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
    /// Let webhooks reach a network (CIDR like `10.0.0.0/8`, or an address), even one refused
    /// by default (loopback, link-local, metadata); every node follows at once.
    WebhookAllow { network: String },
    /// Refuse webhooks a network (CIDR or an address).
    WebhookDeny { network: String },
    /// Take a network off the webhook allow and deny lists.
    WebhookRemove { network: String },
    /// List the webhook allow and deny lists.
    WebhookNetworks,
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

/// Who runs `trove admin`, as the audit log names them: `cli:` and the name of the process's user
/// (from the password database; `uid<N>` without an entry there).
pub(crate) fn cli_actor() -> String {
    use std::os::unix::fs::MetadataExt as _;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let from_passwd = uid.and_then(|uid| {
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
        })
    });
    let name = from_passwd
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .or_else(|| uid.map(|u| format!("uid{u}")))
        .unwrap_or_else(|| "unknown".into());
    format!("cli:{name}")
}

/// The audit log entries of one `trove admin` run.
struct Audit {
    log: AuditLog,
    actor: String,
}

impl Audit {
    fn new(store: &Store) -> Audit {
        Audit { log: AuditLog::new(store.data_dir()), actor: cli_actor() }
    }

    fn record(&self, store: &Store, action: Action, target: &str, details: Value) {
        self.log.record(store, &self.actor, None, action, target, details);
    }
}

fn group(store: &Store, audit: &Audit, cmd: GroupCommand) -> anyhow::Result<()> {
    match cmd {
        GroupCommand::Add { name } => {
            let g = store.insert_group(&GroupName::parse(&name)?)?;
            audit.record(store, Action::GroupCreate, &target::group(&g.name), json!({}));
            println!("created group {}", g.name);
        }
        GroupCommand::Delete { name } => {
            let name = GroupName::parse(&name)?;
            let global = store.group(&name)?.and_then(|g| g.global);
            store.delete_group(&name)?;
            audit.record(store, Action::GroupDelete, &target::group(&name), json!({"global": global.map(|p| p.as_str())}));
            println!("deleted group {name}, its memberships and its grants");
        }
        GroupCommand::List => {
            let groups = store.groups()?;
            if groups.is_empty() {
                println!("no groups; create one with `trove admin group add NAME`");
            }
            for g in groups {
                let members = store.group_members(&g)?.len();
                let global = g.global.map_or("-", |p| p.as_str());
                println!("{}\t{global}\t{members} member{}", g.name, if members == 1 { "" } else { "s" });
            }
        }
        GroupCommand::Members { name } => {
            let name = GroupName::parse(&name)?;
            let g = store.group(&name)?.ok_or_else(|| trove_store::StoreError::NoSuchGroup(name.to_string()))?;
            let members = store.group_members(&g)?;
            if members.is_empty() {
                eprintln!("group {} has no members; add one with `trove admin group add-user {} USER`", g.name, g.name);
            }
            for u in members {
                println!("{}", u.name);
            }
        }
        GroupCommand::AddUser { group, user } => {
            let (group, user) = (GroupName::parse(&group)?, UserName::parse(&user)?);
            store.add_group_member(&group, &user)?;
            audit.record(store, Action::GroupMemberAdd, &format!("{} {}", target::group(&group), target::user(&user)), json!({}));
            println!("{user} is a member of {group}");
        }
        GroupCommand::RemoveUser { group, user } => {
            let (group, user) = (GroupName::parse(&group)?, UserName::parse(&user)?);
            store.remove_group_member(&group, &user)?;
            audit.record(store, Action::GroupMemberRemove, &format!("{} {}", target::group(&group), target::user(&user)), json!({}));
            println!("{user} is no longer a member of {group}");
        }
        GroupCommand::Global { group, permission } => {
            let group = GroupName::parse(&group)?;
            let global = match permission.to_ascii_lowercase().as_str() {
                "none" => None,
                _ => Some(permission.parse::<GlobalPermission>()?),
            };
            let previous = store.group(&group)?.and_then(|g| g.global);
            store.set_group_global_permission(&group, global)?;
            let (action, details) = match global {
                Some(g) => (Action::PermissionGrant, json!({"permission": g.as_str(), "previous": previous.map(|p| p.as_str())})),
                None => (Action::PermissionRevoke, json!({"previous": previous.map(|p| p.as_str())})),
            };
            audit.record(store, action, &format!("global {}", target::group(&group)), details);
            match global {
                Some(g) => println!("every member of {group} now has global permission {g}"),
                None => println!("{group} no longer grants a global permission"),
            }
        }
        GroupCommand::Grant { group, target, permission } => {
            let group = GroupName::parse(&group)?;
            let permission: Permission = permission.parse()?;
            if target.contains('/') {
                let (owner, slug) = parse_repo_path(&target)?;
                store.grant_group_repo(&group, &owner, &slug, permission)?;
                let grant = format!("{} {}", target::repo_path(&owner, &slug), target::group(&group));
                audit.record(store, Action::PermissionGrant, &grant, json!({"permission": format!("REPO_{}", permission.as_str().to_ascii_uppercase())}));
                println!("every member of {group} now has {permission} on repository {owner}/{slug}");
            } else {
                let key = ProjectKey::parse(&target)?;
                store.grant_group_project(&group, &key, permission)?;
                let grant = format!("{} {}", target::project(&Owner::Project(key.clone())), target::group(&group));
                audit.record(store, Action::PermissionGrant, &grant, json!({"permission": format!("PROJECT_{}", permission.as_str().to_ascii_uppercase())}));
                println!("every member of {group} now has {permission} on project {key}");
            }
        }
        GroupCommand::Revoke { group, target } => {
            let group = GroupName::parse(&group)?;
            if target.contains('/') {
                let (owner, slug) = parse_repo_path(&target)?;
                let repo = store.repo(&owner, &slug)?.ok_or_else(|| trove_store::StoreError::NoSuchRepo(format!("{owner}/{slug}")))?;
                store.revoke_group_repo(&group, &repo)?;
                audit.record(store, Action::PermissionRevoke, &format!("{} {}", target::repo(&repo), target::group(&group)), json!({}));
                println!("{group} no longer grants a permission on repository {owner}/{slug}");
            } else {
                let key = ProjectKey::parse(&target)?;
                let owner = Owner::Project(key.clone());
                let project = store.visible_project(&owner, None, true)?.ok_or_else(|| trove_store::StoreError::NoSuchProject(key.to_string()))?;
                store.revoke_group_project(&group, &project)?;
                audit.record(store, Action::PermissionRevoke, &format!("{} {}", target::project(&owner), target::group(&group)), json!({}));
                println!("{group} no longer grants a permission on project {key}");
            }
        }
    }
    Ok(())
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
    let audit = Audit::new(&store);
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
            audit.record(&store, Action::UserCreate, &target::user(&name), json!({"global": global.as_str()}));
            println!("created user {name} ({global})");
        }
        Command::User(UserCommand::Passwd { name, password_stdin }) => {
            let name = UserName::parse(&name)?;
            if store.user(&name)?.is_none() {
                bail!("user {name} does not exist; create it with `trove admin user add {name}`");
            }
            let password = read_password(&name, password_stdin)?;
            store.set_password(&name, &password)?;
            audit.record(&store, Action::UserPassword, &target::user(&name), json!({}));
            println!("password for {name} changed (and any failed-login lock cleared)");
        }
        Command::User(UserCommand::Global { name, permission }) => {
            let name = UserName::parse(&name)?;
            let global = match permission.to_ascii_lowercase().as_str() {
                "none" => None,
                _ => Some(permission.parse::<GlobalPermission>()?),
            };
            let previous = store.user(&name)?.and_then(|u| u.own_global);
            store.set_global_permission(&name, global)?;
            let (action, details) = match global {
                Some(g) => (Action::PermissionGrant, json!({"permission": g.as_str(), "previous": previous.map(|p| p.as_str())})),
                None => (Action::PermissionRevoke, json!({"previous": previous.map(|p| p.as_str())})),
            };
            audit.record(&store, action, &format!("global {}", target::user(&name)), details);
            // What their groups grant still counts (the effective permission is read back).
            let effective = store.user(&name)?.and_then(|u| u.global);
            match (global, effective) {
                (Some(g), Some(e)) if e > g => println!("{name} now has global permission {g} (and {e} through a group)"),
                (Some(g), _) => println!("{name} now has global permission {g}"),
                (None, Some(e)) => println!("{name} has no global permission of their own, and {e} through a group"),
                (None, None) => println!("{name} has no global permission and may no longer log in"),
            }
        }
        Command::User(UserCommand::Unlock { name }) => {
            let name = UserName::parse(&name)?;
            if store.clear_login_lock(&name)? {
                audit.record(&store, Action::UserUnlock, &target::user(&name), json!({}));
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
        Command::Group(cmd) => group(&store, &audit, cmd)?,
        Command::Token(TokenCommand::Add { user, label, scope, expiry_days }) => {
            let user = UserName::parse(&user)?;
            let scope: Permission = scope.parse()?;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
            let token = store.create_token_expiring(&user, &label, scope, expiry_days.map(|d| now + d * 86_400))?;
            audit.record(
                &store,
                Action::TokenCreate,
                &format!("{} token:{}", target::user(&user), token.id),
                json!({"name": label, "scope": scope.as_str(), "expiryDays": expiry_days}),
            );
            println!("{}", token.secret);
            eprintln!("created {scope} token {label:?} for {user}; it is shown only now. Use it as the password with git, or as `Authorization: Bearer …`");
        }
        Command::Project(ProjectCommand::Add { key, name, public }) => {
            let key = ProjectKey::parse(&key)?;
            let p = store.create_project(&key, name.as_deref(), public)?;
            audit.record(&store, Action::ProjectCreate, &target::project(&p.owner), json!({"name": p.name, "public": p.public}));
            println!("created project {key}{}", if public { " (public)" } else { "" });
        }
        Command::Repo(RepoCommand::Add { path, public }) => {
            let (owner, slug) = parse_repo_path(&path)?;
            let repo = store.create_repo(&owner, &slug, public)?;
            audit.record(&store, Action::RepoCreate, &target::repo(&repo), json!({"name": repo.name, "public": repo.public, "id": repo.id}));
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
                let grant = format!("{} {}", target::repo_path(&owner, &slug), target::user(&user));
                audit.record(&store, Action::PermissionGrant, &grant, json!({"permission": format!("REPO_{}", permission.as_str().to_ascii_uppercase())}));
                println!("{user} now has {permission} on repository {owner}/{slug}");
            } else {
                let key = ProjectKey::parse(&target)?;
                store.grant_project(&user, &key, permission)?;
                let grant = format!("{} {}", target::project(&Owner::Project(key.clone())), target::user(&user));
                audit.record(&store, Action::PermissionGrant, &grant, json!({"permission": format!("PROJECT_{}", permission.as_str().to_ascii_uppercase())}));
                println!("{user} now has {permission} on project {key}");
            }
        }
        Command::Settings(SettingsCommand::BaseUrl { url }) => {
            let before = store.base_url()?.map(|b| b.to_string());
            let record = |to: Option<&str>| audit.record(&store, Action::SettingsUpdate, &target::setting("base_url"), json!({"from": before, "to": to}));
            if url == "none" {
                store.set_base_url(None)?;
                record(None);
                println!("base URL cleared; a running server follows each request's URL again from its next request");
            } else {
                let url = BaseUrl::parse(&url)?;
                store.set_base_url(Some(&url))?;
                record(Some(url.as_str()));
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
            let before = store.context_path()?.map(|c| c.as_str().to_owned());
            store.set_context_path(Some(&ctx))?;
            audit.record(&store, Action::SettingsUpdate, &target::setting("context_path"), json!({"from": before, "to": ctx.as_str()}));
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
            let rules = NetworkRules::load(&store)?;
            let list = |l: Vec<String>| if l.is_empty() { "(none)".to_owned() } else { l.join(", ") };
            println!("webhook_allow = {}", list(rules.allow.iter().map(|n| n.to_string()).collect()));
            println!("webhook_deny = {}", list(rules.deny.iter().map(|n| n.to_string()).collect()));
        }
        Command::Settings(
            which @ (SettingsCommand::WebhookAllow { .. }
            | SettingsCommand::WebhookDeny { .. }
            | SettingsCommand::WebhookRemove { .. }
            | SettingsCommand::WebhookNetworks),
        ) => {
            let mut rules = NetworkRules::load(&store)?;
            let before = json!({"allow": rules.allow.iter().map(|n| n.to_string()).collect::<Vec<_>>(), "deny": rules.deny.iter().map(|n| n.to_string()).collect::<Vec<_>>()});
            let changed = match which {
                SettingsCommand::WebhookAllow { network } => {
                    let net = parse_network(&network).map_err(|m| anyhow::anyhow!(m))?;
                    rules.allow(net);
                    println!("webhooks may now reach {}", net.trunc());
                    true
                }
                SettingsCommand::WebhookDeny { network } => {
                    let net = parse_network(&network).map_err(|m| anyhow::anyhow!(m))?;
                    rules.deny(net);
                    println!("webhooks may no longer reach {}", net.trunc());
                    true
                }
                SettingsCommand::WebhookRemove { network } => {
                    let net = parse_network(&network).map_err(|m| anyhow::anyhow!(m))?;
                    let was = rules.remove(net);
                    if !was {
                        eprintln!("{} is on neither list; nothing changed", net.trunc());
                    }
                    was
                }
                _ => false,
            };
            if changed {
                rules.save(&store)?;
                let after = json!({"allow": rules.allow.iter().map(|n| n.to_string()).collect::<Vec<_>>(), "deny": rules.deny.iter().map(|n| n.to_string()).collect::<Vec<_>>()});
                audit.record(&store, Action::SettingsUpdate, &target::setting("webhook_networks"), json!({"from": before, "to": after}));
            }
            for n in &rules.allow {
                println!("allow {n}");
            }
            for n in &rules.deny {
                println!("deny  {n}");
            }
            if rules.allow.is_empty() && rules.deny.is_empty() {
                println!(
                    "no webhook networks listed: loopback, link-local, metadata, multicast and unspecified addresses are refused, everything else allowed"
                );
            }
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

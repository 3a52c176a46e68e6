//! The command line's arguments (clap): every command, subcommand and flag with its help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{App, Settings};

/// Deploys a PHP application to many clubs by switching webroot symlinks to shared releases.
#[derive(Parser)]
#[command(
    version,
    about,
    long_about = "clubdeploy builds each git tag of a multi-tenant PHP application once, into a \
shared release directory, and points every club's webroot at it with an atomic symlink swap, \
so PHP's OPcache compiles one release for all clubs. Deploys, rollbacks and prunes run as \
jobs (from this command or the web panel of `clubdeploy serve`), one at a time, each recorded \
in a tamper-evident audit log. `clubdeploy <command> --help` describes each command.",
    after_long_help = "FILES:
  /etc/clubdeploy/clubdeploy.toml   the configuration (Debian package); ./clubdeploy.toml otherwise
  <data_dir>/clubdeploy.sqlite3     clubs, history, jobs, staff, audit log
  <data_dir>/releases/              the built releases the clubs' webroots link to

ENVIRONMENT:
  CLUBDEPLOY_CONFIG                 the configuration file
  CLUBDEPLOY_<KEY>, CLUBDEPLOY_<TABLE>__<KEY>
                                    override a setting (e.g. CLUBDEPLOY_LISTEN)

EXIT STATUS:
  0 on success; 1 on an error (one line on standard error saying what and what to do), and
  from `doctor` when it finds a problem.

SEE ALSO:
  /usr/share/doc/clubdeploy/README.md and docs/, `clubdeploy doctor`"
)]
pub struct Cli {
    /// The configuration file [default: ./clubdeploy.toml, which may be absent when every
    /// setting comes from CLUBDEPLOY_* variables].
    #[arg(long, global = true, env = "CLUBDEPLOY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create or upgrade the database.
    Migrate,
    /// Add, list or forget clubs.
    #[command(subcommand)]
    Club(ClubCommand),
    /// Tags in an application's repository (as last fetched) and built releases, with the
    /// clubs that run each.
    Releases {
        /// Fetch new tags from the repository first (a fetch job, run now).
        #[arg(long)]
        fetch: bool,
        /// Only the newest N versions.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        #[command(flatten)]
        app: AppFlag,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Deploy a tag of an application to some clubs or to all that run it.
    Deploy {
        /// The git tag to deploy.
        tag: String,
        #[command(flatten)]
        app: AppFlag,
        #[command(flatten)]
        targets: TargetArgs,
        /// A club that goes first and must pass its health check before any other club is
        /// touched (repeat for several) [default: `[rollout] canary`]. `--canary none`: no
        /// canary.
        #[arg(long = "canary", value_name = "SLUG")]
        canary: Vec<String>,
        /// Build the release anew even when one of this tag with the same build recipe is
        /// there (e.g. after a build tool changed outside the repository).
        #[arg(long)]
        rebuild: bool,
        /// Deploy it even to clubs it was put back on (a rollback, a put-back or a failed
        /// health check moved them off it): without this, such a deploy is refused.
        #[arg(long)]
        again: bool,
        /// Only say what the deploy would change (commits, files, warnings); change nothing
        /// and queue nothing.
        #[arg(long, conflicts_with = "detach")]
        dry_run: bool,
        #[command(flatten)]
        detach: DetachFlag,
    },
    /// Return a club to the release it ran before, or to the one named with --to.
    Rollback {
        /// The club's slug.
        slug: String,
        #[command(flatten)]
        app: AppFlag,
        /// A release name (v2.4.1-3f2a9c1d) or a tag.
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        detach: DetachFlag,
    },
    /// Delete releases no club runs, beyond the newest `keep_releases` (counted per
    /// application).
    Prune {
        /// Only this application's releases [default: every application's].
        #[arg(long)]
        app: Option<String>,
        #[command(flatten)]
        detach: DetachFlag,
    },
    /// Every club's webroots and the release each resolves to on disk (one row per club and
    /// application).
    Status(ListArgs),
    /// What OPcache holds (read through the probe of a live release): memory, scripts, hit
    /// rate, restarts, cached scripts per release, and warnings.
    Opcache(JsonFlag),
    /// The newest jobs.
    Jobs(JsonFlag),
    /// Check the installation: who may write data_dir, the database, webroot_base and the
    /// clubs' folders; free disk; that Apache serves every club's webroot through a virtual
    /// host that follows the link, does not publish the release manifest, passes its
    /// configuration test and may be reloaded; that OPcache has room for two releases and PHP's
    /// realpath cache fits the waits; that each repository answers; links changed by hand,
    /// legacy copies and unused releases. Each finding is ok, warning or problem, with its fix.
    /// Changes nothing. Exits 1 when there is a problem.
    Doctor(JsonFlag),
    /// One job: its steps, log and outcome.
    Job {
        id: i32,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Cancel a job that has not started yet.
    Cancel { id: i32 },
    /// Replace a club's legacy copy (its webroot is a real directory) by a link to a release,
    /// keeping the copy whole; or, with --undo, put the newest kept copy back.
    Adopt {
        /// The club's slug.
        slug: String,
        #[command(flatten)]
        app: AppFlag,
        /// The tag whose release replaces the copy.
        #[arg(long, required_unless_present = "undo", conflicts_with = "undo")]
        tag: Option<String>,
        /// Put the club's newest kept legacy copy back in place of its link.
        #[arg(long)]
        undo: bool,
        #[command(flatten)]
        detach: DetachFlag,
    },
    /// The legacy copies kept after adopting, or delete one.
    #[command(subcommand)]
    Legacy(LegacyCommand),
    /// The audit log (newest first), or `audit verify` to check its hash chain.
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        #[command(subcommand)]
        verify: Option<AuditCommand>,
        #[command(flatten)]
        filter: AuditArgs,
    },
    /// Serve the web panel (on `listen`) and run the worker that works the job queue.
    Serve,
    /// Add, list, change or disable staff who sign in to the panel.
    #[command(subcommand)]
    User(UserCommand),
    /// Create a demo (sample app, six clubs, an admin) in a fresh directory and serve it.
    Demo {
        /// Where to create the demo (reused if it already holds one).
        #[arg(long, default_value = "clubdeploy-demo")]
        dir: PathBuf,
        /// Address for the panel [default: 127.0.0.1:8080, or what an earlier run chose].
        #[arg(long)]
        listen: Option<String>,
    },
    /// What the build user runs through sudo (see `build_user` in the README); not for people.
    #[command(subcommand, hide = true)]
    BuildUser(BuildUserCommand),
    /// What the panel runs on a web host to read and switch links there (one JSON request on
    /// standard input, its answer on standard output); not for people.
    #[command(hide = true)]
    HostAgent,
}

/// The steps of a build run as the build user (`clubdeploy::pipeline::build_user`).
#[derive(Subcommand)]
pub enum BuildUserCommand {
    /// Become the command after `--`, with the environment read from standard input.
    Exec {
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// Stop every process of this user.
    Stop,
    /// Open what this user made under DIR to its group.
    HandOver { dir: PathBuf },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a member of staff.
    Add {
        name: String,
        #[arg(long)]
        role: String,
        /// Limit a deployer to these clubs (comma-separated slugs).
        #[arg(long, default_value = "")]
        clubs: String,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List staff with their role, the clubs they may change, and whether they may sign in.
    List,
    /// Set a new password (ends the user's sessions).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user (ends their sessions at once).
    Disable { name: String },
    /// Remove a user's sign-in code (a lost phone): they sign in with their password alone,
    /// and set up a new code on their account page (where their role must have one, before
    /// anything else).
    CodeOff { name: String },
}

#[derive(Subcommand)]
pub enum ClubCommand {
    /// Add a club with its webroots (symlinks clubdeploy manages, or legacy copies to adopt)
    /// under webroot_base, one per application it runs.
    Add {
        slug: String,
        /// `[<app>=]<path>`, repeated for each application the club runs (the `<app>=` is
        /// needed when there are several applications).
        #[arg(long = "webroot", value_name = "[APP=]PATH", required = true)]
        webroots: Vec<String>,
        /// Display name (defaults to the slug).
        #[arg(long)]
        name: Option<String>,
        /// `[<app>=]<url>`: the address of the club's site of an application, through which
        /// its health is checked after a deploy (repeat for each application).
        #[arg(long = "url", value_name = "[APP=]URL")]
        urls: Vec<String>,
    },
    /// Give a club a webroot for another application.
    Webroot {
        slug: String,
        /// The application, as configured in [apps.<name>].
        app: String,
        path: PathBuf,
        /// The address of the club's site of this application.
        #[arg(long)]
        url: Option<String>,
    },
    /// List clubs (one row per club and application).
    List(ListArgs),
    /// Add or update many clubs from a CSV file (header slug,name,url,webroot; webroot:<app>
    /// and url:<app> columns with several applications), all or nothing.
    Import {
        file: PathBuf,
        /// Only say what would change.
        #[arg(long)]
        dry_run: bool,
    },
    /// Set the address of a club's site (health checks go there); `none` removes it.
    Url {
        slug: String,
        url: String,
        #[command(flatten)]
        app: AppFlag,
    },
    /// Give a club another display name (the name staff see).
    Rename { slug: String, name: String },
    /// Say which web hosts ([[hosts]]) serve a club; `--all`: every host (the default).
    Hosts {
        slug: String,
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        hosts: Vec<String>,
        #[arg(long)]
        all: bool,
    },
    /// Forget a club; its webroot is left untouched.
    Remove { slug: String },
    /// Put clubs in a group (e.g. early-adopters), to deploy to or try first together.
    Group {
        group: String,
        #[arg(required = true)]
        slugs: Vec<String>,
        /// Take them out of the group instead.
        #[arg(long)]
        remove: bool,
    },
    /// Every club group with its clubs.
    Groups {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum LegacyCommand {
    /// Every kept legacy copy with its size.
    List,
    /// Delete a club's kept legacy copy (the oldest, or the one named).
    Purge {
        slug: String,
        #[command(flatten)]
        app: AppFlag,
        /// The copy's directory name, as `legacy list` shows it.
        #[arg(long)]
        copy: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain; names the first row edited, inserted or deleted.
    Verify,
}

#[derive(Args)]
pub struct AuditArgs {
    #[arg(long)]
    pub json: bool,
    /// Only rows about this club.
    #[arg(long)]
    pub club: Option<String>,
    /// Only rows about this application.
    #[arg(long)]
    pub app: Option<String>,
    /// Only rows by this actor (a user name, or cli:<unix user>).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only rows from this date (YYYY-MM-DD, UTC) on.
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many rows.
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
}

#[derive(Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only this application's webroots.
    #[arg(long)]
    pub app: Option<String>,
}

#[derive(Args)]
pub struct AppFlag {
    /// The application, as configured in [apps.<name>] (needed when there are several).
    #[arg(long = "app", value_name = "NAME")]
    pub name: Option<String>,
}

impl AppFlag {
    /// The application named, or the only one.
    pub fn resolve<'s>(&self, settings: &'s Settings) -> anyhow::Result<&'s App> {
        Ok(settings.app(self.name.as_deref())?)
    }
}

#[derive(Args)]
pub struct DetachFlag {
    /// Only queue the job and print its id; the server's worker (or the next command) runs it.
    #[arg(long)]
    pub detach: bool,
}

#[derive(Args)]
#[group(required = true, multiple = false, id = "targets")]
pub struct TargetArgs {
    /// A club to deploy to (repeat for several).
    #[arg(long = "club", value_name = "SLUG")]
    pub clubs: Vec<String>,
    /// Deploy to every club (then old releases are pruned).
    #[arg(long)]
    pub all: bool,
}

//! The `clubdeploy` command: parses the command line and calls into the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use clubdeploy::auth::password;
use clubdeploy::auth::staff::{self, Actor};
use clubdeploy::cli;
use clubdeploy::config::Settings;
use clubdeploy::db::{self, DbPool, audit, jobs};
use clubdeploy::domain::{
    ClubScope, ClubSlug, JobSpec, JobStatus, NewPassword, ReleaseTag, Role, Targets, UserName,
};
use clubdeploy::jobs::{enqueue::enqueue, worker};
use clubdeploy::service::inventory::{self, AddClub};
use clubdeploy::startup::Application;
use clubdeploy::{say, say_part};

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
  /usr/share/doc/clubdeploy/README.md, `clubdeploy doctor`"
)]
struct Cli {
    /// The configuration file [default: ./clubdeploy.toml, which may be absent when every
    /// setting comes from CLUBDEPLOY_* variables].
    #[arg(long, global = true, env = "CLUBDEPLOY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
}

#[derive(Subcommand)]
enum UserCommand {
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
}

#[derive(Subcommand)]
enum ClubCommand {
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
enum LegacyCommand {
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
enum AuditCommand {
    /// Check the hash chain; names the first row edited, inserted or deleted.
    Verify,
}

#[derive(Args)]
struct AuditArgs {
    #[arg(long)]
    json: bool,
    /// Only rows about this club.
    #[arg(long)]
    club: Option<String>,
    /// Only rows about this application.
    #[arg(long)]
    app: Option<String>,
    /// Only rows by this actor (a user name, or cli:<unix user>).
    #[arg(long)]
    actor: Option<String>,
    /// Only rows from this date (YYYY-MM-DD, UTC) on.
    #[arg(long)]
    since: Option<String>,
    /// At most this many rows.
    #[arg(long, default_value_t = 100)]
    limit: i64,
}

#[derive(Args)]
struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Only this application's webroots.
    #[arg(long)]
    app: Option<String>,
}

#[derive(Args)]
struct AppFlag {
    /// The application, as configured in [apps.<name>] (needed when there are several).
    #[arg(long = "app", value_name = "NAME")]
    name: Option<String>,
}

impl AppFlag {
    /// The application named, or the only one.
    fn resolve<'s>(&self, settings: &'s Settings) -> anyhow::Result<&'s clubdeploy::config::App> {
        Ok(settings.app(self.name.as_deref())?)
    }
}

#[derive(Args)]
struct DetachFlag {
    /// Only queue the job and print its id; the server's worker (or the next command) runs it.
    #[arg(long)]
    detach: bool,
}

#[derive(Args)]
#[group(required = true, multiple = false, id = "targets")]
struct TargetArgs {
    /// A club to deploy to (repeat for several).
    #[arg(long = "club", value_name = "SLUG")]
    clubs: Vec<String>,
    /// Deploy to every club (then old releases are pruned).
    #[arg(long)]
    all: bool,
}

fn main() -> ExitCode {
    // Nothing clubdeploy creates is for other local users unless it says so (releases are
    // opened up to Apache explicitly).
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    match run_command(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {}", cli::visible(&message));
            ExitCode::FAILURE
        }
    }
}

fn load_settings(path: Option<&Path>) -> anyhow::Result<Settings> {
    match path {
        Some(path) if !path.exists() => {
            bail!("the configuration file {} does not exist", path.display())
        }
        Some(path) => Ok(Settings::load(path)?),
        None => Ok(Settings::load(Path::new("clubdeploy.toml"))?),
    }
}

fn run_command(cli: Cli) -> anyhow::Result<()> {
    if let Command::Demo { dir, listen } = &cli.command {
        return demo(dir, listen.as_deref());
    }
    let settings = load_settings(cli.config.as_deref())?;
    // Before the database is opened (opening writes to it), and after (it may be new).
    clubdeploy::startup::secure_data_dir(&settings)?;
    let pool = db::open(&settings.database_path())?;
    clubdeploy::startup::secure_data_dir(&settings)?;
    cli::recover_if_idle(&settings, &pool)?;
    // A connection per piece of work, none held across a job, a fetch or hashing.
    let db = || pool.get().context("cannot connect to the database");
    let actor = cli::actor();
    match cli.command {
        Command::Migrate => say!(
            "database {} is up to date",
            settings.database_path().display()
        ),
        Command::Club(ClubCommand::Add {
            slug,
            webroots,
            name,
            urls,
        }) => {
            let webroots: Vec<(Option<&str>, &Path)> = webroots
                .iter()
                .map(|arg| {
                    let (app, path) = inventory::parse_app_arg(arg);
                    (app, Path::new(path))
                })
                .collect();
            let urls: Vec<(Option<&str>, &str)> = urls
                .iter()
                .map(|arg| inventory::parse_app_arg(arg))
                .collect();
            let added = inventory::add_club(
                &settings,
                &mut *db()?,
                &actor,
                &AddClub {
                    slug: &slug,
                    webroots: &webroots,
                    name: name.as_deref(),
                    urls: &urls,
                },
            )?;
            for club in added {
                if settings.several_apps() {
                    say!(
                        "added club {} with webroot {} for {}",
                        club.slug,
                        club.webroot,
                        club.app
                    );
                } else {
                    say!("added club {} with webroot {}", club.slug, club.webroot);
                }
            }
        }
        Command::Club(ClubCommand::Webroot {
            slug,
            app,
            path,
            url,
        }) => {
            let club = inventory::add_webroot(
                &settings,
                &mut *db()?,
                &actor,
                &slug,
                Some(&app),
                &path,
                url.as_deref(),
            )?;
            say!("club {} runs {} at {}", club.slug, club.app, club.webroot);
        }
        Command::Club(ClubCommand::List(list)) | Command::Status(list) => {
            if let Some(app) = &list.app {
                settings.app(Some(app))?;
            }
            let clubs = inventory::status(&settings, &mut *db()?, list.app.as_deref())?;
            if list.json {
                cli::print_json(&clubs)?
            } else {
                cli::print_clubs(&clubs, settings.several_apps())
            }
        }
        Command::Club(ClubCommand::Import { file, dry_run }) => {
            let text =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let plan = clubdeploy::service::import::plan(&settings, &mut *db()?, &text)?;
            for (verb, changes) in [("add", &plan.added), ("update", &plan.updated)] {
                for change in changes.iter().take(if dry_run { usize::MAX } else { 0 }) {
                    say!("{verb} {}: {}", change.slug, change.what.join(", "));
                }
            }
            if dry_run {
                say!("(dry run: {}; nothing was changed)", plan.summary());
                return Ok(());
            }
            clubdeploy::service::import::apply(&mut *db()?, &actor, &plan)?;
            say!("imported {}: {}", file.display(), plan.summary());
        }
        Command::Club(ClubCommand::Url { slug, url, app }) => {
            let url = Some(url.as_str()).filter(|u| *u != "none");
            inventory::set_url(
                &settings,
                &mut *db()?,
                &actor,
                &slug,
                app.name.as_deref(),
                url,
            )?;
            match url {
                Some(url) => say!("club {slug}'s address is {url}"),
                None => say!("club {slug} has no address now; its health is not checked"),
            }
        }
        Command::Club(ClubCommand::Group {
            group,
            slugs,
            remove,
        }) => {
            let changed = inventory::change_group(&mut *db()?, &actor, &group, &slugs, !remove)?;
            let (verb, place) = if remove {
                ("took", "out of")
            } else {
                ("put", "in")
            };
            match changed.as_slice() {
                [] => say!("nothing changed: group {group} already had that"),
                clubs => say!("{verb} {} {place} group {group}", clubs.join(", ")),
            }
        }
        Command::Club(ClubCommand::Groups { json }) => {
            let groups = clubdeploy::db::groups::all(&mut *db()?)?;
            if json {
                cli::print_json(&groups)?
            } else {
                for (group, clubs) in &groups {
                    say!("{group}: {}", clubs.join(", "));
                }
            }
        }
        Command::Club(ClubCommand::Remove { slug }) => {
            inventory::remove_club(&mut *db()?, &actor, &slug)?;
            say!("forgot club {slug}; its webroot was left as it is");
        }
        Command::Releases {
            fetch,
            limit,
            app,
            json: flag,
        } => {
            let app = app.resolve(&settings)?;
            if fetch {
                let spec = JobSpec::Fetch {
                    app: Some(app.name.clone()),
                };
                let id = enqueue(&mut *db()?, &spec, &actor, None)?;
                if !flag.json {
                    say!("queued job #{id}: {spec}");
                }
                finished(
                    cli::work_until_finished(&settings, &pool, id, !flag.json)?,
                    !flag.json,
                )?;
            }
            let mut rows = inventory::releases(&settings, app, &mut *db()?)?;
            // Release order is oldest first: the newest are the last.
            if let Some(limit) = limit {
                rows.drain(..rows.len().saturating_sub(limit));
            }
            if flag.json {
                cli::print_json(&rows)?
            } else {
                let skipped = clubdeploy::pipeline::git::open_mirror(app)?.skipped_tags()?;
                cli::print_releases(&rows, app.name.as_str(), &skipped)
            }
        }
        Command::Deploy {
            tag,
            app,
            targets,
            canary,
            rebuild,
            dry_run,
            detach,
        } => {
            // A group named stands for its clubs among those deployed to.
            let canary = match canary.as_slice() {
                [] => None,
                [none] if none == "none" => Some(Vec::new()),
                names => {
                    let among = (!targets.all).then(|| targets.clubs.clone());
                    let slugs =
                        clubdeploy::db::groups::expand(&mut *db()?, names, among.as_deref())?;
                    Some(
                        slugs
                            .iter()
                            .map(|s| ClubSlug::parse(s))
                            .collect::<Result<Vec<_>, _>>()?,
                    )
                }
            };
            let app = app.resolve(&settings)?;
            let tag = ReleaseTag::parse(&tag)?;
            let targets = if targets.all {
                Targets::All
            } else {
                Targets::Clubs(
                    targets
                        .clubs
                        .iter()
                        .map(|s| ClubSlug::parse(s))
                        .collect::<Result<_, _>>()?,
                )
            };
            if dry_run {
                let all = targets == Targets::All;
                let clubs = clubdeploy::service::preview::select(
                    inventory::status(&settings, &mut *db()?, Some(app.name.as_str()))?,
                    &targets,
                )
                .map_err(|e| anyhow::anyhow!("{e}; nothing was queued"))?;
                let plan = clubdeploy::service::preview::plan(&settings, app, &tag, &clubs, all)?;
                say_part!("{}", plan.to_text());
                // The waves the job would go in, by the job's own rule.
                let configured =
                    clubdeploy::db::groups::expand(&mut *db()?, &settings.rollout.canary, None)?;
                let moving: Vec<&clubdeploy::service::inventory::ClubStatus> =
                    clubs.iter().filter(|c| !c.legacy).collect();
                let waves = clubdeploy::domain::rollout::waves(
                    &moving,
                    |c| c.slug.as_str(),
                    canary.as_deref(),
                    &configured,
                    settings.rollout.batch_size,
                )?;
                say_part!("{}", cli::waves_in_words(&waves));
                say!("(dry run: nothing was changed and no job was queued)");
                return Ok(());
            }
            submit(
                &settings,
                &pool,
                &actor,
                JobSpec::Deploy {
                    app: app.name.clone(),
                    tag,
                    targets,
                    canary,
                    rebuild,
                },
                detach,
            )?;
        }
        Command::Rollback {
            slug,
            app,
            to,
            detach,
        } => {
            let app = app.resolve(&settings)?.name.clone();
            let club = ClubSlug::parse(&slug)?;
            submit(
                &settings,
                &pool,
                &actor,
                JobSpec::Rollback { app, club, to },
                detach,
            )?;
        }
        Command::Prune { app, detach } => {
            let app = match app {
                Some(name) => Some(settings.app(Some(&name))?.name.clone()),
                None => None,
            };
            submit(&settings, &pool, &actor, JobSpec::Prune { app }, detach)?;
        }
        Command::Opcache(flag) => {
            let webroots = clubdeploy::db::clubs::webroots(&mut *db()?, None)?;
            let (urls, in_use) = clubdeploy::service::opcache::sites(&settings, &webroots)?;
            let insight = clubdeploy::service::opcache::read(&settings, &urls, &in_use)?;
            if flag.json {
                cli::print_json(&insight)?
            } else {
                cli::print_opcache(&insight)
            }
        }
        Command::Doctor(flag) => {
            let report = clubdeploy::doctor::examine(&settings, &pool)?;
            if flag.json {
                cli::print_json(&report)?
            } else {
                print!("{}", report.text());
            }
            if report.count(clubdeploy::doctor::Level::Problem) > 0 {
                std::process::exit(1);
            }
        }
        Command::Jobs(flag) => {
            let recent = jobs::recent(&mut *db()?, 50)?;
            if flag.json {
                cli::print_json(&recent.iter().map(cli::JobView::from).collect::<Vec<_>>())?
            } else {
                cli::print_jobs(&recent)
            }
        }
        Command::Job { id, json } => {
            let job =
                jobs::by_id(&mut *db()?, id)?.with_context(|| format!("there is no job #{id}"))?;
            let events = jobs::events_after(&mut *db()?, id, 0)?;
            if json.json {
                cli::print_json(&cli::JobDetail::new(&job, &events))?
            } else {
                cli::print_job(&job, &events)
            }
        }
        Command::Adopt {
            slug,
            app,
            tag,
            undo,
            detach,
        } => {
            let app = app.resolve(&settings)?.name.clone();
            let club = ClubSlug::parse(&slug)?;
            let spec = match tag {
                Some(tag) if !undo => JobSpec::Adopt {
                    app,
                    club,
                    tag: ReleaseTag::parse(&tag)?,
                },
                _ => JobSpec::UndoAdopt { app, club },
            };
            submit(&settings, &pool, &actor, spec, detach)?;
        }
        Command::Legacy(LegacyCommand::List) => {
            let mut any = false;
            for app in settings.apps() {
                for copy in clubdeploy::pipeline::legacy::kept_copies(&app.legacy_dir, None)? {
                    any = true;
                    say!(
                        "{:20}  {:12}  {:>12} bytes  {}",
                        copy.slug,
                        app.name,
                        copy.bytes,
                        copy.backup.path.display()
                    );
                }
            }
            if !any {
                say!("no legacy copy is kept");
            }
        }
        Command::Legacy(LegacyCommand::Purge { slug, app, copy }) => {
            let app = app.resolve(&settings)?;
            let copy = match copy {
                Some(copy) => copy,
                None => clubdeploy::pipeline::legacy::kept_copies(
                    &app.legacy_dir,
                    Some(ClubSlug::parse(&slug)?.as_str()),
                )?
                .first()
                .and_then(|k| k.backup.path.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .with_context(|| format!("no legacy copy of club {slug} is kept"))?,
            };
            let spec = JobSpec::purge_legacy(app.name.clone(), &slug, &copy)?;
            submit(&settings, &pool, &actor, spec, DetachFlag { detach: false })?;
        }
        Command::Cancel { id } => {
            clubdeploy::jobs::enqueue::cancel(&mut *db()?, id, &actor, None)?;
            say!("job #{id} cancelled");
        }
        Command::Audit {
            verify: Some(AuditCommand::Verify),
            ..
        } => match audit::verify(&mut *db()?, &settings.anchor_file())? {
            Ok(verified) => say!("audit log intact: {verified}"),
            Err(broken) => bail!("audit log check failed: {broken}"),
        },
        Command::Audit {
            verify: None,
            filter,
        } => {
            let since = filter.since.as_deref().map(parse_date).transpose()?;
            let rows = audit::list(
                &mut *db()?,
                &audit::Filter {
                    club: filter.club,
                    app: filter.app,
                    actor: filter.actor,
                    action: None,
                    since,
                    before: None,
                    limit: filter.limit,
                },
            )?;
            if filter.json {
                cli::print_json(&rows)?
            } else {
                cli::print_audit(&rows)
            }
        }
        Command::Serve => serve(settings)?,
        Command::User(command) => user(&pool, &actor, command)?,
        Command::Demo { .. } => unreachable!("handled before the settings are read"),
    }
    Ok(())
}

fn user(pool: &DbPool, actor: &str, command: UserCommand) -> anyhow::Result<()> {
    let actor = Actor {
        name: actor,
        address: None,
    };
    match command {
        UserCommand::Add {
            name,
            role,
            clubs,
            password_stdin,
        } => {
            let name = UserName::parse(&name)?;
            let role = Role::parse(&role)?;
            let scope = ClubScope::parse(&clubs)?;
            // Hashed before a connection is taken: argon2 is slow on purpose.
            let hash = password::hash(&read_password(password_stdin)?)?;
            staff::add(&mut *pool.get()?, actor, &name, role, &scope, &hash)?;
            say!("added {name} as {role}");
        }
        UserCommand::List => {
            for user in db::users::all(&mut *pool.get()?)? {
                let clubs = user.clubs.as_deref().unwrap_or("all clubs");
                let state = if user.disabled { "disabled" } else { "active" };
                say!("{:20}  {:8}  {state:8}  {clubs}", user.name, user.role);
            }
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let hash = password::hash(&read_password(password_stdin)?)?;
            staff::set_password(&mut *pool.get()?, actor, &name, &hash)?;
            say!("password of {name} changed; their sessions were ended");
        }
        UserCommand::Disable { name } => {
            staff::set_disabled(&mut *pool.get()?, actor, &name, true)?;
            say!("{name} is disabled; their sessions were ended");
        }
    }
    Ok(())
}

/// A new password from standard input's first line, or typed twice without echo.
fn read_password(from_stdin: bool) -> anyhow::Result<NewPassword> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        return Ok(NewPassword::parse(line.trim_end_matches(['\n', '\r']))?);
    }
    let first = rpassword::prompt_password("New password (at least 12 characters): ")?;
    let password = NewPassword::parse(&first)?;
    let again = rpassword::prompt_password("The same again: ")?;
    if again != first {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(password)
}

fn demo(dir: &Path, listen: Option<&str>) -> anyhow::Result<()> {
    let demo = clubdeploy::demo::prepare(dir, listen.unwrap_or(clubdeploy::demo::LISTEN))?;
    let mut settings = Settings::load(&demo.config)?;
    // An address given now wins over the one the demo was created with (that port may be
    // taken today).
    if let Some(listen) = listen {
        settings.listen = listen.to_owned();
    }
    say!("clubdeploy demo in {}", dir.display());
    match &demo.admin_password {
        Some(password) => say!(
            "sign in as admin with password {password} (shown only now; reset it with \
             `clubdeploy --config {} user passwd admin`)",
            demo.config.display()
        ),
        None => say!(
            "reusing the demo created earlier (its admin password was shown then; reset it \
             with `clubdeploy --config {} user passwd admin`)",
            demo.config.display()
        ),
    }
    serve(settings)
}

/// Queues a job, then (unless detached) works the queue until it has finished.
fn submit(
    settings: &Settings,
    pool: &DbPool,
    actor: &str,
    spec: JobSpec,
    detach: DetachFlag,
) -> anyhow::Result<()> {
    let id = enqueue(&mut *pool.get()?, &spec, actor, None)?;
    if detach.detach {
        say!("queued job #{id}: {spec}");
        return Ok(());
    }
    say!("queued job #{id}: {spec}");
    finished(cli::work_until_finished(settings, pool, id, true)?, true)
}

/// A job's end as the command's: `done: …` (when `say`) and success, or its error.
fn finished(job: jobs::Job, say: bool) -> anyhow::Result<()> {
    match JobStatus::parse(&job.status)? {
        JobStatus::Succeeded => {
            if say {
                say!("done: {}", job.outcome.unwrap_or_default());
            }
            Ok(())
        }
        status => bail!(
            "job #{} {status}: {}",
            job.id,
            job.error.unwrap_or_else(|| "no reason recorded".into())
        ),
    }
}

fn parse_date(text: &str) -> anyhow::Result<chrono::NaiveDateTime> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists"))
        .with_context(|| format!("--since {text:?} is not a date like 2026-11-26"))
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    if rustix::process::geteuid().is_root() {
        eprintln!(
            "warning: clubdeploy is running as root. It needs no privilege beyond owning \
             webroot_base and data_dir; run it as its own user (the Debian package's service \
             runs as `clubdeploy` and reloads Apache through a sudoers rule), see the README's \
             \"Installing on a server\"."
        );
    }
    actix_web::rt::System::new().block_on(async move {
        let listener = std::net::TcpListener::bind(&settings.listen)
            .with_context(|| format!("cannot listen on {} (setting `listen`)", settings.listen))?;
        let app = Application::build(settings, listener, worker::POLL_INTERVAL)?;
        say!("clubdeploy panel on http://{}/ (Ctrl-C stops)", app.addr());
        app.run_until_stopped().await?;
        Ok(())
    })
}

//! What each command does: one match, a call into the library per command.

use std::path::Path;

use anyhow::{Context, bail};

use super::args::*;
use super::serve::{demo, serve};
use crate::auth::password;
use crate::auth::staff::{self, Actor};
use crate::cli;
use crate::config::Settings;
use crate::db::{self, DbPool, audit, jobs};
use crate::domain::{
    ClubScope, ClubSlug, JobSpec, JobStatus, NewPassword, ReleaseTag, Role, Targets, UserName,
};
use crate::jobs::enqueue::enqueue;
use crate::service::inventory::{self, AddClub};
use crate::{say, say_part};

fn load_settings(path: Option<&Path>) -> anyhow::Result<Settings> {
    match path {
        Some(path) if !path.exists() => {
            bail!("the configuration file {} does not exist", path.display())
        }
        Some(path) => Ok(Settings::load(path)?),
        None => Ok(Settings::load(Path::new("clubdeploy.toml"))?),
    }
}

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Demo { dir, listen } = &cli.command {
        return demo(dir, listen.as_deref());
    }
    // A web host has no configuration of ours: the agent is told everything it needs.
    if let Command::HostAgent = cli.command {
        return crate::pipeline::agent::serve(std::io::stdin().lock(), std::io::stdout().lock());
    }
    // The build user may read no configuration: these steps need none.
    if let Command::BuildUser(step) = cli.command {
        use crate::pipeline::build_user;
        return match step {
            BuildUserCommand::Exec { argv } => Err(build_user::exec(&argv)),
            BuildUserCommand::Stop => {
                build_user::stop_all();
                Ok(())
            }
            BuildUserCommand::HandOver { dir } => build_user::hand_over_tree(&dir),
        };
    }
    let settings = load_settings(cli.config.as_deref())?;
    let pool = crate::startup::open_database(&settings)?;
    cli::recover_if_idle(&settings, &pool)?;
    let before = audit::last_id(&mut *pool.get()?)?;
    let done = command(cli.command, settings.clone(), &pool);
    // What the command wrote to the audit log is anchored now, whether it worked or not (a
    // job's end already anchored its own rows); a command that wrote nothing anchors nothing.
    if audit::last_id(&mut *pool.get()?)? != before {
        crate::jobs::queue::anchor_audit(&settings, &pool);
    }
    done
}

/// Fetches `app`'s tags now: a fetch job, queued and worked to its end (said as it goes when
/// `verbose`).
fn fetch_now(
    settings: &Settings,
    pool: &DbPool,
    actor: &str,
    app: &crate::config::App,
    verbose: bool,
) -> anyhow::Result<()> {
    let spec = JobSpec::Fetch {
        app: Some(app.name.clone()),
    };
    let id = enqueue(&mut *pool.get()?, &spec, actor, None)?;
    if verbose {
        say!("queued job #{id}: {spec}");
    }
    finished(
        cli::work_until_finished(settings, pool, id, verbose)?,
        verbose,
    )
}

/// Runs `command` against `settings` and the database in `pool`.
fn command(command: Command, settings: Settings, pool: &DbPool) -> anyhow::Result<()> {
    // A connection per piece of work, none held across a job, a fetch or hashing.
    let db = || pool.get().context("cannot connect to the database");
    let actor = cli::actor();
    match command {
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
            let plan = crate::service::import::plan(&settings, &mut *db()?, &text)?;
            for (verb, changes) in [("add", &plan.added), ("update", &plan.updated)] {
                for change in changes.iter().take(if dry_run { usize::MAX } else { 0 }) {
                    say!("{verb} {}: {}", change.slug, change.what.join(", "));
                }
            }
            if dry_run {
                say!("(dry run: {}; nothing was changed)", plan.summary());
                return Ok(());
            }
            crate::service::import::apply(&mut *db()?, &actor, &plan)?;
            say!("imported {}: {}", file.display(), plan.summary());
        }
        Command::Club(ClubCommand::Hosts { slug, hosts, all }) => {
            let hosts = if all { Vec::new() } else { hosts };
            let changed = inventory::set_hosts(&settings, &mut *db()?, &actor, &slug, &hosts)?;
            match (changed, hosts.is_empty()) {
                (false, _) => say!("club {slug} was served so already: nothing changed"),
                (true, true) => say!("club {slug} is served by every host"),
                (true, false) => say!("club {slug} is served by {}", hosts.join(", ")),
            }
        }
        Command::Club(ClubCommand::Rename { slug, name }) => {
            if inventory::rename_club(&mut *db()?, &actor, &slug, &name)? {
                say!("club {slug} is called {} now", name.trim());
            } else {
                say!("club {slug} was called that already: nothing changed");
            }
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
            let groups = crate::db::groups::all(&mut *db()?)?;
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
                fetch_now(&settings, pool, &actor, app, !flag.json)?;
            }
            let mut rows = inventory::releases(&settings, app, &mut *db()?)?;
            // Release order is oldest first: the newest are the last.
            if let Some(limit) = limit {
                rows.drain(..rows.len().saturating_sub(limit));
            }
            if flag.json {
                cli::print_json(&rows)?
            } else {
                let skipped = crate::pipeline::git::open_mirror(app)?.skipped_tags()?;
                cli::print_releases(&rows, app.name.as_str(), &skipped)
            }
        }
        Command::Deploy {
            tag,
            app,
            targets,
            canary,
            rebuild,
            again,
            dry_run,
            detach,
        } => {
            // A group named stands for its clubs among those deployed to.
            let canary = match canary.as_slice() {
                [] => None,
                [none] if none == "none" => Some(Vec::new()),
                names => {
                    let among = (!targets.all).then(|| targets.clubs.clone());
                    let slugs = crate::db::groups::expand(&mut *db()?, names, among.as_deref())?;
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
            let put_back = crate::service::marks::for_deploy(
                &mut *db()?,
                app.name.as_str(),
                tag.as_str(),
                &targets,
            )?;
            if dry_run {
                for note in &put_back {
                    say_part!("WARNING: {}\n", note.words);
                }
                let all = targets == Targets::All;
                let clubs = crate::service::preview::select(
                    inventory::status(&settings, &mut *db()?, Some(app.name.as_str()))?,
                    &targets,
                )
                .map_err(|e| anyhow::anyhow!("{e}; nothing was queued"))?;
                let plan = crate::service::preview::plan(&settings, app, &tag, &clubs, all)?;
                say_part!("{}", plan.to_text());
                // The waves the job would go in, by the job's own rule.
                let configured =
                    crate::db::groups::expand(&mut *db()?, &settings.rollout.canary, None)?;
                let moving: Vec<&crate::service::inventory::ClubStatus> =
                    clubs.iter().filter(|c| !c.legacy).collect();
                let waves = crate::domain::rollout::waves(
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
            crate::service::marks::refuse_unless_again(&put_back, again)?;
            submit(
                &settings,
                pool,
                &actor,
                JobSpec::Deploy {
                    app: app.name.clone(),
                    group: match &targets {
                        Targets::All => None,
                        Targets::Clubs(slugs) => crate::db::groups::picked(
                            &mut *db()?,
                            app.name.as_str(),
                            slugs,
                            |_| true,
                        )?,
                    },
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
                pool,
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
            submit(&settings, pool, &actor, JobSpec::Prune { app }, detach)?;
        }
        Command::Opcache(flag) => {
            let webroots = crate::db::clubs::webroots(&mut *db()?, None)?;
            let (urls, in_use) = crate::service::opcache::sites(&settings, &webroots)?;
            let insight = crate::service::opcache::read(&settings, &urls, &in_use)?;
            if flag.json {
                cli::print_json(&insight)?
            } else {
                cli::print_opcache(&insight)
            }
        }
        Command::Doctor(flag) => {
            let report = crate::doctor::examine(&settings, pool)?;
            if flag.json {
                cli::print_json(&report)?
            } else {
                print!("{}", report.text());
            }
            if report.count(crate::doctor::Level::Problem) > 0 {
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
            submit(&settings, pool, &actor, spec, detach)?;
        }
        Command::Legacy(LegacyCommand::List) => {
            let mut any = false;
            for app in settings.apps() {
                for copy in crate::pipeline::legacy::kept_copies(&app.legacy_dir, None)? {
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
                None => crate::pipeline::legacy::kept_copies(
                    &app.legacy_dir,
                    Some(ClubSlug::parse(&slug)?.as_str()),
                )?
                .first()
                .and_then(|k| k.backup.path.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .with_context(|| format!("no legacy copy of club {slug} is kept"))?,
            };
            let spec = JobSpec::purge_legacy(app.name.clone(), &slug, &copy)?;
            submit(&settings, pool, &actor, spec, DetachFlag { detach: false })?;
        }
        Command::Cancel { id } => {
            match crate::jobs::enqueue::cancel(&mut *db()?, id, &actor, None, true)? {
                crate::jobs::enqueue::Cancelled::Queued => say!("job #{id} cancelled"),
                crate::jobs::enqueue::Cancelled::WillStop => say!(
                    "job #{id} is running: it stops at its next safe point (before any club is \
                     switched, or between waves)"
                ),
            }
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
                    clubs: filter.club.map(|club| vec![club]),
                    app: filter.app,
                    actor: filter.actor,
                    since,
                    limit: filter.limit,
                    ..Default::default()
                },
            )?;
            if filter.json {
                cli::print_json(&rows)?
            } else {
                cli::print_audit(&rows)
            }
        }
        Command::Serve => serve(settings)?,
        Command::User(command) => user(pool, &actor, command)?,
        Command::Demo { .. } | Command::BuildUser(_) | Command::HostAgent => {
            unreachable!("handled before the settings are read")
        }
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
        UserCommand::CodeOff { name } => {
            staff::set_code(&mut *pool.get()?, actor, &name, None)?;
            say!("{name}'s sign-in code is removed; they set up a new one on their account page");
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
    match job.status {
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

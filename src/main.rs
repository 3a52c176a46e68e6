//! The `clubdeploy` command: parses the command line and calls into the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use clubdeploy::cli::{self, Terminal};
use clubdeploy::config::Settings;
use clubdeploy::db;
use clubdeploy::domain::{ClubSlug, ReleaseTag};
use clubdeploy::inventory::{self, AddClub};
use clubdeploy::jobs::run::{self, Job, Targets};

/// Deploys a PHP application to many clubs by switching webroot symlinks to shared releases.
#[derive(Parser)]
#[command(version, about)]
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
    /// Tags in the repository and built releases, with the clubs that run each.
    Releases(JsonFlag),
    /// Deploy a tag to some clubs or to all of them.
    Deploy(DeployArgs),
    /// Return a club to the release it ran before, or to the one named with --to.
    Rollback {
        /// The club's slug.
        slug: String,
        /// A release name (v2.4.1-3f2a9c1d) or a tag.
        #[arg(long)]
        to: Option<String>,
    },
    /// Delete releases no club runs, beyond the newest `keep_releases`.
    Prune,
    /// Every club and the release its webroot resolves to on disk.
    Status(JsonFlag),
}

#[derive(Subcommand)]
enum ClubCommand {
    /// Add a club whose webroot (a symlink clubdeploy manages) lies under webroot_base.
    Add {
        slug: String,
        #[arg(long)]
        webroot: PathBuf,
        /// Display name (defaults to the slug).
        #[arg(long)]
        name: Option<String>,
        /// The club's site, for health checks and links.
        #[arg(long)]
        url: Option<String>,
    },
    /// List clubs.
    List(JsonFlag),
    /// Forget a club; its webroot is left untouched.
    Remove { slug: String },
}

#[derive(Args)]
struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
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

#[derive(Args)]
struct DeployArgs {
    /// The git tag to deploy.
    tag: String,
    #[command(flatten)]
    targets: TargetArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run_command(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn load_settings(path: Option<&Path>) -> anyhow::Result<Settings> {
    match path {
        Some(path) if !path.exists() => {
            anyhow::bail!("the configuration file {} does not exist", path.display())
        }
        Some(path) => Ok(Settings::load(path)?),
        None => Ok(Settings::load(Path::new("clubdeploy.toml"))?),
    }
}

fn run_command(cli: Cli) -> anyhow::Result<()> {
    let settings = load_settings(cli.config.as_deref())?;
    let pool = db::open(&settings.database_path())?;
    let conn = &mut pool.get().context("cannot connect to the database")?;
    let actor = cli::actor();
    let mut terminal = Terminal;
    let mut job = Job {
        settings: &settings,
        conn,
        actor: &actor,
        progress: &mut terminal,
    };
    match cli.command {
        Command::Migrate => println!(
            "database {} is up to date",
            settings.database_path().display()
        ),
        Command::Club(ClubCommand::Add {
            slug,
            webroot,
            name,
            url,
        }) => {
            let club = inventory::add_club(
                &settings,
                job.conn,
                &AddClub {
                    slug: &slug,
                    webroot: &webroot,
                    name: name.as_deref(),
                    url: url.as_deref(),
                },
            )?;
            println!("added club {} with webroot {}", club.slug, club.webroot);
        }
        Command::Club(ClubCommand::List(flag)) | Command::Status(flag) => {
            let clubs = inventory::status(&settings, job.conn)?;
            if flag.json {
                cli::print_json(&clubs)?
            } else {
                cli::print_clubs(&clubs)
            }
        }
        Command::Club(ClubCommand::Remove { slug }) => {
            inventory::remove_club(job.conn, &slug)?;
            println!("forgot club {slug}; its webroot was left as it is");
        }
        Command::Releases(flag) => {
            let rows = inventory::releases(&settings, job.conn)?;
            if flag.json {
                cli::print_json(&rows)?
            } else {
                cli::print_releases(&rows)
            }
        }
        Command::Deploy(args) => {
            let tag = ReleaseTag::parse(&args.tag)?;
            let targets = if args.targets.all {
                Targets::All
            } else {
                Targets::Clubs(
                    args.targets
                        .clubs
                        .iter()
                        .map(|s| ClubSlug::parse(s))
                        .collect::<Result<_, _>>()?,
                )
            };
            let summary = run::deploy(&mut job, &tag, &targets)?;
            println!("done: {summary}");
        }
        Command::Rollback { slug, to } => {
            let slug = ClubSlug::parse(&slug)?;
            let summary = run::rollback(&mut job, &slug, to.as_deref())?;
            println!("done: {summary}");
        }
        Command::Prune => {
            let summary = run::prune(&mut job)?;
            println!("done: {summary}");
        }
    }
    Ok(())
}

//! `clubdeploy demo`: a working panel with sample data in a fresh directory, for a newcomer
//! with no Apache: two PHP applications (a booking system every club runs, and a mobile
//! web-app four of them run), each a repository with three tags; six clubs; a config whose
//! reload commands do nothing (and say so); an admin user; and each application's oldest tag
//! deployed to every club running it.

pub mod sites;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use git2::{IndexAddOption, Repository, Signature};

use crate::auth::staff::{self, Actor};
use crate::config::Settings;
use crate::domain::{
    AppName, ClubScope, JobSpec, NewPassword, ReleaseTag, Role, Targets, UserName,
};
use crate::jobs::{enqueue::enqueue, queue};
use crate::service::inventory::{self, AddClub};

/// The sample clubs: slug and display name.
const CLUBS: [(&str, &str); 6] = [
    ("zermatt", "Club Zermatt"),
    ("davos", "Club Davos"),
    ("verbier", "Club Verbier"),
    ("st-moritz", "Club St. Moritz"),
    ("chamonix", "Club Chamonix"),
    ("kitzbuehel", "Club Kitzbühel"),
];

/// The sample applications: name and title.
const APPS: [(&str, &str); 2] = [("booking", "Alpine Booking"), ("mobile", "Alpine Mobile")];

/// How many of [`CLUBS`] (the first ones) run the mobile web-app too.
const MOBILE_CLUBS: usize = 4;

/// The sample applications' tags, oldest first.
const TAGS: [&str; 3] = ["v1.0.0", "v1.1.0", "v1.2.0"];

/// The version the demo suggests deploying first.
pub const NEXT_TAG: &str = TAGS[1];

/// Where the demo's panel listens unless `--listen` says otherwise.
pub const LISTEN: &str = "127.0.0.1:8080";

/// A demo ready to serve.
pub struct Demo {
    /// Its configuration file.
    pub config: PathBuf,
    /// The admin's password, when the demo was created now (it is shown once).
    pub admin_password: Option<String>,
}

/// Creates the demo in `dir` (which must be missing or empty), or reuses the demo already
/// there.
pub fn prepare(dir: &Path, listen: &str) -> anyhow::Result<Demo> {
    let config = dir.join("clubdeploy.toml");
    if config.is_file() {
        return Ok(Demo {
            config,
            admin_password: None,
        });
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} is not empty and holds no demo; choose a new directory with --dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir.join("www"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    for (app, title) in APPS {
        make_app(&dir.join(app), title)?;
    }
    let harmless = |what: &str| {
        format!("[\"sh\", \"-c\", \"echo 'demo: no Apache here, so the {what} does nothing'\"]")
    };
    std::fs::write(
        &config,
        format!(
            "# The clubdeploy demo: two sample apps and six clubs, no Apache needed.\n\
             data_dir = {:?}\nwebroot_base = {:?}\nlisten = {listen:?}\n\
             keep_releases = 2\nprune_grace_secs = 0\n\n\
             [apps.booking]\nrepo_url = {:?}\n\n[apps.mobile]\nrepo_url = {:?}\n\n[reload]\n\
             # A real setup runs apachectl here; the demo has no Apache.\n\
             configtest = {}\ncommand = {}\nvhosts = []\n\n[health]\n\
             # The demo serves each club's site on a loopback port (php -S), when PHP is there.\n\
             connect_to = \"127.0.0.1\"\n",
            dir.join("data"),
            dir.join("www"),
            dir.join("booking"),
            dir.join("mobile"),
            harmless("configtest"),
            harmless("reload"),
        ),
    )?;
    let settings = Settings::load(&config)?;
    let pool = crate::startup::open_database(&settings)?;
    let conn = &mut pool.get()?;
    for (n, (slug, name)) in CLUBS.into_iter().enumerate() {
        let booking = settings.webroot_base.join(slug).join("htdocs");
        let mobile = settings.webroot_base.join(slug).join("mobile");
        let mut webroots = vec![(Some("booking"), booking.as_path())];
        if n < MOBILE_CLUBS {
            webroots.push((Some("mobile"), mobile.as_path()));
        }
        inventory::add_club(
            &settings,
            conn,
            "demo",
            &AddClub {
                slug,
                webroots: &webroots,
                name: Some(name),
                urls: &[],
            },
        )?;
    }
    let password = crate::secret::random_token()[..20].to_owned();
    staff::add(
        conn,
        Actor {
            name: "demo",
            address: None,
        },
        &UserName::parse("admin")?,
        Role::Admin,
        &ClubScope::All,
        &crate::auth::password::hash(&NewPassword::parse(&password)?)?,
    )?;
    for (app, _) in APPS {
        let first = JobSpec::Deploy {
            app: AppName::parse(app)?,
            tag: ReleaseTag::parse(TAGS[0])?,
            targets: Targets::All,
            canary: None,
            rebuild: false,
            group: None,
        };
        enqueue(conn, &first, "demo", None)?;
    }
    queue::drain(&settings, &pool)?;
    Ok(Demo {
        config,
        admin_password: Some(password),
    })
}

/// A small multi-tenant PHP app called `title`, with a commit and tag per entry of [`TAGS`].
fn make_app(path: &Path, title: &str) -> anyhow::Result<()> {
    let repo = Repository::init(path)?;
    let sig = Signature::now("clubdeploy demo", "demo@example.invalid")?;
    let mut parent: Option<git2::Oid> = None;
    for (n, tag) in TAGS.iter().enumerate() {
        let workdir = repo
            .workdir()
            .context("the demo repository has no work tree")?;
        std::fs::create_dir_all(workdir.join("src"))?;
        std::fs::write(
            workdir.join("index.php"),
            format!(
                "<?php\nrequire __DIR__ . '/src/Booking.php';\n\
                 echo '<h1>{title} {tag}</h1><p>Club: ' . htmlspecialchars($_SERVER['HTTP_HOST'] ?? 'unknown') . '</p>';\n\
                 echo '<p>' . (new Booking())->greeting() . '</p>';\n"
            ),
        )?;
        std::fs::write(
            workdir.join("src/Booking.php"),
            format!(
                "<?php\nfinal class Booking\n{{\n    public function greeting(): string\n    {{\n        \
                 return 'Welcome! {} rooms free today.';\n    }}\n}}\n",
                10 + n
            ),
        )?;
        let mut index = repo.index()?;
        index.add_all(["*"], IndexAddOption::DEFAULT, None)?;
        index.write()?;
        let tree = repo.find_tree(index.write_tree()?)?;
        let parents: Vec<git2::Commit<'_>> = parent
            .iter()
            .map(|id| repo.find_commit(*id))
            .collect::<Result<_, _>>()?;
        let parent_refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
        let id = repo.commit(
            Some("HEAD"),
            &sig,
            &sig,
            &format!("Release {tag}"),
            &tree,
            &parent_refs,
        )?;
        repo.tag(
            tag,
            &repo.find_object(id, None)?,
            &sig,
            &format!("Deploy tag {tag}"),
            false,
        )?;
        parent = Some(id);
    }
    Ok(())
}

//! What runs where: adding and forgetting clubs, each club's release as read from disk, and
//! the releases with the clubs that run them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::config::{App, Settings};
use crate::db::Conn;
use crate::db::clubs::{self, AddClubError, ClubApp, NewClub, NewWebroot};
use crate::db::{self, audit, groups};
use crate::domain::{
    AppName, ClubSlug, GroupName, InvalidInput, Refusal, ReleaseName, ReleaseTag, check_url,
    release_order,
};
use crate::pipeline::git;
use crate::pipeline::release;
use crate::pipeline::switch::{self, Webroot};

/// A club's webroot of one application with what it resolves to on disk now.
#[derive(Debug, Clone, Serialize)]
pub struct ClubStatus {
    pub slug: String,
    pub name: String,
    /// The application this webroot serves.
    pub app: String,
    pub webroot: String,
    pub url: Option<String>,
    /// The release directory the webroot resolves to, if it resolves to one.
    pub release: Option<String>,
    /// That release's tag.
    pub tag: Option<String>,
    /// What the webroot is, in words, when it is not a release.
    pub problem: Option<String>,
    /// The webroot is a legacy copy (a real directory) waiting to be adopted.
    pub legacy: bool,
    /// Nothing is at the webroot yet: the club awaits its first deploy.
    pub no_link_yet: bool,
    /// The release the database last recorded for the club.
    pub recorded_release: Option<String>,
    /// The disk and the database disagree.
    pub drift: bool,
}

/// A release: a tag in the repository, built or not, and the clubs that run it.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseRow {
    pub name: String,
    pub tag: ReleaseTag,
    pub commit: String,
    /// The annotated tag's message.
    pub message: Option<String>,
    /// Who made the annotated tag.
    pub tagger: Option<String>,
    /// When it was tagged (RFC 3339); `None` for a built release whose tag is gone.
    pub tagged_at: Option<String>,
    pub built: bool,
    pub built_at: Option<String>,
    pub files: Option<u64>,
    pub bytes: Option<u64>,
    pub clubs: Vec<String>,
}

/// The details of a club to add.
pub struct AddClub<'a> {
    pub slug: &'a str,
    /// Its webroots: `(application, path)`, the application optional when there is one.
    pub webroots: &'a [(Option<&'a str>, &'a Path)],
    pub name: Option<&'a str>,
    /// The sites' addresses: `(application, url)`, the application optional when there is
    /// one.
    pub urls: &'a [(Option<&'a str>, &'a str)],
}

/// Parses a `--webroot` or `--url` value: `[<app>=]<value>` (a value holding `=` before any
/// `/` needs the `app=`).
pub fn parse_app_arg(arg: &str) -> (Option<&str>, &str) {
    match arg.split_once('=') {
        Some((app, value)) if crate::domain::AppName::parse(app).is_ok() => (Some(app), value),
        _ => (None, arg),
    }
}

/// A webroot checked for adding: its application, its resolved path, what it is now.
#[derive(Debug)]
pub(crate) struct CheckedWebroot {
    pub app: AppName,
    pub path: String,
    pub release: Option<String>,
    pub legacy: bool,
    pub url: Option<String>,
}

/// Checks a webroot to add for `app` (`None`: the only application): it lies under
/// `webroot_base`, and may be a link, nothing yet, or a legacy copy (a real directory, left
/// untouched until it is adopted).
fn check_webroot(
    settings: &Settings,
    app: Option<&str>,
    webroot: &Path,
) -> anyhow::Result<CheckedWebroot> {
    let app = settings.app(app).map_err(|e| {
        InvalidInput(format!(
            "{e} (write the webroot as <app>=<path>, e.g. {}={})",
            settings.apps()[0].name,
            webroot.display()
        ))
    })?;
    let path = resolve_webroot(settings, webroot)?;
    Ok(CheckedWebroot::read(app, path)?)
}

/// `webroot` resolved under `webroot_base` (refused outside it), as text.
pub(crate) fn resolve_webroot(settings: &Settings, webroot: &Path) -> anyhow::Result<String> {
    let resolved = switch::resolve_under(&settings.webroot_base, webroot)?;
    Ok(resolved
        .to_str()
        .with_context(|| format!("webroot {} is not UTF-8", resolved.display()))?
        .to_owned())
}

impl CheckedWebroot {
    /// The webroot at `path` (resolved) of `app`, as it is on disk now.
    pub(crate) fn read(app: &App, path: String) -> std::io::Result<CheckedWebroot> {
        let on_disk = switch::inspect(Path::new(&path), &app.releases_dir)?;
        Ok(CheckedWebroot {
            app: app.name.clone(),
            path,
            release: on_disk.release().map(|r| r.to_string()),
            legacy: on_disk == Webroot::NotALink,
            url: None,
        })
    }

    /// "main at /srv/a/htdocs (now v1-…)".
    pub(crate) fn describe(&self) -> String {
        let now = match (self.legacy, &self.release) {
            (true, _) => "a legacy copy: adopt it to deploy",
            (_, Some(release)) => release.as_str(),
            (_, None) => "no release",
        };
        format!("{} at {} (now {now})", self.app, self.path)
    }

    pub(crate) fn insert(&self, conn: &mut Conn, club_id: i32) -> Result<(), AddClubError> {
        clubs::add_webroot(
            conn,
            &NewWebroot {
                club_id,
                app: self.app.as_str(),
                path: &self.path,
                current_release: self.release.as_deref(),
                created_at: db::now(),
                url: self.url.as_deref(),
            },
        )
    }
}

/// Adds a club with its webroots (at least one), after checking its slug and that each
/// webroot lies under `webroot_base`.
pub fn add_club(
    settings: &Settings,
    conn: &mut Conn,
    actor: &str,
    club: &AddClub<'_>,
) -> anyhow::Result<Vec<ClubStatus>> {
    let slug = ClubSlug::parse(club.slug)?;
    if club.webroots.is_empty() {
        return Err(InvalidInput("a club needs at least one webroot".into()).into());
    }
    let mut webroots = club
        .webroots
        .iter()
        .map(|(app, path)| check_webroot(settings, *app, path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (i, webroot) in webroots.iter().enumerate() {
        if webroots[..i].iter().any(|w| w.app == webroot.app) {
            return Err(InvalidInput(format!(
                "two webroots for the application {}: a club has one per application",
                webroot.app
            ))
            .into());
        }
    }
    for (app, url) in club.urls {
        check_url(url, settings.health.connect_to.is_some())?;
        let app = settings.app(*app).map_err(|e| {
            InvalidInput(format!(
                "{e} (write the address as <app>=<url>, e.g. {}={url})",
                settings.apps()[0].name
            ))
        })?;
        let Some(webroot) = webroots.iter_mut().find(|w| w.app == app.name) else {
            return Err(InvalidInput(format!(
                "an address for {} but no webroot for it: give the club a webroot of {} too",
                app.name, app.name
            ))
            .into());
        };
        if webroot.url.replace((*url).to_owned()).is_some() {
            return Err(
                InvalidInput(format!("two addresses for the application {}", app.name)).into(),
            );
        }
    }
    let name = crate::domain::club_name(club.name.unwrap_or(slug.as_str()))?;
    let described: Vec<String> = webroots.iter().map(CheckedWebroot::describe).collect();
    let details = format!("added {name:?} with webroot {}", described.join(", "));
    conn.immediate_transaction(|conn| {
        let added = clubs::insert(
            conn,
            &NewClub {
                slug: slug.as_str(),
                name,
                url: club.urls.first().map(|(_, url)| *url),
                created_at: db::now(),
            },
        )?;
        for webroot in &webroots {
            webroot.insert(conn, added.id)?;
        }
        let entry = audit::Entry::new(actor, "club.added", "club", slug.as_str(), &details);
        audit::append(conn, &entry)?;
        Ok(())
    })
    .map_err(|e| {
        duplicate(
            e,
            &format!("a club with slug {slug} or one of its webroots already exists"),
        )
    })?;
    club_status(settings, conn, slug.as_str())
}

/// Gives club `slug` a webroot for application `app` (`None`: the only one).
pub fn add_webroot(
    settings: &Settings,
    conn: &mut Conn,
    actor: &str,
    slug: &str,
    app: Option<&str>,
    webroot: &Path,
    url: Option<&str>,
) -> anyhow::Result<ClubStatus> {
    let slug = ClubSlug::parse(slug)?;
    let mut webroot = check_webroot(settings, app, webroot)?;
    if let Some(url) = url {
        check_url(url, settings.health.connect_to.is_some())?;
        webroot.url = Some(url.to_owned());
    }
    let Some(club) = clubs::by_slug(conn, slug.as_str())? else {
        return Err(Refusal::NotFound(format!("there is no club {slug}")).into());
    };
    let details = format!("webroot added: {}", webroot.describe());
    conn.immediate_transaction(|conn| {
        webroot.insert(conn, club.id)?;
        let entry = audit::Entry::new(actor, "club.webroot_added", "club", slug.as_str(), &details)
            .for_app(webroot.app.as_str());
        audit::append(conn, &entry)?;
        Ok(())
    })
    .map_err(|e| {
        duplicate(
            e,
            &format!(
                "club {slug} already has a webroot for {}, or {} is another club's webroot",
                webroot.app, webroot.path
            ),
        )
    })?;
    club_status(settings, conn, slug.as_str())?
        .into_iter()
        .find(|s| s.app == webroot.app.as_str())
        .context("the webroot just added is missing")
}

/// A duplicate as a refusal with `message`; anything else as it is.
fn duplicate(e: AddClubError, message: &str) -> anyhow::Error {
    match e {
        AddClubError::Duplicate => Refusal::Conflict(message.to_owned()).into(),
        AddClubError::Db(e) => e.into(),
    }
}

/// Club `slug`'s webroots as found on disk.
pub fn club_status(
    settings: &Settings,
    conn: &mut Conn,
    slug: &str,
) -> anyhow::Result<Vec<ClubStatus>> {
    statuses(settings, clubs::webroots_of(conn, slug)?)
}

/// Sets (or with `None` clears) the address of club `slug`'s site of `app` (`None`: the only
/// application), through which its health is checked.
pub fn set_url(
    settings: &Settings,
    conn: &mut Conn,
    actor: &str,
    slug: &str,
    app: Option<&str>,
    url: Option<&str>,
) -> anyhow::Result<()> {
    let slug = ClubSlug::parse(slug)?;
    let app = settings.app(app)?;
    if let Some(url) = url {
        check_url(url, settings.health.connect_to.is_some())?;
    }
    let Some(webroot) = clubs::webroot(conn, slug.as_str(), app.name.as_str())? else {
        return Err(
            Refusal::NotFound(format!("club {slug} has no webroot of {}", app.name)).into(),
        );
    };
    let details = match url {
        Some(url) => format!("address set to {url}"),
        None => "address removed: its health is no longer checked".to_owned(),
    };
    conn.immediate_transaction(|conn| {
        clubs::set_url(conn, webroot.webroot_id, url)?;
        let entry = audit::Entry::new(actor, "club.url_changed", "club", slug.as_str(), &details)
            .for_app(app.name.as_str());
        audit::append(conn, &entry)
    })?;
    Ok(())
}

/// `hosts` (names, blanks ignored) checked against the `[[hosts]]`: each once, sorted; a
/// name that is no configured host is refused naming the hosts there are.
pub fn checked_hosts(settings: &Settings, hosts: &[String]) -> anyhow::Result<Vec<String>> {
    let known: Vec<&str> = settings.hosts().iter().map(|h| h.name.as_str()).collect();
    if known.is_empty() {
        return Err(InvalidInput(
            "no [[hosts]] are configured: this machine serves every club (configure the web \
             hosts first)"
                .into(),
        )
        .into());
    }
    let mut wanted: Vec<String> = Vec::new();
    for host in hosts.iter().map(|h| h.trim()).filter(|h| !h.is_empty()) {
        if !known.contains(&host) {
            return Err(InvalidInput(format!(
                "there is no host {host:?}: the hosts are {} ([[hosts]] in the configuration)",
                known.join(", ")
            ))
            .into());
        }
        if !wanted.iter().any(|w| w == host) {
            wanted.push(host.to_owned());
        }
    }
    wanted.sort();
    Ok(wanted)
}

/// Names the `[[hosts]]` that serve club `slug` (audited); none: every host. Each must be a
/// configured host. `false` when the club was served so already.
pub fn set_hosts(
    settings: &Settings,
    conn: &mut Conn,
    actor: &str,
    slug: &str,
    hosts: &[String],
) -> anyhow::Result<bool> {
    let slug = ClubSlug::parse(slug)?;
    let wanted = checked_hosts(settings, hosts)?;
    conn.immediate_transaction(|conn| {
        let Some(club) = clubs::by_slug(conn, slug.as_str())? else {
            return Err(Refusal::NotFound(format!("There is no club {slug}.")).into());
        };
        if crate::db::hosts::of(conn, club.id)? == wanted {
            return Ok(false);
        }
        crate::db::hosts::set(conn, club.id, &wanted)?;
        let details = if wanted.is_empty() {
            "served by every host".to_owned()
        } else {
            format!("served by {}", wanted.join(", "))
        };
        let entry = audit::Entry::new(actor, "club.hosts_set", "club", slug.as_str(), &details);
        audit::append(conn, &entry)?;
        Ok(true)
    })
}

/// Gives club `slug` the display name `name` (audited); `false` when it had that name.
pub fn rename_club(conn: &mut Conn, actor: &str, slug: &str, name: &str) -> anyhow::Result<bool> {
    let slug = ClubSlug::parse(slug)?;
    let name = crate::domain::club_name(name)?;
    conn.immediate_transaction(|conn| {
        let Some(club) = clubs::by_slug(conn, slug.as_str())? else {
            return Err(Refusal::NotFound(format!("There is no club {slug}.")).into());
        };
        if club.name == name {
            return Ok(false);
        }
        clubs::rename(conn, club.id, name)?;
        let details = format!("display name changed from \"{}\" to \"{name}\"", club.name);
        let entry = audit::Entry::new(actor, "club.updated", "club", slug.as_str(), &details);
        audit::append(conn, &entry)?;
        Ok(true)
    })
}

/// Puts the clubs `slugs` in group `group` (`join`), or takes them out, in one transaction
/// with an audit row per club that changed. Every slug must name a club; returns the clubs
/// that changed (a club already in, or already out, is left alone).
pub fn change_group(
    conn: &mut Conn,
    actor: &str,
    group: &str,
    slugs: &[String],
    join: bool,
) -> anyhow::Result<Vec<String>> {
    let group = GroupName::parse(group.trim())?;
    let slugs: Vec<ClubSlug> = slugs
        .iter()
        .map(|s| ClubSlug::parse(s.trim()))
        .collect::<Result<_, _>>()?;
    if slugs.is_empty() {
        return Err(InvalidInput("Name at least one club.".into()).into());
    }
    conn.immediate_transaction(|conn| -> anyhow::Result<Vec<String>> {
        let mut changed = Vec::new();
        for slug in &slugs {
            let Some(club) = clubs::by_slug(conn, slug.as_str())? else {
                return Err(Refusal::NotFound(format!("There is no club {slug}.")).into());
            };
            let done = if join {
                groups::join(conn, group.as_str(), club.id)?
            } else {
                groups::leave(conn, group.as_str(), club.id)?
            };
            if done {
                let (action, details) = if join {
                    ("group.joined", format!("put in group {group}"))
                } else {
                    ("group.left", format!("taken out of group {group}"))
                };
                let entry = audit::Entry::new(actor, action, "club", slug.as_str(), &details);
                audit::append(conn, &entry)?;
                changed.push(slug.to_string());
            }
        }
        Ok(changed)
    })
}

/// Forgets a club (its webroot is left as it is).
pub fn remove_club(conn: &mut Conn, actor: &str, slug: &str) -> anyhow::Result<()> {
    let slug = ClubSlug::parse(slug)?;
    let removed = conn.immediate_transaction(|conn| {
        if !clubs::remove(conn, slug.as_str())? {
            return Ok(false);
        }
        let details = "forgotten; its webroot was left as it is";
        let entry = audit::Entry::new(actor, "club.removed", "club", slug.as_str(), details);
        audit::append(conn, &entry)?;
        Ok::<_, diesel::result::Error>(true)
    })?;
    if !removed {
        return Err(Refusal::NotFound(format!("there is no club {slug}")).into());
    }
    Ok(())
}

/// Every club's webroot (of `app`, when given) with the release it resolves to on disk, and
/// any drift from what the database recorded: one row per club and application.
pub fn status(
    settings: &Settings,
    conn: &mut Conn,
    app: Option<&str>,
) -> anyhow::Result<Vec<ClubStatus>> {
    statuses(settings, clubs::webroots(conn, app)?)
}

/// Webroots as found on disk, each release's manifest looked up once.
fn statuses(settings: &Settings, webroots: Vec<ClubApp>) -> anyhow::Result<Vec<ClubStatus>> {
    let mut published = Published::default();
    webroots
        .into_iter()
        .map(|club| status_of(settings, club, &mut published))
        .collect()
}

/// Which release directories are complete, looked up once per release directory.
#[derive(Default)]
struct Published(HashMap<std::path::PathBuf, bool>);

impl Published {
    fn contains(&mut self, releases_dir: &Path, name: &ReleaseName) -> bool {
        let dir = releases_dir.join(name.as_str());
        *self.0.entry(dir).or_insert_with(|| {
            releases_dir
                .join(name.as_str())
                .join(release::MANIFEST)
                .is_file()
        })
    }
}

/// A club's webroot as found on disk: one `readlink` per club, checked for a manifest once
/// per release (a full `realpath` only for links clubdeploy did not write).
fn status_of(
    settings: &Settings,
    club: ClubApp,
    published: &mut Published,
) -> anyhow::Result<ClubStatus> {
    // A webroot of an application no longer configured is shown, not read.
    let (on_disk, problem) = match settings.app(Some(&club.app)) {
        Err(_) => (
            None,
            Some(format!(
                "the application {} is not configured any more",
                club.app
            )),
        ),
        Ok(app) => {
            let releases_dir = &app.releases_dir;
            let on_disk = match switch::linked_release(club.webroot.as_ref(), releases_dir)
                .with_context(|| format!("cannot read the webroot of club {}", club.slug))?
            {
                Webroot::Release(name) if !published.contains(releases_dir, &name) => {
                    Webroot::OtherLink(releases_dir.join(name.as_str()))
                }
                other => other,
            };
            let problem = match &on_disk {
                Webroot::Release(_) => None,
                Webroot::Missing => Some("no webroot link yet".to_owned()),
                Webroot::OtherLink(target) => {
                    Some(format!("links to {}, not a release", target.display()))
                }
                Webroot::NotALink => {
                    Some("a legacy copy (a real directory): adopt it to deploy".to_owned())
                }
            };
            (Some(on_disk), problem)
        }
    };
    let linked = on_disk.as_ref().and_then(Webroot::release);
    let release = linked.map(|r| r.to_string());
    Ok(ClubStatus {
        legacy: on_disk == Some(Webroot::NotALink),
        no_link_yet: on_disk == Some(Webroot::Missing),
        drift: on_disk.is_some() && release != club.current_release,
        tag: linked.map(|r| r.tag().to_string()),
        release,
        problem,
        recorded_release: club.current_release,
        slug: club.slug,
        name: club.name,
        app: club.app,
        webroot: club.webroot,
        url: club.url,
    })
}

/// The tags `app`'s mirror knows (it never fetches: a fetch is a job) and its built releases,
/// in release order (oldest version first, see [`crate::domain::release_order`]), each with
/// the clubs whose webroot of `app` resolves to it.
pub fn releases(
    settings: &Settings,
    app: &App,
    conn: &mut Conn,
) -> anyhow::Result<Vec<ReleaseRow>> {
    let mirror = git::open_mirror(app)?;
    let mut rows: HashMap<String, (ReleaseRow, DateTime<Utc>)> = HashMap::new();
    for info in mirror.tags()? {
        let name = ReleaseName::new(&info.tag, &info.commit)?.to_string();
        let mut row = row(name.clone(), &info.tag, info.commit);
        row.message = info.message;
        row.tagger = info.tagger;
        row.tagged_at = Some(info.tagged_at.to_rfc3339());
        rows.insert(name, (row, info.tagged_at));
    }
    for built in release::list(&app.releases_dir)? {
        let (row, _) = rows.entry(built.name.to_string()).or_insert_with(|| {
            let row = row(
                built.name.to_string(),
                &built.name.tag(),
                built.manifest.commit.clone(),
            );
            (row, built.manifest.built_at)
        });
        row.built = true;
        row.built_at = Some(built.manifest.built_at.to_rfc3339());
        row.files = Some(built.manifest.files);
        row.bytes = Some(built.manifest.bytes);
    }
    for club in status(settings, conn, Some(app.name.as_str()))? {
        if let Some((row, _)) = club.release.and_then(|r| rows.get_mut(&r)) {
            row.clubs.push(club.slug);
        }
    }
    let mut rows: Vec<(ReleaseRow, DateTime<Utc>)> = rows.into_values().collect();
    rows.sort_by(|(a, a_at), (b, b_at)| {
        release_order((&a.tag, *a_at), (&b.tag, *b_at)).then_with(|| a.name.cmp(&b.name))
    });
    Ok(rows.into_iter().map(|(row, _)| row).collect())
}

fn row(name: String, tag: &ReleaseTag, commit: String) -> ReleaseRow {
    ReleaseRow {
        name,
        tag: tag.clone(),
        commit,
        message: None,
        tagger: None,
        tagged_at: None,
        built: false,
        built_at: None,
        files: None,
        bytes: None,
        clubs: Vec::new(),
    }
}

/// How deep under `webroot_base` prune looks for links (`<base>/<club>/htdocs` is 2).
const LINK_SCAN_DEPTH: usize = 3;

/// What prune must know of `app`'s releases, read now: every release some webroot on disk
/// resolves to (the clubs' webroots of any application, since a webroot pointed at another
/// application's release by hand still holds it, and any other link under `webroot_base`: a
/// club forgotten by the database still serves from its release), each club's rollback
/// target from the release its link runs, when each release last ran and which were marked
/// bad. See [`release::prunable`].
pub fn prune_facts(
    settings: &Settings,
    app: &App,
    conn: &mut Conn,
) -> anyhow::Result<release::PruneFacts> {
    use crate::db::switches;
    let releases_dir = &app.releases_dir;
    let mut in_use =
        switch::releases_linked_under(&settings.webroot_base, LINK_SCAN_DEPTH, releases_dir)?;
    let mut running = HashMap::new();
    for club in clubs::webroots(conn, None)? {
        // One readlink for a link naming a release, as clubdeploy writes them; any other
        // link is resolved in full.
        if let Webroot::Release(name) = switch::linked_release(club.webroot.as_ref(), releases_dir)?
        {
            if club.app == app.name.as_str() {
                running.insert((club.club_id, club.app), name.to_string());
            }
            in_use.insert(name);
        }
    }
    let names = |list: Vec<String>| -> std::collections::HashSet<ReleaseName> {
        list.iter()
            .filter_map(|r| ReleaseName::parse(r).ok())
            .collect()
    };
    let targets = switches::rollback_targets(conn, Some(app.name.as_str()), &running)?;
    Ok(release::PruneFacts {
        in_use,
        rollback_targets: names(targets.into_values().collect()),
        last_ran: switches::last_ran(conn, app.name.as_str())?
            .into_iter()
            .filter_map(|(r, at)| Some((ReleaseName::parse(&r).ok()?, at.and_utc())))
            .collect(),
        bad: names(
            switches::bad_anywhere(conn, app.name.as_str())?
                .into_iter()
                .collect(),
        ),
    })
}

//! What runs where: adding and forgetting clubs, each club's release as read from disk, and
//! the releases with the clubs that run them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use std::path::Path;

use anyhow::Context;
use diesel::SqliteConnection;
use serde::Serialize;

use crate::config::Settings;
use crate::db::clubs::{self, AddClubError, NewClub};
use crate::db::{self, audit};
use crate::domain::{ClubSlug, InvalidInput, Refusal, ReleaseName, ReleaseTag, release_order};
use crate::pipeline::git;
use crate::pipeline::release;
use crate::pipeline::switch::{self, Webroot};

/// A club with what its webroot resolves to on disk now.
#[derive(Debug, Clone, Serialize)]
pub struct ClubStatus {
    pub slug: String,
    pub name: String,
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
    pub webroot: &'a Path,
    pub name: Option<&'a str>,
    pub url: Option<&'a str>,
}

/// Adds a club after checking its slug and that its webroot lies under `webroot_base`. The
/// webroot may be a link, nothing yet, or a legacy copy (a real directory, left untouched
/// until it is adopted).
pub fn add_club(
    settings: &Settings,
    conn: &mut SqliteConnection,
    actor: &str,
    club: &AddClub<'_>,
) -> anyhow::Result<ClubStatus> {
    let slug = ClubSlug::parse(club.slug)?;
    let webroot = switch::resolve_under(&settings.webroot_base, club.webroot)?;
    let webroot_text = webroot
        .to_str()
        .with_context(|| format!("webroot {} is not UTF-8", webroot.display()))?;
    let on_disk = switch::inspect(&webroot, &settings.releases_dir())?;
    if let Some(url) = club.url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(
            InvalidInput(format!("--url {url:?} must start with http:// or https://")).into(),
        );
    }
    let name = club.name.unwrap_or(slug.as_str()).trim();
    if name.is_empty() {
        return Err(InvalidInput("the club's display name is empty".into()).into());
    }
    let release = on_disk.release().map(|r| r.to_string());
    let now = match (&on_disk, &release) {
        (Webroot::NotALink, _) => "a legacy copy: adopt it to deploy",
        (_, Some(release)) => release.as_str(),
        (_, None) => "no release",
    };
    let details = format!("added {name:?} with webroot {webroot_text} (now {now})");
    let added = conn
        .immediate_transaction(|conn| {
            let added = clubs::insert(
                conn,
                &NewClub {
                    slug: slug.as_str(),
                    name,
                    webroot: webroot_text,
                    url: club.url,
                    current_release: release.as_deref(),
                    created_at: db::now(),
                },
            )?;
            let entry = audit::Entry::new(actor, "club.added", "club", slug.as_str(), &details);
            audit::append(conn, &entry)?;
            Ok(added)
        })
        .map_err(|e| match e {
            AddClubError::Duplicate => anyhow::Error::from(Refusal::Conflict(format!(
                "a club with slug {slug} or webroot {} already exists",
                webroot.display()
            ))),
            AddClubError::Db(e) => anyhow::Error::from(e),
        })?;
    status_of(settings, added, &mut Published::default())
}

/// Forgets a club (its webroot is left as it is).
pub fn remove_club(conn: &mut SqliteConnection, actor: &str, slug: &str) -> anyhow::Result<()> {
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

/// Every club with the release its webroot resolves to on disk, and any drift from what the
/// database recorded.
pub fn status(settings: &Settings, conn: &mut SqliteConnection) -> anyhow::Result<Vec<ClubStatus>> {
    let mut published = Published::default();
    clubs::all(conn)?
        .into_iter()
        .map(|club| status_of(settings, club, &mut published))
        .collect()
}

/// Which release directories are complete, looked up once per release name.
#[derive(Default)]
struct Published(HashMap<ReleaseName, bool>);

impl Published {
    fn contains(&mut self, releases_dir: &Path, name: &ReleaseName) -> bool {
        *self.0.entry(name.clone()).or_insert_with(|| {
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
    club: clubs::Club,
    published: &mut Published,
) -> anyhow::Result<ClubStatus> {
    let releases_dir = settings.releases_dir();
    let on_disk = match switch::linked_release(club.webroot.as_ref(), &releases_dir)
        .with_context(|| format!("cannot read the webroot of club {}", club.slug))?
    {
        Webroot::Release(name) if !published.contains(&releases_dir, &name) => {
            Webroot::OtherLink(releases_dir.join(name.as_str()))
        }
        other => other,
    };
    let problem = match &on_disk {
        Webroot::Release(_) => None,
        Webroot::Missing => Some("no webroot link yet".to_owned()),
        Webroot::OtherLink(target) => Some(format!("links to {}, not a release", target.display())),
        Webroot::NotALink => {
            Some("a legacy copy (a real directory): adopt it to deploy".to_owned())
        }
    };
    let release = on_disk.release().map(|r| r.to_string());
    Ok(ClubStatus {
        legacy: on_disk == Webroot::NotALink,
        drift: release != club.current_release,
        tag: on_disk.release().map(|r| r.tag().to_string()),
        release,
        problem,
        recorded_release: club.current_release,
        slug: club.slug,
        name: club.name,
        webroot: club.webroot,
        url: club.url,
    })
}

/// The tags the mirror knows (it never fetches: a fetch is a job) and the built releases, in
/// release order (oldest version first, see [`crate::domain::release_order`]), each with the
/// clubs whose webroot resolves to it.
pub fn releases(
    settings: &Settings,
    conn: &mut SqliteConnection,
) -> anyhow::Result<Vec<ReleaseRow>> {
    let mirror = git::open_mirror(settings)?;
    let mut rows: HashMap<String, (ReleaseRow, DateTime<Utc>)> = HashMap::new();
    for info in mirror.tags()? {
        let name = ReleaseName::new(&info.tag, &info.commit)?.to_string();
        let mut row = row(name.clone(), &info.tag, info.commit);
        row.message = info.message;
        row.tagger = info.tagger;
        row.tagged_at = Some(info.tagged_at.to_rfc3339());
        rows.insert(name, (row, info.tagged_at));
    }
    for built in release::list(&settings.releases_dir())? {
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
    for club in status(settings, conn)? {
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

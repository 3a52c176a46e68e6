//! Adopting a club's legacy copy from the panel (admins): pick a tag, see what differs
//! between the copy and that tag before anything changes, confirm; put a kept copy back; delete
//! one. Each queues a job; nothing here touches the webroots.

use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::clubs::size_in_words;
use super::{AppState, CsrfForm, Nav, Staff, form};
use crate::domain::{ClubSlug, JobSpec, ReleaseTag, Role, newest_first};
use crate::error::AppError;
use crate::pipeline::git;
use crate::pipeline::legacy::{self, TreeDiff};

/// How many paths of each kind the confirmation lists.
const SHOWN: usize = 100;

#[derive(Template, WebTemplate)]
#[template(path = "adopt.html")]
pub struct AdoptPage {
    nav: Nav,
    slug: String,
    name: String,
    webroot: String,
    tags: Vec<String>,
    /// The chosen tag and what differs from it, once one is chosen.
    chosen: Option<(String, Comparison)>,
    reload: bool,
}

/// Lists of paths, each cut to [`SHOWN`], with their full counts.
pub struct Comparison {
    pub same: bool,
    pub only_in_copy: (usize, Vec<String>),
    pub only_in_release: (usize, Vec<String>),
    pub differing: (usize, Vec<String>),
}

impl From<TreeDiff> for Comparison {
    fn from(diff: TreeDiff) -> Self {
        let cut = |paths: Vec<String>| {
            let n = paths.len();
            (n, paths.into_iter().take(SHOWN).collect())
        };
        Comparison {
            same: diff.is_empty(),
            only_in_copy: cut(diff.only_in_copy),
            only_in_release: cut(diff.only_in_release),
            differing: cut(diff.differing),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TagQuery {
    tag: String,
}

/// `GET /clubs/{slug}/adopt[?tag=…]`: pick a tag; with one, what adopting it would change.
pub async fn adopt_page(
    staff: Staff,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    query: web::Query<TagQuery>,
) -> Result<AdoptPage, AppError> {
    staff.require(Role::Admin, "adopt legacy copies")?;
    let slug = ClubSlug::parse(&slug)?;
    let wanted = slug.clone();
    let club = state
        .db(move |_, conn| super::clubs::club_or_404(conn, &wanted))
        .await?;
    let tag = Some(query.tag.trim())
        .filter(|t| !t.is_empty())
        .map(ReleaseTag::parse)
        .transpose()?;
    let webroot = club.webroot.clone();
    // Reading git and hashing the copy's files holds no database connection.
    let (tags, chosen) = state
        .blocking(move |settings| {
            let mirror = git::open_mirror(settings)?;
            let tags = newest_first(mirror.tags()?, |t| &t.tag)
                .into_iter()
                .map(|t| t.tag.to_string())
                .collect();
            let chosen = match tag {
                None => None,
                Some(tag) => {
                    let commit = mirror.resolve(&tag)?.ok_or_else(|| {
                        AppError::BadRequest(format!(
                            "Tag {tag} is not in the repository (refresh the releases page?)."
                        ))
                    })?;
                    let diff = mirror.compare_with_copy(&commit, webroot.as_ref())?;
                    Some((tag.to_string(), Comparison::from(diff)))
                }
            };
            Ok((tags, chosen))
        })
        .await?;
    Ok(AdoptPage {
        nav: staff.nav("clubs"),
        slug: slug.to_string(),
        name: club.name,
        webroot: club.webroot,
        tags,
        chosen,
        reload: state.settings.reload.policy.reloads_after(false),
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AdoptForm {
    csrf: String,
    tag: String,
}

/// `POST /clubs/{slug}/adopt`: queues the adopt job.
pub async fn adopt(
    staff: Staff,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let posted: AdoptForm = form(&body)?;
    staff.check_csrf(&posted.csrf)?;
    staff.require(Role::Admin, "adopt legacy copies")?;
    let spec = JobSpec::Adopt {
        club: ClubSlug::parse(&slug)?,
        tag: ReleaseTag::parse(posted.tag.trim())?,
    };
    super::deploy::queue(&staff, &state, spec).await
}

#[derive(Template, WebTemplate)]
#[template(path = "legacy_confirm.html")]
pub struct ConfirmPage {
    nav: Nav,
    title: String,
    message: String,
    action: String,
    button: String,
    danger: bool,
}

/// The club's kept copies, newest last, refusing when there is none.
async fn kept_copies(
    state: &web::Data<AppState>,
    slug: &ClubSlug,
) -> Result<Vec<legacy::KeptCopy>, AppError> {
    let wanted = slug.clone();
    let kept = state
        .blocking(move |settings| {
            Ok(legacy::kept_copies(
                &settings.legacy_dir(),
                Some(wanted.as_str()),
            )?)
        })
        .await?;
    if kept.is_empty() {
        return Err(AppError::NotFound(format!(
            "No legacy copy of club {slug} is kept."
        )));
    }
    Ok(kept)
}

/// `GET /clubs/{slug}/undo-adopt`: names the copy that would come back, and asks.
pub async fn undo_page(
    staff: Staff,
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<ConfirmPage, AppError> {
    staff.require(Role::Admin, "put legacy copies back")?;
    let slug = ClubSlug::parse(&slug)?;
    let kept = kept_copies(&state, &slug).await?;
    let newest = kept.last().expect("not empty");
    Ok(ConfirmPage {
        nav: staff.nav("clubs"),
        title: format!("Put club {slug}'s legacy copy back?"),
        message: format!(
            "The legacy copy kept at {} ({}) becomes club {slug}'s webroot again, in one step; \
             the release it runs now stays built.",
            newest.backup.path.display(),
            size_in_words(newest.bytes)
        ),
        action: format!("/clubs/{slug}/undo-adopt"),
        button: "Yes, put it back".into(),
        danger: false,
    })
}

/// `POST /clubs/{slug}/undo-adopt`: queues the undo.
pub async fn undo(
    staff: Staff,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let posted: CsrfForm = form(&body)?;
    staff.check_csrf(&posted.csrf)?;
    staff.require(Role::Admin, "put legacy copies back")?;
    let club = ClubSlug::parse(&slug)?;
    super::deploy::queue(&staff, &state, JobSpec::UndoAdopt { club }).await
}

/// `GET /clubs/{slug}/legacy/{copy}/purge`: asks before deleting a kept copy for good.
pub async fn purge_page(
    staff: Staff,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<ConfirmPage, AppError> {
    staff.require(Role::Admin, "delete legacy copies")?;
    let (slug, copy) = path.into_inner();
    let JobSpec::PurgeLegacy { club, copy } = JobSpec::purge_legacy(&slug, &copy)? else {
        unreachable!("purge_legacy makes a purge");
    };
    let kept = kept_copies(&state, &club).await?;
    let found = kept
        .iter()
        .find(|k| {
            k.backup
                .path
                .file_name()
                .is_some_and(|n| n == copy.as_str())
        })
        .ok_or_else(|| AppError::NotFound(format!("Club {club} has no kept copy {copy}.")))?;
    Ok(ConfirmPage {
        nav: staff.nav("clubs"),
        title: format!("Delete club {club}'s legacy copy {copy}?"),
        message: format!(
            "{} ({}) will be deleted for good: it can no longer be put back.",
            found.backup.path.display(),
            size_in_words(found.bytes)
        ),
        action: format!("/clubs/{club}/legacy/{copy}/purge"),
        button: format!("Yes, delete {copy}"),
        danger: true,
    })
}

/// `POST /clubs/{slug}/legacy/{copy}/purge`: queues the deletion.
pub async fn purge(
    staff: Staff,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let posted: CsrfForm = form(&body)?;
    staff.check_csrf(&posted.csrf)?;
    staff.require(Role::Admin, "delete legacy copies")?;
    let (slug, copy) = path.into_inner();
    let spec = JobSpec::purge_legacy(&slug, &copy)?;
    super::deploy::queue(&staff, &state, spec).await
}

//! Adopting a club's legacy copy from the panel (admins): pick a tag, see what differs
//! between the copy and that tag before anything changes, confirm; put a kept copy back; delete
//! one. Each queues a job; nothing here touches the webroots.

use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::ui::ConfirmPage;
use super::ui::size_in_words;
use super::{Admin, AppQuery, AppState, CsrfForm, Nav, NoFields};
use crate::domain::{ClubSlug, JobSpec, ReleaseTag, newest_first};
use crate::pipeline::git;
use crate::pipeline::legacy;
use crate::pipeline::tree_diff::TreeDiff;
use crate::web::error::AppError;

/// How many paths of each kind the confirmation lists.
const SHOWN: usize = 100;

#[derive(Template, WebTemplate)]
#[template(path = "adopt.html")]
pub struct AdoptPage {
    nav: Nav,
    app: String,
    several: bool,
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
    app: String,
    tag: String,
}

/// `GET /clubs/{slug}/adopt?app=…[&tag=…]`: pick a tag; with one, what adopting it would
/// change.
pub async fn adopt_page(
    staff: Admin,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    query: web::Query<TagQuery>,
) -> Result<AdoptPage, AppError> {
    let slug = ClubSlug::parse(&slug)?;
    let app = AppQuery {
        app: query.app.clone(),
    }
    .resolve(&state.settings)?
    .name
    .to_string();
    let wanted = slug.clone();
    let name = app.clone();
    let club = state
        .db(move |_, conn| super::ui::webroot_or_404(conn, &wanted, &name))
        .await?;
    let tag = Some(query.tag.trim())
        .filter(|t| !t.is_empty())
        .map(ReleaseTag::parse)
        .transpose()?;
    let webroot = club.webroot.clone();
    let name = app.clone();
    // Reading git and hashing the copy's files holds no database connection.
    let (tags, chosen) = state
        .blocking(move |settings| {
            let mirror = git::open_mirror(settings.app(Some(&name))?)?;
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
        app,
        several: state.settings.several_apps(),
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
pub struct AdoptForm {
    once: String,
    tag: String,
}

/// `POST /clubs/{slug}/adopt?app=…`: queues the adopt job.
pub async fn adopt(
    CsrfForm {
        staff,
        form: posted,
        ..
    }: CsrfForm<AdoptForm, Admin>,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    app: web::Query<AppQuery>,
) -> Result<HttpResponse, AppError> {
    let spec = JobSpec::Adopt {
        app: app.resolve(&state.settings)?.name.clone(),
        club: ClubSlug::parse(&slug)?,
        tag: ReleaseTag::parse(posted.tag.trim())?,
    };
    super::queue::queue(&staff, &state, spec, &posted.once).await
}

/// The club's kept copies of `app`'s webroot, newest last, refusing when there is none.
async fn kept_copies(
    state: &web::Data<AppState>,
    app: &crate::config::App,
    slug: &ClubSlug,
) -> Result<Vec<legacy::KeptCopy>, AppError> {
    let wanted = slug.clone();
    let dir = app.legacy_dir.clone();
    let kept = state
        .blocking(move |_| Ok(legacy::kept_copies(&dir, Some(wanted.as_str()))?))
        .await?;
    if kept.is_empty() {
        return Err(AppError::NotFound(format!(
            "No legacy copy of club {slug} is kept."
        )));
    }
    Ok(kept)
}

/// `GET /clubs/{slug}/undo-adopt?app=…`: names the copy that would come back, and asks.
pub async fn undo_page(
    staff: Admin,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    app: web::Query<AppQuery>,
) -> Result<ConfirmPage, AppError> {
    let slug = ClubSlug::parse(&slug)?;
    let app = app.resolve(&state.settings)?;
    let kept = kept_copies(&state, app, &slug).await?;
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
        action: format!("/clubs/{slug}/undo-adopt?app={}", app.name),
        button: "Yes, put it back".into(),
        danger: false,
        back: "/clubs".into(),
    })
}

/// `POST /clubs/{slug}/undo-adopt?app=…`: queues the undo.
pub async fn undo(
    CsrfForm { staff, once, .. }: CsrfForm<NoFields, Admin>,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    app: web::Query<AppQuery>,
) -> Result<HttpResponse, AppError> {
    let club = ClubSlug::parse(&slug)?;
    let app = app.resolve(&state.settings)?.name.clone();
    super::queue::queue(&staff, &state, JobSpec::UndoAdopt { app, club }, &once).await
}

/// `GET /clubs/{slug}/legacy/{copy}/purge?app=…`: asks before deleting a kept copy for good.
pub async fn purge_page(
    staff: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    app: web::Query<AppQuery>,
) -> Result<ConfirmPage, AppError> {
    let (slug, copy) = path.into_inner();
    let app = app.resolve(&state.settings)?;
    let JobSpec::PurgeLegacy { club, copy, .. } =
        JobSpec::purge_legacy(app.name.clone(), &slug, &copy)?
    else {
        unreachable!("purge_legacy makes a purge");
    };
    let kept = kept_copies(&state, app, &club).await?;
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
        action: format!("/clubs/{club}/legacy/{copy}/purge?app={}", app.name),
        button: format!("Yes, delete {copy}"),
        danger: true,
        back: "/clubs".into(),
    })
}

/// `POST /clubs/{slug}/legacy/{copy}/purge?app=…`: queues the deletion.
pub async fn purge(
    CsrfForm { staff, once, .. }: CsrfForm<NoFields, Admin>,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    app: web::Query<AppQuery>,
) -> Result<HttpResponse, AppError> {
    let (slug, copy) = path.into_inner();
    let app = app.resolve(&state.settings)?.name.clone();
    let spec = JobSpec::purge_legacy(app, &slug, &copy)?;
    super::queue::queue(&staff, &state, spec, &once).await
}

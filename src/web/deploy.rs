//! Releases and deploying: the releases page (tags, built releases, which clubs run each),
//! the deploy form, the confirmation that says exactly what will change, and queuing.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::clubs::see_other;
use super::{AppState, Nav, Staff, count, form};
use crate::domain::{ClubSlug, JobSpec, ReleaseName, ReleaseTag, Role, Targets};
use crate::error::AppError;
use crate::inventory::{self, ClubStatus, ReleaseRow};
use crate::jobs::enqueue::enqueue;
use crate::pipeline::git::Mirror;

#[derive(Template, WebTemplate)]
#[template(path = "releases.html")]
pub struct ReleasesPage {
    nav: Nav,
    rows: Vec<ReleaseRow>,
}

/// `GET /releases`: what the mirror knows, without fetching (the Refresh button fetches).
pub async fn releases_page(
    staff: Staff,
    state: web::Data<AppState>,
) -> Result<ReleasesPage, AppError> {
    let mut rows = state
        .db(|settings, conn| {
            let rows = inventory::releases(settings, conn, false)?;
            // A new installation: fetch once so the page is not empty.
            if rows.is_empty() {
                return inventory::releases(settings, conn, true);
            }
            Ok(rows)
        })
        .await?;
    rows.reverse();
    Ok(ReleasesPage {
        nav: staff.nav("releases"),
        rows,
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CsrfForm {
    csrf: String,
}

/// `POST /releases/refresh`: fetches the repository's tags.
pub async fn refresh(
    staff: Staff,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let posted: CsrfForm = form(&body)?;
    staff.check_csrf(&posted.csrf)?;
    staff.require(Role::Deployer, "refresh the tags")?;
    state
        .db(|settings, _| {
            Mirror::open(&settings.mirror_dir(), &settings.repo_url)?
                .fetch()
                .map_err(|e| AppError::BadRequest(format!("{e:#}")).into())
        })
        .await?;
    Ok(see_other("/releases"))
}

/// A club offered in the deploy form.
pub struct Choice {
    pub slug: String,
    pub name: String,
    pub release: String,
    pub checked: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "deploy.html")]
pub struct DeployPage {
    nav: Nav,
    tags: Vec<String>,
    tag: String,
    clubs: Vec<Choice>,
    may_all: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct DeployQuery {
    tag: String,
    club: String,
}

/// `GET /deploy`: pick a tag and one club, several, or all.
pub async fn form_page(
    staff: Staff,
    state: web::Data<AppState>,
    query: web::Query<DeployQuery>,
) -> Result<DeployPage, AppError> {
    staff.require(Role::Deployer, "deploy")?;
    let (tags, clubs) = state
        .db(|settings, conn| {
            let mirror = Mirror::open(&settings.mirror_dir(), &settings.repo_url)?;
            if mirror.tags()?.is_empty() {
                // A new installation: fetch once so there is something to choose.
                mirror.fetch()?;
            }
            let tags: Vec<String> = mirror
                .tags()?
                .into_iter()
                .rev()
                .map(|(t, _)| t.to_string())
                .collect();
            Ok((tags, inventory::status(settings, conn)?))
        })
        .await?;
    let clubs = clubs
        .into_iter()
        .filter(|c| staff.may_change(&c.slug))
        .map(|c| Choice {
            checked: c.slug == query.club,
            slug: c.slug,
            name: c.name,
            release: c.release.unwrap_or_else(|| "no release".into()),
        })
        .collect();
    Ok(DeployPage {
        nav: staff.nav("deploy"),
        tags,
        tag: query.tag.clone(),
        clubs,
        may_all: staff.may_change_all(),
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DeployForm {
    csrf: String,
    tag: String,
    /// `all`, or `some` with the clubs in `clubs`.
    target: String,
    clubs: Vec<String>,
}

impl DeployForm {
    /// The job this form asks for, if this user may ask for it.
    fn spec(&self, staff: &Staff) -> Result<JobSpec, AppError> {
        let tag = ReleaseTag::parse(self.tag.trim())?;
        let targets = if self.target == "all" {
            if !staff.may_change_all() {
                return Err(AppError::not_allowed("deploy to every club"));
            }
            Targets::All
        } else {
            let slugs: Vec<ClubSlug> = self
                .clubs
                .iter()
                .map(|s| ClubSlug::parse(s))
                .collect::<Result<_, _>>()?;
            if slugs.is_empty() {
                return Err(AppError::BadRequest(
                    "Choose at least one club, or all clubs.".into(),
                ));
            }
            if let Some(denied) = slugs.iter().find(|s| !staff.may_change(s.as_str())) {
                return Err(AppError::not_allowed(&format!("deploy to club {denied}")));
            }
            Targets::Clubs(slugs)
        };
        Ok(JobSpec::Deploy { tag, targets })
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "deploy_confirm.html")]
pub struct ConfirmPage {
    nav: Nav,
    tag: String,
    target: String,
    clubs: Vec<String>,
    moves: Vec<String>,
    unchanged: Option<String>,
    summary: String,
    reload: String,
    prune: Option<String>,
}

/// `POST /deploy/confirm`: says exactly what will change, and asks.
pub async fn confirm(
    staff: Staff,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<ConfirmPage, AppError> {
    let posted: DeployForm = form(&body)?;
    staff.check_csrf(&posted.csrf)?;
    staff.require(Role::Deployer, "deploy")?;
    let spec = posted.spec(&staff)?;
    let JobSpec::Deploy { tag, targets } = &spec else {
        unreachable!("the form asks for a deploy")
    };
    let (tag, targets) = (tag.clone(), targets.clone());
    let all = targets == Targets::All;
    let (release, clubs) = state
        .db(move |settings, conn| {
            let mirror = Mirror::open(&settings.mirror_dir(), &settings.repo_url)?;
            let commit = mirror.resolve(&tag)?.ok_or_else(|| {
                AppError::BadRequest(format!(
                    "Tag {tag} is not in the repository (refresh the releases page?)."
                ))
            })?;
            let release = ReleaseName::new(&tag, &commit)?;
            let clubs: Vec<ClubStatus> = inventory::status(settings, conn)?
                .into_iter()
                .filter(|c| match &targets {
                    Targets::All => true,
                    Targets::Clubs(slugs) => slugs.iter().any(|s| s.as_str() == c.slug),
                })
                .collect();
            Ok((release, clubs))
        })
        .await?;
    let mut from: BTreeMap<String, usize> = BTreeMap::new();
    let mut unchanged = 0;
    for club in &clubs {
        match &club.release {
            Some(r) if *r == release.as_str() => unchanged += 1,
            Some(r) => *from.entry(r.clone()).or_default() += 1,
            None => *from.entry("no release".into()).or_default() += 1,
        }
    }
    let moving = clubs.len() - unchanged;
    let moves = from
        .iter()
        .map(|(r, n)| format!("{} will move from {r} to {release}", count(*n, "club")))
        .collect();
    let settings = &state.settings;
    let reload = if moving == 0 {
        "Nothing will be switched, so Apache will not be reloaded.".to_owned()
    } else if settings.reload.policy.reloads_after(all) {
        "Apache will then be reloaded, so every switched club serves the new code at once."
            .to_owned()
    } else {
        "Apache will not be reloaded (reload policy): PHP may serve old code for up to two \
         minutes."
            .to_owned()
    };
    let prune = all.then(|| {
        format!(
            "Afterwards, releases no club runs will be deleted, keeping the newest {}.",
            settings.keep_releases
        )
    });
    Ok(ConfirmPage {
        nav: staff.nav("deploy"),
        tag: posted.tag.trim().to_owned(),
        target: if all { "all".into() } else { "some".into() },
        clubs: posted.clubs.clone(),
        summary: format!("{} will move to {release}.", count(moving, "club")),
        moves,
        unchanged: (unchanged > 0)
            .then(|| format!("{} already runs it.", count(unchanged, "club"))),
        reload,
        prune,
    })
}

/// `POST /deploy`: queues the deploy and shows its job.
pub async fn deploy(
    staff: Staff,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let posted: DeployForm = form(&body)?;
    staff.check_csrf(&posted.csrf)?;
    staff.require(Role::Deployer, "deploy")?;
    let spec = posted.spec(&staff)?;
    let (actor, address) = (staff.user.name.clone(), staff.address.clone());
    let id = state
        .db(move |_, conn| {
            enqueue(conn, &spec, &actor, Some(&address))
                .map_err(|e| AppError::BadRequest(format!("{e:#}")).into())
        })
        .await?;
    state.wake.notify_one();
    Ok(see_other(&format!("/jobs/{id}")))
}

//! A club's Roll back button: the confirmation naming the release it goes back to, and
//! the job it queues.

use super::*;

impl RollbackPage {
    /// A release's tag, and its commit id apart.
    fn version(&self, release: &str) -> (String, String) {
        super::super::tag_and_commit(release)
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "rollback.html")]
pub struct RollbackPage {
    nav: Nav,
    app: String,
    slug: String,
    name: String,
    current: String,
    target: String,
    reload: bool,
}

/// `GET /clubs/{slug}/rollback?app=…`: names the release the club's webroot of the
/// application would go back to, and asks.
pub async fn rollback_confirm(
    staff: Staff,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    app: web::Query<AppQuery>,
) -> Result<RollbackPage, AppError> {
    let slug = ClubSlug::parse(&slug)?;
    if !staff.may_change(slug.as_str()) {
        return Err(AppError::not_allowed(&format!("roll back club {slug}")));
    }
    let app = app.resolve(&state.settings)?.name.clone();
    let wanted = slug.clone();
    let app_name = app.clone();
    let (name, current, target) = state
        .db(move |settings, conn| {
            let club = webroot_or_404(conn, &wanted, app_name.as_str())?;
            let app = settings.app(Some(app_name.as_str()))?;
            let on_disk = switch::inspect(club.webroot.as_ref(), &app.releases_dir)?;
            let Webroot::Release(current) = on_disk else {
                return Err(AppError::BadRequest(format!(
                    "{} does not run a release now, so there is nothing to roll back.",
                    club.name
                ))
                .into());
            };
            let target = previous(conn, &club, &current)?.ok_or_else(|| {
                AppError::BadRequest(format!(
                    "{} has no earlier release to go back to.",
                    club.name
                ))
            })?;
            Ok((club.name, current.to_string(), target))
        })
        .await?;
    Ok(RollbackPage {
        nav: staff.nav("clubs"),
        app: app.to_string(),
        slug: slug.to_string(),
        name,
        current,
        target,
        reload: state.settings.reload.policy.reloads_after(false),
    })
}

/// The newest release in a club's history of an application it does not run and was not
/// rolled back from.
pub(super) fn previous(
    conn: &mut crate::db::Conn,
    club: &clubs::ClubApp,
    current: &ReleaseName,
) -> anyhow::Result<Option<String>> {
    Ok(switches::previous(conn, club.club_id, &club.app, current.as_str())?.map(|s| s.to_release))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RollbackForm {
    once: String,
    /// The release the confirmation page named: the job goes exactly there.
    to: String,
}

/// `POST /clubs/{slug}/rollback?app=…`: queues the rollback and shows its job.
pub async fn rollback(
    CsrfForm {
        staff,
        form: posted,
        ..
    }: CsrfForm<RollbackForm, Staff>,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    app: web::Query<AppQuery>,
) -> Result<HttpResponse, AppError> {
    let club = ClubSlug::parse(&slug)?;
    if !staff.may_change(club.as_str()) {
        return Err(AppError::not_allowed(&format!("roll back club {club}")));
    }
    let to = if posted.to.is_empty() {
        None
    } else {
        Some(ReleaseName::parse(&posted.to)?.to_string())
    };
    let app = app.resolve(&state.settings)?.name.clone();
    super::super::queue::queue(
        &staff,
        &state,
        JobSpec::Rollback { app, club, to },
        &posted.once,
    )
    .await
}

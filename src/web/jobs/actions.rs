//! What staff do to a job: cancel one that waits, put a deploy's clubs back.

use super::*;

/// Job `id` and its title, if `staff` may cancel it (a deployer their own, an admin any).
pub(super) async fn cancellable(
    staff: &Deployer,
    state: &web::Data<AppState>,
    id: i32,
) -> Result<(Job, String), AppError> {
    let (job, title) = state
        .db(move |_, conn| {
            let job = jobs::by_id(conn, id)?
                .ok_or_else(|| AppError::NotFound(format!("There is no job #{id}.")))?;
            let title = job.title(&db::clubs::names(conn)?);
            Ok((job, title))
        })
        .await?;
    if !may_cancel(staff, &job) {
        return Err(AppError::not_allowed("cancel other people's jobs"));
    }
    Ok((job, title))
}

/// `GET /jobs/{id}/cancel`: asks before cancelling a job that has not started.
pub async fn cancel_confirm(
    staff: Deployer,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> Result<super::super::ui::ConfirmPage, AppError> {
    let id = id.into_inner();
    let (job, title) = cancellable(&staff, &state, id).await?;
    if job.status == JobStatus::Running && staff.role == Role::Admin {
        return Ok(super::super::ui::ConfirmPage::ask(
            staff.nav("jobs"),
            format!("Stop job #{id}?"),
            format!(
                "Job #{id} ({title}) is running. It stops at its next safe point: before any \
                 club is switched, or after the wave it is in. Nothing is left half-done: clubs \
                 it has not reached are not touched, clubs already switched stay on the new \
                 release (Put back offers to undo that)."
            ),
            format!("/jobs/{id}/cancel"),
            "Yes, stop it".into(),
            format!("/jobs/{id}"),
        ));
    }
    if job.status != JobStatus::Queued {
        return Err(AppError::Conflict(format!(
            "Job #{id} is {}; only a job that has not started can be cancelled{}.",
            job.status,
            if job.status == JobStatus::Running {
                " (an administrator can stop a running one)"
            } else {
                ""
            }
        )));
    }
    Ok(super::super::ui::ConfirmPage::ask(
        staff.nav("jobs"),
        format!("Cancel job #{id}?"),
        format!(
            "Job #{id} ({}) has not started; cancelled, it will not run.",
            title
        ),
        format!("/jobs/{id}/cancel"),
        "Yes, cancel it".into(),
        format!("/jobs/{id}"),
    ))
}

/// `POST /jobs/{id}/cancel`.
pub async fn cancel(
    CsrfForm { staff, .. }: CsrfForm<NoFields, Deployer>,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    cancellable(&staff, &state, id).await?;
    let (actor, address) = (staff.user.name.clone(), staff.address.clone());
    let may_stop = staff.role == Role::Admin;
    let done = state
        .db(move |_, conn| enqueue::cancel(conn, id, &actor, Some(&address), may_stop))
        .await?;
    let message = match done {
        enqueue::Cancelled::Queued => format!("Job #{id} was cancelled; it will not run."),
        enqueue::Cancelled::WillStop => {
            format!("Job #{id} will stop at its next safe point.")
        }
    };
    staff.tell(&state, message).await;
    Ok(see_other(&format!("/jobs/{id}")))
}

/// A club a finished deploy switched that can go back: its name, the version it runs (the
/// deploy's) and the version it would go back to.
pub(super) struct Back {
    slug: String,
    name: String,
    from: String,
    to: String,
}

/// What "Put these clubs back" would do for deploy job `id`: its application and the clubs
/// still on the release it gave them, each with the version it ran before. Refuses a job
/// that is no finished deploy, one with nothing to put back, and clubs the user may not
/// change.
pub(super) async fn put_back_plan(
    staff: &Deployer,
    state: &web::Data<AppState>,
    id: i32,
) -> Result<(String, Vec<Back>), AppError> {
    let (job, switched, clubs) = state
        .db(move |_, conn| {
            let job = jobs::by_id(conn, id)?
                .ok_or_else(|| AppError::NotFound(format!("There is no job #{id}.")))?;
            let app = job.app.clone().unwrap_or_else(|| "main".into());
            Ok((
                job,
                db::switches::of_job(conn, id)?,
                db::clubs::webroots(conn, Some(&app))?,
            ))
        })
        .await?;
    let finished = job.status.is_finished();
    if job.kind != JobKind::Deploy || !finished {
        return Err(AppError::Conflict(format!(
            "Job #{id} is not a finished deploy, so there are no clubs of it to put back."
        )));
    }
    let app = job.app.clone().unwrap_or_else(|| "main".into());
    let name = app.clone();
    // Reading the links takes no database connection.
    let backs = state
        .blocking(move |settings| {
            let app = settings.app(Some(&name))?;
            let (still, _) = crate::service::preview::still_switched(app, &switched, &clubs)?;
            let backs: Vec<Back> = still
                .into_iter()
                .filter_map(|(club, switch)| {
                    Some(Back {
                        to: super::super::tag_and_commit(switch.from_release.as_deref()?).0,
                        from: super::super::tag_and_commit(&switch.to_release).0,
                        slug: club.slug,
                        name: club.name,
                    })
                })
                .collect();
            Ok(backs)
        })
        .await?;
    if backs.is_empty() {
        return Err(AppError::Conflict(format!(
            "None of the clubs job #{id} switched still runs what it gave them (or ran anything \
             before it), so there is nothing to put back."
        )));
    }
    if let Some(denied) = backs.iter().find(|b| !staff.may_change(&b.slug)) {
        return Err(AppError::not_allowed(&format!(
            "roll back club {}",
            denied.slug
        )));
    }
    Ok((app, backs))
}

/// `GET /jobs/{id}/put-back`: names the clubs a finished deploy switched that would go back,
/// and to what, and asks.
pub async fn put_back_confirm(
    staff: Deployer,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> Result<super::super::ui::ConfirmPage, AppError> {
    let id = id.into_inner();
    let (_, backs) = put_back_plan(&staff, &state, id).await?;
    const NAMED: usize = 20;
    let mut named: Vec<String> = backs
        .iter()
        .take(NAMED)
        .map(|b| format!("{} ({} → {})", b.name, b.from, b.to))
        .collect();
    if backs.len() > NAMED {
        named.push(format!("and {} more", backs.len() - NAMED));
    }
    let message = format!(
        "{} will go back to the version each ran before job #{id}: {}. The version they leave \
         is marked bad for them, as with a rollback.",
        count(backs.len(), "club"),
        named.join(", ")
    );
    Ok(super::super::ui::ConfirmPage::ask(
        staff.nav("jobs"),
        format!("Put the clubs of job #{id} back?"),
        message,
        format!("/jobs/{id}/put-back"),
        format!("Yes, put {} back", count(backs.len(), "club")),
        format!("/jobs/{id}"),
    ))
}

/// `POST /jobs/{id}/put-back`: queues the rollback of exactly the clubs the deploy switched.
pub async fn put_back(
    CsrfForm { staff, once, .. }: CsrfForm<NoFields, Deployer>,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    // The job moves exactly the clubs checked here against the deployer's scope.
    let (app, backs) = put_back_plan(&staff, &state, id).await?;
    let app = crate::domain::AppName::parse(&app)?;
    let clubs = backs
        .iter()
        .map(|back| crate::domain::ClubSlug::parse(&back.slug))
        .collect::<Result<Vec<_>, _>>()?;
    let spec = JobSpec::PutBack {
        app,
        job: id,
        clubs: Some(clubs),
    };
    super::super::queue::queue(&staff, &state, spec, &once).await
}

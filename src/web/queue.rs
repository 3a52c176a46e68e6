//! Queuing a job from a form: the one-time token, the per-user limit, the message, the redirect.

use actix_web::{HttpResponse, web};

use super::ui::see_other;
use super::{AppState, Staff};
use crate::domain::{ClubSlug, JobSpec, Targets, count};
use crate::jobs::enqueue::{enqueue_limited, enqueue_once};
use crate::web::error::AppError;

/// Queues `spec` for `staff` (within their limit of waiting jobs), wakes the worker and shows
/// the job's page.
/// A repeated submission of the form whose one-time token is `once` (a double click, Back
/// and resend) queues nothing: it shows the job the first submission queued.
pub(super) async fn queue(
    staff: &Staff,
    state: &web::Data<AppState>,
    spec: JobSpec,
    once: &str,
) -> Result<HttpResponse, AppError> {
    crate::domain::may_ask(staff.role, &staff.scope, &spec)
        .map_err(|why| AppError::Forbidden(format!("You may not ask for this: {why}.")))?;
    if let JobSpec::Deploy { app, tag, .. } = &spec {
        let (app, tag) = (app.clone(), tag.clone());
        state
            .blocking(move |settings| {
                crate::pipeline::git::tag_to_queue(settings.app(Some(app.as_str()))?, &tag)
            })
            .await?;
    }
    let (actor, address) = (staff.user.name.clone(), staff.address.clone());
    // Scoped to the user: nobody else's token can stand for theirs.
    let once = (!once.is_empty()).then(|| format!("{actor}:{}", once.trim()));
    let (id, message) = state
        .db(move |settings, conn| {
            let max = Some(settings.web.max_queued_jobs_per_user);
            let (id, fresh) = match once {
                Some(once) => enqueue_once(conn, &spec, &actor, Some(&address), max, &once)?,
                None => (
                    enqueue_limited(conn, &spec, &actor, Some(&address), max)?,
                    true,
                ),
            };
            let message = if fresh {
                format!("{}: job #{id}", in_words(conn, &spec)?)
            } else {
                format!(
                    "That was sent already: job #{id} is the one it queued; nothing new was queued."
                )
            };
            Ok((id, message))
        })
        .await?;
    staff.tell(state, message).await;
    state.wake.notify_one();
    Ok(see_other(&format!("/jobs/{id}")))
}

/// What a queued job will do, for staff: "Club Zermatt will move to v2.4.1".
fn in_words(conn: &mut crate::db::Conn, spec: &JobSpec) -> anyhow::Result<String> {
    let name = |conn: &mut crate::db::Conn, slug: &ClubSlug| -> anyhow::Result<String> {
        Ok(crate::db::clubs::by_slug(conn, slug.as_str())?
            .map_or_else(|| slug.to_string(), |c| c.name))
    };
    Ok(match spec {
        JobSpec::Deploy {
            tag,
            targets: Targets::All,
            ..
        } => format!("Every club will move to {tag}"),
        JobSpec::Deploy {
            tag,
            targets: Targets::Clubs(slugs),
            ..
        } => match slugs.as_slice() {
            [one] => format!("{} will move to {tag}", name(conn, one)?),
            many => format!("{} will move to {tag}", count(many.len(), "club")),
        },
        JobSpec::Rollback { club, to, .. } => match to {
            Some(to) => format!(
                "{} will go back to {}",
                name(conn, club)?,
                super::tag_and_commit(to).0
            ),
            None => format!("{} will go back to its previous release", name(conn, club)?),
        },
        other => {
            let words = other.to_string();
            let mut chars = words.chars();
            match chars.next() {
                Some(first) => format!("{}{} is queued", first.to_uppercase(), chars.as_str()),
                None => words,
            }
        }
    })
}

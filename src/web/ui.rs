//! View helpers every page family shares: redirects, 404s, names in words, the confirm page
//! and the running-job bar. A page imports these, never another page.

use actix_web::HttpResponse;
use askama::Template;
use askama_web::WebTemplate;

use super::Nav;
use crate::config::Settings;
use crate::db::Conn;
use crate::db::clubs;
use crate::db::jobs::Job;
use crate::domain::{ClubNames, ClubSlug, JobKind, JobSpec, JobStatus, ReleaseTag, Tally};
use crate::web::error::AppError;

pub use crate::domain::size_in_words;

/// Each tag once, newest version first.
pub fn newest_first_tags<'t>(tags: impl Iterator<Item = &'t str>) -> Vec<String> {
    let mut tags: Vec<ReleaseTag> = tags
        .filter(|t| !t.is_empty())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter_map(|t| ReleaseTag::parse(t).ok())
        .collect();
    let epoch = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    tags.sort_by(|a, b| crate::domain::release_order((a, epoch), (b, epoch)));
    crate::domain::newest_first(tags, |t| t)
        .into_iter()
        .map(|t| t.to_string())
        .collect()
}

/// The configured applications' names, in order.
pub fn app_names(settings: &Settings) -> Vec<String> {
    settings.apps().iter().map(|a| a.name.to_string()).collect()
}

/// The club `slug`, or a 404 saying there is none.
pub fn club_or_404(conn: &mut Conn, slug: &ClubSlug) -> anyhow::Result<clubs::Club> {
    clubs::by_slug(conn, slug.as_str())?
        .ok_or_else(|| AppError::NotFound(format!("There is no club {slug}.")).into())
}

/// Club `slug`'s webroot of `app`, or a 404 saying there is no such club or it does not run
/// the application.
pub fn webroot_or_404(
    conn: &mut Conn,
    slug: &ClubSlug,
    app: &str,
) -> anyhow::Result<clubs::ClubApp> {
    if let Some(found) = clubs::webroot(conn, slug.as_str(), app)? {
        return Ok(found);
    }
    let club = club_or_404(conn, slug)?;
    Err(AppError::NotFound(format!("{} does not run {app}.", club.name)).into())
}

/// A 303 redirect.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", location))
        .finish()
}

/// A job in progress, as the dashboard, the deploy form and job pages show it.
pub struct Running {
    pub id: i32,
    pub what: String,
    /// Its count, if it counted, and that count in words.
    pub progress: Option<Tally>,
    pub counted: String,
    /// Who asked for it, and where it is now and for how long ("step 2 of 7 (Build the
    /// release), for 42 s"; empty when it is not running).
    pub by: String,
    pub at: String,
}

impl Running {
    /// `job`, whose newest count is `tally` and newest step `step`, its clubs named by
    /// `names`.
    pub fn of(job: &Job, tally: Option<Tally>, step: Option<&str>, names: &ClubNames) -> Running {
        let mut at = Vec::new();
        if job.status == JobStatus::Running {
            if let Some(step) = step {
                let planned = super::jobs::planned(job.kind);
                let words = super::jobs::step_words(step);
                at.push(match planned.iter().position(|s| *s == step) {
                    Some(i) => format!("step {} of {} ({words})", i + 1, planned.len()),
                    None => format!("step {words}"),
                });
            }
            if let Some(started) = job.started_at {
                let ms = (crate::db::now() - started).num_milliseconds();
                at.push(format!(
                    "for {}",
                    crate::domain::duration_in_words(ms / 1000 * 1000)
                ));
            }
        }
        Running {
            id: job.id,
            what: job.title(names),
            progress: tally,
            counted: tally.map_or_else(String::new, |t| CountOf::job(job).words(t, job.status)),
            by: job.requested_by.clone(),
            at: at.join(", "),
        }
    }

    /// Running job `job` as its newest events tell.
    pub fn load(conn: &mut Conn, job: &Job, names: &ClubNames) -> diesel::QueryResult<Running> {
        let tally = crate::db::jobs::last_count(conn, job.id)?;
        let step = crate::db::jobs::current_step(conn, job.id)?;
        Ok(Running::of(job, tally, step.as_deref(), names))
    }

    /// The progress bar's percentage.
    pub fn percent(&self) -> usize {
        match self.progress {
            Some(t) if t.total > 0 => t.done * 100 / t.total,
            _ => 0,
        }
    }
}

/// The jobs running now and how many wait, as the dashboard and the deploy form say them
/// ("yours will wait").
pub struct RunningNow {
    pub jobs: Vec<Running>,
    pub queued: usize,
}

impl RunningNow {
    /// What runs now, clubs named by `names`.
    pub fn load(conn: &mut Conn, names: &ClubNames) -> diesel::QueryResult<RunningNow> {
        let mut jobs = Vec::new();
        for job in crate::db::jobs::with_status(conn, JobStatus::Running)? {
            jobs.push(Running::load(conn, &job, names)?);
        }
        let queued = crate::db::jobs::with_status(conn, JobStatus::Queued)?.len();
        Ok(RunningNow { jobs, queued })
    }

    /// What a job asked for now waits for, in words ("" when it starts at once).
    pub fn yours_waits(&self) -> String {
        match (self.jobs.is_empty(), self.queued) {
            (true, 0) => String::new(),
            (false, 0) => "Yours will wait until it ends.".to_owned(),
            (true, n) => format!(
                "Yours will wait for {} queued before it.",
                crate::domain::count(n, "job")
            ),
            (false, n) => format!(
                "Yours will wait until it ends, and for {} queued before it.",
                crate::domain::count(n, "more job")
            ),
        }
    }
}

/// What a job's count speaks of: its kind and, for a deploy, the version it brings (read
/// from its parameters once, not for each count).
pub struct CountOf {
    kind: JobKind,
    to: Option<String>,
}

impl CountOf {
    pub fn job(job: &Job) -> CountOf {
        let to = match JobSpec::from_json(&job.params) {
            Ok(JobSpec::Deploy { tag, .. }) => Some(tag.to_string()),
            _ => None,
        };
        CountOf { kind: job.kind, to }
    }

    /// The count `tally` in words, the job being `status` (see [`Tally::words`]).
    pub fn words(&self, tally: Tally, status: JobStatus) -> String {
        tally.words(self.kind, self.to.as_deref(), status)
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "legacy_confirm.html")]
pub struct ConfirmPage {
    pub(super) nav: Nav,
    pub(super) title: String,
    pub(super) message: String,
    pub(super) action: String,
    pub(super) button: String,
    pub(super) danger: bool,
    /// Where "No" goes back to.
    pub(super) back: String,
}

impl ConfirmPage {
    /// A question before `action` is posted (a dangerous one in red); "No" goes to `back`.
    pub(super) fn ask(
        nav: Nav,
        title: String,
        message: String,
        action: String,
        button: String,
        back: String,
    ) -> ConfirmPage {
        ConfirmPage {
            nav,
            title,
            message,
            action,
            button,
            danger: true,
            back,
        }
    }
}

/// `text` as HTML (escaped) in which each word that is a date (2026-12-03) or a release name
/// (v2-54105769) is kept whole on its line (`<span class="id">`): a sentence may wrap, a
/// release name may not break at its hyphen.
pub fn ids_whole(text: impl AsRef<str>) -> String {
    let text = text.as_ref();
    let mut html = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, after) = rest.split_at(end);
        let space = after.len() - after.trim_start().len();
        let (gap, next) = after.split_at(space);
        if is_id(word) {
            html.push_str("<span class=\"id\">");
            escape_into(&mut html, word);
            html.push_str("</span>");
        } else {
            escape_into(&mut html, word);
        }
        escape_into(&mut html, gap);
        rest = next;
    }
    html
}

/// Whether `word` holds a date (`2026-12-03`) or a release name's `-` and 8 hex digits.
fn is_id(word: &str) -> bool {
    let b = word.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let date = b.windows(10).any(|w| {
        digits(&w[..4]) && w[4] == b'-' && digits(&w[5..7]) && w[7] == b'-' && digits(&w[8..])
    });
    let release = (0..b.len()).any(|i| {
        b[i] == b'-'
            && b.len() >= i + 9
            && b[i + 1..i + 9].iter().all(u8::is_ascii_hexdigit)
            && b.get(i + 9).is_none_or(|c| !c.is_ascii_alphanumeric())
    });
    date || release
}

/// `text` escaped as the templates escape it (askama's own escaper: one rule).
fn escape_into(html: &mut String, text: &str) {
    use askama::filters::Escaper;
    // Writing to a String cannot fail.
    let _ = askama::filters::Html.write_escaped_str(html, text);
}

#[cfg(test)]
mod tests {
    use super::ids_whole;

    #[test]
    fn dates_and_release_names_are_kept_whole_and_everything_is_escaped() {
        assert_eq!(
            ids_whole("60 clubs switched to v2-54105769; <b>&'\" on 2026-12-03\n"),
            "60 clubs switched to <span class=\"id\">v2-54105769;</span> \
             &#60;b&#62;&#38;&#39;&#34; on <span class=\"id\">2026-12-03</span>\n"
        );
        // Names with hyphens stay plain words (they may break after the hyphen).
        assert_eq!(
            ids_whole("Adelboden-Lenk club-001 v2-b2"),
            "Adelboden-Lenk club-001 v2-b2"
        );
        assert_eq!(
            ids_whole("v2-1b77699d-b2"),
            "<span class=\"id\">v2-1b77699d-b2</span>"
        );
        assert_eq!(ids_whole(""), "");
    }
}

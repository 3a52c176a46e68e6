//! The audit log page: filters by club, user, action and date, pages of 50, CSV export, and
//! the hash-chain check.

use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use futures_util::StreamExt;
use serde::Deserialize;

use super::{AppState, Nav, Staff};
use crate::db::audit::{self, AuditEvent};
use crate::domain::{AuditKind, Role, count};
use crate::web::error::{AppError, urlencode};

const PAGE: i64 = 50;
/// The most rows one page of the audit log reads while folding a run of switches.
const FOLD_AT_MOST: usize = 5_000;
/// Rows read per step of the CSV export.
const CSV_PAGE: i64 = 500;

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct AuditQuery {
    /// A club's display name or short name, or part of one (accents ignored).
    club: String,
    app: String,
    user: String,
    /// A kind of event in words ([`AuditKind`]).
    kind: String,
    /// One action code (`club.switched`), for addresses made before the kinds.
    action: String,
    since: String,
    until: String,
    before: Option<i32>,
}

/// A date of the filter ("2026-11-26"), at midnight UTC.
fn date(text: &str) -> Result<Option<chrono::NaiveDateTime>, AppError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| AppError::BadRequest(format!("{text:?} is not a date like 2026-11-26.")))
        .map(|d| Some(d.and_hms_opt(0, 0, 0).expect("midnight exists")))
}

impl AuditQuery {
    /// The filter, the club text already read as the clubs it names (`clubs`).
    fn filter(&self, clubs: Option<Vec<String>>, limit: i64) -> Result<audit::Filter, AppError> {
        let some = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let kind = some(&self.kind).map(|k| AuditKind::parse(&k)).transpose()?;
        Ok(audit::Filter {
            clubs,
            app: some(&self.app),
            actor: some(&self.user),
            action: some(&self.action),
            kind,
            since: date(&self.since)?,
            // The day named is included: until the next midnight.
            until: date(&self.until)?.map(|d| d + chrono::Duration::days(1)),
            before: self.before,
            limit,
        })
    }

    /// The clubs the club text names: the club with that short name, else every club whose
    /// name or short name contains it, accents and case aside ([`crate::domain::search_key`]);
    /// `None` when it is empty.
    fn clubs(&self, known: &[(String, String)]) -> Option<Vec<String>> {
        let text = self.club.trim();
        if text.is_empty() {
            return None;
        }
        if known.iter().any(|(slug, _)| slug == text) {
            return Some(vec![text.to_owned()]);
        }
        Some(
            known
                .iter()
                .filter(|(slug, name)| crate::domain::search_finds(text, name, slug))
                .map(|(slug, _)| slug.clone())
                .collect(),
        )
    }

    /// The query string for the same filters.
    fn query_string(&self) -> String {
        [
            ("club", &self.club),
            ("app", &self.app),
            ("user", &self.user),
            ("kind", &self.kind),
            ("action", &self.action),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
    }
}

/// A row as the page shows it: one event, or a run of switches one job made alike (a deploy
/// to 1,000 clubs is one row), its clubs folded.
pub struct Shown {
    pub row: AuditEvent,
    pub said: String,
    /// The clubs of a folded run (display names), empty for one event.
    pub clubs: Vec<String>,
}

/// What makes switches one row: who, the kind of switch, the release reached and the job
/// ("deploy: from v1-… to v2-… (job #4)", the club aside).
fn run_of(row: &AuditEvent) -> Option<(&str, &str, &str, &str)> {
    if row.action != "club.switched" {
        return None;
    }
    let (kind, rest) = row.details.split_once(": from ")?;
    let (_, rest) = rest.split_once(" to ")?;
    let (to, job) = rest.split_once(" (job #")?;
    Some((row.actor.as_str(), kind, to, job))
}

/// The rows of `filter` (newest first) for `wanted` shown rows ([`fold`]): read on while a
/// run of switches is folding, up to [`FOLD_AT_MOST`] rows, so a deploy to 1,000 clubs is one
/// row, not twenty pages. Also the id to read the next page before (`None`: no more).
pub fn read_shown(
    conn: &mut crate::db::Conn,
    mut filter: audit::Filter,
    wanted: usize,
) -> diesel::QueryResult<(Vec<AuditEvent>, Option<i32>)> {
    let mut rows: Vec<AuditEvent> = Vec::new();
    loop {
        let page = audit::list(conn, &filter)?;
        let full = page.len() as i64 == filter.limit;
        rows.extend(page);
        let last = rows.last().map(|r| r.id).filter(|_| full);
        let shown = shown_count(&rows);
        let folding = rows.last().is_some_and(|r| run_of(r).is_some());
        if !full || (shown >= wanted && !folding) || rows.len() >= FOLD_AT_MOST {
            return Ok((rows, last));
        }
        filter.before = last;
        filter.limit = filter.limit.max(200);
    }
}

/// Whether `row` goes on the run of switches `before` is in (one job's, alike, of one app).
fn continues(before: &AuditEvent, row: &AuditEvent) -> bool {
    run_of(row).is_some() && run_of(row) == run_of(before) && row.app == before.app
}

/// How many rows `rows` (newest first) shows as ([`fold`]).
fn shown_count(rows: &[AuditEvent]) -> usize {
    rows.iter()
        .enumerate()
        .filter(|(i, row)| *i == 0 || !continues(&rows[i - 1], row))
        .count()
}

/// `rows` (newest first) as shown: consecutive switches of one run folded into one.
pub fn fold(rows: Vec<AuditEvent>, names: &crate::domain::ClubNames) -> Vec<Shown> {
    let mut shown: Vec<Shown> = Vec::new();
    for row in rows {
        if let Some(last) = shown.last_mut()
            && continues(&last.row, &row)
        {
            if last.clubs.is_empty() {
                last.clubs.push(names.of(&last.row.target).to_owned());
            }
            last.clubs.push(names.of(&row.target).to_owned());
            continue;
        }
        shown.push(Shown {
            row,
            said: String::new(),
            clubs: Vec::new(),
        });
    }
    for one in &mut shown {
        let club = match one.clubs.len() {
            0 => club_words(&one.row, names),
            n => count(n, "club"),
        };
        one.said = sentence(&one.row, &club);
    }
    shown
}

/// How a row about a club names it: its display name ("Club Zermatt"), or its short name
/// when it is no club any more.
pub fn club_words(row: &AuditEvent, names: &crate::domain::ClubNames) -> String {
    let name = names.of(&row.target);
    if name == row.target {
        format!("club {name}")
    } else {
        name.to_owned()
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
pub struct AuditPage {
    nav: Nav,
    rows: Vec<Shown>,
    query: AuditQuery,
    filters: String,
    next: Option<String>,
    /// The lists the filter offers: applications, kinds of event.
    apps: Vec<String>,
    kinds: Vec<(&'static str, &'static str)>,
    /// Said when the club text names no club.
    no_club: Option<String>,
}

/// The row as a sentence staff read ("maria rolled Club Zermatt (main) back from v2.4.1 to
/// v2.4.0"), the club named `club`; the action code stays beside it and in the CSV and JSON.
pub fn sentence(row: &AuditEvent, club: &str) -> String {
    let who = row.actor.as_str();
    let app = row
        .app
        .as_deref()
        .map_or_else(String::new, |a| format!(" ({a})"));
    let club = format!("{club}{app}");
    let version = |r: &str| super::tag_and_commit(r).0;
    // "deploy: from v1-… to v2-… (job #4)", as the switch step writes it.
    let moved = || {
        let (kind, rest) = row.details.split_once(": from ")?;
        let (from, rest) = rest.split_once(" to ")?;
        let to = rest.split(" (").next()?;
        Some((kind, from, to))
    };
    let job = row
        .details
        .rsplit_once(" (job #")
        .map_or_else(String::new, |(_, n)| format!(" (job #{n}"));
    match row.action.as_str() {
        "club.switched" => match moved() {
            Some((kind, from, to))
                if crate::domain::SwitchKind::parse(kind).is_ok_and(|k| k.is_rollback()) =>
            {
                format!(
                    "{who} rolled {club} back from {} to {}{job}",
                    version(from),
                    version(to)
                )
            }
            Some((_, "no release", to)) => format!("{who} put {club} on {}{job}", version(to)),
            Some((_, from, to)) => format!(
                "{who} moved {club} from {} to {}{job}",
                version(from),
                version(to)
            ),
            None => format!("{who} switched {club}: {}", row.details),
        },
        "club.added" => format!("{who} added club {}", row.target),
        "club.updated" => format!("{who} updated club {}: {}", row.target, row.details),
        "club.removed" => format!("{who} forgot club {}", row.target),
        "group.joined" | "group.left" => {
            let group = row.details.rsplit(' ').next().unwrap_or_default();
            if row.action == "group.joined" {
                format!("{who} put {club} in group {group}")
            } else {
                format!("{who} took {club} out of group {group}")
            }
        }
        "club.adopted" => format!("{who} adopted the legacy copy of {club}"),
        "club.adoption_undone" => format!("{who} put back the legacy copy of {club}"),
        "club.webroot_added" => format!("{who} gave club {} a webroot{app}", row.target),
        "club.url_changed" => format!("{who} changed the address of {club}"),
        "club.hosts_set" => format!("{who} said which hosts serve {club}: {}", row.details),
        "club.unproven" => format!("{club} was left on a release never proven: {}", row.details),
        "legacy.purged" => format!("{who} deleted a kept legacy copy of {club}"),
        "release.built" => format!("{who} built release {}", row.target),
        "job.queued" => format!("{who} asked for job #{}: {}", row.target, row.details),
        "job.started" => format!("job #{} started", row.target),
        "job.finished" => format!("job #{} ended, {}", row.target, row.details),
        "job.cancelled" => format!("{who} cancelled job #{}", row.target),
        "job.interrupted" => format!("job #{} was interrupted: {}", row.target, row.details),
        "server.reloaded" => "Apache was reloaded".to_owned(),
        "server.reload_failed" => format!("reloading Apache failed: {}", row.details),
        "login.succeeded" => format!("{who} signed in"),
        "login.failed" => format!("a sign-in as {who} failed"),
        "user.added" => format!("{who} added {} to the staff", row.target),
        "user.disabled" => format!("{who} disabled {}", row.target),
        "user.enabled" => format!("{who} enabled {}", row.target),
        "user.password_set" => format!("{who} set a new password for {}", row.target),
        _ => format!("{who}: {} {} {}", row.action, row.target_kind, row.target),
    }
}

/// Every club's short name and display name, for the club filter.
fn known_clubs(conn: &mut crate::db::Conn) -> diesel::QueryResult<Vec<(String, String)>> {
    Ok(crate::db::clubs::all(conn)?
        .into_iter()
        .map(|c| (c.slug, c.name))
        .collect())
}

/// `GET /audit`.
pub async fn page(
    staff: Staff,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
) -> Result<AuditPage, AppError> {
    let asked = query.clone();
    let (mut rows, clubs, last) = state
        .db(move |_, conn| {
            let known = known_clubs(conn)?;
            let names = crate::domain::ClubNames::new(known.iter().cloned().collect());
            let clubs = asked.clubs(&known);
            if clubs.as_ref().is_some_and(Vec::is_empty) {
                return Ok((Vec::new(), clubs, None));
            }
            let (rows, last) = read_shown(conn, asked.filter(clubs.clone(), PAGE)?, PAGE as usize)?;
            let rows = fold(rows, &names);
            Ok((rows, clubs, last))
        })
        .await?;
    // Staff addresses are personal data: admins only.
    if staff.role != Role::Admin {
        for shown in &mut rows {
            shown.row.address = None;
        }
    }
    let filters = query.query_string();
    let next = last.map(|before| format!("/audit?{filters}&before={before}"));
    Ok(AuditPage {
        nav: staff.nav("audit"),
        rows,
        no_club: clubs.filter(Vec::is_empty).map(|_| {
            format!(
                "No club is called \u{201c}{}\u{201d}: type part of its name or its short name.",
                query.club.trim()
            )
        }),
        query: query.into_inner(),
        filters,
        next,
        apps: super::ui::app_names(&state.settings),
        kinds: AuditKind::ALL
            .iter()
            .map(|k| (k.as_str(), k.in_words()))
            .collect(),
    })
}

/// `GET /audit.csv`: every matching row, newest first, streamed a page of rows at a time
/// (memory stays constant however long the log is; each page takes a connection briefly).
pub async fn csv(
    staff: Staff,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    let known = state.db(|_, conn| Ok(known_clubs(conn)?)).await?;
    let first = query.filter(query.clubs(&known), CSV_PAGE)?;
    let show_addresses = staff.role == Role::Admin;
    let header = csv_lines(std::iter::once(
        [
            "id",
            "time_utc",
            "actor",
            "address",
            "action",
            "target_kind",
            "target",
            "app",
            "details",
            "hash",
        ]
        .map(str::to_owned),
    ))?;
    // Each step reads the page before the last row sent; `None` once a page comes back short.
    let pages = futures_util::stream::unfold(Some(first), move |filter| {
        let state = state.clone();
        async move {
            let filter = filter?;
            let page = {
                let filter = filter.clone();
                state
                    .db(move |_, conn| Ok(audit::list(conn, &filter)?))
                    .await
            };
            let rows = match page {
                Ok(rows) => rows,
                Err(e) => {
                    return Some((Err(actix_web::error::ErrorInternalServerError(e)), None));
                }
            };
            let next = (rows.len() as i64 == CSV_PAGE).then(|| audit::Filter {
                before: rows.last().map(|r| r.id),
                ..filter
            });
            let lines = rows.into_iter().map(|row| {
                let address = row.address.filter(|_| show_addresses).unwrap_or_default();
                [
                    row.id.to_string(),
                    row.at.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
                    inert_cell(row.actor),
                    inert_cell(address),
                    inert_cell(row.action),
                    inert_cell(row.target_kind),
                    inert_cell(row.target),
                    row.app.unwrap_or_default(),
                    inert_cell(row.details),
                    row.hash,
                ]
            });
            let chunk = csv_lines(lines).map_err(actix_web::error::ErrorInternalServerError);
            Some((chunk, next))
        }
    });
    let body = futures_util::stream::once(async move { Ok(header) }).chain(pages);
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            "attachment; filename=\"clubdeploy-audit.csv\"",
        ))
        .streaming(body))
}

/// Records as CSV text.
fn csv_lines(records: impl Iterator<Item = [String; 10]>) -> Result<web::Bytes, AppError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    for record in records {
        out.write_record(&record)
            .map_err(|e| AppError::Internal(e.into()))?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
    Ok(web::Bytes::from(bytes))
}

/// A cell a spreadsheet will not run as a formula: text starting with `=`, `+`, `-`, `@`, a
/// tab or a carriage return gets a leading `'` (OWASP's advice on CSV injection).
pub fn inert_cell(text: String) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "audit_verify.html")]
pub struct VerifyPage {
    nav: Nav,
    intact: bool,
    message: String,
}

/// `GET /audit/verify`: walks the hash chain.
pub async fn verify(staff: Staff, state: web::Data<AppState>) -> Result<VerifyPage, AppError> {
    let result = state
        .db(|settings, conn| Ok(audit::verify(conn, &settings.anchor_file())?))
        .await?;
    let (intact, message) = match result {
        Ok(verified) => (
            true,
            format!(
                "The audit log is intact: all {} rows match their hash chain. {}",
                verified.rows, verified
            ),
        ),
        Err(broken) => (false, format!("The audit log was tampered with: {broken}.")),
    };
    Ok(VerifyPage {
        nav: staff.nav("audit"),
        intact,
        message,
    })
}

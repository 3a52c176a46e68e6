//! The audit log page: filters by club, user, action and date, pages of 50, CSV export, and
//! the hash-chain check.

use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use futures_util::StreamExt;
use serde::Deserialize;

use super::{AppState, Nav, Staff};
use crate::db::audit::{self, AuditEvent};
use crate::domain::Role;
use crate::web::error::{AppError, urlencode};

const PAGE: i64 = 50;
/// Rows read per step of the CSV export.
const CSV_PAGE: i64 = 500;

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct AuditQuery {
    club: String,
    app: String,
    user: String,
    action: String,
    since: String,
    before: Option<i32>,
}

impl AuditQuery {
    fn filter(&self, limit: i64) -> Result<audit::Filter, AppError> {
        let some = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let since = match some(&self.since) {
            None => None,
            Some(date) => Some(
                chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d")
                    .map_err(|_| {
                        AppError::BadRequest(format!("{date:?} is not a date like 2026-11-26."))
                    })?
                    .and_hms_opt(0, 0, 0)
                    .expect("midnight exists"),
            ),
        };
        Ok(audit::Filter {
            club: some(&self.club),
            app: some(&self.app),
            actor: some(&self.user),
            action: some(&self.action),
            since,
            before: self.before,
            limit,
        })
    }

    /// The query string for the same filters.
    fn query_string(&self) -> String {
        format!(
            "club={}&app={}&user={}&action={}&since={}",
            urlencode(&self.club),
            urlencode(&self.app),
            urlencode(&self.user),
            urlencode(&self.action),
            urlencode(&self.since)
        )
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
pub struct AuditPage {
    nav: Nav,
    rows: Vec<AuditEvent>,
    query: AuditQuery,
    filters: String,
    next: Option<String>,
}

impl AuditPage {
    /// The row as a sentence staff read ("maria rolled club zermatt (main) back from v2.4.1 to
    /// v2.4.0"); the action code stays beside it and in the CSV and JSON.
    fn sentence(&self, row: &AuditEvent) -> String {
        sentence(row)
    }
}

/// See [`AuditPage::sentence`].
pub fn sentence(row: &AuditEvent) -> String {
    let who = row.actor.as_str();
    let app = row
        .app
        .as_deref()
        .map_or_else(String::new, |a| format!(" ({a})"));
    let club = format!("club {}{app}", row.target);
    let version = |r: &str| super::tag_and_commit(r).0;
    // "deploy: from v1-… to v2-… (job #4)", as the switch step writes it.
    let moved = || {
        let (kind, rest) = row.details.split_once(": from ")?;
        let (from, rest) = rest.split_once(" to ")?;
        let to = rest.split(" (").next()?;
        Some((kind, from, to))
    };
    match row.action.as_str() {
        "club.switched" => match moved() {
            Some((kind, from, to))
                if crate::domain::SwitchKind::parse(kind).is_ok_and(|k| k.is_rollback()) =>
            {
                format!(
                    "{who} rolled {club} back from {} to {}",
                    version(from),
                    version(to)
                )
            }
            Some((_, "no release", to)) => format!("{who} put {club} on {}", version(to)),
            Some((_, from, to)) => format!(
                "{who} moved {club} from {} to {}",
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

/// `GET /audit`.
pub async fn page(
    staff: Staff,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
) -> Result<AuditPage, AppError> {
    let filter = query.filter(PAGE)?;
    let mut rows = state
        .db(move |_, conn| Ok(audit::list(conn, &filter)?))
        .await?;
    // Staff addresses are personal data: admins only.
    if staff.role != Role::Admin {
        for row in &mut rows {
            row.address = None;
        }
    }
    let filters = query.query_string();
    let next = (rows.len() as i64 == PAGE).then(|| {
        format!(
            "/audit?{filters}&before={}",
            rows.last().map_or(0, |r| r.id)
        )
    });
    Ok(AuditPage {
        nav: staff.nav("audit"),
        rows,
        query: query.into_inner(),
        filters,
        next,
    })
}

/// `GET /audit.csv`: every matching row, newest first, streamed a page of rows at a time
/// (memory stays constant however long the log is; each page takes a connection briefly).
pub async fn csv(
    staff: Staff,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    let first = query.filter(CSV_PAGE)?;
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

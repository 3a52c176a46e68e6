//! Importing clubs from a CSV file: the preview of every change, then one go.

use super::*;

/// How many clubs of each kind an import preview lists.
pub(super) const SHOWN: usize = 50;

#[derive(Template, WebTemplate)]
#[template(path = "import_preview.html")]
pub struct ImportPreview {
    nav: Nav,
    csv: String,
    outcome: Result<crate::service::import::Plan, Vec<crate::service::import::BadRow>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ImportForm {
    csv: String,
}

/// Reads the posted CSV as an import plan, or its bad rows (a header that cannot be read is
/// line 1).
pub(super) async fn import_plan(
    state: &web::Data<AppState>,
    csv: String,
) -> Result<Result<crate::service::import::Plan, Vec<crate::service::import::BadRow>>, AppError> {
    state
        .db(move |settings, conn| {
            match crate::service::import::plan(settings, conn, csv.as_bytes()) {
                Ok(plan) => Ok(Ok(plan)),
                Err(e) => match e.downcast::<crate::service::import::BadRows>() {
                    Ok(bad) => Ok(Err(bad.0)),
                    Err(e) => match e.downcast::<crate::domain::InvalidInput>() {
                        Ok(header) => Ok(Err(vec![crate::service::import::BadRow {
                            line: 1,
                            reason: header.0,
                        }])),
                        Err(e) => Err(e),
                    },
                },
            }
        })
        .await
}

/// `POST /clubs/import/preview` (admins): what importing the CSV would do, or every bad row.
pub async fn import_preview(
    CsrfForm {
        staff,
        form: posted,
        ..
    }: CsrfForm<ImportForm, Admin>,
    state: web::Data<AppState>,
) -> Result<ImportPreview, AppError> {
    let outcome = import_plan(&state, posted.csv.clone()).await?;
    Ok(ImportPreview {
        nav: staff.nav("clubs"),
        csv: posted.csv,
        outcome,
    })
}

/// `POST /clubs/import` (admins): imports the CSV the preview showed, all or nothing.
pub async fn import(
    CsrfForm {
        staff,
        form: posted,
        ..
    }: CsrfForm<ImportForm, Admin>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let actor = staff.user.name.clone();
    // Checked again: the clubs may have changed since the preview.
    let summary = state
        .db(move |settings, conn| {
            let plan = crate::service::import::plan(settings, conn, posted.csv.as_bytes())?;
            crate::service::import::apply(conn, &actor, &plan)?;
            Ok(plan.summary())
        })
        .await?;
    staff.tell(&state, format!("Imported: {summary}.")).await;
    Ok(see_other("/clubs"))
}

/// `rows` as a CSV file to download as `file`; a cell a spreadsheet would run as a formula is
/// made inert ([`crate::web::audit::inert_cell`]).
fn csv_download(rows: Vec<Vec<String>>, file: &str) -> Result<HttpResponse, AppError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    for row in rows {
        out.write_record(row.into_iter().map(crate::web::audit::inert_cell))
            .map_err(|e| AppError::Internal(e.into()))?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{file}\""),
        ))
        .body(bytes))
}

/// `GET /clubs/import/template.csv` (admins): a list to fill in, with this installation's
/// columns and one example club.
pub async fn import_template(
    _staff: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    csv_download(
        crate::service::import::template(&state.settings),
        "clubdeploy-clubs-template.csv",
    )
}

/// `GET /clubs/export.csv` (admins): every club in the import's columns.
pub async fn export(_staff: Admin, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let rows = state.db(crate::service::import::export).await?;
    csv_download(rows, "clubdeploy-clubs.csv")
}

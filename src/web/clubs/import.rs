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

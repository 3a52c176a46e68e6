//! The stylesheet and the scripts, compiled into the binary.

use actix_web::{HttpResponse, web};

use crate::web::error::AppError;

const STYLE: &str = include_str!("../../static/style.css");
const JOB_JS: &str = include_str!("../../static/job.js");
const IMPORT_JS: &str = include_str!("../../static/import.js");
const PANEL_JS: &str = include_str!("../../static/panel.js");

/// `GET /static/{file}`.
pub async fn file(name: web::Path<String>) -> Result<HttpResponse, AppError> {
    let (body, kind) = match name.as_str() {
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "job.js" => (JOB_JS, "text/javascript; charset=utf-8"),
        "import.js" => (IMPORT_JS, "text/javascript; charset=utf-8"),
        "panel.js" => (PANEL_JS, "text/javascript; charset=utf-8"),
        _ => return Err(AppError::NotFound("There is no such file.".into())),
    };
    Ok(HttpResponse::Ok()
        .content_type(kind)
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(body))
}

//! Adding and forgetting clubs, and their groups (admins).

use super::*;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AddClubForm {
    slug: String,
    name: String,
    /// One per application, in the order of `app` (an empty webroot: the club does not run
    /// that application), with the address of the club's site of it.
    app: Vec<String>,
    webroot: Vec<String>,
    url: Vec<String>,
}

/// `POST /clubs` (admins): adds a club.
pub async fn add(
    CsrfForm {
        staff,
        form: posted,
        ..
    }: CsrfForm<AddClubForm, Admin>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let actor = staff.user.name.clone();
    let added = state
        .db(move |settings, conn| {
            let name = Some(posted.name.trim()).filter(|n| !n.is_empty());
            let webroots: Vec<(Option<&str>, &std::path::Path)> = posted
                .webroot
                .iter()
                .enumerate()
                .filter(|(_, w)| !w.trim().is_empty())
                .map(|(i, w)| (posted.app.get(i).map(String::as_str), w.trim().as_ref()))
                .collect();
            let urls: Vec<(Option<&str>, &str)> = posted
                .url
                .iter()
                .enumerate()
                .filter(|(_, u)| !u.trim().is_empty())
                .map(|(i, u)| (posted.app.get(i).map(String::as_str), u.trim()))
                .collect();
            if webroots.is_empty() {
                return Err(AppError::BadRequest(
                    "Give the club a webroot for at least one application.".into(),
                )
                .into());
            }
            inventory::add_club(
                settings,
                conn,
                &actor,
                &AddClub {
                    slug: posted.slug.trim(),
                    webroots: &webroots,
                    name,
                    urls: &urls,
                },
            )
        })
        .await?;
    let name = added.first().map_or_else(String::new, |c| c.name.clone());
    staff.tell(&state, format!("{name} was added.")).await;
    Ok(see_other("/clubs"))
}

#[derive(Template, WebTemplate)]
#[template(path = "remove_club.html")]
pub struct RemovePage {
    nav: Nav,
    slug: String,
    name: String,
    webroots: Vec<String>,
}

/// `GET /clubs/{slug}/remove` (admins): asks before forgetting a club.
pub async fn remove_confirm(
    staff: Admin,
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<RemovePage, AppError> {
    let slug = ClubSlug::parse(&slug)?;
    let (club, webroots) = state
        .db(move |_, conn| {
            let club = club_or_404(conn, &slug)?;
            let webroots = clubs::webroots_of(conn, slug.as_str())?;
            Ok((club, webroots))
        })
        .await?;
    Ok(RemovePage {
        nav: staff.nav("clubs"),
        slug: club.slug,
        name: club.name,
        webroots: webroots.into_iter().map(|w| w.webroot).collect(),
    })
}

/// `POST /clubs/{slug}/remove` (admins): forgets the club; its webroot is left alone.
pub async fn remove(
    CsrfForm { staff, .. }: CsrfForm<NoFields, Admin>,
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let slug = slug.into_inner();
    let actor = staff.user.name.clone();
    let forgotten = slug.clone();
    state
        .db(move |_, conn| inventory::remove_club(conn, &actor, &slug))
        .await?;
    staff
        .tell(
            &state,
            format!("Club {forgotten} was forgotten; its webroot was left as it was."),
        )
        .await;
    Ok(see_other("/clubs"))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct GroupForm {
    group: String,
    /// Slugs separated by commas or spaces.
    clubs: String,
    /// Set: also every club the clubs list at `back` shows (all its pages).
    shown: String,
    /// `join` or `leave`.
    action: String,
    /// The clubs list the form was on (`/clubs?…`), to return to.
    back: String,
}

/// `POST /groups` (admins): puts clubs in a group or takes them out (audited), and returns to
/// the clubs list saying what changed.
pub async fn change_group(
    CsrfForm {
        staff,
        form: posted,
        ..
    }: CsrfForm<GroupForm, Admin>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let join = match posted.action.as_str() {
        "join" => true,
        "leave" => false,
        _ => {
            return Err(AppError::BadRequest(
                "Choose to put clubs in the group or take them out.".into(),
            ));
        }
    };
    // Only ever back to a clubs list of this panel, and never a line break into the reply's
    // headers: refused before anything changes.
    if posted.back.chars().any(char::is_control) {
        return Err(AppError::BadRequest(
            "The clubs list to return to holds a line break or another control character; \
             nothing was changed."
                .into(),
        ));
    }
    let back = match posted.back.strip_prefix("/clubs") {
        Some(rest) if rest.is_empty() || rest.starts_with('?') => posted.back.clone(),
        _ => "/clubs".to_owned(),
    };
    let mut slugs: Vec<String> = posted
        .clubs
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if !posted.shown.is_empty() {
        let query: ClubsQuery =
            serde_html_form::from_str(back.split_once('?').map_or("", |(_, q)| q))
                .map_err(|e| AppError::BadRequest(format!("the list could not be read: {e}")))?;
        let rows = state.club_rows().await?;
        let apps = app_names(&state.settings);
        slugs.extend(
            rows.iter()
                .filter(|row| query.admits(row, &apps))
                .map(|row| row.slug.clone()),
        );
    }
    slugs.sort();
    slugs.dedup();
    let (actor, group) = (staff.user.name.clone(), posted.group.trim().to_owned());
    let name = group.clone();
    let changed = state
        .db(move |_, conn| inventory::change_group(conn, &actor, &name, &slugs, join))
        .await?;
    let message = match (changed.len(), join) {
        (0, true) => format!("Those clubs were in group {group} already: nothing changed."),
        (0, false) => format!("None of those clubs was in group {group}: nothing changed."),
        (n, true) => format!("{} put in group {group}.", crate::domain::count(n, "club")),
        (n, false) => format!(
            "{} taken out of group {group}.",
            crate::domain::count(n, "club")
        ),
    };
    staff.tell(&state, message).await;
    Ok(see_other(&back))
}

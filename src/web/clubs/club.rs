//! One club's page: what it runs of each application, its last health check, its history
//! (versions, by whom, when), and, for admins, editing its display name, site addresses and
//! groups, each change audited.

use super::*;

/// One switch of the club's history, as the page says it.
pub struct Moved {
    pub at: chrono::NaiveDateTime,
    pub app: String,
    pub from: String,
    pub to: String,
    /// "deploy", "rollback", "put back after a failed health check", …
    pub how: String,
    pub by: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "club.html")]
pub struct ClubPage {
    nav: Nav,
    row: Row,
    /// Newest first, at most [`HISTORY`].
    history: Vec<Moved>,
    may_change: bool,
    /// The `[[hosts]]` there are, and those named for this club (none: every host).
    known_hosts: Vec<String>,
    hosts: Vec<String>,
}

impl ClubPage {
    /// The club's address of application `app`, for the form ("" for none).
    fn url_of(&self, app: &str) -> String {
        self.row
            .runs()
            .find(|c| c.app == app)
            .and_then(|c| c.url.clone())
            .unwrap_or_default()
    }
}

/// How many switches the page lists.
const HISTORY: usize = 100;

/// A switch's kind as the page says it.
fn how(kind: crate::domain::SwitchKind) -> &'static str {
    use crate::domain::SwitchKind;
    match kind {
        SwitchKind::Deploy => "deploy",
        SwitchKind::Rollback => "rolled back (or put back)",
        SwitchKind::HealthRollback => "put back after a failed health check",
        SwitchKind::Recovered => "found switched after an interruption",
        SwitchKind::Adopt => "legacy copy adopted",
    }
}

/// `GET /clubs/{slug}`.
pub async fn club_page(
    staff: Staff,
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<ClubPage, AppError> {
    let slug = ClubSlug::parse(&slug)?;
    let rows = state.club_rows().await?;
    let found = slug.clone();
    let (history, hosts) = state
        .db(move |_, conn| {
            let club = club_or_404(conn, &found)?;
            let hosts = crate::db::hosts::of(conn, club.id)?;
            let mut moved = Vec::new();
            for webroot in clubs::webroots_of(conn, found.as_str())? {
                moved.extend(switches::history(conn, club.id, &webroot.app)?);
            }
            moved.sort_by_key(|s| std::cmp::Reverse(s.id));
            moved.truncate(HISTORY);
            Ok((moved, hosts))
        })
        .await?;
    let Some(row) = rows.iter().find(|r| r.slug == slug.as_str()) else {
        return Err(AppError::NotFound(format!("There is no club {slug}.")));
    };
    let version = |r: &str| super::super::tag_and_commit(r).0;
    Ok(ClubPage {
        nav: staff.nav("clubs"),
        may_change: staff.role == Role::Admin,
        known_hosts: state
            .settings
            .hosts()
            .iter()
            .map(|h| h.name.to_string())
            .collect(),
        hosts,
        row: row.clone(),
        history: history
            .into_iter()
            .map(|s| Moved {
                at: s.switched_at,
                from: s
                    .from_release
                    .as_deref()
                    .map_or("no release".into(), version),
                to: version(&s.to_release),
                how: how(s.kind).to_owned(),
                by: s.actor,
                app: s.app,
            })
            .collect(),
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct EditForm {
    name: String,
    /// The address of the club's site, one per application it runs, in the order of `app`.
    app: Vec<String>,
    url: Vec<String>,
    /// The groups, separated by commas or spaces.
    groups: String,
    /// The hosts that serve it, separated by commas or spaces (none: every host), when the
    /// form has the field (`hosts_field`).
    hosts: String,
    hosts_field: String,
}

/// `POST /clubs/{slug}` (admins): changes the club's display name, addresses and groups as
/// the form says, each change audited; everything is checked before anything changes.
pub async fn edit(
    CsrfForm {
        staff,
        form: posted,
        ..
    }: CsrfForm<EditForm, Admin>,
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let slug = ClubSlug::parse(&slug)?;
    let name = crate::domain::club_name(&posted.name)?.to_owned();
    let mut wanted: Vec<String> = Vec::new();
    for group in posted
        .groups
        .split([',', ' '])
        .filter(|g| !g.trim().is_empty())
    {
        let group = crate::domain::GroupName::parse(group.trim())?;
        if !wanted.contains(&group.to_string()) {
            wanted.push(group.to_string());
        }
    }
    let urls: Vec<(String, Option<String>)> = posted
        .app
        .iter()
        .zip(&posted.url)
        .map(|(app, url)| {
            (
                app.clone(),
                Some(url.trim().to_owned()).filter(|u| !u.is_empty()),
            )
        })
        .collect();
    for (app, url) in &urls {
        state.settings.app(Some(app))?;
        if let Some(url) = url {
            crate::domain::check_url(url, state.settings.health.connect_to.is_some())?;
        }
    }
    let hosts = if posted.hosts_field.is_empty() {
        None
    } else {
        let named: Vec<String> = posted.hosts.split([',', ' ']).map(str::to_owned).collect();
        Some(inventory::checked_hosts(&state.settings, &named).map_err(AppError::from_anyhow)?)
    };
    let actor = staff.user.name.clone();
    let found = slug.clone();
    let changed = state
        .db(move |settings, conn| {
            let club = club_or_404(conn, &found)?;
            let mut changed = 0;
            if inventory::rename_club(conn, &actor, found.as_str(), &name)? {
                changed += 1;
            }
            for (app, url) in &urls {
                let webroot = webroot_or_404(conn, &found, app)?;
                if webroot.url != *url {
                    inventory::set_url(
                        settings,
                        conn,
                        &actor,
                        found.as_str(),
                        Some(app),
                        url.as_deref(),
                    )?;
                    changed += 1;
                }
            }
            let had = crate::db::groups::by_slug(conn)?
                .remove(found.as_str())
                .unwrap_or_default();
            if let Some(hosts) = &hosts
                && inventory::set_hosts(settings, conn, &actor, found.as_str(), hosts)?
            {
                changed += 1;
            }
            let one = [club.slug.clone()];
            for group in wanted.iter().filter(|g| !had.contains(g)) {
                changed += inventory::change_group(conn, &actor, group, &one, true)?.len();
            }
            for group in had.iter().filter(|g| !wanted.contains(g)) {
                changed += inventory::change_group(conn, &actor, group, &one, false)?.len();
            }
            Ok(changed)
        })
        .await?;
    let message = match changed {
        0 => "Nothing was changed: the club was like that already.".to_owned(),
        n => format!("{} saved.", crate::domain::count(n, "change")),
    };
    staff.tell(&state, message).await;
    Ok(see_other(&format!("/clubs/{slug}")))
}

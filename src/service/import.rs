//! Adding or updating many clubs at once from a CSV file: header `slug,name,url,webroot` with
//! one application, `webroot:<app>` (and `url:<app>`) columns with several. Every row is
//! checked first and every bad row is named; then all of it is written in one transaction, or
//! nothing is. Existing clubs are updated (name, addresses, webroots of applications they did
//! not run); a webroot never moves by import.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Serialize;

use crate::config::{App, Settings};
use crate::db::Conn;
use crate::db::clubs::{self, NewClub};
use crate::db::{self, audit};
use crate::domain::check_url;
use crate::domain::{ClubSlug, InvalidInput, club_name};
use crate::service::inventory::{CheckedWebroot, resolve_webroot};

/// What an import will do.
#[derive(Debug, Default, Serialize)]
pub struct Plan {
    pub added: Vec<Change>,
    pub updated: Vec<Change>,
    /// Rows that change nothing.
    pub unchanged: usize,
}

/// One club added or updated.
#[derive(Debug, Serialize)]
pub struct Change {
    pub line: usize,
    pub slug: String,
    /// The club's display name as it will be.
    pub shown: String,
    /// What changes, in words ("name: A → B", "mobile at /srv/… (now a legacy copy)").
    pub what: Vec<String>,
    #[serde(skip)]
    club_id: Option<i32>,
    #[serde(skip)]
    name: Option<String>,
    #[serde(skip)]
    webroots: Vec<CheckedWebroot>,
    #[serde(skip)]
    urls: Vec<(String, i32)>,
    /// The hosts that will serve it, when the `hosts` column names any.
    #[serde(skip)]
    hosts: Option<Vec<String>>,
}

/// A row that cannot be imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRow {
    pub line: usize,
    pub reason: String,
}

/// Why an import changed nothing: every bad row.
#[derive(Debug, thiserror::Error)]
#[error("{} bad row{}; nothing was imported: {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, describe(.0))]
pub struct BadRows(pub Vec<BadRow>);

fn describe(rows: &[BadRow]) -> String {
    rows.iter()
        .map(|r| format!("line {}: {}", r.line, r.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Which column holds what.
struct Columns {
    slug: usize,
    name: Option<usize>,
    /// The web hosts that serve the club, separated by spaces.
    hosts: Option<usize>,
    /// Per application: its webroot column and address column.
    apps: Vec<(usize, Option<usize>, Option<usize>)>,
}

fn columns<'s>(
    settings: &'s Settings,
    header: &csv::StringRecord,
) -> Result<(Columns, Vec<&'s App>), InvalidInput> {
    let mut slug = None;
    let mut name = None;
    let mut hosts = None;
    let mut webroots: HashMap<String, usize> = HashMap::new();
    let mut urls: HashMap<String, usize> = HashMap::new();
    for (i, field) in header.iter().enumerate() {
        let field = field.trim();
        let (kind, app) = match field.split_once(':') {
            Some((kind, app)) => (kind, Some(app)),
            None => (field, None),
        };
        let app = match app {
            Some(app) => settings.app(Some(app))?.name.to_string(),
            None if matches!(kind, "webroot" | "url") => settings
                .app(None)
                .map_err(|_| {
                    InvalidInput(format!(
                        "column {kind:?}: there are several applications, so name one as \
                         {kind}:<app>"
                    ))
                })?
                .name
                .to_string(),
            None => String::new(),
        };
        let seen = match kind {
            "slug" => slug.replace(i).is_some(),
            "name" => name.replace(i).is_some(),
            "hosts" => hosts.replace(i).is_some(),
            "webroot" => webroots.insert(app, i).is_some(),
            "url" => urls.insert(app, i).is_some(),
            other => {
                return Err(InvalidInput(format!(
                    "unknown column {other:?}: the columns are slug, name, url, webroot \
                     (webroot:<app> and url:<app> with several applications) and hosts"
                )));
            }
        };
        if seen {
            return Err(InvalidInput(format!("column {field:?} appears twice")));
        }
    }
    let slug = slug.ok_or_else(|| InvalidInput("the header has no slug column".into()))?;
    let mut apps = Vec::new();
    let mut columns = Vec::new();
    for app in settings.apps() {
        let webroot = webroots.remove(app.name.as_str());
        let url = urls.remove(app.name.as_str());
        if webroot.is_some() || url.is_some() {
            apps.push(app);
            columns.push((columns.len(), webroot, url));
        }
    }
    if apps.is_empty() {
        return Err(InvalidInput("the header has no webroot column".into()));
    }
    let columns = Columns {
        slug,
        name,
        hosts,
        apps: columns,
    };
    Ok((columns, apps))
}

/// The separator of a list: a semicolon when its header has semicolons and no comma (as a
/// spreadsheet set to a European locale writes CSV), else a comma.
pub fn delimiter(text: &[u8]) -> u8 {
    let header = text.split(|b| *b == b'\n').next().unwrap_or_default();
    if header.contains(&b';') && !header.contains(&b',') {
        b';'
    } else {
        b','
    }
}

/// The columns of an import for this installation's applications, in order: `slug`, `name`,
/// then `url` and `webroot` (`url:<app>` and `webroot:<app>` for each of several).
pub fn header(settings: &Settings) -> Vec<String> {
    let mut columns = vec!["slug".to_owned(), "name".to_owned()];
    if settings.several_apps() {
        for app in settings.apps() {
            columns.push(format!("url:{}", app.name));
            columns.push(format!("webroot:{}", app.name));
        }
    } else {
        columns.extend(["url".to_owned(), "webroot".to_owned()]);
    }
    if !settings.hosts().is_empty() {
        columns.push("hosts".to_owned());
    }
    columns
}

/// A list to fill in: the header and one example club under `webroot_base`.
pub fn template(settings: &Settings) -> Vec<Vec<String>> {
    let base = settings.webroot_base.display();
    let mut example = vec!["zermatt".to_owned(), "Club Zermatt".to_owned()];
    for app in settings.apps() {
        let site = if settings.several_apps() {
            format!("https://{}.zermatt.example.org/", app.name)
        } else {
            "https://zermatt.example.org/".to_owned()
        };
        let webroot = if settings.several_apps() {
            format!("{base}/zermatt/{}", app.name)
        } else {
            format!("{base}/zermatt/htdocs")
        };
        example.extend([site, webroot]);
    }
    if let Some(host) = settings.hosts().first() {
        example.push(host.name.to_string());
    }
    vec![header(settings), example]
}

/// Every club as a list of the same columns as [`header`], which imports back unchanged.
pub fn export(settings: &Settings, conn: &mut Conn) -> anyhow::Result<Vec<Vec<String>>> {
    let mut rows = vec![header(settings)];
    let webroots = clubs::webroots(conn, None)?;
    let hosts = crate::db::hosts::all(conn)?;
    for club in clubs::all(conn)? {
        let mut row = vec![club.slug.clone(), club.name.clone()];
        for app in settings.apps() {
            let webroot = webroots
                .iter()
                .find(|w| w.slug == club.slug && w.app == app.name.as_str());
            row.push(webroot.and_then(|w| w.url.clone()).unwrap_or_default());
            row.push(webroot.map(|w| w.webroot.clone()).unwrap_or_default());
        }
        if !settings.hosts().is_empty() {
            row.push(
                hosts
                    .get(&club.slug)
                    .map(|h| h.join(" "))
                    .unwrap_or_default(),
            );
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The largest list one import takes: 5 MB and 20,000 clubs. Past that, reading and checking
/// it holds memory and a database connection for long (200,000 rows took 17 s and 725 MB).
pub const MAX_IMPORT_BYTES: usize = 5 << 20;
pub const MAX_IMPORT_ROWS: usize = 20_000;

/// Reads and checks `text` against the clubs there are: what the import would do, or every
/// bad row.
pub fn plan(settings: &Settings, conn: &mut Conn, text: &[u8]) -> anyhow::Result<Plan> {
    let too_big = || {
        InvalidInput(format!(
            "the list is larger than clubdeploy imports at once ({} MB or \
             {MAX_IMPORT_ROWS} clubs); split it into smaller lists and import each; nothing \
             was changed",
            MAX_IMPORT_BYTES >> 20
        ))
    };
    if text.len() > MAX_IMPORT_BYTES {
        return Err(too_big().into());
    }
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter(text))
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text);
    let header = reader
        .headers()
        .map_err(|e| InvalidInput(format!("cannot read the CSV header: {e}")))?
        .clone();
    let (columns, apps) = columns(settings, &header)?;
    let existing: HashMap<String, clubs::Club> = clubs::all(conn)?
        .into_iter()
        .map(|c| (c.slug.clone(), c))
        .collect();
    let mut existing_webroots: HashMap<(String, String), clubs::ClubApp> = HashMap::new();
    let mut taken: HashMap<String, String> = HashMap::new();
    for webroot in clubs::webroots(conn, None)? {
        taken.insert(webroot.webroot.clone(), webroot.slug.clone());
        existing_webroots.insert((webroot.slug.clone(), webroot.app.clone()), webroot);
    }
    let existing_hosts = crate::db::hosts::all(conn)?;
    let mut plan = Plan::default();
    let mut bad = Vec::new();
    let mut slugs_seen: HashSet<String> = HashSet::new();
    for (n, record) in reader.records().enumerate() {
        if n >= MAX_IMPORT_ROWS {
            return Err(too_big().into());
        }
        let line = n + 2;
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                bad.push(BadRow {
                    line,
                    reason: format!("cannot read it: {e}"),
                });
                continue;
            }
        };
        let cell = |i: Option<usize>| i.and_then(|i| record.get(i)).filter(|v| !v.is_empty());
        let row = check_row(
            &existing_hosts,
            settings,
            &columns,
            &apps,
            &cell,
            &existing,
            &existing_webroots,
            &mut taken,
        );
        match row {
            Err(reason) => bad.push(BadRow { line, reason }),
            Ok(mut change) => {
                if !slugs_seen.insert(change.slug.clone()) {
                    bad.push(BadRow {
                        line,
                        reason: format!("club {} appears twice in the file", change.slug),
                    });
                    continue;
                }
                change.line = line;
                match (change.club_id, change.what.is_empty()) {
                    (None, _) => plan.added.push(change),
                    (Some(_), true) => plan.unchanged += 1,
                    (Some(_), false) => plan.updated.push(change),
                }
            }
        }
    }
    if !bad.is_empty() {
        return Err(BadRows(bad).into());
    }
    Ok(plan)
}

#[allow(clippy::too_many_arguments)]
fn check_row<'c>(
    existing_hosts: &std::collections::BTreeMap<String, Vec<String>>,
    settings: &Settings,
    columns: &Columns,
    apps: &[&App],
    cell: &dyn Fn(Option<usize>) -> Option<&'c str>,
    existing: &HashMap<String, clubs::Club>,
    existing_webroots: &HashMap<(String, String), clubs::ClubApp>,
    taken: &mut HashMap<String, String>,
) -> Result<Change, String> {
    let slug = ClubSlug::parse(cell(Some(columns.slug)).unwrap_or_default()).map_err(|e| e.0)?;
    let name = match cell(columns.name) {
        Some(name) => Some(club_name(name).map_err(|e| format!("{slug}: {e}"))?),
        None => None,
    };
    let club = existing.get(slug.as_str());
    let mut change = Change {
        line: 0,
        slug: slug.to_string(),
        what: Vec::new(),
        club_id: club.map(|c| c.id),
        shown: name
            .or(club.map(|c| c.name.as_str()))
            .unwrap_or(slug.as_str())
            .to_owned(),
        name: None,
        webroots: Vec::new(),
        urls: Vec::new(),
        hosts: None,
    };
    if let Some(named) = cell(columns.hosts) {
        let named: Vec<String> = named.split_whitespace().map(str::to_owned).collect();
        let hosts = crate::service::inventory::checked_hosts(settings, &named)
            .map_err(|e| format!("{slug}: {e}"))?;
        let had = existing_hosts
            .get(slug.as_str())
            .cloned()
            .unwrap_or_default();
        if hosts != had {
            change.what.push(format!("served by {}", hosts.join(", ")));
            change.hosts = Some(hosts);
        }
    }
    match (club, name) {
        (None, name) => change.name = Some(name.unwrap_or(slug.as_str()).to_owned()),
        (Some(club), Some(name)) if club.name != name => {
            change
                .what
                .push(format!("name: {:?} → {name:?}", club.name));
            change.name = Some(name.to_owned());
        }
        _ => {}
    }
    for (app, (_, webroot_col, url_col)) in apps.iter().zip(&columns.apps) {
        let url = cell(*url_col);
        if let Some(url) = url {
            check_url(url, settings.health.connect_to.is_some()).map_err(|e| e.0)?;
        }
        let current = existing_webroots.get(&(slug.to_string(), app.name.to_string()));
        let Some(path) = cell(*webroot_col) else {
            match (current, url) {
                (Some(current), Some(url)) if current.url.as_deref() != Some(url) => {
                    change.what.push(format!("{} address → {url}", app.name));
                    change.urls.push((url.to_owned(), current.webroot_id));
                }
                (None, Some(_)) => {
                    return Err(format!(
                        "an address for {} but no webroot of {} for {slug}",
                        app.name, app.name
                    ));
                }
                _ => {}
            }
            continue;
        };
        let resolved = resolve_webroot(settings, Path::new(path)).map_err(|e| format!("{e:#}"))?;
        match current {
            Some(current) if current.webroot != resolved => {
                return Err(format!(
                    "{slug}'s webroot of {} is {}; an import does not move it (remove the club \
                     and add it again)",
                    app.name, current.webroot
                ));
            }
            Some(current) => {
                if let Some(url) = url
                    && current.url.as_deref() != Some(url)
                {
                    change.what.push(format!("{} address → {url}", app.name));
                    change.urls.push((url.to_owned(), current.webroot_id));
                }
            }
            None => {
                if let Some(other) = taken.insert(resolved.clone(), slug.to_string()) {
                    return Err(format!("webroot {resolved} is already {other}'s"));
                }
                let mut webroot = CheckedWebroot::read(app, resolved.clone())
                    .map_err(|e| format!("cannot read {resolved}: {e}"))?;
                webroot.url = url.map(str::to_owned);
                change.what.push(webroot.describe());
                change.webroots.push(webroot);
            }
        }
    }
    if club.is_none() && change.webroots.is_empty() {
        return Err(format!("new club {slug} has no webroot"));
    }
    Ok(change)
}

/// Writes `plan` in one transaction with an audit row per club: all of it or nothing.
pub fn apply(conn: &mut Conn, actor: &str, plan: &Plan) -> anyhow::Result<()> {
    conn.immediate_transaction(|conn| {
        let now = db::now();
        for change in plan.added.iter().chain(&plan.updated) {
            let club_id = match change.club_id {
                Some(id) => {
                    if let Some(name) = &change.name {
                        clubs::rename(conn, id, name)?;
                    }
                    id
                }
                None => {
                    let name = change.name.as_deref().unwrap_or(&change.slug);
                    let url = change.webroots.iter().find_map(|w| w.url.as_deref());
                    clubs::insert(
                        conn,
                        &NewClub {
                            slug: &change.slug,
                            name,
                            url,
                            created_at: now,
                        },
                    )?
                    .id
                }
            };
            for webroot in &change.webroots {
                webroot.insert(conn, club_id)?;
            }
            if let Some(hosts) = &change.hosts {
                crate::db::hosts::set(conn, club_id, hosts)?;
            }
            for (url, webroot_id) in &change.urls {
                clubs::set_url(conn, *webroot_id, Some(url))?;
            }
            let (action, details) = match change.club_id {
                None => (
                    "club.added",
                    format!("imported: {}", change.what.join(", ")),
                ),
                Some(_) => (
                    "club.updated",
                    format!("imported: {}", change.what.join(", ")),
                ),
            };
            audit::append(
                conn,
                &audit::Entry::new(actor, action, "club", &change.slug, &details),
            )?;
        }
        Ok::<_, clubs::AddClubError>(())
    })
    .map_err(|e| match e {
        clubs::AddClubError::Duplicate => anyhow::Error::from(crate::domain::Refusal::Conflict(
            "a club or webroot was added meanwhile; nothing was imported: run the import again"
                .into(),
        )),
        clubs::AddClubError::Db(e) => e.into(),
    })
}

impl Plan {
    /// "3 clubs added, 1 updated, 2 unchanged".
    pub fn summary(&self) -> String {
        format!(
            "{} added, {} updated, {} unchanged",
            crate::domain::count(self.added.len(), "club"),
            self.updated.len(),
            self.unchanged
        )
    }
}

//! Releases and deploying: the releases page (tags, built releases, which clubs run each),
//! the deploy form, the confirmation that says exactly what will change, and queuing.

use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::queue::queue;
use super::ui::see_other;
use super::{AppQuery, AppState, CsrfForm, Deployer, Nav, NoFields, Staff};
use crate::domain::count;
use crate::domain::{ClubSlug, JobSpec, ReleaseTag, Targets, newest_first};
use crate::pipeline::git;
use crate::service::inventory::{self, ReleaseRow};
use crate::service::preview::{self, DeployPlan};
use crate::web::clubs::NO_RELEASE;
use crate::web::error::AppError;

#[derive(Template, WebTemplate)]
#[template(path = "releases.html")]
pub struct ReleasesPage {
    nav: Nav,
    apps: AppTabs,
    rows: Vec<ReleaseRow>,
    /// The repository's tags that cannot be deployed, in one sentence with what to do.
    skipped: Option<String>,
    /// Releases put back on some clubs, said.
    put_back: Vec<crate::service::marks::PutBackNote>,
}

impl ReleasesPage {
    /// What was put back of release `name`, in words ("" for nothing).
    fn put_back_of(&self, name: &str) -> String {
        let said: Vec<&str> = self
            .put_back
            .iter()
            .filter(|n| n.release == name)
            .map(|n| n.words.as_str())
            .collect();
        said.join("; ")
    }

    /// The clubs list showing the clubs on release `name`.
    fn clubs_link(&self, name: &str) -> String {
        crate::web::clubs::release_link(&self.apps.current, name)
    }
}

/// The application a page is about, and the others to switch to (shown when there are
/// several).
pub struct AppTabs {
    pub current: String,
    pub all: Vec<String>,
}

impl AppTabs {
    fn new(state: &AppState, current: &str) -> AppTabs {
        AppTabs {
            current: current.to_owned(),
            all: super::ui::app_names(&state.settings),
        }
    }

    /// Whether there is more than one application to choose from.
    pub fn several(&self) -> bool {
        self.all.len() > 1
    }
}

/// The application of `query`, or the first configured when the query names none (a page
/// that lists, unlike an action, may pick one).
fn listed_app<'s>(
    settings: &'s crate::config::Settings,
    query: &AppQuery,
) -> Result<&'s crate::config::App, AppError> {
    if query.app.trim().is_empty() {
        return Ok(&settings.apps()[0]);
    }
    query.resolve(settings)
}

/// `GET /releases[?app=…]`: what an application's mirror knows, newest version first. It
/// never fetches: the Refresh button queues a fetch job.
pub async fn releases_page(
    staff: Staff,
    state: web::Data<AppState>,
    query: web::Query<AppQuery>,
) -> Result<ReleasesPage, AppError> {
    let app = listed_app(&state.settings, &query)?.name.to_string();
    let name = app.clone();
    let (rows, skipped, marks) = state
        .db(move |settings, conn| {
            let app = settings.app(Some(&name))?;
            let skipped = git::open_mirror(app)?.skipped_tags()?;
            let marks = crate::db::switches::marked(conn, &name)?;
            Ok((inventory::releases(settings, app, conn)?, skipped, marks))
        })
        .await?;
    Ok(ReleasesPage {
        nav: staff.nav("releases"),
        apps: AppTabs::new(&state, &app),
        rows: newest_first(rows, |row| &row.tag),
        skipped: git::skipped_in_words(&skipped),
        put_back: crate::service::marks::notes(&marks, None, |_| true, crate::db::now()),
    })
}

/// `POST /releases/refresh?app=…`: queues a job that fetches the application's tags, and
/// shows it.
pub async fn refresh(
    CsrfForm { staff, once, .. }: CsrfForm<NoFields, Deployer>,
    state: web::Data<AppState>,
    query: web::Query<AppQuery>,
) -> Result<HttpResponse, AppError> {
    let app = listed_app(&state.settings, &query)?.name.clone();
    queue(&staff, &state, JobSpec::Fetch { app: Some(app) }, &once).await
}

/// A club offered in the deploy form.
pub struct Choice {
    pub slug: String,
    pub name: String,
    pub release: String,
    /// The tag of the release it runs ("" for none).
    pub tag: String,
    /// Its groups, separated by spaces.
    pub groups: String,
    pub checked: bool,
    /// It awaits its first deploy.
    pub waiting: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "deploy.html")]
pub struct DeployPage {
    nav: Nav,
    apps: AppTabs,
    /// A tag the address named that the repository (as last fetched) does not have.
    unknown_tag: Option<String>,
    /// A tag the address named that the repository has but clubdeploy cannot use: its name
    /// and why.
    unusable_tag: Option<(String, String)>,
    tags: Vec<String>,
    tag: String,
    clubs: Vec<Choice>,
    may_all: bool,
    /// "Try on these clubs first", pre-filled from `[rollout] canary`.
    canary: String,
    /// The versions the offered clubs run, newest first, with how many run each.
    releases: Vec<(String, usize)>,
    /// The groups of the offered clubs, with how many of them are in each.
    groups: Vec<(String, usize)>,
    /// How many of the offered clubs await their first deploy.
    waiting: usize,
    /// Versions put back on some of the offered clubs (each shown while its tag is chosen).
    put_back: Vec<crate::service::marks::PutBackNote>,
    /// The jobs running now, which a deploy asked for now waits for.
    running: super::ui::RunningNow,
}

impl DeployPage {
    /// How many clubs the form ticks as it is sent (the page's script keeps it up to date).
    fn ticked(&self) -> String {
        let n = self.clubs.iter().filter(|c| c.checked).count();
        format!("{} ticked", count(n, "club"))
    }

    /// This form's address for the application, keeping the chosen tag, with `extra`.
    fn link(&self, extra: &str) -> String {
        let mut link = format!(
            "/deploy?app={}",
            crate::web::error::urlencode(&self.apps.current)
        );
        if !self.tag.is_empty() {
            link.push_str(&format!("&tag={}", crate::web::error::urlencode(&self.tag)));
        }
        format!("{link}&{extra}")
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct DeployQuery {
    app: String,
    tag: String,
    club: String,
    /// Tick every club of this group.
    group: String,
    /// Tick every club on this version.
    release: String,
}

/// `GET /deploy[?app=…]`: the application first (when there are several), then a tag and
/// one of the clubs running it, several, or all.
pub async fn form_page(
    staff: Deployer,
    state: web::Data<AppState>,
    query: web::Query<DeployQuery>,
) -> Result<DeployPage, AppError> {
    let app_query = AppQuery {
        app: query.app.clone(),
    };
    let app = listed_app(&state.settings, &app_query)?.name.to_string();
    // Tags as last fetched (newest version first); fetching is the Refresh job's.
    let name = app.clone();
    let (tags, skipped): (Vec<String>, Vec<git::SkippedTag>) = state
        .blocking(move |settings| {
            let app = settings.app(Some(&name))?;
            let mirror = git::open_mirror(app)?;
            let tags = newest_first(mirror.tags()?, |t| &t.tag);
            Ok((
                tags.into_iter().map(|t| t.tag.to_string()).collect(),
                mirror.skipped_tags()?,
            ))
        })
        .await?;
    let name = app.clone();
    let (clubs, mut groups, running, marks) = state
        .db(move |settings, conn| {
            let clubs = inventory::status(settings, conn, Some(&name))?;
            let groups = crate::db::groups::by_slug(conn)?;
            let marks = crate::db::switches::marked(conn, &name)?;
            let names = crate::db::clubs::names(conn)?;
            Ok((
                clubs,
                groups,
                super::ui::RunningNow::load(conn, &names)?,
                marks,
            ))
        })
        .await?;
    let clubs: Vec<Choice> = clubs
        .into_iter()
        .filter(|c| staff.may_change(&c.slug))
        .map(|c| {
            let groups = groups.remove(&c.slug).unwrap_or_default();
            let tag = c.tag.clone().unwrap_or_default();
            Choice {
                checked: c.slug == query.club
                    || (!query.group.is_empty() && groups.contains(&query.group))
                    || (query.release == NO_RELEASE && c.no_link_yet)
                    || (!query.release.is_empty() && tag == query.release),
                waiting: c.no_link_yet,
                groups: groups.join(" "),
                tag,
                slug: c.slug,
                name: c.name,
                release: c.release.unwrap_or_else(|| "no release".into()),
            }
        })
        .collect();
    let mut releases: Vec<(String, usize)> = Vec::new();
    for tag in super::ui::newest_first_tags(clubs.iter().map(|c| c.tag.as_str())) {
        let n = clubs.iter().filter(|c| c.tag == tag).count();
        releases.push((tag, n));
    }
    let mut by_group: std::collections::BTreeMap<String, usize> = Default::default();
    for club in &clubs {
        for group in club.groups.split_whitespace() {
            *by_group.entry(group.to_owned()).or_default() += 1;
        }
    }
    let offered: Vec<&str> = clubs.iter().map(|c| c.slug.as_str()).collect();
    let canary = state
        .settings
        .rollout
        .canary
        .iter()
        .filter(|s| offered.contains(&s.as_str()) || by_group.contains_key(s.as_str()))
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    let requested = query.tag.trim();
    // A tag the repository has but clubdeploy cannot use: say why and what to do.
    let unusable_tag = skipped
        .iter()
        .find(|s| s.name == requested)
        .map(|s| (s.name.clone(), s.why.clone()));
    let unknown_tag =
        (!requested.is_empty() && unusable_tag.is_none() && !tags.iter().any(|t| t == requested))
            .then(|| requested.to_owned());
    Ok(DeployPage {
        nav: staff.nav("deploy"),
        apps: AppTabs::new(&state, &app),
        unknown_tag,
        unusable_tag,
        tags,
        tag: query.tag.clone(),
        may_all: staff.may_change_all(),
        canary,
        releases,
        groups: by_group.into_iter().collect(),
        waiting: clubs.iter().filter(|c| c.waiting).count(),
        put_back: crate::service::marks::notes(
            &marks,
            None,
            |slug| clubs.iter().any(|c| c.slug == slug),
            crate::db::now(),
        ),
        clubs,
        running,
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct DeployForm {
    app: String,
    tag: String,
    /// `all`, or `some` with the clubs in `clubs`.
    target: String,
    clubs: Vec<String>,
    /// The clubs to try first (slugs, separated by commas or spaces), when `canary_field` is
    /// set (the form had the field; an empty one means no canary).
    canary: String,
    canary_field: String,
    /// The form's one-time token.
    once: String,
    /// Deploy even to clubs the version was put back on (the confirmation's tick).
    again: String,
    /// The group the ticked clubs are (found by [`DeployForm::resolve`], never posted).
    #[serde(skip)]
    group: Option<crate::domain::GroupName>,
}

impl DeployForm {
    /// The form read against the clubs: each group named among the clubs to try first
    /// replaced by its clubs (a name that is a club's stays the club), and the group the
    /// ticked clubs are, if they are exactly one ([`crate::domain::group_of`]).
    async fn resolve(mut self, staff: &Staff, state: &AppState) -> Result<DeployForm, AppError> {
        let names = self.canary.clone();
        // A group's clubs among those ticked go first (all of it, for a deploy to all).
        let ticked = (self.target != "all").then(|| self.clubs.clone());
        let slugs: Vec<ClubSlug> = match &ticked {
            Some(ticked) => ticked
                .iter()
                .filter_map(|s| ClubSlug::parse(s).ok())
                .collect(),
            None => Vec::new(),
        };
        let app = AppQuery {
            app: self.app.clone(),
        }
        .resolve(&state.settings)?
        .name
        .to_string();
        let (role, scope) = (staff.role, staff.scope.clone());
        let may_change = move |slug: &str| crate::domain::may_change(role, &scope, slug);
        let (canary, group) = state
            .db(move |_, conn| {
                let names: Vec<String> = names
                    .split([',', ' '])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                let canary = if names.is_empty() {
                    String::new()
                } else {
                    crate::db::groups::expand(conn, &names, ticked.as_deref())?.join(", ")
                };
                let group = crate::db::groups::picked(conn, &app, &slugs, may_change)?;
                Ok((canary, group))
            })
            .await?;
        self.canary = canary;
        self.group = group;
        Ok(self)
    }

    /// The job this form asks for, if this user may ask for it.
    fn spec(&self, staff: &Staff, settings: &crate::config::Settings) -> Result<JobSpec, AppError> {
        let app = AppQuery {
            app: self.app.clone(),
        }
        .resolve(settings)?
        .name
        .clone();
        let tag = ReleaseTag::parse(self.tag.trim())?;
        let targets = if self.target == "all" {
            if !staff.may_change_all() {
                return Err(AppError::not_allowed("deploy to every club"));
            }
            Targets::All
        } else {
            let slugs: Vec<ClubSlug> = self
                .clubs
                .iter()
                .map(|s| ClubSlug::parse(s))
                .collect::<Result<_, _>>()?;
            if slugs.is_empty() {
                return Err(AppError::BadRequest(
                    "Choose at least one club, or all clubs.".into(),
                ));
            }
            if let Some(denied) = slugs.iter().find(|s| !staff.may_change(s.as_str())) {
                return Err(AppError::not_allowed(&format!("deploy to club {denied}")));
            }
            Targets::Clubs(slugs)
        };
        let canary = if self.canary_field.is_empty() {
            None
        } else {
            Some(
                self.canary
                    .split([',', ' '])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(ClubSlug::parse)
                    .collect::<Result<Vec<_>, _>>()?,
            )
        };
        Ok(JobSpec::Deploy {
            app,
            tag,
            targets,
            canary,
            rebuild: false,
            group: self.group.clone(),
        })
    }
}

impl ConfirmPage {
    /// A release as staff read it: its tag, and its commit id apart.
    fn version(&self, release: &str) -> (String, String) {
        super::tag_and_commit(release)
    }

    /// "1 club", "3 clubs": how many clubs move in all, or in one group of `clubs`.
    fn n_clubs(&self, clubs: Option<&[preview::Named]>) -> String {
        let n = match clubs {
            Some(clubs) => clubs.len(),
            None => self.plan.moves.iter().map(|m| m.clubs.len()).sum(),
        };
        count(n, "club")
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "deploy_confirm.html")]
pub struct ConfirmPage {
    nav: Nav,
    app: String,
    several: bool,
    tag: String,
    target: String,
    clubs: Vec<String>,
    plan: DeployPlan,
    /// The clubs tried first, as posted, and by display name.
    canary: Option<String>,
    first: String,
    /// The group the clubs are, if they are exactly one.
    group: Option<String>,
    /// OPcache warnings to see before deploying.
    warnings: Vec<String>,
    /// The jobs running now, which this deploy would wait for.
    running: super::ui::RunningNow,
    /// This version put back on clubs it goes to: deploying needs a tick on purpose.
    put_back: Vec<crate::service::marks::PutBackNote>,
}

/// `POST /deploy/confirm`: the same question at its own address (POST-redirect-GET), so Back
/// from the job page returns to the question without the browser offering to send a form
/// again.
pub async fn confirm_post(
    CsrfForm {
        staff,
        form: posted,
        ..
    }: CsrfForm<DeployForm, Deployer>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    posted.spec(&staff, &state.settings)?;
    let mut query: Vec<(&str, &str)> = vec![
        ("app", &posted.app),
        ("tag", &posted.tag),
        ("target", &posted.target),
    ];
    query.extend(posted.clubs.iter().map(|c| ("clubs", c.as_str())));
    if !posted.canary_field.is_empty() {
        query.extend([("canary_field", "1"), ("canary", posted.canary.as_str())]);
    }
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={}", crate::web::error::urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    Ok(see_other(&format!("/deploy/confirm?{query}")))
}

/// `GET /deploy/confirm?…` (the deploy form's fields): says exactly what will change (which
/// clubs move from which release, the commits that brings or undoes, warnings), and asks. It
/// changes nothing, so it is a GET: Back and reload are safe.
pub async fn confirm(
    staff: Deployer,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
) -> Result<ConfirmPage, AppError> {
    let posted: DeployForm = serde_html_form::from_str(req.query_string())
        .map_err(|e| AppError::BadRequest(format!("the form could not be read: {e}")))?;
    let posted = posted.resolve(&staff, &state).await?;
    let spec = posted.spec(&staff, &state.settings)?;
    let JobSpec::Deploy {
        app,
        tag,
        targets,
        canary,
        group,
        ..
    } = spec
    else {
        unreachable!("the form asks for a deploy")
    };
    let first = canary.clone().unwrap_or_default();
    let canary = canary.map(|slugs| {
        slugs
            .iter()
            .map(ClubSlug::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    });
    let all = targets == Targets::All;
    let name = app.to_string();
    let (tag_text, chosen) = (tag.to_string(), targets.clone());
    let (clubs, names, running, put_back) = state
        .db(move |settings, conn| {
            let clubs = inventory::status(settings, conn, Some(&name))?;
            let names = crate::db::clubs::names(conn)?;
            let put_back = crate::service::marks::for_deploy(conn, &name, &tag_text, &chosen)?;
            let running = super::ui::RunningNow::load(conn, &names)?;
            Ok((clubs, names, running, put_back))
        })
        .await?;
    let first: Vec<&str> = first.iter().map(|s| names.of(s.as_str())).collect();
    let clubs =
        preview::select(clubs, &targets).map_err(|e| AppError::BadRequest(format!("{e:#}")))?;
    // Reading git history takes no database connection.
    let name = app.to_string();
    let plan = state
        .blocking(move |settings| {
            let app = settings.app(Some(&name))?;
            preview::plan(settings, app, &tag, &clubs, all)
        })
        .await?;
    Ok(ConfirmPage {
        nav: staff.nav("deploy"),
        app: app.to_string(),
        several: state.settings.several_apps(),
        tag: posted.tag.trim().to_owned(),
        target: if all { "all".into() } else { "some".into() },
        clubs: posted.clubs.clone(),
        plan,
        first: crate::domain::named(&first, first.len()),
        canary,
        group: group.map(|g| g.to_string()),
        running,
        put_back,
        warnings: state
            .opcache()
            .await?
            .map(|i| i.warnings)
            .unwrap_or_default(),
    })
}

/// `POST /deploy`: queues the deploy and shows its job.
pub async fn deploy(
    CsrfForm {
        staff,
        form: posted,
        ..
    }: CsrfForm<DeployForm, Deployer>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let posted = posted.resolve(&staff, &state).await?;
    let spec = posted.spec(&staff, &state.settings)?;
    if let JobSpec::Deploy {
        app, tag, targets, ..
    } = &spec
    {
        let (app, tag, targets) = (app.to_string(), tag.to_string(), targets.clone());
        let put_back = state
            .db(move |_, conn| {
                Ok(crate::service::marks::for_deploy(
                    conn, &app, &tag, &targets,
                )?)
            })
            .await?;
        crate::service::marks::refuse_unless_again(&put_back, posted.again == "1")
            .map_err(|refusal| AppError::Conflict(format!("{refusal}.")))?;
    }
    queue(&staff, &state, spec, &posted.once).await
}

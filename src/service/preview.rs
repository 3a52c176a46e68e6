//! What a deploy will change, said before it is queued: for each group of clubs moving from
//! one release to the target, the commits it brings in (or undoes, moving backwards), the
//! files it changes and a warning for changes under the watched paths. One function for the
//! panel's confirmation page and `clubdeploy deploy --dry-run`; it reads the mirror and the
//! releases on disk only, never the network.

use std::collections::BTreeMap;

use anyhow::bail;
use serde::Serialize;

use crate::config::{App, Settings};
use crate::db::clubs::ClubApp;
use crate::db::switches;
use crate::domain::{ReleaseName, ReleaseTag, Targets, count};
use crate::pipeline::git::{self, Changes, CommitSummary, Mirror};
use crate::pipeline::release;
use crate::pipeline::switch::{self, Webroot};
use crate::service::inventory::ClubStatus;

/// Everything a deploy will do, in words staff can check before they confirm.
#[derive(Debug, Clone, Serialize)]
pub struct DeployPlan {
    pub tag: String,
    /// The release the clubs will run.
    pub release: String,
    /// One group per release the clubs move from.
    pub moves: Vec<Move>,
    /// Clubs already on the target release.
    pub unchanged: Vec<Named>,
    /// "3 clubs will move to v2-…".
    pub summary: String,
    /// What happens to Apache afterwards.
    pub reload: String,
    /// What is deleted afterwards (a deploy to all clubs), if anything.
    pub prune: Option<String>,
    /// Clubs a deploy to all clubs leaves out, and why (a legacy copy to adopt first).
    pub left_out: Vec<String>,
}

/// A club as the plan names it: by display name to staff, by short name on the command line.
#[derive(Debug, Clone, Serialize)]
pub struct Named {
    pub slug: String,
    pub name: String,
}

impl std::fmt::Display for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// The short names of `clubs`, joined by commas.
fn slugs(clubs: &[Named]) -> String {
    clubs
        .iter()
        .map(|c| c.slug.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Clubs moving from one release (or none) to the target, and what that brings.
#[derive(Debug, Clone, Serialize)]
pub struct Move {
    /// The release they run now (`None`: no release yet).
    pub from: Option<String>,
    pub clubs: Vec<Named>,
    /// "2 clubs will move from v1-… to v2-…".
    pub headline: String,
    /// "brings in 4 commits; 12 files changed", or why that is not known.
    pub detail: String,
    /// Commits brought in (newest first, at most 20), or undone when moving backwards.
    pub commits: Vec<CommitSummary>,
    /// Whether `commits` are undone (moving backwards) rather than brought in.
    pub backwards: bool,
    /// Warnings about watched paths ("the database may need migrating").
    pub warnings: Vec<String>,
    /// The full comparison, when both commits are known.
    pub changes: Option<Changes>,
}

/// The clubs a deploy to `targets` concerns; unknown slugs are refused, naming them.
pub fn select(clubs: Vec<ClubStatus>, targets: &Targets) -> anyhow::Result<Vec<ClubStatus>> {
    match targets {
        Targets::All => Ok(clubs),
        Targets::Clubs(slugs) => {
            let unknown: Vec<&str> = slugs
                .iter()
                .map(|s| s.as_str())
                .filter(|s| !clubs.iter().any(|c| c.slug == *s))
                .collect();
            if !unknown.is_empty() {
                bail!("no such club: {}", unknown.join(", "));
            }
            Ok(clubs
                .into_iter()
                .filter(|c| slugs.iter().any(|s| s.as_str() == c.slug))
                .collect())
        }
    }
}

/// What deploying `tag` to `clubs` (all clubs when `all`) will change. The tag must be in the
/// mirror already: a preview never fetches.
pub fn plan(
    settings: &Settings,
    app: &App,
    tag: &ReleaseTag,
    clubs: &[ClubStatus],
    all: bool,
) -> anyhow::Result<DeployPlan> {
    let mirror = git::open_mirror(app)?;
    let Some(commit) = mirror.resolve(tag)? else {
        bail!(
            "tag {tag} is not in the repository as last fetched; refresh the tags (the \
             releases page's Refresh, or `clubdeploy releases --fetch`) and try again"
        );
    };
    let release = ReleaseName::new(tag, &commit)?;
    let mut groups: BTreeMap<Option<String>, Vec<Named>> = BTreeMap::new();
    let mut unchanged = Vec::new();
    // A legacy copy cannot be switched: left out of a deploy to all, refused when named.
    let (legacy, clubs): (Vec<&ClubStatus>, Vec<&ClubStatus>) =
        clubs.iter().partition(|c| c.legacy);
    if !all && let Some(first) = legacy.first() {
        return Err(crate::domain::InvalidInput(format!(
            "{}'s webroot is a legacy copy (a real directory): adopt it first, or leave it out",
            first.name
        ))
        .into());
    }
    let left_out = legacy.iter().map(|c| c.name.clone()).collect();
    for club in clubs {
        let named = Named {
            slug: club.slug.clone(),
            name: club.name.clone(),
        };
        match &club.release {
            Some(r) if *r == release.as_str() => unchanged.push(named),
            from => groups.entry(from.clone()).or_default().push(named),
        }
    }
    let moves = groups
        .into_iter()
        .map(|(from, clubs)| describe_move(app, &mirror, from, clubs, &release, &commit))
        .collect::<anyhow::Result<Vec<Move>>>()?;
    let moving: usize = moves.iter().map(|m| m.clubs.len()).sum();
    let reload = if moving == 0 {
        "Nothing will be switched, so Apache will not be reloaded.".to_owned()
    } else if settings.reload.policy.reloads_after(all) {
        "Apache will then be reloaded, so every switched club serves the new code at once."
            .to_owned()
    } else {
        "Apache will not be reloaded (reload policy): PHP may serve old code for up to two \
         minutes."
            .to_owned()
    };
    let prune = all.then(|| {
        format!(
            "Afterwards, releases no club runs will be deleted, keeping the newest {}.",
            settings.keep_releases
        )
    });
    Ok(DeployPlan {
        tag: tag.to_string(),
        summary: format!("{} will move to {release}.", count(moving, "club")),
        release: release.to_string(),
        moves,
        unchanged,
        reload,
        prune,
        left_out,
    })
}

fn describe_move(
    app: &App,
    mirror: &Mirror,
    from: Option<String>,
    clubs: Vec<Named>,
    to: &ReleaseName,
    to_commit: &str,
) -> anyhow::Result<Move> {
    let headline = format!(
        "{} will move from {} to {to}",
        count(clubs.len(), "club"),
        from.as_deref().unwrap_or("no release")
    );
    let from_commit = from
        .as_deref()
        .and_then(|name| commit_of(app, mirror, name));
    // A commit the mirror lacks (a tag force-moved, history rewritten) cannot be compared.
    let changes = from_commit
        .as_deref()
        .and_then(|from| mirror.changes(from, to_commit, &app.git.watch_paths).ok());
    let Some(changes) = changes else {
        let detail = match &from {
            None => "their first release: every file is new".to_owned(),
            Some(name) => format!(
                "the commit of {name} is not in the repository any more, so what changes \
                 cannot be listed"
            ),
        };
        return Ok(Move {
            from,
            clubs,
            headline,
            detail,
            commits: Vec::new(),
            backwards: false,
            warnings: Vec::new(),
            changes: None,
        });
    };
    let backwards = changes.brought == 0 && changes.undone > 0;
    let mut parts = Vec::new();
    if changes.brought > 0 {
        parts.push(format!("brings in {}", count(changes.brought, "commit")));
    }
    if changes.undone > 0 {
        parts.push(format!(
            "undoes {} (moving back to an older version)",
            count(changes.undone, "commit")
        ));
    }
    if parts.is_empty() {
        parts.push("the same code".to_owned());
    }
    parts.push(format!("{} changed", count(changes.files_changed, "file")));
    let mut warnings: Vec<String> = changes
        .watched
        .iter()
        .map(|(path, n)| {
            format!(
                "contains {} under {path}: the database may need migrating",
                count(*n, "changed file")
            )
        })
        .collect();
    if changes.unrelated {
        warnings.insert(
            0,
            format!(
                "{to} shares no history with {}: it may be another application's tag, or the \
                 repository's history was rewritten; check the tag before you deploy it",
                from.as_deref().unwrap_or("what they run")
            ),
        );
    }
    let commits = if backwards {
        changes.newest_undone.clone()
    } else {
        changes.newest_brought.clone()
    };
    Ok(Move {
        from,
        clubs,
        headline,
        detail: parts.join("; "),
        commits,
        backwards,
        warnings,
        changes: Some(changes),
    })
}

/// The commit a release was built from: its manifest, or the mirror's commit that its name's
/// short id names.
fn commit_of(app: &App, mirror: &Mirror, name: &str) -> Option<String> {
    let parsed = ReleaseName::parse(name).ok()?;
    if let Some(found) = release::read(&app.releases_dir.join(name), &parsed) {
        return Some(found.manifest.commit);
    }
    mirror.commit_by_prefix(parsed.short_commit())
}

impl DeployPlan {
    /// The plan as plain text, for the command line.
    pub fn to_text(&self) -> String {
        let mut text = format!("deploy {}: {}\n", self.tag, self.summary);
        for group in &self.moves {
            text.push_str(&format!(
                "\n{}: {}\n  {}\n",
                group.headline,
                slugs(&group.clubs),
                group.detail
            ));
            for warning in &group.warnings {
                text.push_str(&format!("  WARNING: {warning}\n"));
            }
            if !group.commits.is_empty() {
                let what = if group.backwards {
                    "commits undone"
                } else {
                    "commits brought in"
                };
                text.push_str(&format!("  newest {what}:\n"));
                for commit in &group.commits {
                    text.push_str(&format!(
                        "    {} {} ({}, {})\n",
                        &commit.id[..8],
                        commit.subject,
                        commit.author,
                        commit.at.format("%Y-%m-%d")
                    ));
                }
            }
        }
        if !self.unchanged.is_empty() {
            text.push_str(&format!(
                "\n{} already {} it: {}\n",
                count(self.unchanged.len(), "club"),
                if self.unchanged.len() == 1 {
                    "runs"
                } else {
                    "run"
                },
                slugs(&self.unchanged)
            ));
        }
        if !self.left_out.is_empty() {
            text.push_str(&format!(
                "\nleft out (a legacy copy, adopt it first): {}\n",
                self.left_out.join(", ")
            ));
        }
        text.push_str(&format!("\n{}\n", self.reload));
        if let Some(prune) = &self.prune {
            text.push_str(&format!("{prune}\n"));
        }
        text
    }
}

/// Clubs a deploy switched that still run what it gave them, each with that switch.
pub type StillSwitched = Vec<(ClubApp, switches::Switch)>;

/// Of the switches a deploy job made (`switched`), those of `app` whose club (among `clubs`)
/// still runs the release the deploy gave it, each with its club; and the clubs that have
/// moved on since. What "Put these clubs back" shows, and what its job switches.
pub fn still_switched(
    app: &App,
    switched: &[switches::Switch],
    clubs: &[ClubApp],
) -> anyhow::Result<(StillSwitched, Vec<ClubApp>)> {
    let (mut still, mut moved) = (Vec::new(), Vec::new());
    let by_id: std::collections::HashMap<i32, &ClubApp> =
        clubs.iter().map(|c| (c.club_id, c)).collect();
    for switch in switched
        .iter()
        .filter(|s| s.kind.made_by_the_deploy() && s.app == app.name.as_str())
    {
        let Some(club) = by_id.get(&switch.club_id).copied() else {
            continue;
        };
        let runs = switch::inspect(club.webroot.as_ref(), &app.releases_dir)?;
        if matches!(&runs, Webroot::Release(now) if now.as_str() == switch.to_release) {
            still.push((club.clone(), switch.clone()));
        } else {
            moved.push(club.clone());
        }
    }
    Ok((still, moved))
}

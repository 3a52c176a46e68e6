//! Switching clubs to a release: the links, the job's running count, and the record of
//! each switch with its audit row.

use super::*;

/// Where one call of [`switch_clubs`] stands in its job: a line to say first (a wave's), and
/// the job's count of clubs handled before it, of all it will handle.
#[derive(Debug, Clone)]
pub(super) struct SwitchRun {
    pub(super) header: Option<String>,
    pub(super) tally: Tally,
    /// What kind of job counts, and the version a deploy brings: what its count says.
    kind: JobKind,
    to: Option<String>,
    /// Whether this run's count is the job's (a put-back within a deploy says each club,
    /// but the deploy's count stays the job's).
    counts: bool,
    /// When the job last said its count.
    told_at: Option<std::time::Instant>,
}

impl SwitchRun {
    /// A job's count of `total` clubs, none handled yet; `to`: the version a deploy brings.
    pub(super) fn new(kind: JobKind, total: usize, to: Option<&ReleaseTag>) -> SwitchRun {
        SwitchRun {
            header: None,
            tally: Tally {
                total,
                ..Tally::default()
            },
            kind,
            to: to.map(ToString::to_string),
            counts: true,
            told_at: None,
        }
    }

    /// Clubs put back within another job, whose count stays that job's.
    pub(super) fn within(total: usize) -> SwitchRun {
        SwitchRun {
            counts: false,
            ..SwitchRun::new(JobKind::PutBack, total, None)
        }
    }

    /// The job's whole count in words, the job being `status` (see [`Tally::words`]).
    pub(super) fn words(&self, status: JobStatus) -> String {
        self.tally.words(self.kind, self.to.as_deref(), status)
    }

    /// "12 of 30 clubs on v1.2.0", said while the job runs.
    fn counted(&self) -> String {
        self.words(JobStatus::Running)
    }

    /// How many clubs this run has switched (the others it handled already ran the release).
    pub(super) fn switched(&self) -> usize {
        self.tally.done - self.tally.already
    }

    /// Says the count, as data too where it is the job's.
    fn tell(&self, progress: &mut dyn Progress, line: &str) {
        if self.counts {
            progress.count(line, self.tally);
        } else {
            progress.progress(line);
        }
    }

    /// One more club handled (`already` on the release): a line for it (`what` it now runs)
    /// with the count in a job of up to [`crate::pipeline::EVERY_CLUB_UP_TO`] clubs, else
    /// the count as [`crate::pipeline::worth_telling`] paces it. Returns whether anything
    /// was said.
    fn one_more(
        &mut self,
        progress: &mut dyn Progress,
        already: bool,
        what: impl FnOnce() -> String,
    ) -> bool {
        self.tally.done += 1;
        self.tally.already += usize::from(already);
        let (done, total) = (self.tally.done, self.tally.total);
        let since = self.told_at.map(|at| at.elapsed());
        if total <= crate::pipeline::EVERY_CLUB_UP_TO {
            self.tell(progress, &format!("{} ({})", what(), self.counted()));
        } else if crate::pipeline::worth_telling(done, total, since) {
            self.tell(progress, &self.counted());
            self.told_at = Some(std::time::Instant::now());
        } else {
            return false;
        }
        true
    }
}

/// Switches each club not yet on `release`, then records the switches in one transaction.
/// On a failure part-way, the switches already made are recorded before the error returns.
pub(super) fn switch_clubs(
    job: &mut Job<'_>,
    app: &App,
    clubs: &[ClubApp],
    release: &Release,
    kind: SwitchKind,
    rolled_back_from: Option<&ReleaseName>,
    run: &mut SwitchRun,
) -> anyhow::Result<Vec<switches::NewSwitch>> {
    job.progress.step(Step::Switch);
    if let Some(header) = run.header.take() {
        job.progress.progress(&header);
    }
    let mut told = run.tally.done;
    let releases_dir = &app.releases_dir;
    let switcher = job.host.links(&release.dir, &job.settings.webroot_base);
    let mut done = Vec::new();
    let mut failure = None;
    for batch in clubs.chunks(crate::pipeline::switch::SWITCH_BATCH) {
        let webroots: Vec<&std::path::Path> = batch.iter().map(|c| c.webroot.as_ref()).collect();
        // One read of each link decides whether to switch and what the club ran before; the
        // batch's new links are made first, then renamed over the webroots in one run.
        let switched = switcher.switch_batch(&webroots, releases_dir);
        let handled = switched.before.len();
        for (club, from) in batch.iter().zip(switched.before) {
            let Some(from) = from.filter(|from| from.release() != Some(&release.name)) else {
                let what = || {
                    format!(
                        "{} already runs {}",
                        label(job.settings, club),
                        release.name
                    )
                };
                if run.one_more(&mut *job.progress, true, what) {
                    told = run.tally.done;
                }
                continue;
            };
            done.push(switches::NewSwitch {
                club_id: club.club_id,
                app: app.name.to_string(),
                from_release: from.release().map(|r| r.to_string()),
                to_release: release.name.to_string(),
                commit_id: release.manifest.commit.clone(),
                kind,
                actor: job.actor.to_owned(),
                switched_at: db::now(),
                job_id: Some(job.id),
            });
            let what = || format!("{} now runs {}", label(job.settings, club), release.name);
            if run.one_more(&mut *job.progress, false, what) {
                told = run.tally.done;
            }
        }
        if let Some(e) = switched.error {
            // The batch stopped at the first club it could not switch.
            let club = &batch[handled];
            failure = Some(e.context(format!("club {}", club.slug)));
            break;
        }
    }
    drop(switcher);
    // A wave ends with its count said, whatever the percent.
    if told != run.tally.done && failure.is_none() {
        run.tell(&mut *job.progress, &run.counted());
    }
    let marks: Vec<switches::BadMark> = match rolled_back_from {
        Some(from) => done
            .iter()
            .map(|switch| switches::BadMark {
                club_id: switch.club_id,
                app: app.name.to_string(),
                release: from.to_string(),
            })
            .collect(),
        None => Vec::new(),
    };
    let by_id = by_id(clubs);
    let details: Vec<(String, String)> = done
        .iter()
        .map(|switch| {
            let slug = by_id
                .get(&switch.club_id)
                .map_or_else(String::new, |c| c.slug.clone());
            let from = switch.from_release.as_deref().unwrap_or("no release");
            let text = format!(
                "{kind}: from {from} to {} (job #{})",
                switch.to_release, job.id
            );
            (slug, text)
        })
        .collect();
    let entries: Vec<audit::Entry<'_>> = details
        .iter()
        .map(|(slug, text)| {
            audit::Entry::new(job.actor, "club.switched", "club", slug, text)
                .for_app(app.name.as_str())
        })
        .collect();
    switches::record(&mut *job.conn()?, &done, &marks, &entries)
        .context("cannot record the switches")?;
    match failure {
        Some(e) => Err(e.context(format!(
            "switched {} of {} clubs, then stopped",
            done.len(),
            clubs.len()
        ))),
        None => Ok(done),
    }
}

//! A running job's log: each step, progress line and command output goes to `job_events`,
//! where the job page and `clubdeploy job <id>` read it, and optionally to the terminal.

use std::time::Instant;

use crate::db::{self, DbPool, jobs};
use crate::domain::Tally;
use crate::pipeline::command::Ran;
use crate::pipeline::{Progress, Step};

/// Writes a job's events to the database (and echoes them when asked), taking a pooled
/// connection for each line only: a job never keeps one while it builds, fetches or waits.
pub struct JobLog {
    pool: DbPool,
    job_id: i32,
    step: Option<(Step, Instant)>,
    echo: bool,
}

impl JobLog {
    /// A log for job `job_id`; `echo` also prints each line.
    pub fn new(pool: &DbPool, job_id: i32, echo: bool) -> JobLog {
        JobLog {
            pool: pool.clone(),
            job_id,
            step: None,
            echo,
        }
    }

    /// Writes one event; a failure to log never stops the job, it is said on stderr.
    pub fn write(&mut self, kind: &str, message: &str, output: Option<&str>) {
        self.write_counted(kind, message, output, None);
    }

    /// [`JobLog::write`] for an event that says how far the whole job is.
    fn write_counted(
        &mut self,
        kind: &str,
        message: &str,
        output: Option<&str>,
        count: Option<Tally>,
    ) {
        let to_i32 = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        let event = jobs::NewJobEvent {
            job_id: self.job_id,
            at: db::now(),
            step: self.step.map(|(step, _)| step.as_str()),
            kind,
            message,
            output,
            done: count.map(|c| to_i32(c.done)),
            total: count.map(|c| to_i32(c.total)),
            already: count.map(|c| to_i32(c.already)),
        };
        let written = self
            .pool
            .get()
            .map_err(anyhow::Error::from)
            .and_then(|mut conn| Ok(jobs::add_event(&mut conn, &event)?));
        if let Err(e) = written {
            eprintln!(
                "warning: cannot write to the log of job #{}: {e}",
                self.job_id
            );
        }
        if self.echo {
            crate::say_part!("{}", format_event(kind, message, output));
        }
    }
}

impl JobLog {
    /// Records that the current step ended well, with how long it took.
    pub fn end_step(&mut self) {
        if let Some((step, started)) = self.step {
            // Hundredths: a step of a thousand clubs takes well under a second.
            let message = format!("{step} done in {:.2} s", started.elapsed().as_secs_f64());
            self.write("done", &message, None);
        }
    }
}

impl Progress for JobLog {
    fn step(&mut self, step: Step) {
        self.end_step();
        self.step = Some((step, Instant::now()));
        self.write("step", step.as_str(), None);
    }

    fn progress(&mut self, message: &str) {
        self.write("progress", message, None);
    }

    fn count(&mut self, message: &str, tally: Tally) {
        self.write_counted("progress", message, None, Some(tally));
    }

    fn output(&mut self, ran: &Ran) {
        let message = format!("$ {} ({})", ran.shown, ran.status);
        self.write("output", &message, Some(&ran.output));
    }

    fn evidence(&mut self, message: &str, text: &str) {
        self.write("output", message, Some(text));
    }
}

/// How an event reads on a terminal: steps flush left, the rest indented, output behind `|`.
pub fn format_event(kind: &str, message: &str, output: Option<&str>) -> String {
    let mut text = match kind {
        "step" => format!("{message}:\n"),
        _ => format!("  {message}\n"),
    };
    for line in output.unwrap_or_default().lines() {
        text.push_str("  | ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

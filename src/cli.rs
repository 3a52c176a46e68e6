//! What the command line prints: job progress on the terminal, tables, and JSON.

use std::io::Write;

use serde::Serialize;

use crate::inventory::{ClubStatus, ReleaseRow};
use crate::pipeline::command::Ran;
use crate::pipeline::{Progress, Step};

/// Prints a job's steps on standard output as they happen.
#[derive(Debug, Default)]
pub struct Terminal;

impl Progress for Terminal {
    fn step(&mut self, step: Step) {
        println!("{step}:");
    }

    fn progress(&mut self, message: &str) {
        println!("  {message}");
    }

    fn output(&mut self, ran: &Ran) {
        println!("  $ {} ({})", ran.shown, ran.status);
        for line in ran.output.lines() {
            println!("  | {line}");
        }
        let _ = std::io::stdout().flush();
    }
}

/// The actor recorded for the command line: `cli:<unix user>`.
pub fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("cli:{user}")
}

/// Prints `value` as pretty JSON.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints clubs as a table: slug, release on disk, and what is wrong, if anything.
pub fn print_clubs(clubs: &[ClubStatus]) {
    if clubs.is_empty() {
        println!("no clubs yet; add one with `clubdeploy club add`");
        return;
    }
    let width = clubs.iter().map(|c| c.slug.len()).max().unwrap_or(4).max(4);
    println!("{:width$}  {:28}  WEBROOT", "CLUB", "RELEASE (ON DISK)");
    for club in clubs {
        let release = club.release.as_deref().unwrap_or("-");
        let mut notes = Vec::new();
        if let Some(problem) = &club.problem {
            notes.push(problem.clone());
        }
        if club.drift {
            notes.push(format!(
                "DRIFT: the database recorded {}",
                club.recorded_release.as_deref().unwrap_or("no release")
            ));
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!("  ({})", notes.join("; "))
        };
        println!(
            "{:width$}  {release:28}  {}{notes}",
            club.slug, club.webroot
        );
    }
}

/// Prints releases as a table: name, built or not, and the clubs that run each.
pub fn print_releases(rows: &[ReleaseRow]) {
    if rows.is_empty() {
        println!("no tags in the repository yet");
        return;
    }
    println!("{:28}  {:9}  CLUBS", "RELEASE", "BUILT");
    for row in rows {
        let built = if row.built { "built" } else { "not built" };
        println!("{:28}  {built:9}  {}", row.name, row.clubs.join(", "));
    }
}

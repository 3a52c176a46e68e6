//! The host agent: what clubdeploy runs on a web host to read and switch the clubs' links
//! there (`clubdeploy host-agent`, one JSON request on standard input, one JSON answer on
//! standard output). The panel will run it over SSH on each `[[hosts]]` host (DESIGN §6), so
//! the `O_NOFOLLOW` walk, the temporary link renamed over the webroot and the refusals of
//! parents others may write are this same code on every host; no shell line is built from
//! strings. Everything it is sent is checked as if typed by a stranger.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::switch::{self, Switcher, Webroot};
use crate::domain::ReleaseName;

/// What the panel asks of a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// What each of `webroots` links to (one read of each link).
    Linked {
        releases_dir: PathBuf,
        webroots: Vec<PathBuf>,
    },
    /// The releases in `releases_dir`, newest first (by when each was put there).
    Releases { releases_dir: PathBuf },
    /// What the tree `dir` holds ([`super::tree_digest`]).
    Digest { dir: PathBuf },
    /// Renames the staged tree `staged` (a `.stage-*` folder in `releases_dir`) to release
    /// `release` there: the one step that makes it present, complete.
    Publish {
        releases_dir: PathBuf,
        staged: PathBuf,
        release: String,
    },
    /// Points each of `webroots` (under `webroot_base`) at `release` in `releases_dir`,
    /// one atomic swap each, in order, stopping at the first that cannot be.
    Switch {
        releases_dir: PathBuf,
        release: String,
        webroot_base: PathBuf,
        webroots: Vec<PathBuf>,
    },
}

/// A webroot as an answer says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "is", rename_all = "snake_case")]
pub enum Seen {
    Missing,
    Release { name: String },
    OtherLink { target: PathBuf },
    NotALink,
}

impl From<&Webroot> for Seen {
    fn from(webroot: &Webroot) -> Seen {
        match webroot {
            Webroot::Missing => Seen::Missing,
            Webroot::Release(name) => Seen::Release {
                name: name.to_string(),
            },
            Webroot::OtherLink(target) => Seen::OtherLink {
                target: target.clone(),
            },
            Webroot::NotALink => Seen::NotALink,
        }
    }
}

impl Seen {
    /// Back to what the job steps read; a release name the host sent that is no release
    /// name is refused.
    pub fn webroot(&self) -> anyhow::Result<Webroot> {
        Ok(match self {
            Seen::Missing => Webroot::Missing,
            Seen::Release { name } => Webroot::Release(ReleaseName::parse(name)?),
            Seen::OtherLink { target } => Webroot::OtherLink(target.clone()),
            Seen::NotALink => Webroot::NotALink,
        })
    }
}

/// What the host answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    /// For [`Request::Linked`]: each webroot, or why it could not be read.
    Linked { webroots: Vec<Result<Seen, String>> },
    /// For [`Request::Switch`]: what each switched webroot was (`None`: it already ran the
    /// release), in order, and why the switch stopped early, if it did.
    Switched {
        before: Vec<Option<Seen>>,
        error: Option<String>,
    },
    /// For [`Request::Releases`].
    Releases { names: Vec<String> },
    /// For [`Request::Digest`].
    Digest {
        entries: Vec<super::tree_digest::Entry>,
    },
    /// For [`Request::Publish`].
    Published,
    /// The request was refused as it was (unreadable, a relative path, no such release):
    /// nothing was changed.
    Refused { why: String },
}

/// The largest request or answer read: a switch of 10,000 webroots is about 1 MB.
const MAX_MESSAGE: u64 = 16 << 20;

/// Checks that `path` is absolute, naming it as `what` otherwise.
fn absolute(path: &Path, what: &str) -> Result<(), String> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(format!("{what} {} is not an absolute path", path.display()))
    }
}

/// The prefix of a tree being staged in a releases directory.
pub const STAGING_PREFIX: &str = ".stage-";

/// Does what `request` asks, here.
pub fn answer(request: &Request) -> Answer {
    match request {
        Request::Releases { releases_dir } => {
            if let Err(why) = absolute(releases_dir, "releases_dir") {
                return Answer::Refused { why };
            }
            let mut found: Vec<(std::time::SystemTime, String)> = Vec::new();
            if let Ok(dir) = std::fs::read_dir(releases_dir) {
                for entry in dir.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let published = entry.path().join(super::release::MANIFEST).is_file();
                    if ReleaseName::parse(&name).is_ok() && published {
                        let at = entry
                            .metadata()
                            .and_then(|m| m.modified())
                            .unwrap_or(std::time::UNIX_EPOCH);
                        found.push((at, name));
                    }
                }
            }
            found.sort_by(|a, b| b.cmp(a));
            Answer::Releases {
                names: found.into_iter().map(|(_, name)| name).collect(),
            }
        }
        Request::Digest { dir } => match absolute(dir, "dir") {
            Err(why) => Answer::Refused { why },
            Ok(()) => match super::tree_digest::digest(dir) {
                Ok(entries) => Answer::Digest { entries },
                Err(e) => Answer::Refused {
                    why: format!("cannot read {}: {e}", dir.display()),
                },
            },
        },
        Request::Publish {
            releases_dir,
            staged,
            release,
        } => {
            let checked = absolute(releases_dir, "releases_dir")
                .and_then(|()| ReleaseName::parse(release).map_err(|e| e.0))
                .and_then(|name| {
                    let inside = staged.parent() == Some(releases_dir.as_path())
                        && staged
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with(STAGING_PREFIX));
                    if inside {
                        Ok(name)
                    } else {
                        Err(format!(
                            "{} is not a tree staged in {}",
                            staged.display(),
                            releases_dir.display()
                        ))
                    }
                });
            match checked {
                Err(why) => Answer::Refused { why },
                Ok(name) => match std::fs::rename(staged, releases_dir.join(name.as_str())) {
                    Ok(()) => Answer::Published,
                    Err(e) => Answer::Refused {
                        why: format!("cannot publish {name}: {e}"),
                    },
                },
            }
        }
        Request::Linked {
            releases_dir,
            webroots,
        } => {
            if let Err(why) = absolute(releases_dir, "releases_dir")
                .and_then(|()| webroots.iter().try_for_each(|w| absolute(w, "webroot")))
            {
                return Answer::Refused { why };
            }
            Answer::Linked {
                webroots: webroots
                    .iter()
                    .map(|w| {
                        switch::linked_release(w, releases_dir)
                            .map(|found| Seen::from(&found))
                            .map_err(|e| format!("cannot read {}: {e}", w.display()))
                    })
                    .collect(),
            }
        }
        Request::Switch {
            releases_dir,
            release,
            webroot_base,
            webroots,
        } => {
            let checked = absolute(releases_dir, "releases_dir")
                .and_then(|()| absolute(webroot_base, "webroot_base"))
                .and_then(|()| webroots.iter().try_for_each(|w| absolute(w, "webroot")))
                .and_then(|()| ReleaseName::parse(release).map_err(|e| e.0));
            let name = match checked {
                Ok(name) => name,
                Err(why) => return Answer::Refused { why },
            };
            let dir = releases_dir.join(name.as_str());
            if !dir.join(super::release::MANIFEST).is_file() {
                return Answer::Refused {
                    why: format!(
                        "release {name} is not staged on this host (no {} in {})",
                        super::release::MANIFEST,
                        dir.display()
                    ),
                };
            }
            let webroots: Vec<&Path> = webroots.iter().map(PathBuf::as_path).collect();
            let batch = Switcher::new(&dir, webroot_base).switch_batch(&webroots, releases_dir);
            Answer::Switched {
                before: batch
                    .before
                    .iter()
                    .map(|b| b.as_ref().map(Seen::from))
                    .collect(),
                error: batch.error.map(|e| format!("{e:#}")),
            }
        }
    }
}

/// The agent's main: one request from `input`, its answer to `output`.
pub fn serve(input: impl Read, mut output: impl Write) -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::BufReader::new(input.take(MAX_MESSAGE)).read_line(&mut line)?;
    let answered = match serde_json::from_str::<Request>(&line) {
        Ok(request) => answer(&request),
        Err(e) => Answer::Refused {
            why: format!("the request could not be read: {e}"),
        },
    };
    serde_json::to_writer(&mut output, &answered)?;
    output.write_all(b"\n")?;
    output.flush()?;
    Ok(())
}

/// Reads an agent's answer from `output` (what it printed), bounded and checked: anything
/// that is not one answer is an error naming what came instead.
pub fn read_answer(output: &[u8]) -> anyhow::Result<Answer> {
    anyhow::ensure!(
        (output.len() as u64) <= MAX_MESSAGE,
        "the host agent answered {} bytes, more than any answer",
        output.len()
    );
    let text = String::from_utf8_lossy(output);
    serde_json::from_str(text.trim()).map_err(|e| {
        let start: String = text.chars().take(200).collect();
        anyhow::anyhow!("the host agent's answer could not be read ({e}): {start:?}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_survive_the_wire_and_garbage_is_refused() {
        let request = Request::Switch {
            releases_dir: "/srv/releases".into(),
            release: "v1-0000000a".into(),
            webroot_base: "/var/www".into(),
            webroots: vec!["/var/www/a/htdocs".into()],
        };
        let wire = serde_json::to_string(&request).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&wire).unwrap(), request);
        let mut out = Vec::new();
        serve(&b"{\"op\":\"rm -rf /\"}\n"[..], &mut out).unwrap();
        match read_answer(&out).unwrap() {
            Answer::Refused { why } => assert!(why.contains("could not be read"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(read_answer(b"Welcome to web2!\n").is_err());
    }

    #[test]
    fn relative_paths_and_unstaged_releases_are_refused_changing_nothing() {
        let relative = Request::Linked {
            releases_dir: "releases".into(),
            webroots: vec![],
        };
        assert!(matches!(answer(&relative), Answer::Refused { .. }));
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        let unstaged = Request::Switch {
            releases_dir: root.join("releases"),
            release: "v1-0000000a".into(),
            webroot_base: root.clone(),
            webroots: vec![root.join("a/htdocs")],
        };
        match answer(&unstaged) {
            Answer::Refused { why } => assert!(why.contains("not staged"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(!root.join("a").exists());
        let not_a_release = Request::Switch {
            releases_dir: root.join("releases"),
            release: "../../etc".into(),
            webroot_base: root.clone(),
            webroots: vec![],
        };
        assert!(matches!(answer(&not_a_release), Answer::Refused { .. }));
    }
}

//! Build commands and checks as a user of their own (`build_user`; the package makes
//! `clubdeploy-build`), never as the service: a build script runs whatever a tag holds, and
//! as the service it could read the database, `audit.key` and `probe.key`.
//!
//! How: the tag's tree is checked out into a workspace next to the build (`.build-…-work`),
//! shared with the build user's group (the service's user is a member; the package adds it)
//! and writable by it. Each command runs as
//! `sudo -n -u <user> -- clubdeploy build-user exec -- <argv>`, its environment passed on
//! standard input (never on a command line, which `ps` shows everyone), under umask 002.
//! After each command every process of the build user is stopped (`build-user stop`): nothing
//! a build starts outlives its step, not even a daemon in a session of its own. Then the build
//! user opens what it made to the group (`build-user hand-over`) and the service copies the
//! result into a tree of its own: a published release holds no file the build user owns (a
//! later build could change it) and no file of the service's the build did not write.

use std::fs::{OpenOptions, Permissions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::git::TreeStats;

/// The builds' own user, looked up.
#[derive(Debug, Clone)]
pub struct BuildUser {
    pub name: String,
    pub account: crate::unix_user::Account,
    /// This program, which the build user runs through sudo (`build-user …`).
    exe: PathBuf,
}

/// The most a command's environment may take on standard input.
const ENV_LIMIT: u64 = 4 << 20;

impl BuildUser {
    /// The user `name` as the system knows it, refused when it could not keep builds apart:
    /// root, or the service's own user.
    pub fn look_up(name: &str) -> anyhow::Result<BuildUser> {
        let Some(account) = crate::unix_user::look_up(name) else {
            bail!(
                "build_user {name:?} is not a user of this machine: create it \
                 (adduser --system --group {name}) and add the service's user to its group \
                 (adduser clubdeploy {name}), or remove build_user"
            );
        };
        if account.uid == 0 {
            bail!("build_user {name:?} is root: builds must run as an unprivileged user");
        }
        if account.uid == rustix::process::geteuid().as_raw() {
            bail!(
                "build_user {name:?} is the service's own user: its builds could read the \
                 database and the keys; name a user of its own (the package's clubdeploy-build)"
            );
        }
        let exe = std::env::current_exe().context("cannot find this program's path")?;
        // After an upgrade replaced the file, the running program's path says so.
        let exe = match exe.to_str().and_then(|p| p.strip_suffix(" (deleted)")) {
            Some(path) => PathBuf::from(path),
            None => exe,
        };
        Ok(BuildUser {
            name: name.to_owned(),
            account,
            exe,
        })
    }

    /// Checks, before a build, that its commands can run as this user and that stopping
    /// every process of the user after each one harms nothing else: the service is in the
    /// user's group, the user runs nothing (else it is not one for builds alone), and sudo
    /// lets the service run this program as it.
    pub fn ready(&self) -> anyhow::Result<()> {
        self.shares_group()?;
        // What an earlier step's stop killed may take a moment to be gone.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let running = processes_of(self.account.uid);
            let Some((pid, name)) = running.first() else {
                break;
            };
            if Instant::now() >= deadline {
                bail!(
                    "build_user {:?} is running {} other process(es) (pid {pid}: {name}): \
                     clubdeploy stops every process of that user after each build command, \
                     so it must be a user for builds alone; stop them or name another user",
                    self.name,
                    running.len()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.step(&["stop"], None, "sudo said").map_err(|e| {
            anyhow::anyhow!(
                "cannot run build commands as {:?} ({e}): the package's rule in \
                 /etc/sudoers.d/clubdeploy allows `{} build-user *` as that user",
                self.name,
                self.exe.display()
            )
        })
    }

    /// Refuses when the service cannot share a build folder with this user: it must be in
    /// the user's group (or be root).
    pub fn shares_group(&self) -> anyhow::Result<()> {
        let me = rustix::process::geteuid().as_raw();
        let gid = self.account.gid;
        let in_group = me == 0
            || rustix::process::getegid().as_raw() == gid
            || rustix::process::getgroups()?
                .iter()
                .any(|g| g.as_raw() == gid);
        if !in_group {
            bail!(
                "the service's user is not in the group of build_user {:?} (gid {gid}), so it \
                 cannot share the build folder with it: adduser {} <that group>, then restart \
                 clubdeploy",
                self.name,
                crate::unix_user::name_of(me).unwrap_or_else(|| format!("uid {me}"))
            );
        }
        Ok(())
    }

    /// `sudo -n -u <user> -- <this program> build-user <step>...`: how the service runs a
    /// step as this user, for [`Self::step`] and [`Self::wrap`] alike.
    fn sudo_line(&self, step: &[&str]) -> Vec<String> {
        let mut line: Vec<String> = ["sudo", "-n", "-u", &self.name, "--"]
            .map(str::to_owned)
            .into();
        line.push(self.exe.display().to_string());
        line.push("build-user".to_owned());
        line.extend(step.iter().map(|s| (*s).to_owned()));
        line
    }

    /// Runs the build-user `step` (then `path`, when given) to its end; an error saying
    /// `what` failed, with what sudo or the step said.
    fn step(&self, step: &[&str], path: Option<&Path>, what: &str) -> std::io::Result<()> {
        let line = self.sudo_line(step);
        let out = Command::new(&line[0])
            .args(&line[1..])
            .args(path)
            .stdin(std::process::Stdio::null())
            .output()?;
        if out.status.success() {
            return Ok(());
        }
        Err(std::io::Error::other(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }

    /// How to run `argv` as this user: the sudo command line, and what goes to its standard
    /// input (the environment `env`, with the user's own HOME).
    pub fn wrap(&self, argv: &[String], env: &[(String, String)]) -> (Vec<String>, Vec<u8>) {
        let mut line = self.sudo_line(&["exec", "--"]);
        line.extend(argv.iter().cloned());
        let mut input = Vec::new();
        let home = self.account.home.display().to_string();
        for (key, value) in env {
            let value = if key == "HOME" { &home } else { value };
            input.extend_from_slice(format!("{key}={value}").as_bytes());
            input.push(0);
        }
        (line, input)
    }

    /// Stops every process of this user (see [`stop_all`]).
    pub fn stop(&self) -> std::io::Result<()> {
        let what = format!("cannot stop the processes of {}", self.name);
        self.step(&["stop"], None, &what)
    }

    /// Makes `workspace` ready for this user: group its group and writable by it.
    pub fn share(&self, workspace: &Path) -> std::io::Result<()> {
        let gid = self.account.gid;
        walk(workspace, &mut |path, meta| {
            std::os::unix::fs::lchown(path, None, Some(gid))?;
            if meta.is_symlink() {
                return Ok(());
            }
            let mode = meta.mode() & 0o777;
            // The owner's read and write (and search) go to the group too; the workspace's
            // top stays closed to others (the code is public, the build's state is not).
            let mode = if path == workspace {
                0o770
            } else if meta.is_dir() {
                mode | 0o770
            } else {
                mode | ((mode & 0o700) >> 3)
            };
            std::fs::set_permissions(path, Permissions::from_mode(mode))
        })
    }

    /// Has this user open what it made in `workspace` to its group (see [`hand_over_tree`]),
    /// so the service can read and delete it.
    pub fn hand_over(&self, workspace: &Path) -> std::io::Result<()> {
        let what = format!("{} could not hand over {}", self.name, workspace.display());
        self.step(&["hand-over"], Some(workspace), &what)
    }

    /// Deletes a workspace (or what is left of one) with everything the build made in it.
    pub fn delete(&self, releases_dir: &Path, workspace: &Path) -> std::io::Result<()> {
        let trash = super::fsops::trash_path(releases_dir);
        std::fs::rename(workspace, &trash)?;
        if std::fs::remove_dir_all(&trash).is_err() {
            self.hand_over(&trash)?;
            std::fs::remove_dir_all(&trash)?;
        }
        Ok(())
    }
}

/// Builds the release `name` apart from the service: the tree checked out into a workspace
/// beside `build_dir`, shared with `user`, the commands and the check run there as `user`,
/// and what they made imported into `build_dir` (see [`import`], sharing the files of
/// `previous`, the newest release, that are alike); the workspace is deleted
/// whatever happened. Returns what the release holds.
pub fn build_apart(
    user: &BuildUser,
    mirror: &super::git::Mirror,
    spec: &super::release::BuildSpec<'_>,
    name: &crate::domain::ReleaseName,
    build_dir: &Path,
    previous: Option<&Path>,
    progress: &mut dyn super::Progress,
) -> anyhow::Result<TreeStats> {
    let workspace = PathBuf::from(format!("{}-work", build_dir.display()));
    std::fs::create_dir(&workspace)
        .with_context(|| format!("cannot create {}", workspace.display()))?;
    progress.progress(&format!("the build commands run as {}", user.name));
    let built = (|| {
        mirror
            .export_reusing(spec.commit, &workspace, None, spec.cap)
            .with_context(|| format!("cannot check out {}", spec.tag))?;
        user.share(&workspace)
            .context("cannot share the build folder with the build user")?;
        super::release::run_commands(spec, name, &workspace, Some(user), progress)?;
        user.hand_over(&workspace)?;
        import(&workspace, build_dir, user.account.uid, spec.cap, previous)
    })();
    if let Err(e) = user.delete(spec.releases_dir, &workspace) {
        progress.progress(&format!("could not remove {}: {e}", workspace.display()));
    }
    built
}

/// The processes of `uid` still alive, as (pid, name), read from `/proc`.
fn processes_of(uid: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        if meta.uid() != uid {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(name) = living_process_name(&stat) {
            found.push((pid, name));
        }
    }
    found
}

/// A process's name from its `/proc/<pid>/stat` line, unless it is dead (a zombie waiting
/// for its parent, or exiting).
fn living_process_name(stat: &str) -> Option<String> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    let state = stat.get(close + 1..)?.split_whitespace().next()?;
    (!matches!(state, "Z" | "X" | "x")).then(|| crate::cli::visible(name).into_owned())
}

/// Calls `visit` on `dir` and everything under it, parents before what they hold, never
/// following a link.
fn walk(
    dir: &Path,
    visit: &mut dyn FnMut(&Path, &std::fs::Metadata) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        visit(&path, &meta)?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(())
}

/// Moves the built tree in `workspace` into `into` (an empty directory of the service's) as
/// the service's own: its directories made anew (0755), the files the service checked out
/// moved (0644, or 0755 when executable), the files the build user wrote copied, links
/// moved. A file the build user wrote that `previous` (the newest release) holds alike, at
/// the same path with the same mode and bytes, is a link to that copy instead (what most
/// of `vendor/` is from one build to the next). Other kinds of file are left out. Refuses a
/// file the build user made a second link to (it could be any file of the service's) and a
/// file of anyone else's, and a tree past `cap`.
pub fn import(
    workspace: &Path,
    into: &Path,
    builder: u32,
    cap: TreeStats,
    previous: Option<&Path>,
) -> anyhow::Result<TreeStats> {
    let me = rustix::process::geteuid().as_raw();
    let my_group = rustix::process::getegid().as_raw();
    let mut stats = TreeStats::default();
    let mut pending = vec![PathBuf::new()];
    while let Some(within) = pending.pop() {
        for entry in std::fs::read_dir(workspace.join(&within))? {
            let entry = entry?;
            let relative = within.join(entry.file_name());
            let (from, to) = (entry.path(), into.join(&relative));
            let meta = std::fs::symlink_metadata(&from)?;
            let shown = relative.display();
            if meta.uid() != me && meta.uid() != builder {
                bail!(
                    "the build left {shown}, owned by uid {}: not published",
                    meta.uid()
                );
            }
            if meta.is_dir() {
                std::fs::create_dir(&to)?;
                std::fs::set_permissions(&to, Permissions::from_mode(0o755))?;
                pending.push(relative);
                continue;
            }
            if meta.is_symlink() {
                std::fs::rename(&from, &to)?;
                continue;
            }
            if !meta.is_file() {
                continue;
            }
            stats.files += 1;
            stats.bytes += meta.len();
            stats
                .within(cap)
                .context("the build made the release too big")?;
            let mode = if meta.mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            if meta.uid() == me {
                if meta.nlink() != 1 {
                    bail!(
                        "the build made {shown} a second name of a file of clubdeploy's: \
                         not published"
                    );
                }
                std::fs::rename(&from, &to)?;
                std::os::unix::fs::lchown(&to, None, Some(my_group))?;
                std::fs::set_permissions(&to, Permissions::from_mode(mode))?;
            } else if !previous.is_some_and(|p| link_if_alike(&p.join(&relative), &from, &to, mode))
            {
                // Two names of one file the build made become two copies.
                copy_file(&from, &to, mode)?;
            }
        }
    }
    Ok(stats)
}

/// Links `to` to `theirs`, a file of the newest release, when it is a regular file with
/// `mode` and the bytes of `ours`; whether it did.
fn link_if_alike(theirs: &Path, ours: &Path, to: &Path, mode: u32) -> bool {
    let (Ok(meta), Ok(own)) = (
        std::fs::symlink_metadata(theirs),
        std::fs::symlink_metadata(ours),
    ) else {
        return false;
    };
    meta.is_file()
        && meta.mode() & 0o7777 == mode
        && meta.len() == own.len()
        && super::release::same_bytes(theirs, ours).unwrap_or(false)
        && std::fs::hard_link(theirs, to).is_ok()
}

/// A new file at `to` (never one already there) with `from`'s bytes, read without following
/// a link.
fn copy_file(from: &Path, to: &Path, mode: u32) -> std::io::Result<()> {
    let mut source = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(from)?;
    let mut dest = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(to)?;
    std::io::copy(&mut source, &mut dest)?;
    dest.set_permissions(Permissions::from_mode(mode))
}

// What the build user runs (`clubdeploy build-user …`, through sudo).

/// `build-user exec -- <argv>`: reads the environment from standard input (`KEY=VALUE`
/// entries, each ended by a NUL byte), sets umask 002 (what it makes, the service can read
/// and delete through the group) and becomes `argv` with exactly that environment. Returns
/// only when it could not.
pub fn exec(argv: &[String]) -> anyhow::Error {
    let Some((program, args)) = argv.split_first() else {
        return anyhow::anyhow!("build-user exec: no command");
    };
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().take(ENV_LIMIT).read_to_end(&mut input) {
        return anyhow::anyhow!("build-user exec: cannot read the environment: {e}");
    }
    let env: Vec<(String, String)> = input
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (key, value) = entry.split_once('=')?;
            (!key.is_empty()).then(|| (key.to_owned(), value.to_owned()))
        })
        .collect();
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o002));
    let error = Command::new(program)
        .args(args)
        .env_clear()
        .envs(env)
        .stdin(std::process::Stdio::null())
        .exec();
    anyhow::anyhow!("cannot run `{program}`: {error}")
}

/// `build-user stop`: sends SIGKILL to every process this user may signal (all of the user's
/// own but this one), so nothing a build left behind lives on.
pub fn stop_all() {
    // SAFETY: kill(2) takes plain integers; -1 means every process the caller may signal.
    unsafe {
        libc::kill(-1, libc::SIGKILL);
    }
}

/// `build-user hand-over <dir>`: opens every directory and file this user owns under `dir`
/// to its group (directories read, write and search; files read), without following links;
/// says on standard error what it could not.
pub fn hand_over_tree(dir: &Path) -> anyhow::Result<()> {
    let me = rustix::process::geteuid().as_raw();
    let mut failed = 0;
    walk(dir, &mut |path, meta| {
        if meta.uid() != me || meta.is_symlink() {
            return Ok(());
        }
        let mode = meta.mode() & 0o7777;
        let wanted = if meta.is_dir() {
            mode | 0o770
        } else {
            mode | 0o040
        };
        if wanted != mode && std::fs::set_permissions(path, Permissions::from_mode(wanted)).is_err()
        {
            failed += 1;
        }
        Ok(())
    })?;
    if failed > 0 {
        bail!(
            "{failed} entries under {} could not be opened up",
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_line_gives_its_name_unless_it_is_dead() {
        assert_eq!(
            living_process_name("123 (php-fpm: pool (a)) S 1 123 123 0 -1").as_deref(),
            Some("php-fpm: pool (a)")
        );
        assert_eq!(living_process_name("9 (sh) Z 1 9 9"), None);
        assert_eq!(living_process_name("garbage"), None);
    }

    #[test]
    fn root_and_missing_users_are_refused_as_build_users_saying_what_to_do() {
        let root = BuildUser::look_up("root").unwrap_err().to_string();
        assert!(root.contains("is root"), "{root}");
        let missing = BuildUser::look_up("no-such-builder")
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("adduser --system --group no-such-builder"),
            "{missing}"
        );
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    /// A workspace as a build leaves it: what the service checked out (owned by it), what
    /// the build user wrote (uid 65534 here), a link and a fifo.
    fn workspace(builder: u32) -> tempfile::TempDir {
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        std::fs::create_dir_all(w.join("src")).unwrap();
        std::fs::write(w.join("src/index.php"), "<?php").unwrap();
        std::fs::set_permissions(w.join("src/index.php"), Permissions::from_mode(0o664)).unwrap();
        std::fs::create_dir(w.join("vendor")).unwrap();
        std::fs::write(w.join("vendor/tool"), "#!/bin/sh").unwrap();
        std::fs::set_permissions(w.join("vendor/tool"), Permissions::from_mode(0o770)).unwrap();
        std::fs::write(w.join("vendor/private"), "made 0600 by a tool").unwrap();
        std::fs::set_permissions(w.join("vendor/private"), Permissions::from_mode(0o640)).unwrap();
        for path in ["vendor", "vendor/tool", "vendor/private"] {
            std::os::unix::fs::lchown(w.join(path), Some(builder), None).unwrap();
        }
        std::os::unix::fs::symlink("src/index.php", w.join("index.php")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            w.join("pipe"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        work
    }

    /// Only root can make files of another user (to play the build user's part).
    fn as_root(test: &str) -> bool {
        let root = rustix::process::geteuid().is_root();
        if !root {
            let why = format!("{test} SKIPPED: making files of another user needs root");
            eprintln!("{why}");
            if let Ok(log) = std::env::var("SKIPPED_TESTS_LOG") {
                use std::io::Write;
                let mut file = OpenOptions::new().append(true).open(log).unwrap();
                writeln!(file, "{why}").unwrap();
            }
        }
        root
    }

    #[test]
    fn an_import_makes_the_built_tree_the_services_own_and_leaves_out_what_is_not_a_file() {
        if !as_root("build_user import") {
            return;
        }
        let builder = 65534;
        let work = workspace(builder);
        let into = tempfile::tempdir().unwrap();
        // The newest release holds one of the build's files alike, one with other bytes.
        let previous = tempfile::tempdir().unwrap();
        std::fs::create_dir(previous.path().join("vendor")).unwrap();
        for (path, text) in [
            ("vendor/private", "made 0600 by a tool"),
            ("vendor/tool", "#!/bin/bash"),
        ] {
            std::fs::write(previous.path().join(path), text).unwrap();
            std::fs::set_permissions(previous.path().join(path), Permissions::from_mode(0o644))
                .unwrap();
        }
        let previous_inode =
            |path: &str| std::fs::metadata(previous.path().join(path)).unwrap().ino();
        let stats = import(
            work.path(),
            into.path(),
            builder,
            TreeStats::UNBOUNDED,
            Some(previous.path()),
        )
        .unwrap();
        assert_eq!((stats.files, stats.bytes), (3, 5 + 9 + 19));
        let r = into.path();
        for (path, wanted) in [
            ("src", 0o755),
            ("src/index.php", 0o644),
            ("vendor", 0o755),
            ("vendor/tool", 0o755),
            ("vendor/private", 0o644),
        ] {
            let meta = std::fs::symlink_metadata(r.join(path)).unwrap();
            assert_eq!(meta.uid(), 0, "{path} is not the service's");
            assert_eq!(mode(&r.join(path)), wanted, "{path}");
        }
        assert_eq!(
            std::fs::read_to_string(r.join("vendor/private")).unwrap(),
            "made 0600 by a tool"
        );
        assert_eq!(
            std::fs::read_link(r.join("index.php")).unwrap(),
            Path::new("src/index.php")
        );
        assert!(!r.join("pipe").exists());
        let inode = |path: &str| std::fs::metadata(r.join(path)).unwrap().ino();
        assert_eq!(inode("vendor/private"), previous_inode("vendor/private"));
        assert_ne!(inode("vendor/tool"), previous_inode("vendor/tool"));
        // What the service checked out was moved, what the build user wrote was copied.
        assert!(!work.path().join("src/index.php").exists());
        assert!(work.path().join("vendor/tool").exists());
    }

    #[test]
    fn an_import_refuses_a_second_name_of_a_service_file_another_users_file_and_a_tree_too_big() {
        if !as_root("build_user import refusals") {
            return;
        }
        let builder = 65534;
        let refusal = |work: &tempfile::TempDir, cap: TreeStats| {
            let into = tempfile::tempdir().unwrap();
            let err = import(work.path(), into.path(), builder, cap, None).unwrap_err();
            format!("{err:#}")
        };
        // A hard link the build made to a file of the service's (the database, say).
        let work = workspace(builder);
        let data_dir = tempfile::tempdir().unwrap();
        let database = data_dir.path().join("clubdeploy.sqlite3");
        std::fs::write(&database, "secret").unwrap();
        std::fs::hard_link(&database, work.path().join("src/copy.txt")).unwrap();
        let err = refusal(&work, TreeStats::UNBOUNDED);
        assert!(
            err.contains("src/copy.txt") && err.contains("second name"),
            "{err}"
        );
        // A file of a third user.
        let work = workspace(builder);
        std::fs::write(work.path().join("theirs"), "x").unwrap();
        std::os::unix::fs::lchown(work.path().join("theirs"), Some(4242), None).unwrap();
        let err = refusal(&work, TreeStats::UNBOUNDED);
        assert!(err.contains("theirs, owned by uid 4242"), "{err}");
        // Past the cap.
        let cap = TreeStats {
            files: 2,
            bytes: u64::MAX,
        };
        let err = refusal(&workspace(builder), cap);
        assert!(format!("{err:#}").contains("max_files"), "{err:#}");
    }
}

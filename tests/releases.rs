//! What a release holds and which releases are kept: `export-ignore`, the build recipe,
//! hard links across build commands, and prune keeping what a rollback needs.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use git2::{Repository, Signature};

use crate::helpers::{TestEnv, commit_all_and_tag};

/// Every file and link under `root`, relative, sorted (directories not listed).
fn files_under(root: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                pending.push(path);
            } else {
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                found.insert(relative);
            }
        }
    }
    found
}

/// The files `git archive <tag>` gives for the fixture repository (directories not listed).
fn archived(repo: &Path, tag: &str) -> BTreeSet<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "git -C '{}' archive {tag} | tar -t",
            repo.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.ends_with('/'))
        .map(str::to_owned)
        .collect()
}

/// Adds a tag `tag` to the fixture repository with `files` (path, content) on top of v3.
fn tag_with(env: &TestEnv, tag: &str, files: &[(&str, &str)]) {
    let repo = Repository::open(&env.app).unwrap();
    for (path, content) in files {
        let path = env.app.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let parent = repo.head().unwrap().peel_to_commit().unwrap().id();
    let sig = Signature::now("Test", "test@example.invalid").unwrap();
    commit_all_and_tag(&repo, &sig, Some(parent), tag, &format!("release {tag}"));
}

#[test]
fn a_release_holds_exactly_what_git_archive_gives() {
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    tag_with(
        &env,
        "v4",
        &[
            (
                ".gitattributes",
                "/_test export-ignore\n/tests/ export-ignore\ncomposer.lock export-ignore\n\
                 lib/plugins/testing export-ignore\n.gitattributes export-ignore\n\
                 *.dist export-ignore\nkeep.dist -export-ignore\nsubst.php export-subst\n",
            ),
            ("_test/fetchphpunit.php", "<?php echo 'test code';\n"),
            ("_test/deep/case.php", "<?php\n"),
            ("tests/unit/a.php", "<?php\n"),
            ("composer.lock", "{}\n"),
            ("composer.json", "{}\n"),
            ("lib/plugins/testing/plugin.php", "<?php\n"),
            ("lib/plugins/real/plugin.php", "<?php\n"),
            ("lib/_test/kept.php", "<?php\n"),
            ("phpunit.xml.dist", "<x/>\n"),
            ("keep.dist", "kept\n"),
            ("docs/.gitattributes", "draft.md export-ignore\n"),
            ("docs/draft.md", "draft\n"),
            ("docs/guide.md", "guide\n"),
            ("subst.php", "<?php // $Format:%H$\n"),
        ],
    );
    env.ok(&["deploy", "v4", "--all"]);
    let release = env.releases_dir().join(env.release_name("v4"));
    let mut published = files_under(&release);
    // clubdeploy's own files.
    published.remove(".clubdeploy-release.json");
    published.retain(|p| !p.starts_with(".clubdeploy"));
    assert_eq!(published, archived(&env.app, "v4"));
    for gone in [
        "_test/fetchphpunit.php",
        "tests/unit/a.php",
        "composer.lock",
        "lib/plugins/testing/plugin.php",
        "docs/draft.md",
        ".gitattributes",
        "phpunit.xml.dist",
    ] {
        assert!(!published.contains(gone), "{gone} was published");
    }
    for kept in [
        "lib/_test/kept.php",
        "lib/plugins/real/plugin.php",
        "keep.dist",
        "docs/guide.md",
    ] {
        assert!(published.contains(kept), "{kept} is missing");
    }
    // export-subst is left alone: the file is the blob as committed.
    assert_eq!(
        std::fs::read_to_string(release.join("subst.php")).unwrap(),
        "<?php // $Format:%H$\n"
    );
}

#[test]
fn the_doctor_warns_of_development_files_a_release_publishes() {
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    // No .gitattributes: the test suite and the lock file are published.
    tag_with(
        &env,
        "v4",
        &[
            ("tests/unit/a.php", "<?php\n"),
            ("composer.lock", "{}\n"),
            (".env.example", "X=1\n"),
        ],
    );
    env.ok(&["deploy", "v4", "--all"]);
    let out = env.command(&["doctor"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("publishes development files"))
        .unwrap_or_else(|| panic!("no warning:\n{text}"));
    assert!(line.contains(&env.release_name("v4")), "{line}");
    for name in [".env.example", "composer.lock", "tests/"] {
        assert!(line.contains(name), "{name} not named: {line}");
    }
    assert!(text.contains("export-ignore"), "{text}");
    // v3 has none of them: it is not named.
    env.ok(&["deploy", "v3", "--all"]);
    let out = env.command(&["doctor"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text
            .lines()
            .any(|l| l.contains("publishes development files")
                && l.contains(&env.release_name("v3"))),
        "{text}"
    );
}

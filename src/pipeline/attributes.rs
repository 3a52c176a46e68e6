//! Which paths of a tag's tree `git archive` leaves out (`export-ignore` in `.gitattributes`):
//! a release holds exactly the files `git archive <tag>` would give. git itself decides
//! (`git check-attr --cached` over a throw-away index of the tree), so every pattern, macro
//! and precedence rule is git's own. `export-subst` is not applied: a release's files are the
//! blobs as committed.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use git2::{ObjectType, Tree, TreeWalkMode, TreeWalkResult};

use super::fsops::random_suffix;

/// The paths of `tree` marked `export-ignore`, as `git archive` reads them: directories with a
/// trailing `/` (what lies below one is left out with it, whether or not it is listed here).
/// Empty, without running git, when neither the tree nor the mirror holds attributes.
pub fn export_ignored(mirror: &Path, tree: &Tree<'_>) -> anyhow::Result<HashSet<String>> {
    let mut paths = Vec::new();
    let mut has_attributes = mirror.join("info/attributes").exists();
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        let Ok(name) = entry.name() else {
            return TreeWalkResult::Ok;
        };
        has_attributes |= name == ".gitattributes";
        match entry.kind() {
            Some(ObjectType::Tree) | Some(ObjectType::Commit) => {
                paths.push(format!("{dir}{name}/"))
            }
            _ => paths.push(format!("{dir}{name}")),
        }
        TreeWalkResult::Ok
    })?;
    if !has_attributes {
        return Ok(HashSet::new());
    }
    let index_path = mirror.join(format!("clubdeploy-attributes-{}.index", random_suffix()));
    let result = check_attr(mirror, tree, &index_path, &paths);
    let _ = std::fs::remove_file(&index_path);
    result
}

fn check_attr(
    mirror: &Path,
    tree: &Tree<'_>,
    index_path: &Path,
    paths: &[String],
) -> anyhow::Result<HashSet<String>> {
    let mut index = git2::Index::open(index_path)?;
    index.read_tree(tree)?;
    index.write()?;
    drop(index);
    let mut child = Command::new("git")
        .args(["check-attr", "--cached", "-z", "--stdin", "export-ignore"])
        .env("GIT_DIR", mirror)
        .env("GIT_INDEX_FILE", index_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run git check-attr (is git installed?)")?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut input = Vec::new();
    for path in paths {
        input.extend_from_slice(path.as_bytes());
        input.push(0);
    }
    // git answers as it reads: write from another thread so neither pipe fills up.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the path writer panicked"))??;
    if !out.status.success() {
        bail!(
            "git check-attr failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse(&out.stdout)
}

/// Whether `git archive` leaves the file at `path` out: it, or a directory it lies in, is
/// in `ignored` (as [`export_ignored`] returns it).
pub fn is_left_out(ignored: &HashSet<String>, path: &str) -> bool {
    ignored.contains(path)
        || path
            .match_indices('/')
            .any(|(at, _)| ignored.contains(&path[..=at]))
}

/// Reads `git check-attr -z` output (`path NUL attribute NUL value NUL`, repeated): the paths
/// whose `export-ignore` is set.
fn parse(output: &[u8]) -> anyhow::Result<HashSet<String>> {
    let fields: Vec<&[u8]> = output.split(|b| *b == 0).collect();
    // A trailing NUL leaves one empty field at the end.
    let fields = fields.strip_suffix(&[&b""[..]]).unwrap_or(&fields);
    if !fields.len().is_multiple_of(3) {
        bail!("git check-attr gave output of an unknown form");
    }
    Ok(fields
        .chunks(3)
        .filter(|f| f[1] == b"export-ignore" && f[2] == b"set")
        .map(|f| String::from_utf8_lossy(f[0]).into_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::{is_left_out, parse};

    #[test]
    fn only_paths_whose_export_ignore_is_set_are_left_out() {
        let output = b"tests/\0export-ignore\0set\0a.php\0export-ignore\0unspecified\0\
                       b.php\0export-ignore\0unset\0c.php\0export-ignore\0yes\0";
        let ignored = parse(output).unwrap();
        assert_eq!(ignored.len(), 1);
        assert!(ignored.contains("tests/"));
        assert!(parse(b"a\0export-ignore\0").is_err());
        assert!(parse(b"").unwrap().is_empty());
    }

    #[test]
    fn a_file_is_left_out_with_the_directory_it_lies_in() {
        let ignored = ["_test/".to_owned(), "lib/a.php".to_owned()].into();
        assert!(is_left_out(&ignored, "_test/x/y.php"));
        assert!(is_left_out(&ignored, "lib/a.php"));
        assert!(!is_left_out(&ignored, "lib/b.php"));
        assert!(!is_left_out(&ignored, "_test.php"));
        assert!(!is_left_out(&ignored, "x/_test/y.php"));
    }
}

//! Which clubs a deploy switches in which waves: one rule for the job and its dry run.

use super::{ClubSlug, InvalidInput};

/// A group of clubs switched, reloaded and checked together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wave<T> {
    /// The canaries: the others follow only once these are healthy.
    pub canary: bool,
    pub clubs: Vec<T>,
}

/// The canaries (those `named` by the job, or else `configured`, `[rollout] canary` with its
/// groups' clubs, among the targets), then the rest in batches of `batch_size` (0: all at
/// once). A canary the job names must be among the `clubs` it deploys to; canaries only make
/// sense ahead of other clubs.
pub fn waves<T: Clone>(
    clubs: &[T],
    slug: impl Fn(&T) -> &str,
    named: Option<&[ClubSlug]>,
    configured: &[String],
    batch_size: usize,
) -> Result<Vec<Wave<T>>, InvalidInput> {
    let named: Vec<&str> = match named {
        Some(named) => {
            let strays: Vec<&str> = named
                .iter()
                .map(ClubSlug::as_str)
                .filter(|s| !clubs.iter().any(|c| slug(c) == *s))
                .collect();
            if !strays.is_empty() {
                return Err(InvalidInput(format!(
                    "canary {} is not among the clubs this deploy switches; nothing was changed",
                    strays.join(", ")
                )));
            }
            named.iter().map(ClubSlug::as_str).collect()
        }
        None => configured.iter().map(String::as_str).collect(),
    };
    let (canaries, rest): (Vec<T>, Vec<T>) = clubs
        .iter()
        .cloned()
        .partition(|c| named.contains(&slug(c)));
    let (canaries, rest) = if rest.is_empty() {
        (Vec::new(), canaries)
    } else {
        (canaries, rest)
    };
    let mut waves = Vec::new();
    if !canaries.is_empty() {
        waves.push(Wave {
            canary: true,
            clubs: canaries,
        });
    }
    let size = match batch_size {
        0 => rest.len().max(1),
        n => n,
    };
    for batch in rest.chunks(size) {
        waves.push(Wave {
            canary: false,
            clubs: batch.to_vec(),
        });
    }
    Ok(waves)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slugs<'a>(waves: &[Wave<&'a str>]) -> Vec<(bool, Vec<&'a str>)> {
        waves.iter().map(|w| (w.canary, w.clubs.clone())).collect()
    }

    #[test]
    fn canaries_first_then_batches() {
        let clubs = ["a", "b", "c", "d", "e"];
        let configured = vec!["c".to_owned()];
        let waves = waves(&clubs, |c| c, None, &configured, 2).unwrap();
        assert_eq!(
            slugs(&waves),
            [
                (true, vec!["c"]),
                (false, vec!["a", "b"]),
                (false, vec!["d", "e"])
            ]
        );
        // All at once without a batch size; a canary alone is no canary.
        let all = super::waves(&clubs, |c| c, None, &[], 0).unwrap();
        assert_eq!(slugs(&all), [(false, clubs.to_vec())]);
        let alone = super::waves(&["c"], |c| c, None, &configured, 0).unwrap();
        assert_eq!(slugs(&alone), [(false, vec!["c"])]);
        // A canary named by the job must be among its clubs.
        let stray = [ClubSlug::parse("zz").unwrap()];
        let error = super::waves(&clubs, |c| c, Some(&stray), &[], 0).unwrap_err();
        assert!(error.0.contains("canary zz is not among"), "{}", error.0);
    }
}

//! Drops points by measurement or tag pattern.
//!
//! Parameters:
//! - `measurement`: comma-separated glob patterns (`*`, `?`) of measurements to drop;
//! - `tag`: comma-separated `key=glob` patterns; a point with a matching tag is dropped;
//! - `invert`: `true` keeps only the matching points instead.
//!
//! Without patterns every point is kept.

use sluice_guest::{Filter, PluginError, PointView, export_filter, params};

struct DropFilter {
    measurements: Vec<String>,
    tags: Vec<(String, String)>,
    invert: bool,
}

impl Filter for DropFilter {
    fn new() -> Result<Self, PluginError> {
        let tags = params::list("tag")
            .into_iter()
            .map(|spec| match spec.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
                _ => Err(PluginError::new(format!(
                    "parameter `tag`: `{spec}` is not key=pattern"
                ))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            measurements: params::list("measurement"),
            tags,
            invert: params::parse("invert")?.unwrap_or(false),
        })
    }

    fn keep(&mut self, point: &PointView<'_>) -> bool {
        let matches = self
            .measurements
            .iter()
            .any(|p| glob(p, point.measurement()))
            || self
                .tags
                .iter()
                .any(|(k, p)| point.tag(k).is_some_and(|v| glob(p, v)));
        matches == self.invert
    }
}

/// Glob match with `*` (any run) and `?` (one character), iterative with backtracking to
/// the last `*`: linear in practice, no recursion a hostile pattern could blow up.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

export_filter!(DropFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_guest::{Batch, Point};

    #[test]
    fn glob_matches_stars_and_question_marks() {
        assert!(glob("swap*", "swap"));
        assert!(glob("swap*", "swapfile"));
        assert!(glob("*", ""));
        assert!(glob("test-?", "test-7"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(glob("*é", "café"));
        assert!(!glob("test-?", "test-"));
        assert!(!glob("test-?", "test-77"));
        assert!(!glob("swap", "swapfile"));
        assert!(!glob("a*b", "ac"));
    }

    #[test]
    fn drops_matches_or_keeps_only_them_when_inverted() {
        let mut filter = DropFilter {
            measurements: vec!["swap*".into()],
            tags: vec![("host".into(), "test-?".into())],
            invert: false,
        };
        let points = [
            Point::new("cpu", 1).with_tag("host", "web-1"),
            Point::new("swapfile", 2).with_tag("host", "web-1"),
            Point::new("cpu", 3).with_tag("host", "test-7"),
            Point::new("cpu", 4),
        ];
        let batch = Batch::from_points(&points);
        let verdicts = filter.filter(&batch).expect("filter");
        assert_eq!(verdicts, [true, false, false, true]);
        filter.invert = true;
        let verdicts = filter.filter(&batch).expect("filter");
        assert_eq!(verdicts, [false, true, true, false]);
    }
}

//! The documentation cannot drift from the code: every test the production guide (or any other
//! page) names as proof of a guarantee must exist, and every link between the pages must lead
//! somewhere.
//!
//! A test is named as `tests/FILE.rs::test_name` (an integration test) or
//! `src/PATH.rs::test_name` (a unit test beside the code); it exists when that file has a
//! `fn test_name(` marked `#[test]`. Links are checked within the repository: relative files,
//! and `#anchors` against the headings of the page they point to (GitHub's slugs).
//! Not for: links to the web, or whether a named test proves what the text says (reviewers).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The pages checked, relative to the repository.
const PAGES: [&str; 5] = [
    "README.md",
    "docs/production.md",
    "docs/config.md",
    "docs/performance.md",
    "docs/swarm.md",
];
/// The production guide names at least this many tests; fewer means the references were
/// lost (or this test's parser no longer finds them).
const GUIDE_MIN_TESTS: usize = 40;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `tests/….rs::name` and `src/….rs::name` in `text`, in order.
fn test_refs(text: &str) -> Vec<(String, String)> {
    let mut refs = Vec::new();
    let is_path = |c: char| c.is_ascii_alphanumeric() || "_/.-".contains(c);
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    for (at, _) in text.match_indices(".rs::") {
        let start = text[..at].rfind(|c: char| !is_path(c)).map_or(0, |i| i + 1);
        let file = &text[start..at + 3];
        if !(file.starts_with("tests/") || file.starts_with("src/")) {
            continue;
        }
        let rest = &text[at + 5..];
        let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
        refs.push((file.to_string(), name));
    }
    refs
}

/// Whether `source` has a `#[test]` function called `name` (attributes such as `#[ignore]`
/// may sit between `#[test]` and the `fn`).
fn has_test(source: &str, name: &str) -> bool {
    let lines: Vec<&str> = source.lines().collect();
    lines.iter().enumerate().any(|(i, line)| {
        line.trim_start().starts_with(&format!("fn {name}("))
            && lines[..i]
                .iter()
                .rev()
                .take_while(|l| l.trim_start().starts_with("#["))
                .any(|l| l.trim() == "#[test]")
    })
}

/// The references in `text` that do not name an existing test, with why.
fn missing_tests(text: &str) -> Vec<String> {
    test_refs(text)
        .into_iter()
        .filter_map(|(file, name)| {
            let path = repo().join(&file);
            if name.is_empty() {
                return Some(format!("{file}:: names no test"));
            }
            match std::fs::read_to_string(&path) {
                Err(e) => Some(format!("{file}::{name}: {e}")),
                Ok(source) if !has_test(&source, &name) => {
                    Some(format!("{file}::{name}: no #[test] fn {name} in {file}"))
                }
                Ok(_) => None,
            }
        })
        .collect()
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|&c| c.is_alphanumeric() || c == '-' || c == '_' || c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(page: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in page.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// Every markdown link target `](…)` in `text` that is not a web address.
fn local_links(text: &str) -> Vec<String> {
    text.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &text[at + 2..];
            let target = &rest[..rest.find(')')?];
            (!target.contains("://")).then(|| target.to_string())
        })
        .collect()
}

#[test]
fn every_test_the_docs_name_exists() {
    let mut missing = Vec::new();
    for page in PAGES {
        for m in missing_tests(&read(&repo().join(page))) {
            missing.push(format!("{page}: {m}"));
        }
    }
    assert!(
        missing.is_empty(),
        "tests named in the docs that do not exist:\n{}",
        missing.join("\n")
    );
    let guide = test_refs(&read(&repo().join("docs/production.md")));
    let distinct: BTreeSet<_> = guide.iter().collect();
    assert!(
        distinct.len() >= GUIDE_MIN_TESTS,
        "the production guide names only {} tests",
        distinct.len()
    );
}

/// The checker itself: it finds references, accepts real tests (also `#[ignore]`d ones and
/// unit tests in src/), and refuses a renamed test, a helper that is not a test, and a file
/// that does not exist. Without this, a checker that finds nothing would always pass.
#[test]
fn the_reference_checker_catches_what_it_must() {
    let text = "proved by `tests/cli.rs::version_prints_the_crate_version`, \
                tests/docker.rs::rolling_restart_of_two_replicas_under_traffic_has_no_client_errors \
                and src/stats/store_tests.rs::two_writers_on_one_file_both_count.";
    assert_eq!(test_refs(text).len(), 3);
    assert_eq!(missing_tests(text), Vec::<String>::new());
    for bad in [
        "tests/cli.rs::version_prints_the_crate_version_renamed",
        "tests/cli.rs::rgate",
        "tests/nonexistent.rs::a_test",
        "src/stats/store_tests.rs::tmp",
    ] {
        assert_eq!(missing_tests(bad).len(), 1, "{bad} passed the check");
    }
    assert_eq!(
        slug("Statistics: `/stats` and `/metrics`"),
        "statistics-stats-and-metrics"
    );
}

#[test]
fn links_between_the_pages_lead_somewhere() {
    let mut broken = Vec::new();
    for page in PAGES {
        let path = repo().join(page);
        let text = read(&path);
        for link in local_links(&text) {
            let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target: PathBuf = if file.is_empty() {
                path.clone()
            } else {
                path.parent().unwrap().join(file)
            };
            if !target.exists() {
                broken.push(format!("{page}: {link}: no file {}", target.display()));
                continue;
            }
            if !anchor.is_empty() && !anchors(&read(&target)).contains(anchor) {
                broken.push(format!("{page}: {link}: no heading #{anchor}"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

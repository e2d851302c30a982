//! The documentation holds together: every relative link in README.md, CHANGELOG.md and docs/*.md
//! leads to a file of the repository that exists and, with a `#fragment`, to a heading of that page
//! (as GitHub names its anchors); every page of docs/ is linked from the README and opens with its
//! title and a summary; the README stays at most 250 lines, the rest going to docs/.
//!
//! No etcd and no binary: the checks read the files. The checker itself is tested on a made-up
//! tree, so a check that found nothing cannot pass for a tree without broken links.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The README says what the program is, how to install, run and test it, and links the rest.
const README_MAX_LINES: usize = 250;

/// A link as written in a page, and the line it is on (1-based).
#[derive(Debug, PartialEq)]
struct Link {
    line: usize,
    target: String,
}

/// The text of `line` with every code span blanked out (same length), so that `[a](b)` inside
/// backticks is not taken for a link.
fn without_code_spans(line: &str) -> String {
    let bytes = line.as_bytes();
    let mut out = line.as_bytes().to_vec();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let run = bytes[i..].iter().take_while(|&&b| b == b'`').count();
        // The span ends at the next run of exactly as many backticks.
        let mut j = i + run;
        let mut end = None;
        while j < bytes.len() {
            if bytes[j] == b'`' {
                let other = bytes[j..].iter().take_while(|&&b| b == b'`').count();
                if other == run {
                    end = Some(j + other);
                    break;
                }
                j += other;
            } else {
                j += 1;
            }
        }
        match end {
            Some(end) => {
                out[i..end].fill(b' ');
                i = end;
            }
            None => i += run,
        }
    }
    // Only ASCII bytes were replaced by ASCII bytes, so this stays UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// Whether `line` opens or closes a fenced code block.
fn is_fence(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("```") || t.starts_with("~~~")
}

/// Inline links and images (`[text](target)`) and reference definitions (`[label]: target`),
/// outside fenced code blocks and code spans.
fn links(text: &str) -> Vec<Link> {
    let mut found = Vec::new();
    let mut in_code = false;
    for (n, raw) in text.lines().enumerate() {
        if is_fence(raw) {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let line = without_code_spans(raw);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            let inside = after[..end].trim();
            // `(target "title")`: the target is the first word; `<target>` may hold spaces.
            let target = match inside.strip_prefix('<') {
                Some(t) => t.split('>').next().unwrap_or_default(),
                None => inside.split_whitespace().next().unwrap_or_default(),
            };
            found.push(Link {
                line: n + 1,
                target: target.to_owned(),
            });
            rest = &after[end..];
        }
        let trimmed = line.trim_start();
        if let Some(label_end) = trimmed.strip_prefix('[').and_then(|t| t.find("]:")) {
            let target = trimmed[1 + label_end + 2..].split_whitespace().next();
            if let Some(target) = target {
                found.push(Link {
                    line: n + 1,
                    target: target.trim_matches(['<', '>']).to_owned(),
                });
            }
        }
    }
    found
}

/// GitHub's anchor for a heading's text: inline links reduced to their text, lower case, every
/// character but letters, digits, `-` and `_` dropped, spaces turned into `-`.
fn anchor(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // `[text](url)` → `text`; a bare `[text]` (a reference) keeps its text too.
    while let Some(open) = rest.find('[') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close) => {
                text.push_str(&after[..close]);
                rest = &after[close + 1..];
                if rest.starts_with('(') {
                    rest = rest.find(')').map_or("", |e| &rest[e + 1..]);
                }
            }
            None => {
                rest = after;
            }
        }
    }
    text.push_str(rest);
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a page's headings (ATX headings outside code blocks); a repeated one gets `-1`,
/// `-2`, ... as on GitHub.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut all = BTreeSet::new();
    let mut in_code = false;
    for line in text.lines() {
        if is_fence(line) {
            in_code = !in_code;
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if in_code || !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let title = line[hashes..].trim().trim_end_matches('#').trim_end();
        let base = anchor(title);
        let count = seen.entry(base.clone()).or_insert(0);
        all.insert(if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    all
}

/// `path` without `.` and with each `..` taken back; `None` if it climbs above its start.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.iter().collect())
}

/// Every broken relative link of `pages` (paths relative to `root`), as `page:line: target: why`.
fn broken_links(root: &Path, pages: &[PathBuf]) -> Vec<String> {
    let mut broken = Vec::new();
    for page in pages {
        let text = std::fs::read_to_string(root.join(page))
            .unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        for Link { line, target } in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let mut say = |why: &str| {
                broken.push(format!("{}:{line}: {target}: {why}", page.display()));
            };
            let (path, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                Some(page.clone())
            } else {
                normalize(&page.parent().unwrap_or(Path::new("")).join(path))
            };
            let Some(file) = file else {
                say("outside the repository");
                continue;
            };
            if !root.join(&file).exists() {
                say("no such file");
                continue;
            }
            if fragment.is_empty() {
                continue;
            }
            if file.extension().is_none_or(|e| e != "md") {
                say("a #fragment on a file that is not a Markdown page");
                continue;
            }
            let target_text = std::fs::read_to_string(root.join(&file)).unwrap_or_default();
            if !anchors(&target_text).contains(fragment) {
                say("no heading with that anchor");
            }
        }
    }
    broken
}

/// The pages of docs/, relative to the repository.
fn docs_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| PathBuf::from("docs").join(p.file_name().unwrap_or_default()))
        .collect();
    pages.sort();
    pages
}

/// Promise: no relative link of the documentation is broken, in a repository checkout (the .deb
/// and the release tarball carry the README and docs/ side by side, so those links hold there too).
#[test]
fn every_relative_link_leads_to_a_file_and_heading_that_exist() {
    let mut pages = vec![PathBuf::from("README.md"), PathBuf::from("CHANGELOG.md")];
    pages.extend(docs_pages());
    let broken = broken_links(Path::new(ROOT), &pages);
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Promise: the README links every page of docs/, and each page opens with its title and a
/// one-paragraph summary.
#[test]
fn every_docs_page_is_linked_from_the_readme_and_opens_with_a_summary() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README.md");
    let linked: BTreeSet<PathBuf> = links(&readme)
        .into_iter()
        .filter_map(|l| normalize(Path::new(l.target.split('#').next().unwrap_or_default())))
        .collect();
    let pages = docs_pages();
    assert!(!pages.is_empty(), "docs/ has no pages");
    for page in pages {
        assert!(
            linked.contains(&page),
            "README.md does not link {}",
            page.display()
        );
        let text = std::fs::read_to_string(Path::new(ROOT).join(&page)).expect("docs page");
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let title = lines.next().unwrap_or_default();
        assert!(
            title.starts_with("# "),
            "{} does not open with a title: {title:?}",
            page.display()
        );
        let summary = lines.next().unwrap_or_default();
        let not_prose = ["#", "|", "```", "- ", "* ", "    ", ">"];
        assert!(
            !not_prose.iter().any(|p| summary.starts_with(p)),
            "{} has no summary paragraph under its title: {summary:?}",
            page.display()
        );
    }
}

/// Promise: the README stays short; details go to docs/.
#[test]
fn the_readme_is_at_most_250_lines() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move the details to docs/"
    );
}

/// The checker finds a missing file, a missing heading and a link that leaves the repository, and
/// takes nothing in code for a link.
#[test]
fn the_link_check_finds_missing_files_and_headings() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path();
    std::fs::create_dir(root.join("docs")).expect("docs/");
    std::fs::write(
        root.join("docs/a.md"),
        "# A page\n\n## The `--slots N` option\n\n## Twice\n\n## Twice\n",
    )
    .expect("a.md");
    std::fs::write(
        root.join("README.md"),
        "# Title\n\
         [good](docs/a.md) [good](docs/a.md#the---slots-n-option) [good](docs/a.md#twice-1)\n\
         [good](#title) [web](https://example.com/x.md#nothing) [dir](docs/)\n\
         [missing file](docs/b.md) [missing heading](docs/a.md#nothing)\n\
         [outside](../../etc/passwd) [missing here](#nothing)\n\
         [second twice](docs/a.md#twice-2)\n\
         `[in a span](docs/c.md)`\n\
         ```\n[in a block](docs/d.md)\n```\n\
         [ref]: docs/e.md\n",
    )
    .expect("README.md");
    let broken = broken_links(root, &[PathBuf::from("README.md")]);
    assert_eq!(
        broken,
        [
            "README.md:4: docs/b.md: no such file",
            "README.md:4: docs/a.md#nothing: no heading with that anchor",
            "README.md:5: ../../etc/passwd: outside the repository",
            "README.md:5: #nothing: no heading with that anchor",
            "README.md:6: docs/a.md#twice-2: no heading with that anchor",
            "README.md:11: docs/e.md: no such file",
        ]
    );
}

/// GitHub's anchors for headings of the kinds these pages use.
#[test]
fn anchors_are_named_as_github_names_them() {
    for (heading, want) in [
        (
            "N slots: one copy per slot (`--slots N`)",
            "n-slots-one-copy-per-slot---slots-n",
        ),
        (
            "HTTP endpoints (`--health-addr`)",
            "http-endpoints---health-addr",
        ),
        (
            "Switchover (`singleton-exec resign`)",
            "switchover-singleton-exec-resign",
        ),
        (
            "What dies with singleton-exec when it is SIGKILLed",
            "what-dies-with-singleton-exec-when-it-is-sigkilled",
        ),
        (
            "Where a handoff's milliseconds go",
            "where-a-handoffs-milliseconds-go",
        ),
        ("[0.2.0] - 2026-12-02", "020---2026-12-02"),
        ("See [usage](usage.md) now", "see-usage-now"),
        ("snake_case and *emphasis*", "snake_case-and-emphasis"),
    ] {
        assert_eq!(anchor(heading), want, "{heading}");
    }
}

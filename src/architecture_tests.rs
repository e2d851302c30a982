//! The architecture, checked on every `cargo test`: the layers of the crate map (`lib.rs`) and the
//! confinement of `unsafe`.
//!
//! * Layers, lowest first: core < process < health = notify_socket < config < election < report
//!   < leadership = commands. A module in a folder may import (`crate::a::b` anywhere outside a comment line)
//!   only from an earlier layer or from its own folder; `main.rs` and `lib.rs` wire everything
//!   and are exempt.
//! * Within a folder, modules form no cycle: a module's `crate::folder::module` paths are its
//!   edges, and the folder's `mod.rs` counts as the folder itself (which every module may use).
//! * Every file but process/spawn.rs and process/signals.rs (and the modules above them) has
//!   `#![forbid(unsafe_code)]` in effect, its own or its folder's, and only those two hold
//!   `unsafe` blocks.
//!
//! Each check is a function of the files' text, so it is tested on small made-up trees as well.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, lowest first; folders on one rank may not import from each other.
const LAYERS: [(&str, u8); 9] = [
    ("core", 0),
    ("process", 1),
    ("health", 2),
    ("notify_socket", 2),
    ("config", 3),
    ("election", 4),
    ("report", 5),
    ("leadership", 6),
    ("commands", 6),
];

/// Files that need not forbid `unsafe` code: the two that need it, and the modules above them
/// (they deny it, which those two override; a forbid could not be overridden).
const UNSAFE_ALLOWED: [&str; 4] = [
    "process/spawn.rs",
    "process/signals.rs",
    "process/mod.rs",
    "lib.rs",
];
/// The files where `unsafe` blocks may stay: the clone/exec and the signal handlers.
const UNSAFE_FILES: [&str; 2] = ["process/spawn.rs", "process/signals.rs"];

/// Written in two pieces so this file does not match its own check.
const UNSAFE_BLOCK: &str = concat!("unsafe", " {");
const FORBID: &str = "#![forbid(unsafe_code)]";

/// One source file: its path under `src/` (with `/`), and its text.
struct Source {
    path: String,
    text: String,
}

impl Source {
    fn new(path: &str, text: &str) -> Source {
        Source {
            path: path.to_owned(),
            text: text.to_owned(),
        }
    }

    /// The folder it lives in; `None` for `main.rs` and `lib.rs` (and this file).
    fn folder(&self) -> Option<&str> {
        self.path.split_once('/').map(|(folder, _)| folder)
    }

    /// The module it is: `report/http`, or `report` for `report/mod.rs`.
    fn module(&self) -> String {
        let module = self.path.trim_end_matches(".rs");
        module.strip_suffix("/mod").unwrap_or(module).to_owned()
    }

    /// The lines that are code: comment lines (doc comments included) name modules freely.
    fn code_lines(&self) -> impl Iterator<Item = &str> {
        self.text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
    }

    /// Every `crate::a` or `crate::a::b` path in the code, as (as written, a, b).
    fn crate_paths(&self) -> Vec<(String, String, Option<String>)> {
        let mut paths = Vec::new();
        for line in self.code_lines() {
            for (at, _) in line.match_indices("crate::") {
                let before = line[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue; // `mycrate::`, not ours
                }
                let rest = &line[at + "crate::".len()..];
                let first = ident(rest);
                if first.is_empty() {
                    continue;
                }
                let second = rest[first.len()..]
                    .strip_prefix("::")
                    .map(ident)
                    .filter(|s| !s.is_empty());
                let written = match second {
                    Some(s) => format!("crate::{first}::{s}"),
                    None => format!("crate::{first}"),
                };
                paths.push((written, first.to_owned(), second.map(str::to_owned)));
            }
        }
        paths
    }
}

/// The leading `[a-z_]` run of `s`: a module name.
fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

fn rank(folder: &str) -> Option<u8> {
    LAYERS.iter().find(|(f, _)| *f == folder).map(|&(_, r)| r)
}

/// Imports from a later layer (or another folder of the same rank), one line each.
fn upward_imports(files: &[Source]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        let Some(own) = file.folder().and_then(rank) else {
            continue;
        };
        let own_folder = file.folder().unwrap_or_default();
        for (written, folder, _) in file.crate_paths() {
            match rank(&folder) {
                Some(r) if folder != own_folder && r >= own => found.push(format!(
                    "{} imports {written}: {folder} is not a layer before {own_folder}",
                    file.path
                )),
                _ => {}
            }
        }
    }
    found
}

/// The graph of modules within each folder: module -> the modules of its folder it names.
fn edges(files: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let (Some(own_folder), module) = (file.folder(), file.module()) else {
            continue;
        };
        for (_, folder, sub) in file.crate_paths() {
            if folder != own_folder || rank(&folder).is_none() {
                continue;
            }
            let target = match sub {
                Some(sub) => format!("{folder}/{sub}"),
                None => folder.clone(),
            };
            if target != module && target != folder {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    edges
}

/// Every cycle found by a depth-first walk, as `a -> b -> a`.
fn cycles(files: &[Source]) -> Vec<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        OnPath,
        Done,
    }
    fn walk(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
        found: &mut Vec<String>,
    ) {
        marks.insert(node.to_owned(), Mark::OnPath);
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            match marks.get(next.as_str()) {
                Some(Mark::OnPath) => {
                    let start = path.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    found.push(cycle.join(" -> "));
                }
                Some(Mark::Done) => {}
                None => walk(next, edges, marks, path, found),
            }
        }
        path.pop();
        marks.insert(node.to_owned(), Mark::Done);
    }
    let edges = edges(files);
    let (mut marks, mut found) = (BTreeMap::new(), Vec::new());
    for node in edges.keys() {
        if !marks.contains_key(node.as_str()) {
            walk(node, &edges, &mut marks, &mut Vec::new(), &mut found);
        }
    }
    found
}

/// Files where `unsafe` code is not forbidden: neither the file nor its folder's `mod.rs` says
/// so (outside [`UNSAFE_ALLOWED`]).
fn unforbidden(files: &[Source]) -> Vec<String> {
    let forbids = |f: &Source| f.code_lines().any(|l| l.trim() == FORBID);
    let forbidding: BTreeSet<&str> = files
        .iter()
        .filter(|f| f.path.ends_with("/mod.rs") && forbids(f))
        .filter_map(Source::folder)
        .collect();
    files
        .iter()
        .filter(|f| !UNSAFE_ALLOWED.contains(&f.path.as_str()) && !forbids(f))
        .filter(|f| !f.folder().is_some_and(|d| forbidding.contains(d)))
        .map(|f| format!("{}: no {FORBID} in effect", f.path))
        .collect()
}

/// `unsafe` blocks outside the two files allowed them.
fn unsafe_blocks(files: &[Source]) -> Vec<String> {
    files
        .iter()
        .filter(|f| !UNSAFE_FILES.contains(&f.path.as_str()))
        .flat_map(|f| {
            f.text
                .lines()
                .enumerate()
                .filter(|(_, l)| l.contains(UNSAFE_BLOCK) && !l.trim_start().starts_with("//"))
                .map(move |(n, l)| format!("{}:{}: {}", f.path, n + 1, l.trim()))
        })
        .collect()
}

/// Every `.rs` file under `src/`.
fn read_src() -> Vec<Source> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<Source>) {
        let entries = std::fs::read_dir(dir).expect("src/ is readable");
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).expect("under src/");
                let text = std::fs::read_to_string(&path).expect("a readable source file");
                out.push(Source::new(
                    &rel.to_string_lossy().replace('\\', "/"),
                    &text,
                ));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

fn assert_none(what: &str, found: Vec<String>) {
    assert!(found.is_empty(), "{what}:\n  {}", found.join("\n  "));
}

#[test]
fn every_import_points_to_an_earlier_layer_or_its_own_folder() {
    let files = read_src();
    assert!(
        files.len() > 20,
        "src/ was not found: {} files",
        files.len()
    );
    assert_none("imports from a later layer", upward_imports(&files));
}

#[test]
fn the_modules_of_a_folder_form_no_cycle() {
    assert_none("module cycles", cycles(&read_src()));
}

#[test]
fn unsafe_code_is_forbidden_outside_spawn_and_signals() {
    assert_none("unsafe code not forbidden", unforbidden(&read_src()));
}

#[test]
fn unsafe_blocks_are_only_in_spawn_and_signals() {
    assert_none("unsafe blocks", unsafe_blocks(&read_src()));
}

#[test]
fn the_checks_find_what_they_look_for() {
    let tree = |files: &[(&str, &str)]| -> Vec<Source> {
        files.iter().map(|(p, t)| Source::new(p, t)).collect()
    };
    // (files, expected upward imports, expected cycles)
    type Row<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a [&'a str]);
    let rows: &[Row] = &[
        // Down the layers and within a folder: fine.
        (
            &[("report/http.rs", "use crate::core::clock;\nuse crate::report::observer::X;")],
            &[],
            &[],
        ),
        // Up a layer, named with the file and the path.
        (
            &[("health/mod.rs", "use crate::config::cli::HealthArgs;")],
            &["health/mod.rs imports crate::config::cli: config is not a layer before health"],
            &[],
        ),
        // The same rank is not "before": leadership and commands stay apart.
        (
            &[("commands/status.rs", "    crate::leadership::run(x)")],
            &["commands/status.rs imports crate::leadership::run: leadership is not a layer before commands"],
            &[],
        ),
        // Comment lines may name anything; main.rs and lib.rs are exempt; `mycrate::` is not ours.
        (
            &[
                ("core/timing.rs", "//! see [`crate::leadership::x`]\n    // crate::report\nlet a = mycrate::report::x;"),
                ("main.rs", "use singleton_exec::leadership;\nuse crate::leadership::x;"),
            ],
            &[],
            &[],
        ),
        // A cycle of two, and one of three; mod.rs (the folder) is no edge.
        (
            &[
                ("election/a.rs", "use crate::election::b::B;\nuse crate::election::X;"),
                ("election/b.rs", "use crate::election::a::A;"),
                ("election/mod.rs", "pub use crate::election::a::A;"),
                ("report/x.rs", "use crate::report::y;"),
                ("report/y.rs", "use crate::report::z::Z;"),
                ("report/z.rs", "fn f() { crate::report::x::g() }"),
            ],
            &[],
            &[
                "election/a -> election/b -> election/a",
                "report/x -> report/y -> report/z -> report/x",
            ],
        ),
    ];
    for (files, up, cyc) in rows {
        let files = tree(files);
        assert_eq!(upward_imports(&files), *up, "{:?}", files[0].path);
        assert_eq!(cycles(&files), *cyc, "{:?}", files[0].path);
    }
}

#[test]
fn the_unsafe_checks_find_what_they_look_for() {
    let block = format!("fn f() {{ {UNSAFE_BLOCK} g() }} }}");
    let files = vec![
        Source::new("report/mod.rs", &format!("//! Report.\n\n{FORBID}\n")),
        Source::new("report/http.rs", "fn f() {}"),
        Source::new(
            "health/mod.rs",
            "// #![forbid(unsafe_code)] in a comment is not in effect",
        ),
        Source::new("process/thread.rs", &block),
        Source::new("process/tree.rs", &format!("//! Tree.\n\n{FORBID}\n")),
        Source::new("process/spawn.rs", &block),
        Source::new("core/clock.rs", "fn f() {}"),
        Source::new("main.rs", &block),
    ];
    assert_eq!(
        unforbidden(&files),
        [
            "health/mod.rs: no #![forbid(unsafe_code)] in effect",
            "process/thread.rs: no #![forbid(unsafe_code)] in effect",
            "core/clock.rs: no #![forbid(unsafe_code)] in effect",
            "main.rs: no #![forbid(unsafe_code)] in effect",
        ]
    );
    let blocks = unsafe_blocks(&files);
    let where_: Vec<&str> = blocks
        .iter()
        .map(|b| b.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(where_, ["process/thread.rs", "main.rs"]);
}

//! Generates the man pages and shell completions from the clap definition, so they cannot drift
//! from `--help`: `cargo run --example gen_docs -- packaging`. A test checks the committed files
//! are current, and another that `mandoc -T lint` finds nothing to say about the pages.
//!
//! The pages: singleton-exec(1), and singleton-exec-NAME(1) for every subcommand (for one with
//! subcommands of its own, singleton-exec-NAME-SUB(1) for each of those: `once clear`), which
//! the main page's COMMANDS and SEE ALSO name. clap_mangen renders NAME, SYNOPSIS, DESCRIPTION and OPTIONS;
//! the sections it has no data for are written here: ENVIRONMENT (every variable of an option,
//! the etcdctl variables the help text names as fallbacks, the variables read from systemd and the
//! ones set for COMMAND), EXIT STATUS as a table (the main page's from `exit_code::HELP_TABLE`, the
//! subcommands' from their constants), FILES and SEE ALSO. The page date is the release date of
//! the newest entry of packaging/debian/changelog, so the pages change only with a release.
//!
//! Input text lines are wrapped at 80 bytes and trailing blanks dropped, as `mandoc -T lint` asks.

use std::path::{Path, PathBuf};

use clap::{Command, CommandFactory};
use clap_complete::Shell;
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;
use singleton_exec::commands::{once, resign, status};
use singleton_exec::core::exit_code;
use singleton_exec::report::logging::FILTER_VAR;

/// The Debian changelog: its newest entry dates the pages.
const DEBIAN_CHANGELOG: &str = include_str!("../packaging/debian/changelog");

/// The longest input text line `mandoc -T lint` accepts without a remark.
const MAX_LINE: usize = 80;

/// Every generated file, relative to the output directory, with its contents.
pub fn render() -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let cmd = singleton_exec::config::cli::Cli::command();
    // The pages name no `help` subcommand: it has no page.
    let mut root = cmd.clone().disable_help_subcommand(true);
    root.build();
    let date = release_date(DEBIAN_CHANGELOG);
    out.push((
        PathBuf::from("man/singleton-exec.1"),
        main_page(&root, &date).into_bytes(),
    ));
    for sub in pages(&root) {
        out.push((
            PathBuf::from(format!("man/{}.1", page_name(sub))),
            subcommand_page(&root, sub, &date).into_bytes(),
        ));
    }
    for (shell, file) in [
        (Shell::Bash, "singleton-exec.bash"),
        (Shell::Zsh, "_singleton-exec"),
        (Shell::Fish, "singleton-exec.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "singleton-exec", &mut buf);
        out.push((Path::new("completions").join(file), buf));
    }
    out
}

/// The subcommands with a page of their own: every one without subcommands, and the
/// subcommands of the others (`once clear`), in order.
fn pages(root: &Command) -> Vec<&Command> {
    root.get_subcommands()
        .filter(|s| !s.is_hide_set())
        .flat_map(|s| match s.has_subcommands() {
            false => vec![s],
            true => s.get_subcommands().filter(|c| !c.is_hide_set()).collect(),
        })
        .collect()
}

/// The words after `singleton-exec` that run `sub` (its bin name, set by `build`): `status`,
/// `once clear`.
fn words(sub: &Command) -> String {
    let bin = sub.get_bin_name().unwrap_or(sub.get_name());
    bin.strip_prefix("singleton-exec ")
        .unwrap_or(bin)
        .to_owned()
}

/// `singleton-exec-status` for `status`, `singleton-exec-once-clear` for `once clear`.
fn page_name(sub: &Command) -> String {
    format!("singleton-exec-{}", words(sub).replace(' ', "-"))
}

/// The man page of the supervisor itself.
fn main_page(root: &Command, date: &str) -> String {
    let mut roff = Roff::new();
    roff.control("SH", ["COMMANDS"]);
    for sub in pages(root) {
        roff.control("TP", []);
        roff.text([bold(page_name(sub)), roman("(1)")]);
        roff.text([roman(first_paragraph(sub))]);
    }

    environment(&mut roff, std::iter::once(root).chain(pages(root)));
    roff.control("SS", ["Set for COMMAND"]);
    roff.text([roman(
        "COMMAND inherits the environment of singleton-exec, without systemd's NOTIFY_SOCKET, \
         WATCHDOG_USEC, WATCHDOG_PID, LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES and \
         SINGLETON_EXEC_PASSWORD, and with:",
    )]);
    for (name, what) in CHILD_VARIABLES {
        entry(&mut roff, name, what);
    }

    let rows: Vec<(String, String)> = help_table_rows(exit_code::HELP_TABLE);
    exit_status(
        &mut roff,
        "The status of COMMAND when there is one, else the supervisor's own code. COMMAND may \
         exit with the same numbers; the log always says which case happened.",
        &rows,
    );

    roff.control("SH", ["FILES"]);
    for (path, what) in FILES {
        roff.control("TP", []);
        roff.text([italic(*path)]);
        roff.text([roman(*what)]);
    }

    let mut see_also: Vec<String> = pages(root)
        .into_iter()
        .map(|s| format!("{}(1)", page_name(s)))
        .collect();
    see_also.extend(EXTERNAL_PAGES.iter().map(|p| p.to_string()));
    see_also_section(&mut roff, &see_also);

    page(root, "SINGLETON-EXEC", date, &roff)
}

/// The man page of one subcommand.
fn subcommand_page(root: &Command, sub: &Command, date: &str) -> String {
    let mut roff = Roff::new();
    environment(&mut roff, std::iter::once(sub));
    if let Some((intro, rows)) = subcommand_exit_status(&words(sub)) {
        exit_status(&mut roff, intro, &rows);
    }
    let mut see_also = vec!["singleton-exec(1)".to_owned()];
    see_also.extend(
        pages(root)
            .into_iter()
            .filter(|s| page_name(s) != page_name(sub))
            .map(|s| format!("{}(1)", page_name(s))),
    );
    see_also.push("etcdctl(1)".to_owned());
    see_also_section(&mut roff, &see_also);
    // NAME (the whatis line) says what the command does in its first sentence; DESCRIPTION has
    // all of it.
    let about = first_paragraph(sub);
    let name_line = about
        .split_once(". ")
        .map_or(about.as_str(), |(first, _)| first);
    let sub = sub
        .clone()
        .about(name_line.trim_end_matches('.').to_owned())
        .long_about(about.clone());
    page(&sub, &page_name(&sub).to_uppercase(), date, &roff)
}

/// clap_mangen's title, NAME, SYNOPSIS, DESCRIPTION and OPTIONS, then `sections`, fitted for lint.
fn page(cmd: &Command, title: &str, date: &str, sections: &Roff) -> String {
    let man = Man::new(cmd.clone())
        .title(title)
        .date(date)
        .source(format!("singleton-exec {}", env!("CARGO_PKG_VERSION")))
        .manual("User Commands");
    let mut head = Vec::new();
    for part in [
        Man::render_title,
        Man::render_name_section,
        Man::render_synopsis_section,
        Man::render_description_section,
        Man::render_options_section,
    ] {
        part(&man, &mut head).expect("render to memory");
    }
    let mut text = String::from_utf8(head).expect("clap text is UTF-8");
    // Left-aligned, no hyphenation: variable and option names stay whole.
    let title_end = text
        .find(".TH ")
        .and_then(|i| text[i..].find('\n').map(|j| i + j + 1));
    text.insert_str(title_end.expect("a .TH line"), ".nh\n.ad l\n");
    text.push_str(&sections.to_roff());
    // The first line asks man(1) to run tbl(1) for the EXIT STATUS table.
    format!("'\\\" t\n{}", fit(&dedup_preamble(&text)))
}

/// Each of clap_mangen's section renderers starts with the same two lines defining `\*(Aq`; one
/// is enough.
fn dedup_preamble(text: &str) -> String {
    let mut seen = std::collections::HashSet::new();
    text.lines()
        .filter(|l| !(l.starts_with(".ie ") || l.starts_with(".el ")) || seen.insert(*l))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Input text lines of at most [`MAX_LINE`] bytes (roff fills them again: a line break in the
/// input is a space), without trailing blanks. The tag line of a `.TP` is one line by definition
/// and is left whole.
fn fit(text: &str) -> String {
    let mut out = String::new();
    let mut tag_line = false;
    let mut lines: Vec<&str> = Vec::new();
    // clap_mangen separates an option's help from its possible values by `.br`, an empty line
    // (a blank line is `.sp` in roff) and `.br`, which lint calls needless: one `.sp` says it.
    for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        if line == ".br" && lines.last() == Some(&".br") {
            *lines.last_mut().expect("not empty") = ".sp";
        } else {
            lines.push(line);
        }
    }
    for line in lines {
        let control = line.starts_with('.') || line.starts_with('\'');
        if control || tag_line || line.len() <= MAX_LINE {
            out.push_str(line);
            out.push('\n');
        } else {
            for piece in wrap(line) {
                // A piece that starts like a control line is text all the same.
                if piece.starts_with('.') || piece.starts_with('\'') {
                    out.push_str("\\&");
                }
                out.push_str(&piece);
                out.push('\n');
            }
        }
        tag_line = line == ".TP";
    }
    out
}

/// `line` split at blanks into pieces of at most [`MAX_LINE`] bytes where it can be (a word longer
/// than that stays whole). A blank escaped with a backslash is part of its word.
fn wrap(line: &str) -> Vec<String> {
    let mut words: Vec<&str> = Vec::new();
    let mut start = 0;
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b' ' && (i == 0 || bytes[i - 1] != b'\\') {
            if i > start {
                words.push(&line[start..i]);
            }
            start = i + 1;
        }
    }
    if start < line.len() {
        words.push(&line[start..]);
    }
    let mut pieces = Vec::new();
    let mut current = String::new();
    for word in words {
        if !current.is_empty() && current.len() + 1 + word.len() > MAX_LINE - 2 {
            pieces.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

/// The about text of a subcommand up to its first blank line, as one line.
fn first_paragraph(cmd: &Command) -> String {
    let about = cmd
        .get_about()
        .or_else(|| cmd.get_long_about())
        .map(|s| s.to_string())
        .unwrap_or_default();
    about
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// ENVIRONMENT: the variable of every option of `cmds` (once each, in order of appearance), the
/// etcdctl variables their help names as fallbacks, and what else singleton-exec reads.
fn environment<'a>(roff: &mut Roff, cmds: impl Iterator<Item = &'a Command>) {
    let mut options: Vec<(String, String)> = Vec::new();
    let mut fallbacks: Vec<(String, String)> = Vec::new();
    for cmd in cmds {
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) else {
                continue;
            };
            let var = var.to_string_lossy().into_owned();
            if !options.iter().any(|(v, _)| *v == var) {
                options.push((var, format!("--{long}")));
            }
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            for fallback in etcdctl_fallbacks(&help) {
                if !fallbacks.iter().any(|(v, _)| *v == fallback) {
                    fallbacks.push((fallback, format!("--{long}")));
                }
            }
        }
    }
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman(
        "Every option can be given as a variable instead; an option on the command line \
         wins over its variable. Empty variables count as unset.",
    )]);
    for (var, option) in &options {
        roff.control("TP", []);
        roff.text([bold(var.as_str())]);
        roff.text([roman("Same as "), bold(option.as_str()), roman(".")]);
    }
    for (var, option) in &fallbacks {
        roff.control("TP", []);
        roff.text([bold(var.as_str())]);
        roff.text([
            roman("Read as etcdctl(1) reads it when neither "),
            bold(option.as_str()),
            roman(" nor its SINGLETON_EXEC_ variable is given."),
        ]);
    }
    entry(
        roff,
        FILTER_VAR,
        "A log filter as in RUST_LOG: comma-separated LEVEL, TARGET or TARGET=LEVEL (for example \
         singleton_exec=debug,warn). When set it replaces the levels of -v and -q; a value that \
         is not a filter is a usage error (exit status 2).",
    );
    for (name, what) in SYSTEMD_VARIABLES {
        entry(roff, name, what);
    }
}

/// `ETCDCTL_X` names that a help text gives as "Falls back to ETCDCTL_X".
fn etcdctl_fallbacks(help: &str) -> Vec<String> {
    help.split("Falls back to ")
        .skip(1)
        .filter_map(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            name.starts_with("ETCDCTL_").then_some(name)
        })
        .collect()
}

/// One `.TP` entry: a bold name and its text.
fn entry(roff: &mut Roff, name: &str, what: &str) {
    roff.control("TP", []);
    roff.text([bold(name)]);
    roff.text([roman(what)]);
}

/// EXIT STATUS: `intro`, then a two-column table (tbl) of code and meaning.
fn exit_status(roff: &mut Roff, intro: &str, rows: &[(String, String)]) {
    roff.control("SH", ["EXIT STATUS"]);
    if !intro.is_empty() {
        roff.text([roman(intro)]);
        roff.control("PP", []);
    }
    roff.control("TS", []);
    // The first row is a header; the meaning column takes the rest of the line.
    roff.text([roman("tab(@);")]);
    roff.text([roman("lb lb")]);
    roff.text([roman("l lx.")]);
    roff.text([roman("status@meaning")]);
    for (code, meaning) in rows {
        roff.text([roman(format!("{code}@T{{"))]);
        roff.text([roman(meaning.as_str())]);
        roff.text([roman("T}")]);
    }
    roff.control("TE", []);
}

/// SEE ALSO: `pages`, each `name(section)`, comma-separated.
fn see_also_section(roff: &mut Roff, pages: &[String]) {
    roff.control("SH", ["SEE ALSO"]);
    let mut line = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        let (name, section) = page.split_once('(').expect("name(section)");
        line.push(bold(name));
        let sep = if i + 1 < pages.len() { ", " } else { "" };
        line.push(roman(format!("({section}{sep}")));
    }
    roff.text(line);
}

/// The rows of `--help`'s exit code table: `  CODE   meaning` lines after the heading. A line
/// indented deeper than the codes continues the meaning above it.
fn help_table_rows(table: &str) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = Vec::new();
    for line in table.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let body = line.trim_start();
        let indent = line.len() - body.len();
        match (body.split_once(char::is_whitespace), rows.last_mut()) {
            (_, Some(last)) if indent > 4 => {
                last.1.push(' ');
                last.1.push_str(body);
            }
            (Some((code, meaning)), _) => rows.push((code.to_owned(), meaning.trim().to_owned())),
            (None, _) => rows.push((body.to_owned(), String::new())),
        }
    }
    rows
}

/// The exit status table of a subcommand, from the constants its code returns; `None` for one
/// that has none here yet (its page then has no EXIT STATUS section).
fn subcommand_exit_status(name: &str) -> Option<(&'static str, Vec<(String, String)>)> {
    let row = |code: i32, what: &str| (code.to_string(), what.to_owned());
    let common = |rows: &mut Vec<(String, String)>| {
        rows.push(row(exit_code::USAGE, "usage error"));
        rows.push(row(
            exit_code::ETCD_REJECTED,
            "etcd refused us for good (credentials, permissions)",
        ));
    };
    match name {
        "status" => {
            let mut rows = vec![
                row(
                    0,
                    "there is a leader (with slots: every slot has a holder); with --watch: \
                     stopped by SIGINT or SIGTERM; with --once: the command is done",
                ),
                row(
                    status::NO_LEADER,
                    "no leader (with slots: a slot without holder); with --once: the command is \
                     not done (running, failed, or never run)",
                ),
                row(
                    status::ORPHANED_HEAD,
                    "the head of the queue is orphaned: no live lease of its own holds it, so \
                     nobody leads under it until a standby removes it",
                ),
            ];
            common(&mut rows);
            rows.push(row(exit_code::INTERNAL, "etcd could not be read"));
            Some(("", rows))
        }
        "resign" => {
            let mut rows = vec![
                row(0, "the leader stepped down (its key is gone)"),
                row(
                    status::NO_LEADER,
                    "no leader (or no holder of --slot): nothing to resign",
                ),
            ];
            common(&mut rows);
            rows.push(row(
                resign::TIMED_OUT,
                "--timeout passed before the leader stepped down",
            ));
            rows.push(row(exit_code::INTERNAL, "etcd could not be read"));
            rows.push((
                "128+S".to_owned(),
                "interrupted by signal S (the request is withdrawn)".to_owned(),
            ));
            Some(("", rows))
        }
        "once clear" => {
            let mut rows = vec![
                row(0, "cleared (also when there was nothing to clear)"),
                row(
                    once::BUSY,
                    "not cleared: invocations run or wait under NAME (--force clears anyway)",
                ),
            ];
            common(&mut rows);
            rows.push(row(exit_code::INTERNAL, "etcd could not be reached"));
            Some(("", rows))
        }
        "timing" => {
            let rows = vec![
                row(0, "the figures were printed"),
                row(
                    exit_code::USAGE,
                    "usage error: a configuration a replica would refuse to run with",
                ),
            ];
            Some(("", rows))
        }
        _ => None,
    }
}

/// The date (YYYY-MM-DD) of the newest entry of a Debian changelog: its first trailer line,
/// ` -- NAME <EMAIL>  Day, DD Mon YYYY HH:MM:SS +ZZZZ`.
fn release_date(changelog: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let trailer = changelog
        .lines()
        .find(|l| l.starts_with(" -- "))
        .expect("packaging/debian/changelog has a trailer line");
    let (_, when) = trailer
        .split_once(">  ")
        .expect("two blanks between the maintainer and the date");
    let fields: Vec<&str> = when.split_whitespace().collect();
    let [_, day, month, year, ..] = fields[..] else {
        panic!("changelog date {when:?} is not RFC 2822");
    };
    let month = MONTHS
        .iter()
        .position(|m| *m == month)
        .unwrap_or_else(|| panic!("changelog date {when:?}: no month {month}"));
    format!("{year}-{:02}-{:0>2}", month + 1, day)
}

/// What singleton-exec reads from systemd.
const SYSTEMD_VARIABLES: &[(&str, &str)] = &[
    (
        "NOTIFY_SOCKET",
        "Set by systemd for Type=notify: READY=1 once campaigning starts, STATUS= on every \
         transition, STOPPING=1 at shutdown. Not passed to COMMAND.",
    ),
    (
        "WATCHDOG_USEC",
        "The watchdog interval systemd expects: WATCHDOG=1 is sent every half of it while the \
         leadership loop runs. Not passed to COMMAND.",
    ),
    (
        "WATCHDOG_PID",
        "The process the watchdog is meant for: WATCHDOG_USEC counts only if it names this \
         process. Not passed to COMMAND.",
    ),
    (
        "RUNTIME_DIRECTORY",
        "Where the directory of the children's notify sockets is made (mode 0700), when set (systemd's \
         RuntimeDirectory=); else in TMPDIR or /tmp. Where neither can hold it (a read-only file \
         system), the sockets are abstract.",
    ),
    (
        "PATH",
        "Where COMMAND is looked up when it contains no slash.",
    ),
];

/// What COMMAND gets besides the environment of singleton-exec.
const CHILD_VARIABLES: &[(&str, &str)] = &[
    (
        "NOTIFY_SOCKET",
        "A notify socket of its own (sd_notify(3), as systemd's Type=notify gives one): READY=1, \
         STATUS=, WATCHDOG=1, WATCHDOG=trigger, STOPPING=1 and EXTEND_TIMEOUT_USEC= are read \
         from its process tree. Always set.",
    ),
    (
        "WATCHDOG_USEC",
        "With --watchdog: how often, in microseconds, COMMAND must send WATCHDOG=1.",
    ),
    (
        "WATCHDOG_PID",
        "With --watchdog: COMMAND's own pid (the process the watchdog is meant for).",
    ),
    ("SINGLETON_EXEC_LEADER_ELECTION", "The election name."),
    ("SINGLETON_EXEC_LEADER_ID", "This replica's --id."),
    (
        "SINGLETON_EXEC_LEADER_KEY",
        "The leader key in etcd, PREFIX/ELECTION/LEASE_HEX.",
    ),
    (
        "SINGLETON_EXEC_LEASE_ID",
        "The lease id, in hex as etcdctl prints it.",
    ),
    (
        "SINGLETON_EXEC_REVISION",
        "The leader key's create revision: the fencing token.",
    ),
    (
        "SINGLETON_EXEC_SLOT",
        "The slot held, 0 to N-1 with --slots N; 0 for the singleton.",
    ),
    ("SINGLETON_EXEC_SLOT_COUNT", "N (1 for the singleton)."),
    (
        "SINGLETON_EXEC_ETCD_ENDPOINTS",
        "The etcd endpoints, for fenced writes.",
    ),
    ("SINGLETON_EXEC_ONCE_NAME", "With --once: NAME."),
    (
        "SINGLETON_EXEC_ONCE_ATTEMPT",
        "With --once: which attempt this run is, from 1 (the failed runs before it + 1; a run \
         cut short by a crash is run again as the same attempt).",
    ),
    (
        "SINGLETON_EXEC_ONCE_MAX_ATTEMPTS",
        "With --once: --once-attempts.",
    ),
    (
        "SINGLETON_EXEC_ONCE_PREVIOUS_REVISION",
        "With --once: the fencing revision of the run before this one (cut short, or failed); \
         unset for the first. A run that finds it knows it runs again.",
    ),
    (
        "SINGLETON_EXEC_ROLE",
        "With --hot-standby: the child's role when it started, standby (or leader, when no \
         child ran to promote). A standby's child gets none of the leader's variables above.",
    ),
    (
        "SINGLETON_EXEC_ROLE_FILE",
        "With --hot-standby: a file holding leader REVISION or standby, replaced by a rename; \
         --role-signal follows every change once the child has sent its first ROLE=. The child \
         confirms with ROLE=leader or ROLE=standby on NOTIFY_SOCKET (docs/hot-standby.md).",
    ),
    (
        "ETCD_LOCK_KEY",
        "The leader key, as etcdctl lock NAME -- cmd sets it.",
    ),
    (
        "ETCD_LOCK_REV",
        "The etcd revision at which this replica was first seen leading, as etcdctl lock sets it.",
    ),
];

/// Files a packaged installation uses.
const FILES: &[(&str, &str)] = &[
    (
        "/etc/singleton-exec/NAME.env",
        "The environment file of the systemd unit singleton-exec@NAME.service: SINGLETON_EXEC_ \
         variables, one NAME=VALUE a line. The package installs example.env, every variable \
         explained.",
    ),
    (
        "/etc/systemd/system/singleton-exec@NAME.service.d/*.conf",
        "Drop-ins of one instance: the command to run (ExecStart=) and what the application needs \
         beyond the unit's sandbox.",
    ),
    (
        "/usr/lib/systemd/system/singleton-exec@.service",
        "The systemd template unit: one replica per machine, hardened by default.",
    ),
];

/// Pages of other packages that SEE ALSO names (tests check they exist where the tests run).
const EXTERNAL_PAGES: &[&str] = &["etcdctl(1)", "systemd.exec(5)", "systemd.service(5)"];

#[allow(dead_code)]
fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "packaging".into());
    for (path, bytes) in render() {
        let path = Path::new(&dir).join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("create dir");
        std::fs::write(&path, bytes).expect("write");
        println!("{}", path.display());
    }
}

//! The outcome of a run-once command (`--once NAME`) from outside the replicas: `status --once
//! NAME` shows it ([`render_text`], [`render_json`], pure functions of one read), `once clear
//! NAME` forgets it ([`clear`]). The keys are [`crate::election::once`]'s.
//!
//! The state `status` shows, from the record, the attempts and the queue read at one revision:
//! * `done`: a completion record exists (exit 0);
//! * `running`: a run was begun and has not ended; when its runner's key is no longer at the head
//!   of the queue the run was cut short (`runner_alive: false`), and the next in the queue runs
//!   it again;
//! * `failed`: the last run failed (`exit_code` is its status); with attempts left, the next
//!   invocation runs it again;
//! * `none`: nothing was run (or the outcome was cleared).
//!
//! `status` exits 0 for `done`, [`NOT_DONE`] for the others; `clear` exits 0 once cleared, and
//! [`BUSY`] when replicas wait or run under the name (nothing is deleted then, unless `--force`).

use crate::commands::status::{failed, Target, EMPTY_ID};
use crate::config::cli::{OnceClearArgs, OutputFormat, StatusArgs};
use crate::config::{validate_election, ConfigError};
use crate::core::exit_code;
use crate::election::once::{rfc3339, Cleared, OnceLayout, OnceView, Run};
use crate::election::queue::Candidate;

/// `status --once`: the command is not done (running, failed, or never run).
pub const NOT_DONE: i32 = crate::commands::status::NO_LEADER;
/// `once clear`: replicas wait or run under the name; nothing was cleared.
pub const BUSY: i32 = 1;

/// What `status --once` says of a run-once command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Done,
    Running,
    Failed,
    None,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Done => "done",
            State::Running => "running",
            State::Failed => "failed",
            State::None => "none",
        }
    }
}

/// The state shown for `view`.
pub fn state_of(view: &OnceView) -> State {
    let o = &view.outcome;
    if o.record.is_some() {
        return State::Done;
    }
    let Some(a) = &o.attempts else {
        return State::None;
    };
    match (&a.run, &a.last_failure) {
        (Some(r), _) if r.ended.is_none() => State::Running,
        (_, Some(_)) => State::Failed,
        _ => State::None,
    }
}

/// The attempt number shown: the record's, the run's in progress, or the failed count.
fn attempts_of(view: &OnceView, state: State) -> u32 {
    let a = view.outcome.attempts.as_ref();
    match (state, &view.outcome.record) {
        (State::Done, Some(r)) => r.attempt,
        (State::Running, _) => a.and_then(|a| a.run.as_ref()).map_or(0, |r| r.attempt),
        _ => a.map_or(0, |a| a.failed),
    }
}

/// The status shown as the exit code, when there is one: 0 when done, the last failure's.
fn exit_code_of(view: &OnceView, state: State) -> Option<i32> {
    match state {
        State::Done => Some(0),
        State::Failed => view
            .outcome
            .attempts
            .as_ref()
            .and_then(|a| a.last_failure.as_ref())
            .and_then(|f| f.ended.as_ref())
            .map(|e| e.exit_code),
        State::Running | State::None => None,
    }
}

/// The run in progress (or cut short), when there is one.
fn in_progress(view: &OnceView) -> Option<&Run> {
    let run = view.outcome.attempts.as_ref()?.run.as_ref()?;
    run.ended.is_none().then_some(run)
}

/// The queue key that runs `run` now: the head of the queue, if it is the run's.
fn runner<'a>(view: &'a OnceView, run: &Run) -> Option<&'a Candidate> {
    view.queue
        .first()
        .filter(|c| c.key == run.key && c.revision == run.fencing_revision)
}

/// Replicas in the queue that wait (every one but the runner).
fn waiting(view: &OnceView) -> usize {
    let running = in_progress(view).and_then(|r| runner(view, r)).is_some();
    view.queue.len() - usize::from(running)
}

/// `status --once NAME` as text: `label: value` lines, as the leader's status has.
pub fn render_text(name: &str, election: &str, view: &OnceView) -> String {
    let line =
        |label: &str, value: &dyn std::fmt::Display| format!("{:18}{value}\n", format!("{label}:"));
    let state = state_of(view);
    let a = view.outcome.attempts.as_ref();
    let mut out = line("once", &name);
    out += &line("election", &election);
    out += &line("state", &state.name());
    let attempts = attempts_of(view, state);
    match a.map(|a| a.max_attempts).filter(|&m| m > 0) {
        Some(max) => out += &line("attempts", &format!("{attempts} of {max}")),
        None => out += &line("attempts", &attempts),
    }
    if let Some(code) = exit_code_of(view, state) {
        out += &line("exit_code", &code);
    }
    let run_lines = |out: &mut String, r: &Run| {
        *out += &line("by", &shown_id(&r.id));
        *out += &line("fencing_revision", &r.fencing_revision);
        *out += &line("started_at", &rfc3339(r.started_at_ms));
    };
    match (state, &view.outcome.record) {
        (State::Done, Some(r)) => {
            out += &line("by", &shown_id(&r.id));
            out += &line("fencing_revision", &r.fencing_revision);
            out += &line("started_at", &rfc3339(r.started_at_ms));
            out += &line("finished_at", &rfc3339(r.finished_at_ms));
            let took = std::time::Duration::from_millis(r.duration_ms());
            out += &line("duration", &humantime::format_duration(took));
        }
        (State::Running, _) => {
            if let Some(r) = in_progress(view) {
                run_lines(&mut out, r);
                let alive = match runner(view, r) {
                    Some(_) => "yes".to_owned(),
                    None => "no: the run was cut short (its runner crashed, lost its lease or \
                             was stopped); the next replica in the queue runs it again"
                        .to_owned(),
                };
                out += &line("runner_alive", &alive);
            }
        }
        (State::Failed, _) => {
            if let Some(f) = a.and_then(|a| a.last_failure.as_ref()) {
                run_lines(&mut out, f);
                if let Some(e) = &f.ended {
                    out += &line("ended_at", &rfc3339(e.ended_at_ms));
                    out += &line("status", &e.status);
                }
            }
        }
        _ => {}
    }
    if let Some(a) = a {
        out += &line("interrupted", &a.interrupted);
    }
    out += &line("waiting", &waiting(view));
    out
}

fn shown_id(id: &str) -> &str {
    if id.is_empty() {
        EMPTY_ID
    } else {
        id
    }
}

/// `status --once NAME --output json` (the fields are in docs/once.md).
pub fn render_json(name: &str, election: &str, prefix: &str, view: &OnceView) -> serde_json::Value {
    let state = state_of(view);
    let a = view.outcome.attempts.as_ref();
    let runner = in_progress(view).and_then(|r| runner(view, r));
    serde_json::json!({
        "once": name,
        "election": election,
        "prefix": prefix,
        "store_revision": view.revision,
        "state": state.name(),
        "attempts": attempts_of(view, state),
        "max_attempts": a.map(|a| a.max_attempts),
        "exit_code": exit_code_of(view, state),
        "failed": a.map_or(0, |a| a.failed),
        "interrupted": a.map_or(0, |a| a.interrupted),
        "record": view.outcome.record.as_ref().map(|r| {
            let mut v: serde_json::Value =
                serde_json::from_str(&r.to_json()).unwrap_or(serde_json::Value::Null);
            v["duration_ms"] = r.duration_ms().into();
            v
        }),
        "run": a.and_then(|a| a.run.as_ref()).map(Run::to_json),
        "last_failure": a.and_then(|a| a.last_failure.as_ref()).map(Run::to_json),
        "runner_alive": in_progress(view).map(|_| runner.is_some()),
        "runner": runner.map(|c| serde_json::json!({
            "id": c.id,
            "key": c.key,
            "lease": c.lease.to_string(),
            "fencing_revision": c.revision,
        })),
        "waiting": waiting(view),
    })
}

/// `status --once NAME`: one read, printed; 0 when done, [`NOT_DONE`] otherwise. (Without
/// `--once`, [`crate::commands::status::run`].)
pub async fn status(args: StatusArgs) -> i32 {
    let target =
        match Target::for_subcommand(&args.election, &args.prefix, args.etcd, &args.sources) {
            Ok(t) => t,
            Err(code) => return code,
        };
    let (name, output) = (args.once.unwrap_or_default(), args.output);
    let Some(layout) = layout_of(&target, &name, &args.sources) else {
        return exit_code::USAGE;
    };
    let name = name.as_str();
    let layout = &layout;
    let read = target
        .read(|mut c| async move { layout.read(&mut c).await })
        .await;
    let view = match read {
        Ok(Ok(view)) => view,
        Ok(Err(unreadable)) => {
            eprintln!("singleton-exec: {unreadable}");
            return exit_code::USAGE;
        }
        Err(e) => return failed(&e),
    };
    match output {
        OutputFormat::Text => print!("{}", render_text(name, &target.name, &view)),
        OutputFormat::Json => {
            println!("{}", render_json(name, &target.name, &target.prefix, &view))
        }
    }
    match state_of(&view) {
        State::Done => 0,
        _ => NOT_DONE,
    }
}

/// The keys of `name` in `target`'s election, or `None` after saying why the name is refused.
fn layout_of(
    target: &Target,
    name: &str,
    sources: &crate::config::cli::EnvSources,
) -> Option<OnceLayout> {
    match validate_election(name) {
        Ok(name) => Some(OnceLayout::new(&target.prefix, &target.name, &name)),
        Err(_) => {
            let e = ConfigError::BadOnceName(name.to_owned());
            eprintln!(
                "singleton-exec: {}",
                sources.explain(&e.to_string(), &e.options())
            );
            None
        }
    }
}

/// `once clear NAME`: deletes the record and the attempts in one transaction, unless replicas
/// wait or run under the name (then exits [`BUSY`], unless `--force`).
pub async fn clear(args: OnceClearArgs) -> i32 {
    let target =
        match Target::for_subcommand(&args.election, &args.prefix, args.etcd, &args.sources) {
            Ok(t) => t,
            Err(code) => return code,
        };
    let Some(layout) = layout_of(&target, &args.name, &args.sources) else {
        return exit_code::USAGE;
    };
    let (layout, force) = (&layout, args.force);
    let cleared = target
        .read(|mut c| async move { layout.clear(&mut c, force).await })
        .await;
    match cleared {
        Ok(c) => {
            let (line, code) = cleared_line(&args.name, &c);
            println!("{line}");
            code
        }
        Err(e) => failed(&e),
    }
}

/// What `once clear` prints, and its exit code.
pub fn cleared_line(name: &str, c: &Cleared) -> (String, i32) {
    match c {
        Cleared::Busy { queue, finishing } => {
            let ids: Vec<&str> = queue.iter().map(|c| shown_id(&c.id)).collect();
            let mut who = Vec::new();
            if !queue.is_empty() {
                who.push(format!(
                    "{} replica(s) run or wait under it ({})",
                    queue.len(),
                    ids.join(", ")
                ));
            }
            if *finishing > 0 {
                who.push(format!(
                    "{finishing} replica(s) still finishing a run (their tree markers go when they exit, or within the TTL)"
                ));
            }
            (
                format!(
                    "once {name}: not cleared: {}; clear it once they are done, or with --force",
                    who.join(", ")
                ),
                BUSY,
            )
        }
        Cleared::Done { found: false, .. } => {
            (format!("once {name}: nothing to clear (never run, or cleared already)"), 0)
        }
        Cleared::Done {
            record: Some(r), ..
        } => (
            format!(
                "once {name}: cleared (it was done by {}, attempt {}, fencing revision {}); the next invocation runs it again",
                shown_id(&r.id),
                r.attempt,
                r.fencing_revision
            ),
            0,
        ),
        Cleared::Done {
            attempts: Some(a), ..
        } => (
            format!(
                "once {name}: cleared ({} failed and {} cut-short run(s) forgotten); the next invocation runs it again",
                a.failed, a.interrupted
            ),
            0,
        ),
        Cleared::Done { .. } => (
            format!("once {name}: cleared; the next invocation runs it again"),
            0,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::lifecycle::LeaseId;
    use crate::election::once::{Attempts, Ended, Outcome, Record};

    fn run(attempt: u32, id: &str, revision: i64, ended: Option<i32>) -> Run {
        Run {
            attempt,
            id: id.into(),
            key: format!("/p/job@once/m/{revision:x}"),
            fencing_revision: revision,
            started_at_ms: 1_000,
            ended: ended.map(|code| Ended {
                exit_code: code,
                status: format!("exited with status {code}"),
                ended_at_ms: 2_500,
            }),
        }
    }

    fn head(id: &str, revision: i64) -> Candidate {
        Candidate {
            id: id.into(),
            key: format!("/p/job@once/m/{revision:x}"),
            lease: LeaseId(revision),
            revision,
        }
    }

    fn view(record: Option<Record>, attempts: Option<Attempts>, queue: Vec<Candidate>) -> OnceView {
        OnceView {
            revision: 99,
            outcome: Outcome {
                record,
                attempts,
                attempts_mod: 0,
            },
            queue,
        }
    }

    fn attempts(failed: u32, run: Option<Run>, last: Option<Run>) -> Attempts {
        Attempts {
            failed,
            interrupted: 0,
            max_attempts: 3,
            run,
            last_failure: last,
            previous: None,
        }
    }

    /// Every state from what was read, and the fields the interface promises. One row: the
    /// view, then state, attempts, exit code, runner alive, waiting.
    #[test]
    fn states_attempts_and_exit_codes() {
        let done = Record {
            name: "m".into(),
            id: "a".into(),
            key: "/p/job@once/m/28".into(),
            fencing_revision: 40,
            attempt: 2,
            started_at_ms: 1_000,
            finished_at_ms: 5_012,
        };
        let failed_once = run(1, "a", 30, Some(3));
        /// (view, state, attempts, exit code, runner alive, waiting)
        type Row = (OnceView, &'static str, u64, Option<i64>, Option<bool>, u64);
        let rows: Vec<Row> = vec![
            (view(None, None, vec![]), "none", 0, None, None, 0),
            (
                view(None, None, vec![head("w", 9)]),
                "none",
                0,
                None,
                None,
                1,
            ),
            (
                view(
                    None,
                    Some(attempts(0, Some(run(1, "a", 40, None)), None)),
                    vec![head("a", 40), head("b", 41)],
                ),
                "running",
                1,
                None,
                Some(true),
                1,
            ),
            // Its runner no longer heads the queue: cut short, the next one runs it again.
            (
                view(
                    None,
                    Some(attempts(0, Some(run(1, "a", 40, None)), None)),
                    vec![head("b", 41)],
                ),
                "running",
                1,
                None,
                Some(false),
                1,
            ),
            (
                view(
                    None,
                    Some(attempts(
                        1,
                        Some(failed_once.clone()),
                        Some(failed_once.clone()),
                    )),
                    vec![],
                ),
                "failed",
                1,
                Some(3),
                None,
                0,
            ),
            (
                view(
                    Some(done.clone()),
                    Some(attempts(1, None, Some(failed_once))),
                    vec![],
                ),
                "done",
                2,
                Some(0),
                None,
                0,
            ),
        ];
        for (v, state, attempts, code, alive, waiting) in rows {
            let j = render_json("m", "job", "/p", &v);
            assert_eq!(j["state"], state, "{j}");
            assert_eq!(j["attempts"].as_u64(), Some(attempts), "{j}");
            assert_eq!(j["exit_code"].as_i64(), code, "{j}");
            assert_eq!(j["runner_alive"].as_bool(), alive, "{j}");
            assert_eq!(j["waiting"].as_u64(), Some(waiting), "{j}");
            assert_eq!(
                (j["once"].as_str(), j["store_revision"].as_i64()),
                (Some("m"), Some(99))
            );
            let text = render_text("m", "job", &v);
            assert!(
                text.contains(&format!("state:            {state}\n")),
                "{text}"
            );
        }
    }

    #[test]
    fn a_done_command_as_text() {
        let done = Record {
            name: "migrate-v42".into(),
            id: "web-2".into(),
            key: "/singleton-exec/migrate@once/migrate-v42/39".into(),
            fencing_revision: 57,
            attempt: 1,
            started_at_ms: 1_765_274_400_000,
            finished_at_ms: 1_765_274_404_012,
        };
        let a = Attempts {
            max_attempts: 1,
            ..attempts(0, None, None)
        };
        let want = "\
once:             migrate-v42
election:         migrate
state:            done
attempts:         1 of 1
exit_code:        0
by:               web-2
fencing_revision: 57
started_at:       2025-12-09T10:00:00.000Z
finished_at:      2025-12-09T10:00:04.012Z
duration:         4s 12ms
interrupted:      0
waiting:          0
";
        assert_eq!(
            render_text("migrate-v42", "migrate", &view(Some(done), Some(a), vec![])),
            want
        );
    }

    #[test]
    fn what_clear_says() {
        let rows = [
            (
                Cleared::Busy {
                    queue: vec![head("web-1", 5), head("", 6)],
                    finishing: 0,
                },
                1,
                "not cleared: 2 replica(s) run or wait under it (web-1, (no id",
            ),
            (
                Cleared::Busy {
                    queue: vec![],
                    finishing: 1,
                },
                1,
                "not cleared: 1 replica(s) still finishing a run",
            ),
            (
                Cleared::Done {
                    record: None,
                    attempts: None,
                    found: false,
                },
                0,
                "nothing to clear",
            ),
            (
                Cleared::Done {
                    record: None,
                    attempts: Some(Box::new(attempts(2, None, None))),
                    found: true,
                },
                0,
                "cleared (2 failed and 0 cut-short run(s) forgotten)",
            ),
        ];
        for (c, code, says) in rows {
            let (line, got) = cleared_line("m", &c);
            assert_eq!(got, code, "{line}");
            assert!(
                line.starts_with("once m: ") && line.contains(says),
                "{line}"
            );
        }
    }
}

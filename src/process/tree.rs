//! Finding every descendant of the supervisor, so that nothing the child started outlives it.
//!
//! The supervisor is PID 1 or a child subreaper, so orphans of the child's tree are re-parented to
//! us; walking `/proc/*/stat` parent links from our own pid finds the rest. Pids of our direct
//! children cannot be reused until we reap them; a deeper pid could in principle be reused between
//! the scan and the signal, which is why the scan is repeated right before each signal round.
//!
//! `/proc` may belong to another PID namespace than ours (`unshare --pid` without a new `/proc`,
//! a container that mounts the host's): its numbers are not the ones `kill(2)` takes. So the walk
//! starts from `/proc/self` (our pid in `/proc`'s numbering) and every pid found is translated to our
//! namespace through the last field of its `NSpid:` line. A process that cannot be translated is
//! left out: signalling a number from another namespace could hit an unrelated process.
//!
//! Also read from `/proc`: whether a job-control shell could continue us once we stop
//! ([`under_job_control`]), which decides whether Ctrl-Z may suspend us. That question stays in
//! `/proc`'s numbering throughout, so it needs no translation.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fs;

use crate::process::signals;

/// Every live (or zombie) descendant of this process, parents before children, as pids of our
/// own PID namespace.
pub fn descendants() -> Vec<libc::pid_t> {
    let me = our_pid();
    let Some(root) = self_in_proc() else {
        return Vec::new();
    };
    let found = descendants_in_proc(root);
    // How many PID namespaces lie between /proc's and ours (1: /proc is ours). Without NSpid (Linux
    // before 4.1) only an identical pid can tell, and then the numbers are taken as ours.
    let depth = match ns_pids(root) {
        Some(ours) => ours.len(),
        None if root == me => 1,
        None => return Vec::new(),
    };
    if depth == 1 {
        return found;
    }
    found
        .into_iter()
        .filter_map(|p| ns_pids(p)?.get(depth - 1).copied())
        .collect()
}

/// Our pid, in our own PID namespace.
fn our_pid() -> libc::pid_t {
    nix::unistd::getpid().as_raw()
}

/// Our pid as `/proc` numbers it.
fn self_in_proc() -> Option<libc::pid_t> {
    fs::read_link("/proc/self").ok()?.to_str()?.parse().ok()
}

/// The descendants of `root`, in `/proc`'s numbering.
fn descendants_in_proc(root: libc::pid_t) -> Vec<libc::pid_t> {
    let mut children: HashMap<libc::pid_t, Vec<libc::pid_t>> = HashMap::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        if let Some(ppid) = parent_of(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![root];
    while let Some(p) = queue.pop() {
        if let Some(kids) = children.get(&p) {
            for &k in kids {
                out.push(k);
                queue.push(k);
            }
        }
    }
    out
}

/// A process' pids from `/proc`'s namespace down to its own (the `NSpid:` line). Our pid in our
/// namespace is the last of ours; a descendant's pid in our namespace is at the same depth (it may
/// have further ones in namespaces of its own).
fn ns_pids(proc_pid: libc::pid_t) -> Option<Vec<libc::pid_t>> {
    parse_ns_pids(&fs::read_to_string(format!("/proc/{proc_pid}/status")).ok()?)
}

/// The pids of the `NSpid:` line of a `/proc/PID/status` text; `None` unless there is at least
/// one (a depth of zero would name no namespace).
fn parse_ns_pids(status: &str) -> Option<Vec<libc::pid_t>> {
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    let pids: Vec<libc::pid_t> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    (!pids.is_empty()).then_some(pids)
}

/// What we read of `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// `R`, `S`, `T` (stopped), `Z` (zombie), ...
    state: char,
    parent: libc::pid_t,
    group: libc::pid_t,
    session: libc::pid_t,
    /// The session's controlling terminal (`tty_nr`); 0: none.
    tty: i32,
}

/// Parses a `/proc/PID/stat` line. The command name may hold spaces and parentheses, so the
/// fields are read after the last ')'.
fn parse_stat(stat: &str) -> Option<Stat> {
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    let group = fields.next()?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    let tty = fields.next()?.parse().ok()?;
    Some(Stat {
        state,
        parent,
        group,
        session,
        tty,
    })
}

/// Whether a job-control shell could continue this process once it stops, so Ctrl-Z may
/// suspend it. Two conditions, both stricter than the kernel's own (which only refuses to stop
/// an orphaned group), because a replica stopped with nobody to continue it has quietly left its
/// election while its manager shows it running:
/// * the session has a controlling terminal. Job control is a terminal's: a service (systemd
///   starts each in a session of its own), `setsid sh -c "timeout 1d singleton-exec ..."`, a
///   container without `-t` or a `set -m` script without a terminal have none, whatever their
///   process groups look like;
/// * our process group is not orphaned ([`group_orphaned`]), counting no parent that is PID 1
///   of its PID namespace: an init (tini, `docker run --init`, dumb-init, systemd) never
///   continues a stopped child.
///
/// False whenever `/proc` cannot tell: forwarding SIGTSTP, the old behaviour, is the safe side.
pub fn under_job_control() -> bool {
    let Some(me) = self_in_proc().and_then(stat_of) else {
        return false;
    };
    if me.tty == 0 {
        return false;
    }
    let Ok(dir) = fs::read_dir("/proc") else {
        return false;
    };
    let procs: HashMap<libc::pid_t, Stat> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter_map(|pid| Some((pid, stat_of(pid)?)))
        .collect();
    !group_orphaned(me.group, me.session, &procs, namespace_init)
}

/// Whether process group `group` of `session` is orphaned, as POSIX defines it and the kernel
/// applies it (`will_become_orphaned_pgrp`): no live member has a parent in the session outside
/// the group, so no shell there could continue the group once it stops. Zombies are no members
/// (as for the kernel), and a parent that `is_init` (PID 1 of its namespace, by its pid in
/// `procs`) does not count. Group or session 0: not visible in `/proc`'s namespace, so nothing
/// can be said; taken as orphaned.
fn group_orphaned(
    group: libc::pid_t,
    session: libc::pid_t,
    procs: &HashMap<libc::pid_t, Stat>,
    is_init: impl Fn(libc::pid_t) -> bool,
) -> bool {
    if group <= 0 || session <= 0 {
        return true;
    }
    let continued_by_a_parent = procs
        .values()
        .filter(|member| member.group == group && !matches!(member.state, 'Z' | 'X'))
        .filter_map(|member| Some((member.parent, procs.get(&member.parent)?)))
        .any(|(pid, parent)| parent.session == session && parent.group != group && !is_init(pid));
    !continued_by_a_parent
}

/// Whether `/proc`'s process `proc_pid` is PID 1 of its own PID namespace (the last pid of its
/// `NSpid:` line; without that line, only `/proc`'s own PID 1 can be told).
fn namespace_init(proc_pid: libc::pid_t) -> bool {
    proc_pid == 1 || ns_pids(proc_pid).and_then(|p| p.last().copied()) == Some(1)
}

/// `/proc/PID/stat`, in `/proc`'s numbering.
fn stat_of(pid: libc::pid_t) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The parent pid, from `/proc/PID/stat`.
fn parent_of(pid: libc::pid_t) -> Option<libc::pid_t> {
    stat_of(pid).map(|s| s.parent)
}

/// The parent of `pid` (of our PID namespace) and its start time (clock ticks after boot, which
/// tells it from a later process with the same pid): what the notify socket checks a sender by.
/// `None` when the process is gone or `/proc` is not ours (`proc_is_ours` is asked by the
/// caller, once: it costs two reads).
pub fn parent_and_start(pid: libc::pid_t) -> Option<(libc::pid_t, u64)> {
    parse_parent_and_start(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The parent (field 4) and start time (field 22) of a `/proc/PID/stat` line.
fn parse_parent_and_start(stat: &str) -> Option<(libc::pid_t, u64)> {
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .take(20)
        .collect();
    Some((fields.get(1)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

/// Whether `/proc` numbers processes as our PID namespace does.
pub fn proc_is_ours() -> bool {
    match self_in_proc().and_then(ns_pids) {
        Some(ours) => ours.len() == 1,
        None => self_in_proc() == Some(our_pid()),
    }
}

/// State and process group of `pid` (of our namespace), when `/proc` is ours.
fn state_and_group(pid: libc::pid_t) -> Option<(char, libc::pid_t)> {
    if !proc_is_ours() {
        return None;
    }
    stat_of(pid).map(|s| (s.state, s.group))
}

/// Whether `pid` is stopped (state `T`: SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU). Only answered when
/// `/proc` is ours; otherwise false (a SIGCONT too few, never one too many).
pub fn is_stopped(pid: libc::pid_t) -> bool {
    state_and_group(pid).is_some_and(|(state, _)| state == 'T')
}

/// The process group of `pid`, when `/proc` can tell.
pub fn group_of(pid: libc::pid_t) -> Option<libc::pid_t> {
    state_and_group(pid).map(|(_, group)| group)
}

/// Sends `sig` to each pid, ignoring those that are already gone.
pub fn signal_all(pids: &[libc::pid_t], sig: libc::c_int) {
    for &pid in pids {
        let _ = signals::send(pid, sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_grandchild() {
        let _serial = crate::test_children();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & wait"])
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let found = loop {
            let d = descendants();
            if d.len() >= 2 || std::time::Instant::now() > deadline {
                break d;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        signal_all(&found, libc::SIGKILL);
        let _ = child.wait();
        assert!(found.contains(&(child.id() as libc::pid_t)), "{found:?}");
        assert!(found.len() >= 2, "{found:?}");
    }

    #[test]
    fn stat_lines_are_read_after_the_command_whatever_it_holds() {
        let stat = |state, parent, group, session, tty| {
            Some(Stat {
                state,
                parent,
                group,
                session,
                tty,
            })
        };
        // (line, parsed)
        let rows = [
            ("42 (sleep) S 7 42 7 0 -1", stat('S', 7, 42, 7, 0)),
            ("42 (my prog) T 7 40 6 34816 40", stat('T', 7, 40, 6, 34816)),
            ("42 (a) b) (c) Z 1 1 1 0", stat('Z', 1, 1, 1, 0)),
            ("42 ()) R 0 0 0 0", stat('R', 0, 0, 0, 0)),
            ("42 (sleep) S 7 42 7", None),
            ("42 (sleep) S x 42 7 0", None),
            ("42 (sleep", None),
            ("", None),
        ];
        crate::process::assert_table(rows, parse_stat);
    }

    #[test]
    fn the_parent_and_the_start_time_of_a_stat_line() {
        let line = |comm: &str, start: &str| {
            format!("42 ({comm}) S 7 42 7 0 -1 4194560 120 0 0 0 1 2 0 0 20 0 1 0 {start} 5 6")
        };
        // (line, (parent, start time))
        let rows = [
            (line("sleep", "98765"), Some((7, 98765))),
            (line("a) (b", "12"), Some((7, 12))),
            (line("x", "y"), None),
            ("42 (sleep) S 7 42 7 0".to_owned(), None),
            (String::new(), None),
        ];
        crate::process::assert_table(rows, |l| parse_parent_and_start(&l));
        let me = std::process::id() as libc::pid_t;
        let parent = nix::unistd::getppid().as_raw();
        assert_eq!(parent_and_start(me).map(|(p, _)| p), Some(parent));
        assert!(proc_is_ours());
    }

    #[test]
    fn a_group_is_orphaned_unless_a_live_member_has_a_parent_in_the_session_outside_it() {
        let p = |state, parent, group, session| Stat {
            state,
            parent,
            group,
            session,
            tty: 34816,
        };
        // Pids: 1 init (session 1); 10 a login shell (session 10, group 10); 20 a job of it
        // (group 20); 21 a process of the same job started by 20; 30 a service (its own
        // session); 31 its child in its group; 40 a job whose parent left (re-parented to 1);
        // 50 a job whose only member with the shell as parent is a zombie (51 lives on); 60 a
        // namespace's init (tini: session 10, group 60) and 61 its child, in a group of its own.
        let procs: HashMap<libc::pid_t, Stat> = [
            (1, p('S', 0, 1, 1)),
            (10, p('S', 1, 10, 10)),
            (20, p('S', 10, 20, 10)),
            (21, p('S', 20, 20, 10)),
            (30, p('S', 1, 30, 30)),
            (31, p('S', 30, 30, 30)),
            (40, p('S', 1, 40, 10)),
            (50, p('Z', 10, 50, 10)),
            (51, p('S', 1, 50, 10)),
            (60, p('S', 10, 60, 10)),
            (61, p('S', 60, 61, 10)),
        ]
        .into();
        let init = |pid| pid == 1 || pid == 60;
        // ((group, session), orphaned)
        let rows = [
            // A shell's job: its parent, the shell, is in the session, in another group.
            ((20, 10), false),
            // The shell's own group: its parent is outside the session.
            ((10, 10), true),
            // A service: every parent is in the group or outside the session.
            ((30, 30), true),
            // The shell is gone: nobody in the session can continue the job.
            ((40, 10), true),
            // The member the shell could continue is a zombie (the kernel does not count it).
            ((50, 10), true),
            // Under tini, PID 1 of its namespace: an init never continues a stopped child.
            ((61, 10), true),
            // tini's own group: its parent, the shell, could.
            ((60, 10), false),
            // PID 1, and groups /proc cannot show.
            ((1, 1), true),
            ((0, 10), true),
            ((20, 0), true),
        ];
        crate::process::assert_table(rows, |(group, session)| {
            group_orphaned(group, session, &procs, init)
        });
    }

    #[test]
    fn the_nspid_line_lists_a_pid_per_namespace() {
        // (status text, pids)
        let rows = [
            ("Name:\tsh\nNSpid:\t42\n", Some(vec![42])),
            (
                "Name:\tsh\nNSpid:\t4242\t17\t1\nNSsid:\t1\n",
                Some(vec![4242, 17, 1]),
            ),
            ("Name:\tsh\nPid:\t42\n", None),
            ("NSpid:\t42\tx\n", None),
            ("NSpid:\n", None),
        ];
        crate::process::assert_table(rows, parse_ns_pids);
    }

    #[test]
    fn our_own_pid_translates_to_itself() {
        let me = std::process::id() as libc::pid_t;
        assert_eq!(self_in_proc(), Some(me));
        assert_eq!(ns_pids(me).and_then(|p| p.last().copied()), Some(me));
        assert!(!is_stopped(me));
        assert!(!namespace_init(me));
    }
}

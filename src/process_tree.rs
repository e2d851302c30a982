//! Finding every descendant of the supervisor, so that nothing the child started outlives it.
//!
//! The supervisor is PID 1 or a child subreaper, so orphans of the child's tree are re-parented to
//! us; walking `/proc/*/stat` parent links from our own pid finds the rest. Pids of our direct
//! children cannot be reused until we reap them; a deeper pid could in principle be reused between
//! the scan and the signal, which is why the scan is repeated right before each signal round.

use std::collections::HashMap;
use std::fs;

/// Every live (or zombie) descendant of `root`, parents before children.
pub fn descendants(root: libc::pid_t) -> Vec<libc::pid_t> {
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

/// The parent pid from `/proc/PID/stat`. The command name may hold spaces and parentheses, so the
/// fields are read after the last ')'.
fn parent_of(pid: libc::pid_t) -> Option<libc::pid_t> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Sends `sig` to each pid, ignoring those that are already gone.
pub fn signal_all(pids: &[libc::pid_t], sig: libc::c_int) {
    for &pid in pids {
        // SAFETY: kill(2) with a positive pid is always safe to call.
        unsafe { libc::kill(pid, sig) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_grandchild() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & wait"])
            .spawn()
            .unwrap();
        let me = std::process::id() as libc::pid_t;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let found = loop {
            let d = descendants(me);
            if d.len() >= 2 || std::time::Instant::now() > deadline {
                break d;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        signal_all(&found, libc::SIGKILL);
        child.wait().unwrap();
        assert!(found.contains(&(child.id() as libc::pid_t)), "{found:?}");
        assert!(found.len() >= 2, "{found:?}");
    }
}

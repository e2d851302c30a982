//! What /proc says about a process: its state, its CPU time and the processes below it. Every
//! reader returns "nothing" for a process that is gone, so tests can ask about pids that may
//! already have exited.

/// Fields of /proc/PID/stat after the command name: [0] state, [1] ppid, ... [11] utime, [12] stime.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit(')')
            .next()?
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

/// The state letter of a process ('S', 'R', 'T', 'Z', ...), None once it is gone.
pub fn proc_state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// User + system CPU time of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: i32) -> u64 {
    stat_fields(pid)
        .map(|f| f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0))
        .unwrap_or(0)
}

/// Every process below `pid`, found through the ppid field of /proc/*/stat.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(ppid) = stat_fields(p).and_then(|f| f.get(1)?.parse::<i32>().ok()) {
            parent_of.push((p, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(p, pp) in &parent_of {
            if pp == parent && !out.contains(&p) {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}

/// `PF_EXITING` in the flags field of /proc/PID/stat: the process has begun to exit (killed, or
/// returned from main) and the kernel is releasing what it holds (memory, then files); it becomes
/// a zombie ('Z') once that is done.
pub const PF_EXITING: u64 = 0x4;

/// The state letter, the kernel flags word and the start time (clock ticks after boot, field 22:
/// what tells a process from a later one with its pid) of a process, read at once; None once it
/// is gone.
pub fn state_flags_and_start(pid: i32) -> Option<(char, u64, u64)> {
    let f = stat_fields(pid)?;
    Some((
        f.first()?.chars().next()?,
        f.get(6)?.parse().ok()?,
        f.get(19)?.parse().ok()?,
    ))
}

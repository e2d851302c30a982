//! The packaged unit under a real systemd: two containers whose PID 1 is systemd 252 (Debian
//! bookworm, `scripts/build-systemd-image`) play two machines. Each installs the .deb with
//! `dpkg -i` and runs `singleton-exec@app` against an etcd this test starts on the host's loopback
//! (the containers share the host's network), the command set by a drop-in as docs/systemd.md
//! says. What it shows:
//!
//! - the sandbox holds for the command (a user of its own, no-new-privileges, a read-only /etc)
//!   and the command gets its arguments exactly as the drop-in quotes them;
//! - STATUS says leader on one machine and standby on the other, both units active (READY=1);
//! - a signal to the main process reaches the command; the guard process runs beside it;
//! - `systemctl stop` on the leader hands over at once with Result=success, and nothing of its
//!   command is left, not even a worker that left the process group;
//! - SIGKILL of the leader's singleton-exec (a crash): its command's whole tree is gone long before
//!   the lease expires, and only then does the other machine start its command;
//! - an environment file that still sets MYAPP_COMMAND (read before 0.2) stops the unit from
//!   starting, with a message that says why.
//!
//! Its cost (an image of about 230 MB, built once; a release build for the .deb) keeps it to when
//! it is asked for: `CI=true` or `SINGLETON_EXEC_SYSTEMD_TEST=1`, with the package from
//! `SINGLETON_EXEC_DEB` (or built, as tests/packaging.rs does). The containers need CAP_SYS_ADMIN,
//! as systemd does to give a unit its own mount namespace (`--privileged` is not needed).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{wait_for, EtcdCluster};

/// The lease TTL the units run with: a crashed leader's lease outlives it this long.
const TTL: Duration = Duration::from_secs(5);

/// The application: what it was given and what its sandbox lets it do, on stdout (the journal);
/// a worker that leaves its process group, as daemons do; a line for each SIGHUP.
const APP: &str = r#"#!/bin/sh
for a in "$@"; do echo "app arg: [$a]"; done
echo "app uid: $(id -u)"
echo "app $(grep NoNewPrivs /proc/self/status | tr -d ' \t')"
if touch /etc/singleton-exec-probe 2>/dev/null; then echo "app etc: writable"; else echo "app etc: read-only"; fi
setsid sleep 31337 &
echo "app worker: $!"
trap 'echo "app got: HUP"' HUP
while :; do sleep 1 & wait $!; done
"#;

/// The drop-in that sets the command, with the quoting docs/systemd.md describes.
const COMMAND_DROP_IN: &str = "[Service]\nExecStart=\n\
     ExecStart=/usr/bin/singleton-exec -- /usr/local/bin/app \"two words\" $$HOME 50%%\n";

/// The arguments the application must see, one per line of its output.
const EXPECTED_ARGS: &str = "app arg: [two words]\napp arg: [$HOME]\napp arg: [50%]\n";

const UNIT: &str = "singleton-exec@app";

/// The first line the command writes: when it started (by the journal's clock).
const CHILD_STARTED: &str = "app arg: [two words]";

fn docker(args: &[&str]) -> (bool, String) {
    match Command::new("docker").args(args).output() {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, e.to_string()),
    }
}

/// A container with systemd as PID 1, removed on drop (also when the test panics).
struct Vm {
    name: String,
}

impl Vm {
    fn start(name: String, image: &str) -> Vm {
        let vm = Vm { name };
        let _ = docker(&["rm", "-f", &vm.name]);
        let (ok, out) = docker(&[
            "run",
            "-d",
            "--name",
            &vm.name,
            "--hostname",
            &vm.name,
            "--cap-add",
            "SYS_ADMIN",
            "-e",
            "container=docker",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--cgroupns=host",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "--tmpfs",
            "/tmp",
            "--network",
            "host",
            image,
            "/lib/systemd/systemd",
        ]);
        assert!(ok, "docker run {}: {out}", vm.name);
        wait_for(
            Duration::from_secs(60),
            || {
                let (_, state) = vm.sh("systemctl is-system-running");
                matches!(state.trim(), "running" | "degraded")
            },
            || {
                format!(
                    "{}: systemd did not come up: {}",
                    vm.name,
                    vm.sh("systemctl is-system-running").1
                )
            },
        );
        vm
    }

    fn sh(&self, script: &str) -> (bool, String) {
        docker(&["exec", &self.name, "sh", "-c", script])
    }

    fn must(&self, script: &str) -> String {
        let (ok, out) = self.sh(script);
        assert!(ok, "{}: {script}: {out}", self.name);
        out
    }

    /// Writes `content` to `path` in the container with `mode`.
    fn write(&self, path: &str, mode: &str, content: &str) {
        let mut child = Command::new("docker")
            .args(["exec", "-i", &self.name, "sh", "-c"])
            .arg(format!(
                "mkdir -p \"$(dirname {path})\" && cat > {path} && chmod {mode} {path}"
            ))
            .stdin(Stdio::piped())
            .spawn()
            .expect("docker exec");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(content.as_bytes())
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "{}: writing {path}",
            self.name
        );
    }

    fn show(&self, unit: &str, property: &str) -> String {
        self.sh(&format!("systemctl show -p {property} --value {unit}"))
            .1
            .trim()
            .to_owned()
    }

    fn journal(&self, unit: &str) -> String {
        self.sh(&format!("journalctl -u {unit} -o cat --no-pager"))
            .1
    }

    /// When (seconds since the epoch, from the journal) the last line of `unit` containing
    /// `needle` was logged. The containers share the host's clock.
    fn logged_at(&self, unit: &str, needle: &str) -> f64 {
        let out = self.must(&format!(
            "journalctl -u {unit} -o short-unix --no-pager | grep -F '{needle}' | tail -n 1"
        ));
        out.split_whitespace()
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("{}: no {needle:?} in the journal of {unit}", self.name))
    }

    fn role(&self) -> String {
        self.show(UNIT, "StatusText")
    }

    fn leads(&self) -> bool {
        self.role().starts_with("leader")
    }

    /// The pid of the application's worker of its latest start (from its journal).
    fn worker(&self) -> Option<String> {
        self.journal(UNIT)
            .lines()
            .filter_map(|l| l.strip_prefix("app worker: "))
            .next_back()
            .map(|p| p.trim().to_owned())
    }

    fn alive(&self, pid: &str) -> bool {
        self.sh(&format!("grep -q 31337 /proc/{pid}/cmdline")).0
    }

    /// `(pid, Uid line)` of every process whose command line starts with `prefix`.
    fn processes(&self, prefix: &str) -> Vec<(String, String)> {
        let script = format!(
            "for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null); \
             case \"$c\" in \"{prefix}\"*) echo \"${{p#/proc/}} $(grep ^Uid: $p/status | cut -f2)\";; esac; done"
        );
        self.must(&script)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(p, u)| (p.to_owned(), u.to_owned()))
            .collect()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
    }
}

/// The image (built when missing, about a minute); `None` after a SKIPPED line when the test
/// was not asked for or cannot run here (a failure under CI=true).
fn prerequisites() -> Option<(String, std::path::PathBuf)> {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let asked = ci || std::env::var("SINGLETON_EXEC_SYSTEMD_TEST").as_deref() == Ok("1");
    if !asked {
        println!(
            "SKIPPED packaged_unit_under_real_systemd: two systemd containers and the .deb; \
             SINGLETON_EXEC_SYSTEMD_TEST=1 (or CI=true) runs it"
        );
        return None;
    }
    let missing = |why: &str| {
        assert!(!ci, "CI=true but {why}: the real-systemd test cannot run");
        println!("SKIPPED packaged_unit_under_real_systemd: {why}");
    };
    if !docker(&["info"]).0 {
        missing("no Docker daemon is reachable");
        return None;
    }
    let Some(deb) = crate::packaging::package() else {
        missing("no .deb: set SINGLETON_EXEC_DEB=PATH or SINGLETON_EXEC_DEB_TEST=1");
        return None;
    };
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/build-systemd-image"
        ))
        .output()
        .expect("scripts/build-systemd-image");
    if !out.status.success() {
        missing(&format!(
            "scripts/build-systemd-image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return None;
    }
    let image = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    Some((image, deb))
}

#[test]
fn packaged_unit_under_real_systemd() {
    let Some((image, deb)) = prerequisites() else {
        return;
    };
    let etcd = EtcdCluster::single();
    let tag = format!("se-systemd-{}", std::process::id());
    let vms: Vec<Vm> = (1..=2)
        .map(|i| Vm::start(format!("{tag}-vm{i}"), &image))
        .collect();
    for (i, vm) in vms.iter().enumerate() {
        let (ok, out) = docker(&[
            "cp",
            &deb.to_string_lossy(),
            &format!("{}:/root/pkg.deb", vm.name),
        ]);
        assert!(ok, "docker cp: {out}");
        vm.must("dpkg -i /root/pkg.deb");
        vm.write("/usr/local/bin/app", "0755", APP);
        vm.write(
            "/etc/singleton-exec/app.env",
            "0600",
            &format!(
                "SINGLETON_EXEC_ENDPOINTS={}\nSINGLETON_EXEC_ID=vm{}\nSINGLETON_EXEC_TTL={}s\n\
                 SINGLETON_EXEC_GRACE=1s\n",
                etcd.endpoints(),
                i + 1,
                TTL.as_secs()
            ),
        );
        vm.write(
            &format!("/etc/systemd/system/{UNIT}.service.d/command.conf"),
            "0644",
            COMMAND_DROP_IN,
        );
        vm.must("systemctl daemon-reload");
    }
    let (vm1, vm2) = (&vms[0], &vms[1]);

    // One leads, in its sandbox, with its arguments as quoted.
    vm1.must(&format!("systemctl start {UNIT}"));
    wait_for(
        Duration::from_secs(30),
        || vm1.leads(),
        || format!("vm1: {}", vm1.journal(UNIT)),
    );
    wait_for(
        Duration::from_secs(10),
        || vm1.worker().is_some(),
        || vm1.journal(UNIT),
    );
    let journal = vm1.journal(UNIT);
    assert!(journal.contains(EXPECTED_ARGS), "arguments: {journal}");
    assert!(journal.contains("app NoNewPrivs:1"), "{journal}");
    assert!(journal.contains("app etc: read-only"), "{journal}");
    let uid = journal
        .lines()
        .find_map(|l| l.strip_prefix("app uid: "))
        .expect("app uid line");
    assert_ne!(uid.trim(), "0", "the command runs as root: {journal}");
    let main = vm1.show(UNIT, "MainPID");
    let supervisors = vm1.processes("/usr/bin/singleton-exec");
    assert!(
        supervisors.iter().any(|(p, uid)| *p == main && uid != "0"),
        "singleton-exec (pid {main}) as root, or not found: {supervisors:?}"
    );
    let guards = vm1.processes("singleton-exec-guard");
    assert_eq!(guards.len(), 1, "the guard process: {guards:?}");
    let exposure = vm1.must(&format!(
        "SYSTEMD_COLORS=0 systemd-analyze security {UNIT} | tail -n 1"
    ));
    println!("vm1: {}", exposure.trim());

    // The other waits, and is active all the same (READY=1 on campaigning).
    vm2.must(&format!("systemctl start {UNIT}"));
    wait_for(
        Duration::from_secs(30),
        || vm2.role().starts_with("standby"),
        || format!("vm2: {} / {}", vm2.role(), vm2.journal(UNIT)),
    );
    assert_eq!(vm2.show(UNIT, "ActiveState"), "active");
    assert!(vm1.leads());

    // A signal to the main process reaches the command; the leader keeps leading.
    vm1.must(&format!("systemctl kill --kill-whom=main -s HUP {UNIT}"));
    wait_for(
        Duration::from_secs(10),
        || vm1.journal(UNIT).contains("app got: HUP"),
        || vm1.journal(UNIT),
    );
    assert!(vm1.leads(), "vm1 after SIGHUP: {}", vm1.role());

    // systemctl stop: a clean handover, nothing of the command left behind.
    let worker = vm1.worker().expect("vm1's worker");
    let t0 = Instant::now();
    vm1.must(&format!("systemctl stop {UNIT}"));
    let stopped = t0.elapsed();
    assert_eq!(vm1.show(UNIT, "Result"), "success");
    assert!(
        !vm1.alive(&worker),
        "vm1's worker {worker} outlived systemctl stop"
    );
    wait_for(
        Duration::from_secs(5),
        || vm2.leads(),
        || format!("vm2: {}", vm2.role()),
    );
    let handover = vm2.logged_at(UNIT, CHILD_STARTED) - vm1.logged_at(UNIT, "Stopping ");
    println!(
        "systemctl stop took {stopped:?}; vm2's command started {handover:.3}s after it began"
    );
    assert!((0.0..2.0).contains(&handover), "{handover}");
    vm1.must(&format!("systemctl start {UNIT}"));
    wait_for(
        Duration::from_secs(30),
        || vm1.role().starts_with("standby"),
        || format!("vm1: {}", vm1.role()),
    );

    // SIGKILL of the leader's singleton-exec: its tree goes at once, the takeover waits for the
    // lease to expire, and vm1's command never runs while vm2's worker does.
    wait_for(
        Duration::from_secs(10),
        || vm2.worker().is_some(),
        || vm2.journal(UNIT),
    );
    let worker = vm2.worker().expect("vm2's worker");
    let vm1_starts = vm1.journal(UNIT).matches("app worker: ").count();
    let t0 = Instant::now();
    vm2.must(&format!("systemctl kill --kill-whom=main -s KILL {UNIT}"));
    let mut worker_gone = None;
    wait_for(
        TTL + Duration::from_secs(15),
        || {
            if worker_gone.is_none() && !vm2.alive(&worker) {
                worker_gone = Some(t0.elapsed());
            }
            let vm1_started = vm1.journal(UNIT).matches("app worker: ").count() > vm1_starts;
            assert!(
                !vm1_started || worker_gone.is_some(),
                "vm1 started its command while vm2's worker {worker} still ran"
            );
            vm1_started && vm1.leads()
        },
        || format!("vm1: {} / vm2: {}", vm1.role(), vm2.role()),
    );
    let worker_gone = worker_gone.expect("checked above");
    let took_over = vm1.logged_at(UNIT, CHILD_STARTED) - vm2.logged_at(UNIT, "Sent signal SIGKILL");
    println!("after SIGKILL: vm2's worker seen gone after {worker_gone:?}, vm1's command started {took_over:.3}s after the kill");
    assert!(worker_gone < Duration::from_secs(3), "{worker_gone:?}");
    // Not before the lease could expire (its last keepalive was at most one interval, TTL/10,
    // before the kill; a generous bound below that), and not much later.
    assert!(
        (TTL.as_secs_f64() * 0.8..TTL.as_secs_f64() + 5.0).contains(&took_over),
        "{took_over}"
    );

    // An environment file from before 0.2 that sets MYAPP_COMMAND: the unit refuses to start.
    vm1.write(
        "/etc/singleton-exec/old.env",
        "0600",
        &format!(
            "SINGLETON_EXEC_ENDPOINTS={}\nMYAPP_COMMAND=/usr/local/bin/app --old\n",
            etcd.endpoints()
        ),
    );
    let (started, _) = vm1.sh("systemctl start singleton-exec@old");
    assert!(
        !started,
        "singleton-exec@old started with MYAPP_COMMAND set"
    );
    let journal = vm1.journal("singleton-exec@old");
    assert!(journal.contains("is no longer read"), "{journal}");
    assert!(!journal.contains("app arg"), "{journal}");
}

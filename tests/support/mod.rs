//! Shared helpers for the integration tests: real etcd ([`etcd`]), a fault-injecting TCP proxy
//! ([`proxy`]), what /proc says about a process ([`procfs`]), an interactive shell on a
//! pseudo-terminal ([`shell`]), and [`Replica`], a running
//! singleton-exec whose log can be read and which is killed on drop ([`Proc`] for any other
//! process a test starts). Waits are for conditions with timeouts, never fixed sleeps.

#![allow(dead_code)]

pub mod etcd;
pub mod netns;
pub mod procfs;
pub mod proxy;
pub mod shell;
pub mod worker;

use std::ffi::OsStr;
use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use etcd::EtcdCluster;

/// The binary under test: `$SINGLETON_EXEC_BIN` if set (to point the tests at another build), else
/// the one cargo built.
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        default_signal_dispositions();
        std::env::var("SINGLETON_EXEC_BIN")
            .ok()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_singleton-exec").to_owned())
    })
}

/// A helper program shipped with the tests.
pub fn program(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/programs")
        .join(name)
}

/// A loopback port that was free a moment ago, never the same twice in this process (the kernel
/// may hand a just-released port out again).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Gives every signal this test process ignores (but SIGPIPE, which the Rust runtime ignores and
/// `Command` resets in children) its default action back. A shell without job control starts a
/// background job (`cargo test &`) with SIGINT and SIGQUIT ignored, `nohup` with SIGHUP ignored;
/// every process the tests start would inherit that, and singleton-exec rightly keeps a signal
/// ignored when it starts that way (nohup-style), so the tests of signals would test the shell
/// the suite was started from. Done once, before the first use of the binary.
fn default_signal_dispositions() {
    for sig in 1..libc::SIGRTMIN() {
        if matches!(sig, libc::SIGPIPE | libc::SIGKILL | libc::SIGSTOP) {
            continue;
        }
        // SAFETY: reading and resetting a disposition; no handler of ours is replaced.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
            {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
}

/// Spawns with PR_SET_PDEATHSIG so the process dies if the spawning test thread dies.
pub fn spawn_with_deathsig(cmd: &mut Command) -> std::io::Result<Child> {
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            Ok(())
        });
    }
    cmd.spawn()
}

/// Polls `cond` until it holds; panics with `what()` after `timeout`.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool, what: impl FnOnce() -> String) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?}: {}", what());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sleeps for `d`, checking `ok` every 50 ms; panics with `what()` the first time it fails.
pub fn hold(d: Duration, mut ok: impl FnMut() -> bool, what: impl Fn() -> String) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        assert!(ok(), "{}", what());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ok(), "{}", what());
}

/// A duration as the logs write it, one token (`0s`, `250us`, `12.5ms`, `1.5s`, `1m30s`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit] {
            "us" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3_600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit..];
    }
    (!text.is_empty()).then(|| Duration::from_secs_f64(total))
}

/// Now on CLOCK_BOOTTIME, in nanoseconds: the clock the worker children record on.
pub fn boot_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

/// Whether the process that logged `boot_ns` (CLOCK_BOOTTIME, after its start) as `pid` still
/// exists: a process with its pid that started after that is a later one (pids are reused, fast
/// on a busy machine), so the first is gone.
pub fn alive_since(pid: i32, boot_ns: u128) -> bool {
    let Some((state, _, start_ticks)) = procfs::state_flags_and_start(pid) else {
        return false;
    };
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u128;
    state != 'Z' && u128::from(start_ticks) * 1_000_000_000 / hz <= boot_ns
}

/// Sets a resource limit in the child before exec.
pub fn with_rlimit(cmd: &mut Command, resource: libc::__rlimit_resource_t, value: u64) {
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            if libc::setrlimit(resource, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Starts the process in a session of its own, as systemd starts a service: no controlling
/// terminal, and a process group no shell can continue (orphaned), so job control never applies.
/// Without this a replica shares the test runner's session, where it may or may not.
pub fn own_session(cmd: &mut Command) {
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A process started by a test outside [`Replica`]; it and every descendant it has at drop time
/// are killed (SIGKILL) on drop.
pub struct Proc(pub Child);

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        Proc(spawn_with_deathsig(cmd).expect("spawn"))
    }

    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let mut all = procfs::descendants(self.pid());
        all.push(self.pid());
        for pid in all {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = self.0.wait();
    }
}

/// Options, then the child's command line (`-- ...`): one argument list for a replica.
pub fn args(opts: &[&str], child: &[String]) -> Vec<String> {
    opts.iter()
        .map(|s| s.to_string())
        .chain(child.iter().cloned())
        .collect()
}

/// `singleton-exec --endpoints E --id NAME ARGS` as a [`Replica`], after `setup` edited the command.
pub fn replica_with<S: AsRef<OsStr>>(
    name: &str,
    endpoints: &str,
    args: &[S],
    setup: impl FnOnce(&mut Command),
) -> Replica {
    let mut cmd = Command::new(bin());
    cmd.arg("--endpoints")
        .arg(endpoints)
        .arg("--id")
        .arg(name)
        .args(args);
    setup(&mut cmd);
    Replica::spawn(name, cmd)
}

/// Replicas log at debug level, unless the test chose a level itself (`SINGLETON_EXEC_LOG` set on
/// the command, `""` for the default level).
fn debug_logs_unless_set(cmd: &mut Command) {
    let chosen = cmd
        .get_envs()
        .any(|(k, v)| k == "SINGLETON_EXEC_LOG" && v.is_some());
    if !chosen {
        cmd.env("SINGLETON_EXEC_LOG", "singleton_exec=debug");
    }
}

/// The children's notify sockets go under the replica's own temporary directory
/// (`RUNTIME_DIRECTORY`, as systemd's `RuntimeDirectory=` gives one), unless the test says
/// otherwise: a replica SIGKILLed on drop cannot remove its socket directory, and this one goes
/// with the test.
fn runtime_directory(cmd: &mut Command, dir: &Path) {
    if !cmd.get_envs().any(|(k, _)| k == "RUNTIME_DIRECTORY") {
        cmd.env("RUNTIME_DIRECTORY", dir);
    }
}

/// A singleton-exec process under test. Killed (SIGKILL) and reaped on drop.
pub struct Replica {
    pub name: String,
    child: Option<Child>,
    status: Option<ExitStatus>,
    pub log: PathBuf,
    pub out: PathBuf,
    _dir: tempfile::TempDir,
    /// With [`Replica::spawn_piped`]: the thread that copies stderr from its pipe into `log`.
    pub drain: Option<LogDrain>,
}

impl Replica {
    /// Starts `singleton-exec ARGS` with `--endpoints` set, logging to files.
    pub fn start<S: AsRef<OsStr>>(name: &str, endpoints: &str, args: &[S]) -> Replica {
        replica_with(name, endpoints, args, |_| {})
    }

    /// Starts `singleton-exec ARGS` inside network namespace `netns`.
    pub fn start_in_netns<S: AsRef<OsStr>>(
        netns: &str,
        name: &str,
        endpoints: &str,
        args: &[S],
    ) -> Replica {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            netns,
            bin(),
            "--endpoints",
            endpoints,
            "--id",
            name,
        ])
        .args(args);
        Self::spawn(name, cmd)
    }

    /// Starts an arbitrary command line (e.g. `unshare ... singleton-exec ...`), logging to files.
    pub fn spawn(name: &str, mut cmd: Command) -> Replica {
        let dir = tempfile::Builder::new()
            .prefix("singleton-exec-replica-")
            .tempdir()
            .expect("temp dir");
        let log = dir.path().join("stderr.log");
        let out = dir.path().join("stdout.log");
        runtime_directory(&mut cmd, dir.path());
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out).expect("stdout file"))
            .stderr(File::create(&log).expect("stderr file"))
            .env_remove("SINGLETON_EXEC_ENDPOINTS");
        debug_logs_unless_set(&mut cmd);
        let child = spawn_with_deathsig(&mut cmd).expect("start singleton-exec");
        Replica {
            name: name.into(),
            child: Some(child),
            status: None,
            log,
            out,
            _dir: dir,
            drain: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(-1)
    }

    pub fn signal(&self, sig: i32) {
        if self.status.is_none() {
            unsafe { libc::kill(self.pid(), sig) };
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// The exit status if it has exited (reaps it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(c) = self.child.as_mut() {
                self.status = c.try_wait().ok().flatten();
            }
        }
        self.status
    }

    /// Waits for exit and returns the exit code (128+S if killed by a signal).
    pub fn wait(&mut self, timeout: Duration) -> i32 {
        let name = self.name.clone();
        let log = self.log.clone();
        wait_for(
            timeout,
            || self.try_status().is_some(),
            || {
                format!(
                    "replica {name} did not exit; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            },
        );
        let st = self.status.expect("status");
        st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        wait_for(
            timeout,
            || self.log().contains(needle),
            || {
                format!(
                    "replica {} log lacks {needle:?}:\n{}",
                    self.name,
                    self.log()
                )
            },
        );
    }

    /// Waits until stdout contains `needle`.
    pub fn wait_stdout(&self, needle: &str, timeout: Duration) {
        wait_for(
            timeout,
            || self.stdout().contains(needle),
            || {
                format!(
                    "replica {} stdout lacks {needle:?}:\nstdout:\n{}\nlog:\n{}",
                    self.name,
                    self.stdout(),
                    self.log()
                )
            },
        );
    }

    pub fn is_leader(&self) -> bool {
        self.log().contains("role=\"leader\"")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.status.is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Copies a replica's stderr from a pipe into its log file; can be paused, so that the pipe fills up
/// and every write to stderr (the supervisor's logs and its child's output alike) blocks.
pub struct LogDrain {
    paused: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    pipe: std::sync::Arc<File>,
}

impl LogDrain {
    fn start(pipe: File, log: &Path) -> LogDrain {
        use std::io::{Read, Write};
        let paused = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let pipe = std::sync::Arc::new(pipe);
        let mut out = File::create(log).expect("stderr file");
        let (p, r) = (paused.clone(), pipe.clone());
        std::thread::spawn(move || {
            // Small reads: when paused, at most one of them is taken after the pause.
            let mut buf = [0u8; 4096];
            loop {
                {
                    let (lock, cv) = &*p;
                    let mut g = lock.lock().unwrap();
                    while *g {
                        g = cv.wait(g).unwrap();
                    }
                }
                match (&*r).read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let _ = out.write_all(&buf[..n]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
        LogDrain { paused, pipe }
    }

    /// Stops reading the pipe (after the read in progress, if any).
    pub fn pause(&self) {
        *self.paused.0.lock().unwrap() = true;
    }

    /// Reads the pipe again.
    pub fn resume(&self) {
        *self.paused.0.lock().unwrap() = false;
        self.paused.1.notify_all();
    }

    /// Bytes waiting in the pipe (FIONREAD).
    pub fn queued(&self) -> usize {
        use std::os::fd::AsRawFd;
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int.
        unsafe { libc::ioctl(self.pipe.as_raw_fd(), libc::FIONREAD, &mut n) };
        n.max(0) as usize
    }
}

impl Drop for LogDrain {
    fn drop(&mut self) {
        // Let the thread read to the end of the pipe and stop.
        self.resume();
    }
}

impl Replica {
    /// Like [`Replica::spawn`], but stderr is a pipe that a thread copies into `log`; pause it with
    /// `drain.pause()` to make the replica's stderr block once the pipe is full.
    pub fn spawn_piped(name: &str, mut cmd: Command) -> Replica {
        let dir = tempfile::Builder::new()
            .prefix("singleton-exec-replica-")
            .tempdir()
            .expect("temp dir");
        let log = dir.path().join("stderr.log");
        let out = dir.path().join("stdout.log");
        runtime_directory(&mut cmd, dir.path());
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out).expect("stdout file"))
            .stderr(Stdio::piped())
            .env_remove("SINGLETON_EXEC_ENDPOINTS");
        debug_logs_unless_set(&mut cmd);
        let mut child = spawn_with_deathsig(&mut cmd).expect("start singleton-exec");
        let pipe = File::from(std::os::fd::OwnedFd::from(
            child.stderr.take().expect("stderr pipe"),
        ));
        let drain = LogDrain::start(pipe, &log);
        Replica {
            name: name.into(),
            child: Some(child),
            status: None,
            log,
            out,
            _dir: dir,
            drain: Some(drain),
        }
    }
}

/// A runtime for the few tests that talk to etcd directly.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// One HTTP/1.1 request to 127.0.0.1:`port`: the status (0 if it could not be made) and the body.
pub fn http(method: &str, port: u16, path: &str) -> (u16, String) {
    let answer = http_with(method, port, path, &[]);
    (answer.status, answer.body)
}

/// An answer to [`http_with`].
#[derive(Debug, Default)]
pub struct HttpAnswer {
    /// 0 if no answer came.
    pub status: u16,
    /// The header lines, as sent.
    pub head: String,
    pub body: String,
}

impl HttpAnswer {
    /// A header's value (the name is case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port` with extra `headers`.
pub fn http_with(method: &str, port: u16, path: &str, headers: &[(&str, &str)]) -> HttpAnswer {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return HttpAnswer::default();
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let extra: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n{extra}\r\n"
    );
    if s.write_all(req.as_bytes()).is_err() {
        return HttpAnswer::default();
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    HttpAnswer {
        status,
        head: head.replace("\r\n", "\n"),
        body: body.to_owned(),
    }
}

/// A program the test needs from PATH, found; `None` after a loud SKIPPED line when it is
/// missing, and a failure under `CI=true` (scripts/deps.sh installs it for the tests).
pub fn tool(name: &str, test: &str) -> Option<PathBuf> {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        skip_or_fail(&format!("{test}: {name} is not installed"));
    }
    found
}

/// Says loudly that a test cannot run here: a SKIPPED line, or under `CI=true` a failure.
pub fn skip_or_fail(why: &str) {
    let why =
        format!("{why} (scripts/deps.sh installs it: `. scripts/deps.sh; ensure_deps tests`)");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but {why}");
    }
    println!("SKIPPED {why}");
}

/// Runs `singleton-exec SUBCOMMAND --endpoints E ARGS` (`status`, `resign`) to completion: each is
/// bounded by itself (one read; `resign --timeout`).
pub fn run_subcommand(sub: &str, etcd: &EtcdCluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin())
        .arg(sub)
        .args(["--endpoints", &etcd.endpoints()])
        .args(args)
        .output()
        .expect("run singleton-exec")
}

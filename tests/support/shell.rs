//! An interactive shell on a pseudo-terminal, for job control: `script` gives `bash -i` a pty of
//! its own (so bash is a session leader with a controlling terminal and puts each command in a
//! process group of its own, as a login shell does), and the test types into it through the pty
//! line discipline: a Ctrl-Z byte becomes SIGTSTP to the terminal's foreground group, exactly as
//! a key press does. What appears on the terminal (bash's job messages, and the log of the
//! commands it runs) is read back from a file. Every process below it is killed on drop.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::time::Duration;

use super::procfs::descendants;
use super::{wait_for, Proc};

/// The terminal's interrupt character (ISIG): SIGINT to the foreground group.
pub const CTRL_C: u8 = 0x03;
/// The terminal's suspend character (VSUSP): SIGTSTP to the foreground group.
pub const CTRL_Z: u8 = 0x1a;

/// `bash -i` on a pty of its own.
pub struct Shell {
    proc: Proc,
    keys: ChildStdin,
    screen: PathBuf,
    _dir: tempfile::TempDir,
}

impl Shell {
    /// Starts an interactive bash (no startup files, no line editing, so what is typed comes
    /// back as typed) with `SINGLETON_EXEC_LOG=singleton_exec=info` for what it runs.
    pub fn start() -> Shell {
        let dir = tempfile::Builder::new()
            .prefix("singleton-exec-shell-")
            .tempdir()
            .expect("temp dir");
        let screen = dir.path().join("screen");
        let mut cmd = Command::new("script");
        cmd.args([
            "-qfec",
            "bash --norc --noprofile --noediting -i",
            "/dev/null",
        ])
        .env("TERM", "dumb")
        .env("SINGLETON_EXEC_LOG", "singleton_exec=info")
        .env_remove("SINGLETON_EXEC_ENDPOINTS")
        .stdin(Stdio::piped())
        .stdout(File::create(&screen).expect("screen file"))
        .stderr(Stdio::null());
        let mut proc = Proc::spawn(&mut cmd);
        let keys = proc.0.stdin.take().expect("the pty's input");
        let shell = Shell {
            proc,
            keys,
            screen,
            _dir: dir,
        };
        // Job control is set up once bash has printed its first prompt.
        shell.wait_screen(Duration::from_secs(20), |s| !s.is_empty());
        shell
    }

    /// Types `line` and Enter.
    pub fn type_line(&mut self, line: &str) {
        self.keys
            .write_all(format!("{line}\n").as_bytes())
            .expect("type into the pty");
        self.keys.flush().expect("type into the pty");
    }

    /// Presses a control key ([`CTRL_Z`], [`CTRL_C`]).
    pub fn press(&mut self, key: u8) {
        self.keys.write_all(&[key]).expect("type into the pty");
        self.keys.flush().expect("type into the pty");
    }

    /// Everything the terminal showed so far.
    pub fn screen(&self) -> String {
        std::fs::read_to_string(&self.screen).unwrap_or_default()
    }

    /// Waits until what the terminal showed satisfies `cond`; panics with the screen after
    /// `timeout`.
    pub fn wait_screen(&self, timeout: Duration, cond: impl Fn(&str) -> bool) {
        wait_for(
            timeout,
            || cond(&self.screen()),
            || {
                format!(
                    "the terminal did not show what was expected:\n{}",
                    self.screen()
                )
            },
        );
    }

    /// The pid of the `singleton-exec` process the shell runs whose command line holds `marker`.
    pub fn supervisor(&self, marker: &str) -> i32 {
        let mut found = None;
        wait_for(
            Duration::from_secs(20),
            || {
                found = descendants(self.proc.pid()).into_iter().find(|&p| {
                    let comm = std::fs::read_to_string(format!("/proc/{p}/comm"));
                    let cmdline = std::fs::read(format!("/proc/{p}/cmdline"));
                    comm.is_ok_and(|c| c.trim() == "singleton-exec")
                        && cmdline.is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
                });
                found.is_some()
            },
            || {
                format!(
                    "no singleton-exec with {marker:?} under the shell:\n{}",
                    self.screen()
                )
            },
        );
        found.expect("the supervisor's pid")
    }
}

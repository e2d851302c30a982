//! `--hot-standby`: the child runs on every replica, as a standby, and the leader's is told it
//! leads. This module keeps that child across campaigns ([`HotChild`]): it starts it as a
//! standby, restarts it (by `--on-child-exit`) when it exits while standing by, tells it its role
//! and reads its confirmations, and stops it when the replica exits or suspends. The leadership
//! loop ([`super::lead`]) promotes and demotes it through the transition.
//!
//! The child's role reaches it three ways: `SINGLETON_EXEC_ROLE` at its start, the role file
//! named by `SINGLETON_EXEC_ROLE_FILE` (one line, `leader REVISION` or `standby`, replaced by a
//! rename so a reader never sees half of it), and the role signal after every change of the
//! file. It answers `ROLE=leader` / `ROLE=standby` on its notify socket.
//!
//! Rules kept here:
//! * the role signal is held back until the child's first `ROLE=` message: a child still
//!   starting has no handler yet, and the signal's default action would end it. Until then it
//!   learns its role from the file when it starts; the signal held back is sent once it speaks;
//! * the file is changed before the signal, and the mark a confirmation must come after is taken
//!   between the two, once every datagram sent before was read ([`Channel::sync`]): a
//!   `ROLE=standby` the child sent before the file said `standby` confirms nothing;
//! * a promotion is told to the child only after the process thread armed the lease deadline
//!   for it ([`crate::process::contract::Request::Promote`]);
//! * the file lives in a directory of its own, mode 0700, removed when the replica ends.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::time::Instant;

use crate::config::HotStandby;
use crate::core::backoff::{Backoff, Schedule};
use crate::core::command::CommandSpec;
use crate::core::duration::Short;
use crate::core::exit_code::{ChildStatus, Exit};
use crate::core::lifecycle::{OnChildExit, StopReason};
use crate::notify_socket::message::Role;
use crate::notify_socket::notices::{confirms, led};
use crate::notify_socket::{Channel, Listener, Notices};
use crate::process::contract::{Event, Request};
use crate::process::handle::ProcessThread;
use crate::report::observer::Observer;

use super::{next_event, UserRequests};

/// The variable that names the role file.
pub const ROLE_FILE_VARIABLE: &str = "SINGLETON_EXEC_ROLE_FILE";
/// The variable that holds the child's role at its start.
pub const ROLE_VARIABLE: &str = "SINGLETON_EXEC_ROLE";

/// The hot standby's child, across campaigns.
pub(super) struct HotChild<'a> {
    settings: HotStandby,
    obs: Arc<Observer>,
    listener: &'a Listener,
    command: CommandSpec,
    on_child_exit: OnChildExit,
    role: RoleFile,
    /// The child's notify socket, from its start to its end.
    channel: Option<Channel>,
    /// The running child's pid.
    pid: Option<libc::pid_t>,
    /// A start was asked for and not answered yet.
    starting: bool,
    /// Restarts of a standby's child that exited.
    restarts: Backoff,
    started_at: Instant,
    /// When the next standby's child is due, after one exited.
    restart_at: Option<Instant>,
    /// A promotion told to the child and not confirmed yet.
    promotion: Option<Pending>,
    /// A demotion told to the child: the mark its `ROLE=standby` must come after (`None` in
    /// it: the socket could not be synced, so no confirmation can be taken), and when.
    demotion: Option<(Option<u64>, Instant)>,
    /// A role signal waits for the child's first `ROLE=` message.
    signal_held: bool,
    /// While the child leads (it confirmed): the number of its `ROLE=leader`. A `ROLE=standby`
    /// after it, not asked for, means it stood down by itself.
    leads_since: Option<u64>,
}

/// What the child confirmed ([`HotChild::take_confirmations`]).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Confirmed {
    pub demoted: bool,
    /// How long after it was told it confirmed its promotion.
    pub promoted: Option<std::time::Duration>,
    /// It led (confirmed) and said `ROLE=standby` with no demotion asked for: it stood down.
    pub stood_down: bool,
}

/// What was asked of the child when its role messages are read ([`read_roles`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Asked {
    /// A promotion waits for its `ROLE=leader` (its mark, if one could be taken).
    promoting: bool,
    promotion: Option<u64>,
    /// A demotion waits for its `ROLE=standby` (its mark, if one could be taken).
    demoting: bool,
    demotion: Option<u64>,
    /// The child leads: the number of the `ROLE=leader` that confirmed it.
    leads_since: Option<u64>,
}

/// What the child's role messages answer ([`read_roles`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct RolesRead {
    /// Its promotion is confirmed, by the `ROLE=leader` of this number.
    promoted: Option<u64>,
    /// Its demotion is confirmed.
    demoted: bool,
    /// It led and its last word since is `ROLE=standby`, with no demotion asked: it stood down.
    stood_down: bool,
}

/// The pure reading of the child's role messages against what was asked of it. A promotion is
/// confirmed by any `ROLE=leader` after its mark (a `ROLE=standby` read in the same look, after
/// it, is the child standing down by itself, not a promotion that never came); a demotion only
/// by a last word of `ROLE=standby` after its mark ([`confirms`]): a child that said standby and
/// then leader again has not confirmed it stands by.
fn read_roles(n: &Notices, asked: Asked) -> RolesRead {
    let promoted = asked
        .promotion
        .and_then(|mark| led(n, mark))
        .map(|r| r.number);
    let demoted = asked
        .demotion
        .is_some_and(|mark| confirms(n, Role::Standby, mark).is_some());
    // While a promotion waits, only its own confirmation says the child leads.
    let leads_since = promoted.or(asked.leads_since.filter(|_| !asked.promoting));
    let stood_down = !asked.demoting
        && leads_since.is_some_and(|since| confirms(n, Role::Standby, since).is_some());
    RolesRead {
        promoted,
        demoted,
        stood_down,
    }
}

/// How a standby's child ended, by the reason its tree's end carries ([`standby_end`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StandbyEnd {
    /// It exited by itself: `--on-child-exit` decides.
    Exited,
    /// This replica stopped it for a leadership it has given up since, and the end came late.
    StoppedByUs,
}

/// A standby's child's end is its own only when the tree's end says the child exited; any
/// other reason names a stop this replica began (a shutdown's and a suspension's are the
/// caller's, which looks at them first).
fn standby_end(reason: StopReason) -> StandbyEnd {
    match reason {
        StopReason::ChildExited => StandbyEnd::Exited,
        _ => StandbyEnd::StoppedByUs,
    }
}

/// A promotion waiting for the child's `ROLE=leader`.
#[derive(Debug, Clone, Copy)]
struct Pending {
    mark: Option<u64>,
    told: Instant,
    until: Instant,
}

impl<'a> HotChild<'a> {
    /// The hot standby's state, with its role file's directory made; `Err`: no directory could
    /// be made (a read-only file system), said in the error.
    pub fn new(
        settings: HotStandby,
        obs: Arc<Observer>,
        listener: &'a Listener,
        command: CommandSpec,
        on_child_exit: OnChildExit,
    ) -> std::io::Result<HotChild<'a>> {
        Ok(HotChild {
            settings,
            obs,
            listener,
            command,
            on_child_exit,
            role: RoleFile::create()?,
            channel: None,
            pid: None,
            starting: false,
            restarts: Schedule::RESTART.start(),
            started_at: Instant::now(),
            restart_at: None,
            promotion: None,
            demotion: None,
            signal_held: false,
            leads_since: None,
        })
    }

    /// Whether a child runs or is being started.
    pub fn exists(&self) -> bool {
        self.pid.is_some() || self.starting
    }

    pub fn pid(&self) -> Option<libc::pid_t> {
        self.pid
    }

    /// Starts a standby's child unless one runs, is being started, or waits for its restart.
    pub fn ensure_running(&mut self, process: &ProcessThread) {
        if !self.exists() && self.restart_at.is_none() {
            self.spawn_standby(process);
        }
    }

    fn spawn_standby(&mut self, process: &ProcessThread) {
        self.restart_at = None;
        if let Err(e) = self.role.write("standby") {
            tracing::error!(error = %e, file = %self.role.path.display(), "cannot write the role file");
        }
        let mut env = self.role_env(Role::Standby);
        env.extend(self.open_channel());
        self.obs.hot_told(Role::Standby.as_str(), false);
        tracing::debug!("starting the child as a standby (--hot-standby)");
        process.request(Request::Spawn {
            command: self.command.clone(),
            env,
            own_pid_variable: None,
            deadline: None,
        });
        self.starting = true;
        self.started_at = Instant::now();
    }

    /// What a child started as the leader (none ran to promote) gets besides the leader's
    /// variables: its role, the role file (which says `leader REVISION` by now) and its notify
    /// socket. Its `ROLE=leader` is awaited as a promoted child's is.
    pub fn leader_spawn_env(&mut self, revision: i64) -> Vec<(String, String)> {
        if let Err(e) = self.role.write(&format!("leader {revision}")) {
            tracing::error!(error = %e, file = %self.role.path.display(), "cannot write the role file");
        }
        let mut env = self.role_env(Role::Leader);
        env.extend(self.open_channel());
        self.obs.hot_told(Role::Leader.as_str(), true);
        self.restart_at = None;
        self.starting = true;
        self.started_at = Instant::now();
        self.leads_since = None;
        let now = Instant::now();
        self.promotion = Some(Pending {
            mark: Some(0),
            told: now,
            until: now + self.settings.promote_timeout,
        });
        env
    }

    fn role_env(&self, role: Role) -> Vec<(String, String)> {
        vec![
            (ROLE_VARIABLE.into(), role.as_str().into()),
            (
                ROLE_FILE_VARIABLE.into(),
                self.role.path.to_string_lossy().into_owned(),
            ),
        ]
    }

    /// A fresh notify socket for the next child; its `NOTIFY_SOCKET`.
    fn open_channel(&mut self) -> Option<(String, String)> {
        self.channel = None;
        match self.listener.open() {
            Ok(channel) => {
                let var = ("NOTIFY_SOCKET".to_owned(), channel.env_value().to_owned());
                self.obs.hot_listened(channel.notices.clone());
                self.channel = Some(channel);
                Some(var)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot make the child's notify socket: it cannot confirm its role, so a demotion ends in a stop");
                None
            }
        }
    }

    /// Takes note of what the process thread says of the child (a start, its end).
    pub fn observe(&mut self, event: &Event) {
        match event {
            Event::Started { pid } => {
                self.starting = false;
                self.pid = Some(*pid);
                if let Some(c) = &self.channel {
                    c.started(*pid);
                }
            }
            Event::SpawnFailed(_) | Event::SpawnRefused(_) => self.starting = false,
            Event::Finished { .. } => self.gone(),
            _ => {}
        }
    }

    /// The child's tree is gone.
    fn gone(&mut self) {
        if self.demotion.is_some() {
            self.obs.hot_demotion_ended(None);
        }
        self.pid = None;
        self.starting = false;
        self.channel = None;
        self.promotion = None;
        self.demotion = None;
        self.signal_held = false;
        self.leads_since = None;
    }

    /// While standing by (no leadership): what an event means for the replica. `Some`: it
    /// leaves (the child could not be started, or exited and `--on-child-exit exit` says the
    /// replica goes with it). A child that exited is started again after the restart backoff
    /// ([`HotChild::restart_due`]), unless the replica is on its way out. A tree this replica
    /// stopped for a leadership it has given up since (its demotion's frozen deadline passed in
    /// the same turn as the child confirmed, the end reported late) did not exit by itself: it
    /// is started again at once, whatever `--on-child-exit` says, and its status (the replica's
    /// own SIGKILL, say) is nobody's exit code.
    pub fn on_standby_event(&mut self, event: &Event, user: &UserRequests) -> Option<Exit> {
        self.observe(event);
        match event {
            Event::SpawnFailed(e) => {
                tracing::error!(error = %e, code = e.exit_code(), "cannot start the command");
                Some(e.exit())
            }
            Event::Finished { status, reason, .. } if user.shutdown.is_none() && !user.suspend => {
                match standby_end(*reason) {
                    StandbyEnd::Exited => self.standby_exited(*status),
                    StandbyEnd::StoppedByUs => {
                        tracing::info!(%status, ?reason,
                            "the standby's child was stopped for a leadership given up since; starting it again, still standing by");
                        self.restart_at = Some(Instant::now());
                        None
                    }
                }
            }
            _ => None,
        }
    }

    fn standby_exited(&mut self, status: ChildStatus) -> Option<Exit> {
        match self.on_child_exit {
            OnChildExit::Exit => {
                tracing::info!(%status, "the standby's child exited; exiting (--on-child-exit=exit)");
                Some(Exit::Child(status))
            }
            OnChildExit::Restart | OnChildExit::Recampaign => {
                self.restarts.succeeded(self.started_at.elapsed());
                let wait = self.restarts.next_pause();
                tracing::info!(%status, restart_in = %Short(wait),
                    "the standby's child exited; starting it again, still standing by");
                self.restart_at = Some(Instant::now() + wait);
                None
            }
        }
    }

    /// When a standby's child that exited is to be started again.
    pub fn restart_due(&self) -> Option<Instant> {
        self.restart_at
    }

    /// Starts the standby's child again (its restart is due).
    pub fn restart(&mut self, process: &ProcessThread) {
        if self.exists() {
            // A child runs already (started as the leader meanwhile): nothing is due any more.
            self.restart_at = None;
        } else {
            self.spawn_standby(process);
        }
    }

    /// Tells the child it leads (the deadline is armed already): the role file, the mark, then
    /// the role signal.
    pub async fn tell_leader(&mut self, revision: i64, process: &ProcessThread) {
        self.leads_since = None;
        let mark = self.tell(&format!("leader {revision}")).await;
        self.obs.hot_told(Role::Leader.as_str(), true);
        let now = Instant::now();
        self.promotion = Some(Pending {
            mark,
            told: now,
            until: now + self.settings.promote_timeout,
        });
        self.signal(process);
    }

    /// Sends the role signal, or holds it back until the child's first `ROLE=` message.
    fn signal(&mut self, process: &ProcessThread) {
        let spoke = self
            .channel
            .as_ref()
            .is_some_and(|c| c.notices.borrow().role_messages > 0);
        if spoke {
            process.request(Request::RoleSignal);
        } else {
            self.signal_held = true;
        }
    }

    /// Tells the child to stand by: the deadline frozen first (no keepalive moves it from the
    /// moment the file says `standby`), then the role file, the mark, and the role signal.
    pub async fn tell_standby(&mut self, process: &ProcessThread) {
        self.promotion = None;
        self.leads_since = None;
        process.request(Request::Demote);
        let told = Instant::now();
        let mark = self.tell("standby").await;
        self.obs.hot_told(Role::Standby.as_str(), false);
        self.demotion = Some((mark, told));
        self.signal(process);
    }

    /// Writes the role file, then has every datagram sent before read: the mark.
    async fn tell(&mut self, line: &str) -> Option<u64> {
        if let Err(e) = self.role.write(line) {
            tracing::error!(error = %e, file = %self.role.path.display(), "cannot write the role file");
        }
        match &self.channel {
            Some(c) => c.sync().await,
            None => None,
        }
    }

    /// Resolves when the child said something on its notify socket; never without a socket.
    pub async fn changed(&mut self) {
        match &mut self.channel {
            Some(c) => {
                if c.notices.changed().await.is_err() {
                    self.channel = None;
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }

    /// What the child confirmed since the last look: its demotion, or its promotion (how long
    /// after it was told). A role signal held back is sent once the child has spoken.
    pub fn take_confirmations(&mut self, process: &ProcessThread) -> Confirmed {
        let mut confirmed = Confirmed::default();
        let Some(c) = &mut self.channel else {
            return confirmed;
        };
        let notices = c.notices.borrow_and_update().clone();
        if self.signal_held && notices.role_messages > 0 {
            self.signal_held = false;
            process.request(Request::RoleSignal);
        }
        let read = read_roles(
            &notices,
            Asked {
                promoting: self.promotion.is_some(),
                promotion: self.promotion.and_then(|p| p.mark),
                demoting: self.demotion.is_some(),
                demotion: self.demotion.and_then(|(mark, _)| mark),
                leads_since: self.leads_since,
            },
        );
        if let (Some(number), Some(p)) = (read.promoted, self.promotion) {
            self.promotion = None;
            self.leads_since = Some(number);
            let took = p.told.elapsed();
            self.obs.hot_promotion_confirmed(took);
            confirmed.promoted = Some(took);
            tracing::info!(took = %Short(took), "the child confirmed it leads (ROLE=leader)");
        }
        if let (true, Some((_, told))) = (read.demoted, self.demotion) {
            self.demotion = None;
            // The deadline frozen for the demotion is lifted before the lease is given up:
            // the child, a standby now, answers to no lease (a stop already under way goes on).
            process.request(Request::Disarm);
            let took = told.elapsed();
            self.obs.hot_demotion_ended(Some(took));
            tracing::info!(took = %Short(took), "the child confirmed it stands by (ROLE=standby)");
            confirmed.demoted = true;
        }
        // Stood down by itself: the file still says `leader`, so the leadership loop tells it
        // `standby` (a demotion like any other), and the lease goes once it confirms that.
        if read.stood_down {
            self.leads_since = None;
            tracing::warn!("the leading child said it stands by (ROLE=standby) without being asked: stepping down");
            confirmed.stood_down = true;
        }
        confirmed
    }

    /// When an unconfirmed promotion times out.
    pub fn promotion_due(&self) -> Option<Instant> {
        self.promotion.map(|p| p.until)
    }

    /// The promotion timed out: it is given up (the caller stops the child).
    pub fn promotion_timed_out(&mut self) {
        if let Some(p) = self.promotion.take() {
            tracing::warn!(waited = %Short(p.told.elapsed()), promote_timeout = %Short(self.settings.promote_timeout),
                "the child did not confirm it leads (ROLE=leader) within --promote-timeout: stepping down");
        }
    }

    /// Stops the child, if one runs or is being started, and waits for its tree to be gone; its
    /// status. The replica exits or suspends next.
    pub async fn stop(
        &mut self,
        process: &mut ProcessThread,
        user: &mut UserRequests,
        reason: StopReason,
    ) -> Option<ChildStatus> {
        self.restart_at = None;
        let mut asked = false;
        let mut status = None;
        while self.exists() {
            if self.pid.is_some() && !asked {
                process.request(Request::Stop(reason));
                asked = true;
            }
            let Some(event) = next_event(process, user).await else {
                return status;
            };
            if let Event::Finished { status: s, .. } = &event {
                status = Some(*s);
            }
            self.observe(&event);
        }
        status
    }
}

/// The role file and its private directory, removed when dropped.
struct RoleFile {
    dir: PathBuf,
    path: PathBuf,
}

impl RoleFile {
    /// A directory of ours (mode 0700) under `$RUNTIME_DIRECTORY` (systemd's), else the
    /// temporary directory.
    fn create() -> std::io::Result<RoleFile> {
        let base = std::env::var_os("RUNTIME_DIRECTORY")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let nanos = crate::core::clock::BootInstant::now().as_nanos();
        let dir = base.join(format!("singleton-exec-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot make {}: {e}", dir.display()))
            })?;
        let path = dir.join("role");
        Ok(RoleFile { dir, path })
    }

    /// Replaces the file with one line, by a rename: a reader sees the old line or the new.
    fn write(&self, line: &str) -> std::io::Result<()> {
        let tmp = self.dir.join("role.new");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(format!("{line}\n").as_bytes())?;
        drop(f);
        std::fs::rename(&tmp, &self.path)
    }

    #[cfg(test)]
    fn read(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap_or_default()
    }
}

impl Drop for RoleFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::BootInstant;
    use crate::notify_socket::message::Message;
    use std::os::unix::fs::PermissionsExt;

    /// The notices after the child said these roles (`L` leader, `S` standby), in this order.
    fn said(roles: &str) -> Notices {
        let mut n = Notices::default();
        for c in roles.chars() {
            let role = if c == 'L' {
                Role::Leader
            } else {
                Role::Standby
            };
            let m = Message {
                role: Some(role),
                ..Message::default()
            };
            n.apply(&m, BootInstant::now());
        }
        n
    }

    /// Only the child's own exit is its exit; every stop the replica began is not.
    #[test]
    fn a_standby_child_exited_only_when_its_end_says_so() {
        use StopReason::*;
        assert_eq!(standby_end(ChildExited), StandbyEnd::Exited);
        for reason in [
            LeaseGone,
            KeyDeleted,
            KeyChanged,
            Deadline,
            Resign,
            Unhealthy,
            WatchdogMissed,
            WatchdogTrigger,
            NotReady,
            StoodDown,
            Shutdown(libc::SIGTERM),
            Suspend,
        ] {
            assert_eq!(standby_end(reason), StandbyEnd::StoppedByUs, "{reason:?}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn what_the_role_messages_answer() {
        let promoting = |mark| Asked { promoting: true, promotion: Some(mark), ..Asked::default() };
        let demoting = |mark| Asked { demoting: true, demotion: Some(mark), ..Asked::default() };
        let leading = |since| Asked { leads_since: Some(since), ..Asked::default() };
        let read = |promoted, demoted, stood_down| RolesRead { promoted, demoted, stood_down };
        let none = read(None, false, false);
        let rows: &[(&str, Asked, RolesRead, &str)] = &[
            ("S", promoting(1), none, "nothing after the mark"),
            ("L", promoting(1), none, "a ROLE=leader from before the mark"),
            ("SL", promoting(1), read(Some(2), false, false), "confirmed"),
            ("SLS", promoting(1), read(Some(2), false, true), "it led, then stood down before the look"),
            ("SLSL", promoting(1), read(Some(4), false, false), "its last word leads"),
            ("SS", promoting(1), none, "standby after the mark: not promoted, not a stand-down"),
            ("SL", Asked { promotion: None, ..Asked::default() }, none, "no promotion waits"),
            ("SL", leading(2), none, "it leads"),
            ("SLS", leading(2), read(None, false, true), "stood down"),
            ("SLSL", leading(2), none, "stood down and led again: its last word leads"),
            ("LS", Asked { promoting: true, promotion: None, leads_since: Some(1), ..Asked::default() }, none,
                "a promotion waits (unmarked): an earlier ROLE=leader says nothing"),
            ("SLS", Asked { promoting: true, promotion: Some(3), leads_since: Some(2), ..Asked::default() }, none,
                "a promotion waits: its start-up ROLE=standby is no stand-down"),
            ("LS", demoting(1), read(None, true, false), "demoted"),
            ("LSL", demoting(1), none, "it said standby, then leader again: not demoted"),
            ("LS", demoting(2), none, "its ROLE=standby came before the mark"),
            ("LS", Asked { demoting: true, demotion: None, ..Asked::default() }, none, "no mark: never confirmed"),
            ("LS", Asked { demoting: true, demotion: Some(1), leads_since: Some(1), ..Asked::default() },
                read(None, true, false), "a demotion asked is not a stand-down"),
        ];
        for (roles, asked, want, why) in rows {
            assert_eq!(read_roles(&said(roles), *asked), *want, "{roles} {asked:?}: {why}");
        }
    }

    #[test]
    fn the_role_file_is_replaced_whole_and_removed_with_its_directory() {
        let f = RoleFile::create().unwrap();
        let dir = f.dir.clone();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        f.write("standby").unwrap();
        assert_eq!(f.read(), "standby\n");
        f.write("leader 42").unwrap();
        assert_eq!(f.read(), "leader 42\n");
        assert!(!dir.join("role.new").exists());
        drop(f);
        assert!(!dir.exists());
    }
}

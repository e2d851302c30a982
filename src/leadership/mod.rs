//! The leadership loop: the async side of a replica, which moves it through its lifecycle.
//!
//! ```text
//! run:  loop { standby (campaign) → lead → hold off, or suspend, or exit }
//! lead: loop { input for the state it is in → transition::step → action }, one exit: release
//! ```
//!
//! [`standby`] gets a lease and waits for leadership (the queue, or a slot with `--slots N`);
//! with `--once NAME`, [`once`] reads the outcome at the head of the queue and begins a run only
//! when one is due, and writes the run's outcome with the release;
//! [`lead`] applies the pure [`transition`] until the leadership is over, then gives the lease up;
//! [`child_health`] runs the leader's health checks of its child, [`child_notify`] reads what the
//! child says on its notify socket (readiness, status, watchdog), and [`health_publisher`] shows
//! both in etcd. The loop owns the etcd session ([`crate::election::session`]) and the election; the process thread owns the
//! child and talks to this loop only through [`crate::process::contract`].
//!
//! Rules kept here:
//! * no child without a verified leader key and a lease with more than grace + margin left;
//! * the lease is given up (the one release path) only after the child's whole tree is gone;
//! * what follows a child's tree is decided by the transition, with [`crate::core::lifecycle::decide`];
//!   a shutdown request always wins, and once one arrived the replica never campaigns or starts a
//!   child again;
//! * step-down requests (`POST /resign`, and through etcd, [`crate::election::step_down`], on the
//!   candidacy's watch stream) name the fencing revision of the leadership they are for; any other
//!   leadership ignores them, so a request that arrived too late never ends a later one;
//! * Ctrl-Z under job control ([`crate::process::thread`] says when) suspends the replica only
//!   with no child and no lease: a leader stops its tree and releases (through the one release
//!   path), a standby revokes its lease and so leaves the queue, and only then does the process
//!   thread stop this process ([`suspend`]). Continued, it campaigns again with a fresh lease. A
//!   shutdown asked for meanwhile wins (the replica exits instead of stopping), and a SIGCONT
//!   that came before the stop is not lost (the replica does not stop, and campaigns again).

#![forbid(unsafe_code)]

mod child_health;
mod child_notify;
mod health_publisher;
mod hot_standby;
mod lead;
mod once;
mod standby;
pub(crate) mod transition;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::time::{sleep, Instant};

use crate::config::Config;
use crate::core::clock::BootInstant;
use crate::core::duration::Short;
use crate::core::exit_code::Exit;
use crate::core::lifecycle::{Asked, LeaseId, Phase, Policies, StopReason};
use crate::election::connector::Connector;
use crate::election::once::OnceLayout;
use crate::election::queue::{Candidacy, Election};
use crate::election::session::LeaseState;
use crate::election::slots::SlotElection;
use crate::notify_socket::Listener;
use crate::process::contract::{Event, LeaseDeadline, Request};
use crate::process::handle::ProcessThread;
use crate::report::http::{self, Endpoints, ResignAuth};
use crate::report::observer::Observer;

/// How long a replica on its way out (it exits next) waits for its lease to be revoked. A revoke
/// takes a millisecond on a healthy etcd; one that cannot be made in a second would only delay
/// the exit (the lease then expires after its TTL, and a standby takes over then), and a replica
/// asked to stop must not wait on an etcd it cannot reach.
pub(crate) const REVOKE_ON_EXIT: Duration = Duration::from_secs(1);

/// How long a replica about to suspend waits for its last log lines to be written (a stalled
/// stderr must not keep it from stopping).
const SUSPEND_LOG_FLUSH: Duration = Duration::from_millis(200);

/// What the loop reads and does not change.
struct Ctx<'a> {
    cfg: &'a Config,
    obs: &'a Arc<Observer>,
    connector: Arc<Connector>,
    election: Election,
    /// With `--slots N`, N > 1: the slots of the election, claimed instead of leading the queue.
    slots: Option<SlotElection>,
    /// Where step-down requests that arrive through etcd go (the same queue as `POST /resign`).
    step_down: UnboundedSender<i64>,
    /// The candidacy leases this replica took, latest last: a key of an earlier one that
    /// outlived our view of it (not revoked during an etcd outage) is ours, not another
    /// replica's with our `--id`.
    leases_taken: std::sync::Mutex<Vec<LeaseId>>,
    /// With `--once NAME`: its keys; `election` is then its queue.
    once: Option<OnceLayout>,
    /// The children's notify sockets, when they can be had.
    notify: Option<&'a Listener>,
}

/// What the loop receives: the process thread's events, step-down requests, and what the user
/// asked of the replica by signal; with `--hot-standby`, the child it keeps across campaigns.
struct Inputs<'a> {
    process: ProcessThread,
    resign: UnboundedReceiver<i64>,
    user: UserRequests,
    hot: Option<hot_standby::HotChild<'a>>,
}

/// What the user asked of the whole replica by signal.
#[derive(Debug, Default)]
struct UserRequests {
    /// A shutdown signal (sticky: the replica never campaigns again).
    shutdown: Option<libc::c_int>,
    /// Ctrl-Z under job control, until the suspension is done.
    suspend: bool,
}

impl UserRequests {
    /// Records what `event` asks, if anything.
    fn record(&mut self, event: &Event) {
        match event {
            Event::ShutdownSignal(sig) => {
                self.shutdown.get_or_insert(*sig);
            }
            Event::SuspendRequested => self.suspend = true,
            _ => {}
        }
    }

    /// The strongest request: a shutdown wins over a suspension.
    fn asked(&self) -> Asked {
        match (self.shutdown, self.suspend) {
            (Some(_), _) => Asked::Shutdown,
            (None, true) => Asked::Suspend,
            (None, false) => Asked::Nothing,
        }
    }
}

/// How a replica without a child leaves what it waits in (the standby queue, the hold-off, the
/// pause between two children): it exits, or it suspends first.
enum Leave {
    Exit(Exit),
    Suspend,
}

/// How one leadership ended.
enum After {
    Exit(Exit),
    /// Campaign again, after `pause`. `former_at`: our key was deleted (an operator's `del
    /// --prefix`), and this is a revision just before that: whoever else led (held a slot) then
    /// may still run its child, so the next campaign waits for them as a standby whose key was
    /// deleted does.
    Recampaign {
        pause: Pause,
        former_at: Option<i64>,
    },
}

/// What comes before the next campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pause {
    None,
    /// `--resign-holdoff`, so a standby takes over.
    Holdoff,
    /// A suspension (Ctrl-Z): until the replica is continued.
    Suspension,
}

/// Runs the replica until it exits. `health` is the listener for the HTTP endpoints, bound by the
/// caller so that a bad address fails at start-up; `notify` gives each child its notify socket
/// (dropped on the way out, which removes the sockets' directory).
pub async fn run(
    cfg: Config,
    process: ProcessThread,
    obs: Arc<Observer>,
    health: Option<std::net::TcpListener>,
    notify: Option<Listener>,
) -> Exit {
    let connector = Arc::new(Connector::new(cfg.etcd.clone()));
    let once = cfg
        .once
        .as_ref()
        .map(|o| OnceLayout::new(&cfg.prefix, &cfg.election, &o.name));
    let election = once.as_ref().map_or_else(
        || Election::new(&cfg.prefix, &cfg.election),
        |o| o.queue.clone(),
    );
    let (resign_tx, resign) = unbounded_channel();
    if let Some(listener) = health {
        serve_endpoints(&cfg, &obs, &election, &connector, &resign_tx, listener);
    }
    start_watchdog(&obs);
    obs.notifier.ready();
    log_start(&cfg, &election, &connector);
    let ctx = Ctx {
        cfg: &cfg,
        obs: &obs,
        connector,
        slots: (cfg.slots > 1).then(|| SlotElection::new(&cfg.prefix, &cfg.election, cfg.slots)),
        election,
        step_down: resign_tx,
        leases_taken: std::sync::Mutex::new(Vec::new()),
        once,
        notify: notify.as_ref(),
    };
    let hot = match (cfg.hot, notify.as_ref()) {
        (None, _) => None,
        (Some(settings), Some(listener)) => {
            let made = hot_standby::HotChild::new(
                settings,
                obs.clone(),
                listener,
                cfg.command.clone(),
                cfg.on_child_exit,
            );
            match made {
                Ok(hot) => Some(hot),
                Err(e) => {
                    tracing::error!(error = %e, "--hot-standby needs a directory for the child's role file: set TMPDIR (or RUNTIME_DIRECTORY) to a writable one");
                    return Exit::Internal;
                }
            }
        }
        (Some(_), None) => {
            tracing::error!(
                "--hot-standby needs the child's notify socket, which cannot be had here"
            );
            return Exit::Internal;
        }
    };
    let mut inputs = Inputs {
        process,
        resign,
        user: UserRequests::default(),
        hot,
    };
    let exit = campaign_until_exit(&ctx, &mut inputs).await;
    let exit = match inputs.hot.as_mut() {
        Some(hot) => {
            // The replica leaves: a standby's child (or a demoted one) goes with it.
            let reason = StopReason::Shutdown(inputs.user.shutdown.unwrap_or(libc::SIGTERM));
            let status = hot
                .stop(&mut inputs.process, &mut inputs.user, reason)
                .await;
            match (exit, status) {
                (Exit::Withdrew | Exit::Child(_), Some(status)) => Exit::Child(status),
                (exit, _) => exit,
            }
        }
        None => exit,
    };
    obs.notifier.stopping();
    match (exit, inputs.user.shutdown) {
        // With --once, 0 says the command succeeded: a replica stopped before it knew is not.
        (Exit::Withdrew, Some(sig)) if ctx.once.is_some() => Exit::Interrupted(sig),
        (exit, _) => exit,
    }
}

fn serve_endpoints(
    cfg: &Config,
    obs: &Arc<Observer>,
    election: &Election,
    connector: &Arc<Connector>,
    resign: &UnboundedSender<i64>,
    listener: std::net::TcpListener,
) {
    let listen = listener.local_addr().ok();
    let endpoints = Endpoints {
        observer: obs.clone(),
        election: election.clone(),
        connector: connector.clone(),
        resign: resign.clone(),
        resign_auth: ResignAuth::new(listen, cfg.resign_token.clone()),
        slots: cfg.slots,
    };
    tokio::spawn(http::serve(listener, Arc::new(endpoints)));
}

/// Pets systemd's watchdog while the runtime runs (a wedged runtime stops it).
fn start_watchdog(obs: &Arc<Observer>) {
    if let Some(every) = obs.notifier.watchdog_interval() {
        let notifier = obs.notifier.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                notifier.watchdog();
            }
        });
    }
}

fn log_start(cfg: &Config, election: &Election, connector: &Connector) {
    let key_prefix = match cfg.slots {
        1 => election.dir().to_owned(),
        n => SlotElection::of(election, n).dir().to_owned(),
    };
    // Two lines at info: who and where, then the timing an operator plans with; the rest at
    // debug. Each value one token, so each line stays short and greppable.
    let endpoints = connector.endpoints().join(",");
    let slots = (cfg.slots > 1).then_some(cfg.slots);
    tracing::info!(id = %cfg.id, election = %cfg.election, slots, %endpoints, "singleton-exec starting");
    let t = &cfg.timing;
    let f = t.figures();
    tracing::info!(ttl = %Short(t.ttl), keepalive_interval = %Short(t.keepalive_interval),
        renew_deadline = %Short(t.renew_deadline()), grace = %Short(t.grace), margin = %Short(t.margin),
        tolerated_outage = %Short(f.tolerated_outage), "timing");
    tracing::debug!(%key_prefix, "keys");
    // The figures of `singleton-exec timing`, from the same model.
    tracing::debug!(
        tolerated_outage = %Short(f.tolerated_outage),
        takeover_after_crash = %Short(f.takeover_after_crash),
        takeover_after_graceful_stop = %Short(f.takeover_after_graceful_stop),
        stop_after_keepalive = %Short(f.stop_after_keepalive),
        kill_after_keepalive = %Short(f.kill_after_keepalive),
        lease_expiry_after_keepalive = %Short(f.expiry_after_keepalive),
        "timing: worst cases (`singleton-exec timing` explains them)"
    );
    let short = |d: Option<Duration>| d.map(|d| Short(d).to_string());
    if cfg.notify.watchdog.is_some() || cfg.notify.ready_timeout.is_some() {
        tracing::info!(
            watchdog = short(cfg.notify.watchdog),
            ready_timeout = short(cfg.notify.ready_timeout),
            "the child must talk on its notify socket: a leader whose child misses its watchdog or \
             sends no READY=1 in time steps down"
        );
    }
    if let Some(h) = &cfg.health {
        tracing::info!(check = %h.describe(), interval = %Short(h.interval), timeout = %Short(h.timeout),
            retries = h.retries, start_period = %Short(h.start_period),
            wedged_leader_bound = %Short(h.worst_case(cfg.timing.grace)),
            "health checks on: a leader whose child fails them steps down");
    }
}

async fn campaign_until_exit(ctx: &Ctx<'_>, inp: &mut Inputs<'_>) -> Exit {
    if let Some(exit) = once::settled_before_joining(ctx).await {
        return exit;
    }
    let mut former_at = None;
    loop {
        while inp.resign.try_recv().is_ok() {} // a request that came too late to matter
        if let Some(hot) = inp.hot.as_mut() {
            hot.ensure_running(&inp.process);
        }
        let won = match standby::standby(ctx, inp, former_at).await {
            Ok(won) => won,
            Err(Leave::Exit(exit)) => return exit,
            // The lease is revoked: our key has left the queue. What we waited for after a
            // deletion is still waited for when we join again.
            Err(Leave::Suspend) => match suspend(ctx, inp).await {
                Ok(()) => continue,
                Err(exit) => return exit,
            },
        };
        // With --once, the head of the queue reads the outcome first, and runs only if it must.
        let won = match once::at_head(ctx, inp, won).await {
            once::Head::Run(won) => *won,
            once::Head::Exit(exit) => return exit,
            once::Head::Again => continue,
            once::Head::Suspend => match suspend(ctx, inp).await {
                Ok(()) => continue,
                Err(exit) => return exit,
            },
        };
        let (pause, deleted) = match lead::lead(ctx, inp, won).await {
            After::Exit(exit) => return exit,
            After::Recampaign { pause, former_at } => (pause, former_at),
        };
        // A singleton's queue had only us at its head before our key was deleted: nobody to
        // wait for. With slots, other holders may still run.
        former_at = deleted.filter(|_| ctx.slots.is_some());
        let suspension = match pause {
            Pause::None => false,
            Pause::Suspension => true,
            Pause::Holdoff => tokio::select! {
                leave = leave_requested(&mut inp.process, &mut inp.user, inp.hot.as_mut()) => match leave {
                    Leave::Exit(exit) => return exit,
                    Leave::Suspend => true,
                },
                _ = sleep(ctx.cfg.resign_holdoff) => false,
            },
        };
        if suspension {
            if let Err(exit) = suspend(ctx, inp).await {
                return exit;
            }
        }
    }
}

/// Suspends this process until it is continued (`fg`, `bg`, SIGCONT). Called only with no child
/// and no lease: after the release, or after a standby revoked its lease. `Err`: the replica
/// exits instead, because a shutdown signal came while the lease was given up (it wins: a
/// stopped replica could not act on it), or the process thread is gone. The process thread
/// refuses the suspension too if the shutdown comes after this look (and, continued already by
/// a SIGCONT after the Ctrl-Z, does not stop); `Resumed` comes at once then.
async fn suspend(ctx: &Ctx<'_>, inp: &mut Inputs<'_>) -> Result<(), Exit> {
    if let Some(hot) = inp.hot.as_mut() {
        // A suspended replica has no child: a standby's child is stopped too (and started again
        // when the replica campaigns again).
        hot.stop(&mut inp.process, &mut inp.user, StopReason::Suspend)
            .await;
    }
    while let Ok(event) = inp.process.events.try_recv() {
        inp.user.record(&event);
        tracing::debug!(?event, "before suspending");
    }
    if let Some(sig) = inp.user.shutdown {
        tracing::info!(id = %ctx.cfg.id, "not suspending: withdrew on {}", crate::core::exit_code::signal_name(sig));
        return Err(Exit::Withdrew);
    }
    tracing::info!(id = %ctx.cfg.id,
        "suspended (Ctrl-Z): no child runs and no lease is held; fg, bg or SIGCONT continues, \
         then this replica campaigns again");
    // Said before the shell's prompt, not after `fg`. This blocks the runtime briefly: nothing
    // runs on it that matters to a replica with no child and no lease, about to stop anyway.
    crate::report::logging::flush(SUSPEND_LOG_FLUSH);
    inp.process.request(Request::Suspend);
    loop {
        match next_event(&mut inp.process, &mut inp.user).await {
            Some(Event::Resumed) => break,
            Some(event) => tracing::debug!(?event, "while suspending"),
            None => {
                tracing::error!("the process thread is gone");
                return Err(Exit::Internal);
            }
        }
    }
    // A Ctrl-Z that came before the stop is done with it; SIGCONT discards any later one.
    inp.user.suspend = false;
    ctx.obs.enter(Phase::Starting);
    Ok(())
}

/// The next event from the process thread, recording what the user asks by signal. `None`: the
/// thread is gone.
async fn next_event(process: &mut ProcessThread, user: &mut UserRequests) -> Option<Event> {
    let event = process.events.recv().await;
    if let Some(event) = &event {
        user.record(event);
    }
    event
}

/// Resolves once a shutdown signal or a suspension has been asked for (at once if one was
/// already); a shutdown wins. Used while no child leads: with `--hot-standby`, the standby's
/// child is looked after meanwhile (`hot`: started again after it exited, or the replica leaves
/// with it, see [`hot_standby::HotChild::on_standby_event`]); other events do not matter.
async fn leave_requested(
    process: &mut ProcessThread,
    user: &mut UserRequests,
    mut hot: Option<&mut hot_standby::HotChild<'_>>,
) -> Leave {
    loop {
        match (user.shutdown, user.suspend) {
            (Some(sig), _) => {
                tracing::info!("withdrew on {}", crate::core::exit_code::signal_name(sig));
                return Leave::Exit(Exit::Withdrew);
            }
            (None, true) => return Leave::Suspend,
            (None, false) => {}
        }
        let restart_at = hot.as_deref().and_then(|h| h.restart_due());
        tokio::select! {
            event = next_event(process, user) => match (event, hot.as_deref_mut()) {
                (Some(event), Some(hot)) => {
                    if let Some(exit) = hot.on_standby_event(&event, user) {
                        return Leave::Exit(exit);
                    }
                }
                (Some(event), None) => tracing::debug!(?event, "while no child runs"),
                (None, _) => {
                    tracing::error!("the process thread is gone");
                    return Leave::Exit(Exit::Internal);
                }
            },
            _ = until(restart_at) => {
                if let Some(hot) = hot.as_deref_mut() {
                    hot.restart(process);
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever if there is none.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Waits until the lease is reported lost (`LeaseGone`) or its deadline passes (`Deadline`).
async fn lease_lost(mut state: watch::Receiver<LeaseState>) -> StopReason {
    loop {
        let wait = match *state.borrow_and_update() {
            LeaseState::Lost => return StopReason::LeaseGone,
            LeaseState::Alive { safe_until } => safe_until.remaining(),
        };
        if wait.is_zero() {
            return StopReason::Deadline;
        }
        // Re-checked at least every second so a suspend (BootInstant moves, tokio's clock does not)
        // cannot make us miss it.
        let _ = tokio::time::timeout(wait.min(Duration::from_secs(1)), state.changed()).await;
    }
}

/// A step-down request for leadership `revision`: ours, or one that ended (ignored).
fn for_us(revision: i64, me: &Candidacy) -> Option<StopReason> {
    if revision == me.revision {
        return Some(StopReason::Resign);
    }
    tracing::info!(
        revision,
        ours = me.revision,
        "ignoring a step-down request for another leadership"
    );
    None
}

fn deadline_of(cfg: &Config, safe_until: BootInstant) -> LeaseDeadline {
    LeaseDeadline {
        stop_at: cfg.timing.stop_at(safe_until),
        kill_at: cfg.timing.kill_at(safe_until),
    }
}

/// The variables the child gets while it leads. None of their names is an option's environment
/// variable, so a `singleton-exec` run inside the child reads none of them as configuration.
/// `ETCD_LOCK_KEY` and `ETCD_LOCK_REV` carry what `etcdctl lock NAME -- cmd` gives its child, so
/// scripts written for it run unchanged.
pub fn leader_env(cfg: &Config, me: &Candidacy) -> Vec<(String, String)> {
    vec![
        ("ETCD_LOCK_KEY".into(), me.key.clone()),
        ("ETCD_LOCK_REV".into(), me.leads_since.to_string()),
        (
            "SINGLETON_EXEC_LEADER_ELECTION".into(),
            cfg.election.clone(),
        ),
        ("SINGLETON_EXEC_LEADER_ID".into(), cfg.id.clone()),
        ("SINGLETON_EXEC_LEADER_KEY".into(), me.key.clone()),
        ("SINGLETON_EXEC_LEASE_ID".into(), me.lease.to_string()),
        ("SINGLETON_EXEC_REVISION".into(), me.revision.to_string()),
        // 0 for the singleton; the slot (0..N-1) with `--slots N`.
        (
            "SINGLETON_EXEC_SLOT".into(),
            me.slot.unwrap_or(0).to_string(),
        ),
        ("SINGLETON_EXEC_SLOT_COUNT".into(), cfg.slots.to_string()),
        (
            "SINGLETON_EXEC_ETCD_ENDPOINTS".into(),
            cfg.etcd.endpoints.join(","),
        ),
    ]
}

fn policies(cfg: &Config) -> Policies {
    Policies {
        on_child_exit: cfg.on_child_exit,
        on_lease_lost: cfg.on_lease_lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `singleton-exec` (or `status`) run by the child must not read the child's variables as
    /// its configuration: none is an option's variable, nor one of etcdctl's that we fall back to.
    #[test]
    fn the_child_variables_are_no_configuration_of_ours() {
        use clap::{CommandFactory, Parser};
        let cli =
            crate::config::cli::Cli::try_parse_from(["singleton-exec", "--id", "r1", "--", "true"])
                .expect("arguments");
        let cfg = Config::from_args(cli.run).expect("config");
        let me = Candidacy {
            key: "/singleton-exec/true/694d".into(),
            lease: crate::core::lifecycle::LeaseId(0x694d),
            revision: 7,
            leads_since: 9,
            slot: None,
        };
        let mut env = leader_env(&cfg, &me);
        // With --once, the run's variables too.
        let layout = OnceLayout::new("/singleton-exec", "true", "m");
        let run = crate::election::once::Run {
            attempt: 2,
            id: "r1".into(),
            key: me.key.clone(),
            fencing_revision: 7,
            started_at_ms: 0,
            ended: None,
        };
        let begun = crate::election::once::Begun {
            previous: Some(crate::election::once::Run {
                fencing_revision: 5,
                ..run.clone()
            }),
            run,
            attempts: Default::default(),
            attempts_mod: 0,
        };
        env.extend(once::env(&layout, &begun, 3));
        let mut ours: Vec<String> = vec!["SINGLETON_EXEC_LOG".into()];
        let cmd = crate::config::cli::Cli::command();
        let nested = cmd.get_subcommands().flat_map(|c| c.get_subcommands());
        for c in std::iter::once(&cmd)
            .chain(cmd.get_subcommands())
            .chain(nested)
        {
            ours.extend(
                c.get_arguments()
                    .filter_map(|a| a.get_env())
                    .map(|e| e.to_string_lossy().into_owned()),
            );
        }
        for (name, _) in &env {
            assert!(
                !ours.contains(name) && !name.starts_with("ETCDCTL_"),
                "{name}"
            );
        }
        let get = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("ETCD_LOCK_KEY"), Some("/singleton-exec/true/694d"));
        assert_eq!(get("ETCD_LOCK_REV"), Some("9"));
        assert_eq!(get("SINGLETON_EXEC_REVISION"), Some("7"));
        assert_eq!(get("SINGLETON_EXEC_ONCE_NAME"), Some("m"));
        assert_eq!(get("SINGLETON_EXEC_ONCE_ATTEMPT"), Some("2"));
        assert_eq!(get("SINGLETON_EXEC_ONCE_MAX_ATTEMPTS"), Some("3"));
        assert_eq!(get("SINGLETON_EXEC_ONCE_PREVIOUS_REVISION"), Some("5"));
    }
}

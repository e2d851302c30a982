//! The leadership loop: the async side of a replica, which moves it through its lifecycle.
//!
//! ```text
//! run:  loop { standby (campaign) → lead → hold off, or exit }
//! lead: loop { input for the state it is in → transition::step → action }, one exit: release
//! ```
//!
//! [`standby`] gets a lease and waits for leadership (the queue, or a slot with `--slots N`);
//! [`lead`] applies the pure [`transition`] until the leadership is over, then gives the lease up;
//! [`child_health`] runs the leader's health checks of its child and [`health_publisher`] shows the
//! result in etcd. The loop owns the etcd session ([`crate::election::session`]) and the election; the process thread owns the
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
//!   leadership ignores them, so a request that arrived too late never ends a later one.

#![forbid(unsafe_code)]

mod child_health;
mod health_publisher;
mod lead;
mod standby;
pub(crate) mod transition;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::time::{sleep, Instant};

use crate::config::Config;
use crate::core::clock::BootInstant;
use crate::core::exit_code::Exit;
use crate::core::lifecycle::{Policies, StopReason};
use crate::election::connector::Connector;
use crate::election::queue::{Candidacy, Election};
use crate::election::session::LeaseState;
use crate::election::slots::SlotElection;
use crate::process::contract::{Event, LeaseDeadline};
use crate::process::handle::ProcessThread;
use crate::report::http::{self, Endpoints, ResignAuth};
use crate::report::observer::Observer;

/// How long a replica on its way out (it exits next) waits for its lease to be revoked. A revoke
/// takes a millisecond on a healthy etcd; one that cannot be made in a second would only delay
/// the exit (the lease then expires after its TTL, and a standby takes over then), and a replica
/// asked to stop must not wait on an etcd it cannot reach.
pub(crate) const REVOKE_ON_EXIT: Duration = Duration::from_secs(1);

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
}

/// What the loop receives: the process thread's events, step-down requests, and whether a
/// shutdown signal has arrived (sticky).
struct Inputs {
    process: ProcessThread,
    resign: UnboundedReceiver<i64>,
    shutdown: Option<libc::c_int>,
}

/// How one leadership ended.
enum After {
    Exit(Exit),
    /// Campaign again. `former_at`: our key was deleted (an operator's `del --prefix`), and this is
    /// a revision just before that: whoever else led (held a slot) then may still run its child,
    /// so the next campaign waits for them as a standby whose key was deleted does.
    Recampaign {
        holdoff: bool,
        former_at: Option<i64>,
    },
}

/// Runs the replica until it exits. `health` is the listener for the HTTP endpoints, bound by the
/// caller so that a bad address fails at start-up.
pub async fn run(
    cfg: Config,
    process: ProcessThread,
    obs: Arc<Observer>,
    health: Option<std::net::TcpListener>,
) -> Exit {
    let connector = Arc::new(Connector::new(cfg.etcd.clone()));
    let election = Election::new(&cfg.prefix, &cfg.election);
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
    };
    let mut inputs = Inputs {
        process,
        resign,
        shutdown: None,
    };
    let exit = campaign_until_exit(&ctx, &mut inputs).await;
    obs.notifier.stopping();
    exit
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
    tracing::info!(id = %cfg.id, election = %cfg.election, slots = cfg.slots, %key_prefix, timing = %cfg.timing,
        endpoints = ?connector.endpoints(), "singleton-exec starting");
    if let Some(h) = &cfg.health {
        tracing::info!(check = %h.describe(),
            wedged_leader_bound_ms = h.worst_case(cfg.timing.grace).as_millis() as u64,
            "health checks on: a leader whose child fails them steps down");
    }
}

async fn campaign_until_exit(ctx: &Ctx<'_>, inp: &mut Inputs) -> Exit {
    let mut former_at = None;
    loop {
        while inp.resign.try_recv().is_ok() {} // a request that came too late to matter
        let won = match standby::standby(ctx, inp, former_at.take()).await {
            Ok(won) => won,
            Err(exit) => return exit,
        };
        let (holdoff, deleted) = match lead::lead(ctx, inp, won).await {
            After::Exit(exit) => return exit,
            After::Recampaign { holdoff, former_at } => (holdoff, former_at),
        };
        // A singleton's queue had only us at its head before our key was deleted: nobody to
        // wait for. With slots, other holders may still run.
        former_at = deleted.filter(|_| ctx.slots.is_some());
        if holdoff {
            tokio::select! {
                exit = shutdown_requested(&mut inp.process, &mut inp.shutdown) => return exit,
                _ = sleep(ctx.cfg.resign_holdoff) => {}
            }
        }
    }
}

/// The next event from the process thread, recording shutdown signals. `None`: the thread is gone.
async fn next_event(
    process: &mut ProcessThread,
    shutdown: &mut Option<libc::c_int>,
) -> Option<Event> {
    let event = process.events.recv().await;
    if let Some(Event::ShutdownSignal(sig)) = &event {
        shutdown.get_or_insert(*sig);
    }
    event
}

/// Resolves once a shutdown signal has arrived (at once if one did already). Used while no child
/// runs, so other events do not matter.
async fn shutdown_requested(
    process: &mut ProcessThread,
    shutdown: &mut Option<libc::c_int>,
) -> Exit {
    loop {
        if let Some(sig) = *shutdown {
            tracing::info!("withdrew on {}", crate::core::exit_code::signal_name(sig));
            return Exit::Withdrew;
        }
        match next_event(process, shutdown).await {
            Some(event) => tracing::debug!(?event, "while no child runs"),
            None => {
                tracing::error!("the process thread is gone");
                return Exit::Internal;
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
        let env = leader_env(&cfg, &me);
        let mut ours: Vec<String> = vec!["SINGLETON_EXEC_LOG".into()];
        let cmd = crate::config::cli::Cli::command();
        for c in std::iter::once(&cmd).chain(cmd.get_subcommands()) {
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
    }
}

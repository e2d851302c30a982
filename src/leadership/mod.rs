//! The leadership loop: standby → leading → stopping → lost → standby or exit, as named steps.
//!
//! ```text
//! run:    loop { standby → lead → (hold off) }
//! lead:   loop { start the child → run until the tree is gone → decide → apply }
//! ```
//!
//! The loop owns the etcd [`Session`] and the election; the process thread ([`ProcessThread`]) owns the
//! child. Safety does not rest on this loop being scheduled on time: the spawn request carries the
//! lease's fail-closed deadline, every acknowledged keepalive moves it, and the process thread stops
//! the child by itself if it is not moved (see [`crate::process::thread`]). This loop adds the fast paths:
//! kill at once when etcd says the lease is gone or our leader key was deleted.
//!
//! Rules kept here:
//! * no child without a verified leader key and a lease with more than grace + margin left;
//! * the lease is given up (`finish`, the one release path) only after the child's whole tree is
//!   gone;
//! * what follows a child's tree is [`decide`]d by one pure function; a shutdown request always
//!   wins, and once one arrived the replica never campaigns or starts a child again;
//! * step-down requests (`POST /resign`, and through etcd, [`crate::election::step_down`], on the candidacy's
//!   watch stream) name the fencing revision of the leadership they are for; any other leadership
//!   ignores them, so a request that arrived too late never ends a later one.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};

use crate::config::Config;
use crate::core::clock::BootInstant;
use crate::core::exit_code::{ChildStatus, Exit};
use crate::core::lifecycle::{decide, Next, Phase, Policies, StopReason};
use crate::election::candidacy_watch::CandidacyWatch;
use crate::election::connector::{Connector, EtcdError};
use crate::election::queue::{self, Candidacy, Election, HealthRecord};
use crate::election::session::{LeaseState, Revoked, Session};
use crate::election::slots::{Joined, Mismatch, SlotElection};
use crate::health::{self, Monitor, Outcome, Report, Verdict};
use crate::process::contract::{Event, LeaseDeadline, Request};
use crate::process::handle::ProcessThread;
use crate::report::http::{self, Endpoints, ResignAuth};
use crate::report::observer::Observer;

/// A child restarted under `--on-child-exit restart` that ran this long resets the backoff.
const RESTART_RESET_AFTER: Duration = Duration::from_secs(10);
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(500);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Short enough that a standby is back in the queue soon after an etcd outage ends.
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(2);

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
    sup: ProcessThread,
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
    sup: ProcessThread,
    obs: Arc<Observer>,
    health: Option<std::net::TcpListener>,
) -> Exit {
    let connector = Arc::new(Connector::new(cfg.etcd.clone()));
    let election = Election::new(&cfg.prefix, &cfg.election);
    let (resign_tx, resign) = unbounded_channel();
    if let Some(listener) = health {
        let listen = listener.local_addr().ok();
        let endpoints = Endpoints {
            observer: obs.clone(),
            election: election.clone(),
            connector: connector.clone(),
            resign: resign_tx.clone(),
            resign_auth: ResignAuth::new(listen, cfg.resign_token.clone()),
            slots: cfg.slots,
        };
        tokio::spawn(http::serve(listener, Arc::new(endpoints)));
    }
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
    obs.notifier.ready();
    let key_prefix = match cfg.slots {
        1 => election.dir().to_owned(),
        n => SlotElection::of(&election, n).dir().to_owned(),
    };
    tracing::info!(id = %cfg.id, election = %cfg.election, slots = cfg.slots, %key_prefix, timing = %cfg.timing,
        endpoints = ?connector.endpoints(), "singleton-exec starting");
    if let Some(h) = &cfg.health {
        tracing::info!(check = %h.describe(),
            wedged_leader_bound_ms = h.worst_case(cfg.timing.grace).as_millis() as u64,
            "health checks on: a leader whose child fails them steps down");
    }
    let ctx = Ctx {
        cfg: &cfg,
        obs: &obs,
        connector,
        slots: (cfg.slots > 1).then(|| SlotElection::new(&cfg.prefix, &cfg.election, cfg.slots)),
        election,
        step_down: resign_tx,
    };
    let mut inputs = Inputs {
        sup,
        resign,
        shutdown: None,
    };
    let exit = campaign_until_exit(&ctx, &mut inputs).await;
    obs.notifier.stopping();
    exit
}

async fn campaign_until_exit(ctx: &Ctx<'_>, inp: &mut Inputs) -> Exit {
    let mut former_at = None;
    loop {
        while inp.resign.try_recv().is_ok() {} // a request that came too late to matter
        let (session, me, watch) = match standby(ctx, inp, former_at.take()).await {
            Ok(won) => won,
            Err(exit) => return exit,
        };
        match lead(ctx, inp, session, me, watch).await {
            After::Exit(exit) => return exit,
            After::Recampaign {
                holdoff,
                former_at: deleted,
            } if holdoff => {
                former_at = deleted.filter(|_| ctx.slots.is_some());
                let held = tokio::select! {
                    exit = shutdown_requested(&mut inp.sup, &mut inp.shutdown) => Some(exit),
                    _ = sleep(ctx.cfg.resign_holdoff) => None,
                };
                if let Some(exit) = held {
                    return exit;
                }
            }
            // A singleton's queue had only us at its head before our key was deleted: nobody to
            // wait for. With slots, other holders may still run.
            After::Recampaign { former_at: f, .. } => former_at = f.filter(|_| ctx.slots.is_some()),
        }
    }
}

/// The next event from the process thread, recording shutdown signals. `None`: the thread is gone.
async fn next_event(sup: &mut ProcessThread, shutdown: &mut Option<libc::c_int>) -> Option<Event> {
    let event = sup.events.recv().await;
    if let Some(Event::ShutdownSignal(sig)) = &event {
        shutdown.get_or_insert(*sig);
    }
    event
}

/// Resolves once a shutdown signal has arrived (at once if one did already). Used while no child
/// runs, so other events do not matter.
async fn shutdown_requested(sup: &mut ProcessThread, shutdown: &mut Option<libc::c_int>) -> Exit {
    loop {
        if let Some(sig) = *shutdown {
            tracing::info!("withdrew on {}", crate::core::exit_code::signal_name(sig));
            return Exit::Withdrew;
        }
        match next_event(sup, shutdown).await {
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

/// Standby: get a lease, join the queue, wait for our turn, verify. Returns the session and our
/// candidacy, or how to exit.
async fn standby(
    ctx: &Ctx<'_>,
    inp: &mut Inputs,
    former_at: Option<i64>,
) -> Result<(Session, Candidacy, CandidacyWatch), Exit> {
    let acquire_by = ctx.cfg.acquire_timeout.map(|d| Instant::now() + d);
    let last_error = RefCell::new(String::from("none"));
    let timed_out = || {
        tracing::error!(id = %ctx.cfg.id, election = %ctx.cfg.election, last_error = %last_error.borrow(),
            "--acquire-timeout passed before this replica became leader");
        Exit::AcquireTimeout
    };
    loop {
        let session = tokio::select! {
            exit = shutdown_requested(&mut inp.sup, &mut inp.shutdown) => return Err(exit),
            _ = until(acquire_by) => return Err(timed_out()),
            r = grant_with_retries(ctx, &last_error) => r.map_err(|e| rejected(&e))?,
        };
        let outcome = tokio::select! {
            exit = shutdown_requested(&mut inp.sup, &mut inp.shutdown) => Err(exit),
            _ = until(acquire_by) => Err(timed_out()),
            reason = lease_lost(session.state()) => Ok(Err(reason)),
            r = campaign(ctx, &session, &last_error, former_at) => Ok(Ok(r)),
        };
        match outcome {
            Ok(Ok(Ok((me, watch)))) => return Ok((session, me, watch)),
            Ok(Err(reason)) => {
                tracing::warn!(id = %ctx.cfg.id, lease = %session.lease_id, %reason,
                    "lease lost while standby; taking a new one");
                // The key may outlive our view of the lease: take it out of the queue.
                session.revoke(ctx.connector.request_timeout()).await;
            }
            Ok(Ok(Err(refused))) => {
                session.revoke(ctx.connector.request_timeout()).await;
                return Err(match refused {
                    Refused::Etcd(e) => rejected(&e),
                    Refused::Slots(m) => mismatched(ctx, &m),
                });
            }
            Err(exit) => {
                session.revoke(ctx.connector.request_timeout()).await;
                return Err(exit);
            }
        }
    }
}

/// Grants a lease, retrying with backoff while etcd is unavailable; `Err` only when rejected.
async fn grant_with_retries(
    ctx: &Ctx<'_>,
    last_error: &RefCell<String>,
) -> Result<Session, EtcdError> {
    let mut backoff = Backoff::new(RETRY_BACKOFF_MIN, RETRY_BACKOFF_MAX);
    loop {
        match Session::grant(ctx.connector.clone(), ctx.cfg.timing, ctx.obs.clone()).await {
            Ok(s) => return Ok(s),
            Err(e) if e.is_rejected() => return Err(e),
            Err(e) => {
                let wait = backoff.step();
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot get a lease from etcd; retrying");
                *last_error.borrow_mut() = e.to_string();
                sleep(wait).await;
            }
        }
    }
}

fn mismatched(ctx: &Ctx<'_>, m: &Mismatch) -> Exit {
    tracing::error!(election = %ctx.cfg.election, slots = ctx.cfg.slots, found = %m,
        "every replica of an election must use the same --slots: refusing to run");
    Exit::Usage
}

/// Why a campaign cannot go on, ever.
enum Refused {
    /// etcd rejected us (credentials, permissions).
    Etcd(EtcdError),
    /// The election runs with another slot count.
    Slots(Mismatch),
}

fn rejected(e: &EtcdError) -> Exit {
    tracing::error!(error = %e, "etcd refused this replica on every endpoint; check --user/--password, TLS files and the role's permissions");
    Exit::EtcdRejected
}

/// Joins the queue and waits for our turn, retrying while etcd is unavailable. `Err` only when
/// etcd rejects us or shows another slot count.
async fn campaign(
    ctx: &Ctx<'_>,
    session: &Session,
    last_error: &RefCell<String>,
    former_at: Option<i64>,
) -> Result<(Candidacy, CandidacyWatch), Refused> {
    // When our key was deleted (an operator's `del --prefix`), while we waited or while we led:
    // a revision at which the queue (the slots) still had its former holders, so that leading at
    // the next join first waits for them. Kept until a campaign succeeds: a retried join must
    // wait too.
    let former_at: Cell<Option<i64>> = Cell::new(former_at);
    if let Some(slots) = &ctx.slots {
        return campaign_for_slot(ctx, slots, session, last_error, &former_at).await;
    }
    let mut backoff = Backoff::new(RETRY_BACKOFF_MIN, RETRY_BACKOFF_MAX);
    loop {
        let (election, id, lease) = (&ctx.election, ctx.cfg.id.as_str(), session.lease_id);
        let obs: &Observer = ctx.obs;
        let (connector, step_down) = (ctx.connector.clone(), ctx.step_down.clone());
        let former_at = &former_at;
        let attempt = ctx
            .connector
            .call(|mut client| async move {
                let (mut me, leads, joined_at) = match election.join(&mut client, lease, id).await?
                {
                    queue::Joined::Queued { me, leads, at } => (me, leads, at),
                    queue::Joined::SlotsInUse(n) => return Ok(Err(Mismatch::Slots(n))),
                };
                obs.enter(Phase::Standby {
                    lease: me.lease,
                    key: me.key.clone(),
                    revision: me.revision,
                });
                // Our key, step-down requests and the candidate ahead, on one stream from now on.
                let mut watch =
                    CandidacyWatch::start(connector, election, &me, joined_at, step_down);
                if leads {
                    election
                        .wait_former_head(&mut client, &me, former_at.get())
                        .await?;
                } else {
                    match election.wait_turn(&mut client, &me, &mut watch).await {
                        Ok(at) => me.leads_since = at,
                        Err(e) => {
                            remember_deletion(former_at, &watch);
                            return Err(e);
                        }
                    }
                }
                Ok(Ok((me, watch)))
            })
            .await;
        if let Some(done) = settled(attempt, &mut backoff, last_error).await {
            return done;
        }
    }
}

/// What one campaign attempt came to: `Some` to return it, `None` (after a backoff pause) to try
/// again.
async fn settled<T>(
    attempt: Result<Result<T, Mismatch>, EtcdError>,
    backoff: &mut Backoff,
    last_error: &RefCell<String>,
) -> Option<Result<T, Refused>> {
    match attempt {
        Ok(Ok(won)) => Some(Ok(won)),
        Ok(Err(m)) => Some(Err(Refused::Slots(m))),
        Err(e) if e.is_rejected() => Some(Err(Refused::Etcd(e))),
        Err(e) => {
            let wait = backoff.step();
            tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "campaign interrupted; retrying");
            *last_error.borrow_mut() = e.to_string();
            sleep(wait).await;
            None
        }
    }
}

/// The campaign failed: if it was because our key is gone, remember just before the deletion, if
/// the watch saw it, else the last revision our key was known to exist at (whoever led ahead of it
/// did too). Any other failure (etcd unavailable) keeps what was remembered: a later revision would
/// hide the holders of the deletion that still matters.
fn remember_deletion(former_at: &Cell<Option<i64>>, watch: &CandidacyWatch) {
    if !watch.was_deleted() {
        return;
    }
    let at = watch
        .deleted_at()
        .map(|d| d - 1)
        .unwrap_or(watch.alive_at());
    former_at.set(Some(former_at.get().map_or(at, |f| f.max(at))));
}

/// [`campaign`] with `--slots N`, N > 1: joins the standby queue and, first in it, claims a free
/// slot ([`crate::election::slots`]). The returned candidacy is the slot's, watched from its claim.
async fn campaign_for_slot(
    ctx: &Ctx<'_>,
    slots: &SlotElection,
    session: &Session,
    last_error: &RefCell<String>,
    former_at: &Cell<Option<i64>>,
) -> Result<(Candidacy, CandidacyWatch), Refused> {
    let mut backoff = Backoff::new(RETRY_BACKOFF_MIN, RETRY_BACKOFF_MAX);
    loop {
        let (election, id, lease) = (&ctx.election, ctx.cfg.id.as_str(), session.lease_id);
        let obs: &Observer = ctx.obs;
        let (connector, step_down) = (ctx.connector.clone(), ctx.step_down.clone());
        let attempt = ctx
            .connector
            .call(|mut client| async move {
                let holder = match slots.join(&mut client, lease, id).await? {
                    Joined::Refused(m) => return Ok(Err(m)),
                    Joined::Holding(holder) => holder,
                    Joined::Standby(me, joined_at) => {
                        obs.enter(Phase::Standby {
                            lease: me.lease,
                            key: me.key.clone(),
                            revision: me.revision,
                        });
                        let mut watch = CandidacyWatch::start(
                            connector.clone(),
                            election,
                            &me,
                            joined_at,
                            step_down.clone(),
                        );
                        let taken = slots
                            .take_slot(&mut client, &me, id, &mut watch, former_at.get())
                            .await;
                        if taken.is_err() {
                            remember_deletion(former_at, &watch);
                        }
                        taken?
                    }
                };
                tracing::debug!(slot = ?holder.slot, revision = holder.revision, "slot claimed");
                // The slot key and step-down requests from the claim on.
                let watch = CandidacyWatch::start(
                    connector,
                    election,
                    &holder,
                    holder.leads_since,
                    step_down,
                );
                Ok(Ok((holder, watch)))
            })
            .await;
        if let Some(done) = settled(attempt, &mut backoff, last_error).await {
            return done;
        }
    }
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

/// Why a child could not be started.
enum NotStarted {
    /// Leadership ended before the child could start (lease too short, shutdown).
    Ended(StopReason),
    /// exec failed, or the process thread is gone: exit with this.
    Failed(Exit),
}

/// Leader: start the child, run until its tree is gone, decide, apply; again while restarting.
async fn lead(
    ctx: &Ctx<'_>,
    inp: &mut Inputs,
    session: Session,
    me: Candidacy,
    mut key: CandidacyWatch,
) -> After {
    let key = &mut key;
    let mut restarts = Backoff::new(RESTART_BACKOFF_MIN, RESTART_BACKOFF_MAX);
    let mut last: Option<ChildStatus> = None;
    loop {
        let started_at = Instant::now();
        // A restart comes after a pause: the key may have been deleted meanwhile.
        if last.is_some() && !still_ours(ctx, &me).await {
            let next = decide(
                StopReason::KeyDeleted,
                inp.shutdown.is_some(),
                last.unwrap_or(ChildStatus::Exited(0)),
                policies(ctx.cfg),
            );
            // Found gone by the read, perhaps before the watch saw it.
            let former_at = deleted_before(key).or(Some(key.alive_at()));
            return finish(
                ctx,
                session,
                &me,
                Some(StopReason::KeyDeleted),
                next,
                former_at,
            )
            .await;
        }
        let pid = match start_child(ctx, inp, &session, &me).await {
            Ok(pid) => pid,
            Err(NotStarted::Failed(exit)) => {
                return finish(
                    ctx,
                    session,
                    &me,
                    None,
                    Next::Exit(exit),
                    deleted_before(key),
                )
                .await
            }
            Err(NotStarted::Ended(reason)) => {
                let status = last.unwrap_or(ChildStatus::Exited(0));
                let next = match decide(reason, inp.shutdown.is_some(), status, policies(ctx.cfg)) {
                    // No child ran this time: a shutdown exits with the last child's status, if any.
                    Next::Exit(Exit::Child(_)) if last.is_none() => Next::Exit(Exit::Withdrew),
                    next => next,
                };
                return finish(ctx, session, &me, Some(reason), next, deleted_before(key)).await;
            }
        };
        ctx.obs.enter(Phase::Leading {
            lease: me.lease,
            key: me.key.clone(),
            revision: me.revision,
            pid,
            slot: me.slot,
        });
        let health = ctx.cfg.health.as_ref().map(|h| {
            let (monitor, results) = Monitor::new(h, Instant::now());
            let health = Health {
                monitor,
                env: leader_env(ctx.cfg, &me),
                publish: HealthPublisher::start(ctx, &me),
            };
            (health, results)
        });
        let Some((status, reason)) =
            run_until_tree_gone(ctx, inp, &session, &me, key, health).await
        else {
            return After::Exit(Exit::Internal);
        };
        last = Some(status);
        let next = decide(reason, inp.shutdown.is_some(), status, policies(ctx.cfg));
        ctx.obs.child_exited(status.code(), next == Next::Restart);
        if next != Next::Restart {
            return finish(ctx, session, &me, Some(reason), next, deleted_before(key)).await;
        }
        if started_at.elapsed() >= RESTART_RESET_AFTER {
            restarts.reset();
        }
        let wait = restarts.step();
        tracing::info!(id = %ctx.cfg.id, %status, restart_in_ms = wait.as_millis() as u64,
            "child exited; restarting (--on-child-exit=restart)");
        if let Some(reason) = wait_to_restart(inp, &session, &me, key, wait).await {
            let next = decide(reason, inp.shutdown.is_some(), status, policies(ctx.cfg));
            return finish(ctx, session, &me, Some(reason), next, deleted_before(key)).await;
        }
    }
}

/// Whether our leader key is still ours. When etcd cannot tell us, yes: the lease deadline still
/// holds, and the key watch still runs.
async fn still_ours(ctx: &Ctx<'_>, me: &Candidacy) -> bool {
    let election = &ctx.election;
    let read = ctx
        .connector
        .call(|mut c| async move { election.verify(&mut c, me).await });
    match tokio::time::timeout(ctx.connector.request_timeout(), read).await {
        Ok(Ok(None)) => false,
        Ok(Ok(Some(_))) | Ok(Err(_)) | Err(_) => true,
    }
}

/// Asks the process thread to start the child under the lease's current deadline.
async fn start_child(
    ctx: &Ctx<'_>,
    inp: &mut Inputs,
    session: &Session,
    me: &Candidacy,
) -> Result<libc::pid_t, NotStarted> {
    let LeaseState::Alive { safe_until } = session.current() else {
        return Err(NotStarted::Ended(StopReason::Deadline));
    };
    inp.sup.request(Request::Spawn {
        command: ctx.cfg.command.clone(),
        env: leader_env(ctx.cfg, me),
        deadline: deadline_of(ctx.cfg, safe_until),
    });
    loop {
        match next_event(&mut inp.sup, &mut inp.shutdown).await {
            Some(Event::Started { pid }) => return Ok(pid),
            Some(Event::SpawnFailed(e)) => {
                tracing::error!(error = %e, code = e.exit_code(), "cannot start the command");
                return Err(NotStarted::Failed(e.exit()));
            }
            Some(Event::SpawnRefused(reason)) => {
                tracing::warn!(%reason, "the child was not started");
                return Err(NotStarted::Ended(reason));
            }
            Some(_) => {} // a shutdown signal is recorded; the process thread refuses or stops
            None => return Err(NotStarted::Failed(Exit::Internal)),
        }
    }
}

/// Runs while the child's tree exists: moves the deadline on every acknowledged keepalive, asks for
/// the stop when leadership ends or a step-down is requested. Returns the main child's status and
/// why its tree ended, or `None` if the process thread is gone.
async fn run_until_tree_gone(
    ctx: &Ctx<'_>,
    inp: &mut Inputs,
    session: &Session,
    me: &Candidacy,
    key: &mut CandidacyWatch,
    health: Option<(Health, health::Results)>,
) -> Option<(ChildStatus, StopReason)> {
    // Apart, so the loop can wait for the next check and for a result at once.
    let (mut health, mut results) = health.unzip();
    let mut state = session.state();
    // Once the keepalive task has ended, `changed()` returns at once forever: stop listening.
    let mut lease_open = true;
    let mut key_deleted = false;
    // What we asked for first: it still counts if the child happened to exit by itself meanwhile
    // (a step-down must not turn into a restart).
    let mut requested: Option<StopReason> = None;
    // Once a stop is under way, whoever began it (the child exited and left processes behind, the
    // deadline, a signal), health results mean nothing and no check starts.
    let mut stopping = false;
    loop {
        let stop = tokio::select! {
            event = next_event(&mut inp.sup, &mut inp.shutdown) => match event? {
                Event::Finished { status, reason } => {
                    return Some((status, final_reason(reason, requested)));
                }
                event => on_event(ctx, me, event, health.as_mut(), &mut stopping),
            },
            _ = check_due(health.as_ref()), if requested.is_none() && !stopping => {
                if let Some(h) = &mut health {
                    h.start_check(&inp.sup);
                }
                None
            }
            Some((id, outcome)) = check_result(results.as_mut()) => {
                health.as_mut().and_then(|h| h.record(ctx, id, outcome))
                    .filter(|_| requested.is_none() && !stopping)
            }
            changed = state.changed(), if lease_open => {
                lease_open = changed.is_ok();
                match *state.borrow_and_update() {
                    LeaseState::Alive { safe_until } if lease_open => {
                        inp.sup.request(Request::Extend(deadline_of(ctx.cfg, safe_until)));
                        None
                    }
                    _ => Some(StopReason::LeaseGone),
                }
            }
            Some(revision) = inp.resign.recv() => for_us(revision, me),
            _ = key.own_deleted(), if !key_deleted => {
                key_deleted = true;
                Some(StopReason::KeyDeleted)
            }
        };
        if let Some(reason) = stop {
            requested.get_or_insert(reason);
            inp.sup.request(Request::Stop(reason));
        }
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

/// Why the tree ended, as the loop decides on it: what was asked first still counts if the child
/// exited by itself meanwhile (a step-down must not turn into a restart), except a health verdict,
/// which never outranks the child's own exit (its status and `--on-child-exit` apply).
fn final_reason(reported: StopReason, requested: Option<StopReason>) -> StopReason {
    match (reported, requested) {
        (StopReason::ChildExited, Some(asked)) if asked != StopReason::Unhealthy => asked,
        _ => reported,
    }
}

/// A process-thread event while the tree runs (but its end): `Some` if it asks for a stop.
fn on_event(
    ctx: &Ctx<'_>,
    me: &Candidacy,
    event: Event,
    health: Option<&mut Health>,
    stopping: &mut bool,
) -> Option<StopReason> {
    match event {
        Event::Stopping { reason, kill_in } => {
            *stopping = true;
            ctx.obs.enter(Phase::Stopping {
                key: me.key.clone(),
                revision: me.revision,
                reason,
                kill_in,
            });
            None
        }
        Event::ShutdownSignal(_) => {
            ctx.obs.notifier.stopping();
            None
        }
        Event::ResignSignal => Some(StopReason::Resign),
        Event::CheckEnded { id, exit, output } => {
            if let Some(h) = health {
                h.monitor.check_ended(id, exit, &output);
            }
            None
        }
        _ => None,
    }
}

/// The health checks of one child: the monitor, the environment a
/// command check gets (the child's), and the task that shows the result in etcd for `status`.
struct Health {
    monitor: Monitor,
    env: Vec<(String, String)>,
    publish: HealthPublisher,
}

impl Health {
    fn start_check(&mut self, sup: &ProcessThread) {
        if let Some(c) = self.monitor.start() {
            sup.request(Request::Check {
                id: c.id,
                command: c.command,
                env: self.env.clone(),
                timeout: c.timeout,
            });
        }
    }

    /// Reports a result; `Some(Unhealthy)` when the leader must step down.
    fn record(&mut self, ctx: &Ctx<'_>, id: u64, outcome: Outcome) -> Option<StopReason> {
        let report = self.monitor.record(id, outcome)?;
        ctx.obs.health_checked(&report);
        self.publish.show(&report);
        let took_ms = report.took.as_millis() as u64;
        match (&report.verdict, &report.outcome) {
            (Verdict::Healthy, _) => {
                tracing::debug!(took_ms, "health check passed");
                None
            }
            (Verdict::Ignored, Outcome::Failed(why)) => {
                tracing::info!(%why, took_ms, "health check failed during --health-start-period: not counted");
                None
            }
            (Verdict::Failing(n), Outcome::Failed(why)) => {
                tracing::warn!(%why, failures = n, retries = report.retries, took_ms, "health check failed");
                None
            }
            (Verdict::Unhealthy(n), Outcome::Failed(why)) => {
                tracing::warn!(%why, failures = n, retries = report.retries, took_ms,
                    "health check failed {n} times in a row: stepping down so a standby takes over");
                ctx.obs.health_step_down();
                Some(StopReason::Unhealthy)
            }
            (_, Outcome::Healthy) => None,
        }
    }
}

async fn check_due(health: Option<&Health>) {
    match health {
        Some(h) => h.monitor.due().await,
        None => std::future::pending().await,
    }
}

async fn check_result(results: Option<&mut health::Results>) -> Option<(u64, Outcome)> {
    match results {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// Shows the leader's last health result in etcd, at `PREFIX/NAME@health` under the leader's
/// lease, so `singleton-exec status` can print it from anywhere. Written only when what it shows
/// changes (healthy or not, the failure count), by a task of its own: never in the loop's way, the
/// latest value wins, and a failed write costs nothing but the display.
struct HealthPublisher {
    shown: watch::Sender<Option<HealthShown>>,
    task: JoinHandle<()>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HealthShown {
    healthy: bool,
    failures: u32,
    detail: String,
}

impl HealthPublisher {
    fn start(ctx: &Ctx<'_>, me: &Candidacy) -> HealthPublisher {
        let (shown, mut rx) = watch::channel::<Option<HealthShown>>(None);
        let (connector, election, me) = (ctx.connector.clone(), ctx.election.clone(), me.clone());
        let key = match (&ctx.slots, me.slot) {
            (Some(slots), Some(slot)) => slots.health_key(slot),
            _ => election.health_key(),
        };
        let (id, retries) = (
            ctx.cfg.id.clone(),
            ctx.cfg.health.as_ref().map_or(0, |h| h.retries),
        );
        let task = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let Some(s) = rx.borrow_and_update().clone() else {
                    continue;
                };
                let value = HealthRecord {
                    id: id.clone(),
                    key: me.key.clone(),
                    revision: me.revision,
                    healthy: s.healthy,
                    consecutive_failures: s.failures,
                    retries,
                    last: s.detail,
                };
                let (election, lease, key) = (&election, me.lease, key.as_str());
                // A permission error comes back as Ok(Err): it is no fault of the endpoint, so
                // the connector must not count it (and switch endpoints) as a rejection.
                let put = connector.call(|mut c| {
                    let value = value.clone();
                    async move {
                        match election.put_health(&mut c, key, lease, &value).await {
                            Err(EtcdError::Rejected(why)) => Ok(Err(why)),
                            other => other.map(Ok),
                        }
                    }
                });
                match tokio::time::timeout(connector.request_timeout(), put).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(why))) => {
                        tracing::warn!(%key, error = %why,
                            "cannot show health results in etcd (grant write on this key): `status` shows none");
                        return;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "cannot show the health result in etcd")
                    }
                    Err(_) => tracing::debug!("showing the health result in etcd timed out"),
                }
            }
        });
        HealthPublisher { shown, task }
    }

    fn show(&self, report: &Report) {
        let s = HealthShown {
            healthy: matches!(report.outcome, Outcome::Healthy),
            failures: report.failures,
            detail: match &report.outcome {
                Outcome::Healthy => "healthy".into(),
                Outcome::Failed(why) => why.clone(),
            },
        };
        // Only a change of state is written; a new failure detail alone is not worth a write.
        self.shown.send_if_modified(|cur| {
            let changed = cur
                .as_ref()
                .is_none_or(|c| c.healthy != s.healthy || c.failures != s.failures);
            if changed {
                *cur = Some(s);
            }
            changed
        });
    }
}

impl Drop for HealthPublisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Between two children under `--on-child-exit=restart`: `Some(reason)` if leadership ends (or a
/// shutdown arrives) before it is time to restart.
async fn wait_to_restart(
    inp: &mut Inputs,
    session: &Session,
    me: &Candidacy,
    key: &mut CandidacyWatch,
    wait: Duration,
) -> Option<StopReason> {
    let until = Instant::now() + wait;
    loop {
        let ended = tokio::select! {
            _ = shutdown_requested(&mut inp.sup, &mut inp.shutdown) => {
                inp.shutdown.map(StopReason::Shutdown)
            }
            reason = lease_lost(session.state()) => Some(reason),
            _ = key.own_deleted() => Some(StopReason::KeyDeleted),
            Some(revision) = inp.resign.recv() => match for_us(revision, me) {
                None => continue, // for another leadership: keep waiting
                asked => asked,
            },
            _ = tokio::time::sleep_until(until) => None,
        };
        return ended;
    }
}

/// When our key was deleted while we led (not by our own revoke, which comes later): a revision
/// just before that, for the next campaign (see [`After::Recampaign`]).
fn deleted_before(key: &CandidacyWatch) -> Option<i64> {
    key.was_deleted()
        .then(|| key.deleted_at().map_or(key.alive_at(), |d| d - 1))
}

/// The one release path: the child's tree is gone; give the lease up (revoke, so a standby takes
/// over at once), record how leadership ended, and say what comes next. `former_at`: see
/// [`deleted_before`].
async fn finish(
    ctx: &Ctx<'_>,
    session: Session,
    me: &Candidacy,
    reason: Option<StopReason>,
    next: Next,
    former_at: Option<i64>,
) -> After {
    // After a lease loss the lease is expired or about to be: revoking can only save a standby the
    // last margin, so it is not worth waiting long for an etcd that may be unreachable.
    let within = match reason {
        Some(r) if r.is_lease_loss() => ctx.cfg.timing.margin + Duration::from_secs(1),
        _ => ctx.connector.request_timeout() * 2,
    };
    let revoked = session.revoke(within).await;
    if let Some(reason) = reason {
        ctx.obs.enter(Phase::Lost {
            key: me.key.clone(),
            revision: me.revision,
            reason,
        });
    }
    let given_up = match &revoked {
        Revoked::Now => "lease revoked",
        Revoked::AlreadyGone => "lease already gone",
        Revoked::Failed(_) => "lease not revoked: it expires after its TTL",
    };
    match next {
        Next::Exit(exit) => {
            tracing::info!(id = %ctx.cfg.id, code = exit.code(), "leadership given up ({given_up}); exiting");
            After::Exit(exit)
        }
        Next::Recampaign { holdoff } => {
            tracing::info!(id = %ctx.cfg.id, holdoff, "leadership given up ({given_up}); campaigning again");
            After::Recampaign { holdoff, former_at }
        }
        Next::Restart => After::Recampaign {
            holdoff: false,
            former_at,
        },
    }
}

/// Exponential backoff for retries.
struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            next: min,
            min,
            max,
        }
    }
    fn step(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
    fn reset(&mut self) {
        self.next = self.min;
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

    #[test]
    fn the_reason_a_tree_ended() {
        use StopReason as R;
        let rows = [
            (R::ChildExited, None, R::ChildExited),
            (R::ChildExited, Some(R::Resign), R::Resign),
            (R::ChildExited, Some(R::KeyDeleted), R::KeyDeleted),
            // The child's own exit wins over a health verdict that came while it was exiting.
            (R::ChildExited, Some(R::Unhealthy), R::ChildExited),
            (R::Unhealthy, Some(R::Unhealthy), R::Unhealthy),
            (R::Deadline, Some(R::Resign), R::Deadline),
        ];
        for (reported, requested, want) in rows {
            assert_eq!(
                final_reason(reported, requested),
                want,
                "{reported:?} {requested:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
        let steps: Vec<u64> = (0..6).map(|_| b.step().as_millis() as u64).collect();
        assert_eq!(steps, [200, 400, 800, 1600, 2000, 2000]);
        b.reset();
        assert_eq!(b.step(), Duration::from_millis(200));
    }
}

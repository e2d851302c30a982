//! The leadership loop: standby → leader → (stopping) → standby or exit.
//!
//! A replica is always in one [`Role`]; each change is logged once, with the fields that explain it.
//! The loop owns the etcd [`Session`] and the election; the process thread ([`Supervisor`]) owns the
//! child. Safety does not rest on this loop being scheduled on time: the spawn request carries the
//! lease's fail-closed deadline, every acknowledged keepalive moves it, and the process thread stops
//! the child by itself if it is not moved (see [`crate::supervisor`]). This loop adds the fast paths:
//! stop at once when etcd says the lease is gone or our leader key was deleted.
//!
//! Rules kept here:
//! * no child without a verified leader key and a lease with more than grace + margin left;
//! * the lease is revoked only after the child's whole tree is gone;
//! * SIGTERM/SIGINT: a standby withdraws at once; a leader stops its child first.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::sync::watch;
use tokio::time::{sleep, Instant};

use crate::cli::{OnChildExit, OnLeaseLost};
use crate::clock::BootInstant;
use crate::config::Config;
use crate::election::{Candidacy, Election};
use crate::etcd::{Connector, EtcdError};
use crate::exit_code;
use crate::http::{self, Endpoints};
use crate::observer::{Observer, RoleName};
use crate::session::{LeaseState, Session};
use crate::supervisor::{Event, LeaseDeadline, Request, StopReason, Supervisor};

/// A child restarted under `--on-child-exit restart` that ran this long resets the backoff.
const RESTART_RESET_AFTER: Duration = Duration::from_secs(10);
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(500);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Short enough that a standby is back in the queue soon after an etcd outage ends.
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The lifecycle of a replica; each variant holds what is valid in that state.
#[derive(Debug)]
enum Role<'a> {
    /// Waiting in the queue with a live lease.
    Standby {
        lease: i64,
        key: &'a str,
        revision: i64,
    },
    /// Leading: the key is verified and the child runs.
    Leader {
        lease: i64,
        key: &'a str,
        revision: i64,
        pid: libc::pid_t,
    },
    /// The child's tree is being stopped.
    Stopping {
        key: &'a str,
        revision: i64,
        reason: &'a StopReason,
        kill_in: Duration,
    },
    /// Leadership is gone (or given up); the child's tree is gone.
    Lost {
        key: &'a str,
        revision: i64,
        why: &'a str,
    },
}

/// Logs a role change as one structured event.
fn transition(cfg: &Config, obs: &Observer, role: Role<'_>) {
    let (id, election) = (cfg.id.as_str(), cfg.election.as_str());
    match &role {
        Role::Standby {
            lease,
            key,
            revision,
        } => obs.transition(
            RoleName::Standby,
            Some(key),
            Some(*revision),
            Some(*lease),
            "waiting for leadership",
        ),
        Role::Leader {
            lease,
            key,
            revision,
            pid,
        } => {
            obs.transition(
                RoleName::Leader,
                Some(key),
                Some(*revision),
                Some(*lease),
                "child started",
            );
            obs.child_started(*pid);
        }
        Role::Stopping {
            key,
            revision,
            reason,
            ..
        } => obs.transition(
            RoleName::Stopping,
            Some(key),
            Some(*revision),
            None,
            &reason.to_string(),
        ),
        Role::Lost { key, revision, why } => {
            obs.transition(RoleName::Lost, Some(key), Some(*revision), None, why)
        }
    }
    match role {
        Role::Standby {
            lease,
            key,
            revision,
        } => {
            tracing::info!(role = "standby", id, election, key, revision, lease = %format!("{lease:x}"), "standby: waiting for leadership")
        }
        Role::Leader {
            lease,
            key,
            revision,
            pid,
        } => tracing::info!(
            role = "leader", id, election, key, revision, lease = %format!("{lease:x}"), pid,
            "leader: child started (fencing revision {revision})"
        ),
        Role::Stopping {
            key,
            revision,
            reason,
            kill_in,
        } => tracing::warn!(
            role = "stopping", id, election, key, revision, reason = %reason, kill_in_ms = kill_in.as_millis() as u64,
            "stopping the child: {reason}"
        ),
        Role::Lost { key, revision, why } => {
            tracing::warn!(
                role = "lost",
                id,
                election,
                key,
                revision,
                why,
                "leadership lost: {why}"
            )
        }
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

/// How a phase ended.
enum Outcome {
    Exit(i32),
    Recampaign,
}

/// Runs the replica until it exits; returns the process exit code.
/// `health` is the listener for the HTTP endpoints, bound by the caller so that a bad address fails
/// at start-up.
pub async fn run(
    cfg: Config,
    mut sup: Supervisor,
    obs: Arc<Observer>,
    health: Option<std::net::TcpListener>,
) -> i32 {
    let connector = Arc::new(Connector::new(cfg.etcd.clone()));
    let election = Election::new(&cfg.prefix, &cfg.election);
    let (resign_tx, mut resign) = unbounded_channel();
    if let Some(listener) = health {
        let endpoints = Endpoints {
            observer: obs.clone(),
            election: election.clone(),
            connector: connector.clone(),
            resign: resign_tx,
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
    let code = campaign_until_exit(&cfg, &mut sup, &obs, &connector, &election, &mut resign).await;
    obs.notifier.stopping();
    code
}

async fn campaign_until_exit(
    cfg: &Config,
    sup: &mut Supervisor,
    obs: &Arc<Observer>,
    connector: &Arc<Connector>,
    election: &Election,
    resign: &mut UnboundedReceiver<()>,
) -> i32 {
    tracing::info!(id = %cfg.id, election = %cfg.election, key_prefix = %election.dir(), timing = %cfg.timing,
        endpoints = ?connector.endpoints(), "singleton-exec starting");
    loop {
        while resign.try_recv().is_ok() {} // a request that came too late to matter
        let (session, me) = match standby(cfg, obs, connector, election, sup).await {
            Ok(won) => won,
            Err(code) => return code,
        };
        match lead(cfg, obs, election, sup, resign, session, me).await {
            Outcome::Exit(code) => return code,
            Outcome::Recampaign => continue,
        }
    }
}

/// Waits for a shutdown signal; other events cannot happen while no child runs.
async fn shutdown_signal(sup: &mut Supervisor) -> i32 {
    loop {
        match sup.events.recv().await {
            Some(Event::ShutdownSignal(sig)) => return sig,
            Some(other) => tracing::debug!(event = ?other, "ignored while standby"),
            None => return -1,
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

/// Waits until the lease is reported lost or its deadline passes.
async fn lease_lost(mut state: watch::Receiver<LeaseState>) {
    loop {
        let wait = match *state.borrow_and_update() {
            LeaseState::Lost => return,
            LeaseState::Alive { safe_until } => safe_until.remaining(),
        };
        if wait.is_zero() {
            return;
        }
        // Re-checked at least every second so a suspend (BootInstant moves, tokio's clock does not)
        // cannot make us miss it.
        let _ = tokio::time::timeout(wait.min(Duration::from_secs(1)), state.changed()).await;
    }
}

/// Standby: get a lease, join the queue, wait for our turn, verify. Returns the session and our
/// candidacy, or the exit code to leave with.
async fn standby(
    cfg: &Config,
    obs: &Arc<Observer>,
    connector: &Arc<Connector>,
    election: &Election,
    sup: &mut Supervisor,
) -> Result<(Session, Candidacy), i32> {
    let acquire_by = cfg.acquire_timeout.map(|d| Instant::now() + d);
    let mut backoff = Backoff::new(RETRY_BACKOFF_MIN, RETRY_BACKOFF_MAX);
    let mut last_error = String::from("none");
    let timed_out = |last_error: &str| {
        tracing::error!(id = %cfg.id, election = %cfg.election, last_error,
            "--acquire-timeout passed before this replica became leader");
        exit_code::ACQUIRE_TIMEOUT
    };
    loop {
        let granted = tokio::select! {
            sig = shutdown_signal(sup) => return Err(withdraw_code(sig)),
            _ = until(acquire_by) => return Err(timed_out(&last_error)),
            r = Session::grant(connector.clone(), cfg.timing, obs.clone()) => r,
        };
        let session = match granted {
            Ok(s) => s,
            Err(e) if e.is_rejected() => return Err(rejected(&e)),
            Err(e) => {
                let wait = backoff.step();
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot get a lease from etcd; retrying");
                last_error = e.to_string();
                tokio::select! {
                    sig = shutdown_signal(sup) => return Err(withdraw_code(sig)),
                    _ = until(acquire_by) => return Err(timed_out(&last_error)),
                    _ = sleep(wait) => continue,
                }
            }
        };
        backoff.reset();
        // Campaign with this lease until it wins or the lease is lost.
        loop {
            let outcome = tokio::select! {
                sig = shutdown_signal(sup) => {
                    session.revoke().await;
                    return Err(withdraw_code(sig));
                }
                _ = until(acquire_by) => {
                    session.revoke().await;
                    return Err(timed_out(&last_error));
                }
                _ = lease_lost(session.state()) => None,
                r = campaign(cfg, obs, election, &session) => Some(r),
            };
            match outcome {
                None => {
                    tracing::warn!(id = %cfg.id, lease = %format!("{:x}", session.lease_id), "lease lost while standby; taking a new one");
                    break;
                }
                Some(Ok(me)) => return Ok((session, me)),
                Some(Err(e)) if e.is_rejected() => {
                    session.revoke().await;
                    return Err(rejected(&e));
                }
                Some(Err(e)) => {
                    let wait = backoff.step();
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "campaign interrupted; retrying");
                    last_error = e.to_string();
                    sleep(wait).await;
                }
            }
        }
    }
}

fn withdraw_code(sig: i32) -> i32 {
    if sig < 0 {
        tracing::error!("the process thread is gone");
        return exit_code::INTERNAL;
    }
    tracing::info!("standby withdrew on {}", crate::signals::name(sig));
    0
}

fn rejected(e: &EtcdError) -> i32 {
    tracing::error!(error = %e, "etcd refused this replica; check --user/--password, TLS files and the role's permissions");
    exit_code::ETCD_REJECTED
}

/// Joins the queue, waits for our turn, and verifies the key is still ours.
async fn campaign(
    cfg: &Config,
    obs: &Observer,
    election: &Election,
    session: &Session,
) -> Result<Candidacy, EtcdError> {
    let connector = session.connector();
    let conn = connector.get().await?;
    let mut client = conn.client.clone();
    let result = async {
        let (me, leads) = election
            .join(&mut client, session.lease_id, &cfg.id)
            .await?;
        transition(
            cfg,
            obs,
            Role::Standby {
                lease: me.lease,
                key: &me.key,
                revision: me.revision,
            },
        );
        if !leads {
            election.wait_turn(&mut client, &me).await?;
        }
        Ok::<_, EtcdError>(me)
    }
    .await;
    if matches!(&result, Err(e) if !e.is_rejected()) {
        connector.failed(conn.generation);
    }
    result
}

/// Resolves when our leader key is gone (deleted, or its lease expired). Survives broken watches.
async fn key_deleted(election: Election, connector: Arc<Connector>, me: Candidacy) {
    let mut backoff = Backoff::new(RETRY_BACKOFF_MIN, RETRY_BACKOFF_MAX);
    loop {
        let attempt = async {
            let conn = connector.get().await?;
            let mut client = conn.client.clone();
            let r = async {
                match election.verify(&mut client, &me).await? {
                    None => Ok(()),
                    Some(at) => election.wait_key_deleted(&mut client, &me, at + 1).await,
                }
            }
            .await;
            if r.is_err() {
                connector.failed(conn.generation);
            }
            r
        };
        match attempt.await {
            Ok(()) => return,
            Err(e) => {
                tracing::debug!(error = %e, "watch on our leader key broke; re-watching");
                sleep(backoff.step()).await;
            }
        }
    }
}

fn deadline_of(cfg: &Config, safe_until: BootInstant) -> LeaseDeadline {
    LeaseDeadline {
        stop_at: cfg.timing.stop_at(safe_until),
        kill_at: cfg.timing.kill_at(safe_until),
    }
}

/// The variables the child gets while it leads.
fn leader_env(cfg: &Config, me: &Candidacy) -> Vec<(String, String)> {
    vec![
        ("SINGLETON_EXEC_ELECTION".into(), cfg.election.clone()),
        ("SINGLETON_EXEC_ID".into(), cfg.id.clone()),
        ("SINGLETON_EXEC_KEY".into(), me.key.clone()),
        ("SINGLETON_EXEC_LEASE_ID".into(), format!("{:x}", me.lease)),
        ("SINGLETON_EXEC_REVISION".into(), me.revision.to_string()),
        (
            "SINGLETON_EXEC_ENDPOINTS".into(),
            cfg.etcd.endpoints.join(","),
        ),
    ]
}

/// Why the child's tree ended, as far as leadership is concerned.
enum Ending {
    /// Step-down requested (POST /resign or --resign-signal).
    Resign,
    Shutdown,
    LeaseLost(String),
    ChildExited,
}

/// Leader: run the child while the lease holds; decide what follows when its tree is gone.
async fn lead(
    cfg: &Config,
    obs: &Observer,
    election: &Election,
    sup: &mut Supervisor,
    resign: &mut UnboundedReceiver<()>,
    session: Session,
    me: Candidacy,
) -> Outcome {
    let mut restart_backoff = Backoff::new(RESTART_BACKOFF_MIN, RESTART_BACKOFF_MAX);
    let mut key_gone = Box::pin(key_deleted(
        election.clone(),
        session.connector().clone(),
        me.clone(),
    ));
    loop {
        let safe_until = match session.current() {
            LeaseState::Alive { safe_until } if !cfg.timing.stop_at(safe_until).has_passed() => {
                safe_until
            }
            _ => {
                return lost(
                    cfg,
                    obs,
                    &me,
                    session,
                    "the lease has less than grace + margin left at spawn time".into(),
                )
                .await
            }
        };
        sup.request(Request::Spawn {
            command: cfg.command.clone(),
            env: leader_env(cfg, &me),
            deadline: deadline_of(cfg, safe_until),
        });
        let started_at = Instant::now();
        let mut shutting_down = false;
        let pid = loop {
            match sup.events.recv().await {
                Some(Event::Started { pid }) => break pid,
                Some(Event::SpawnFailed(e)) => {
                    tracing::error!(error = %e, code = e.exit_code(), "cannot start the command");
                    session.revoke().await;
                    return Outcome::Exit(e.exit_code());
                }
                Some(Event::ShutdownSignal(_)) => shutting_down = true,
                Some(_) => {}
                None => return Outcome::Exit(exit_code::INTERNAL),
            }
        };
        transition(
            cfg,
            obs,
            Role::Leader {
                lease: me.lease,
                key: &me.key,
                revision: me.revision,
                pid,
            },
        );
        if shutting_down {
            sup.request(Request::Stop {
                reason: StopReason::Requested("shutdown requested while starting".into()),
            });
        }

        let mut state = session.state();
        // Once the keepalive task has ended, its channel is closed and `changed()` would return at
        // once forever: stop listening to it.
        let mut lease_open = true;
        let mut ending: Option<Ending> = shutting_down.then_some(Ending::Shutdown);
        let status = loop {
            tokio::select! {
                ev = sup.events.recv() => match ev {
                    Some(Event::Finished { status, stopped }) => {
                        if ending.is_none() {
                            ending = Some(match stopped {
                                Some(StopReason::Signal(_)) => Ending::Shutdown,
                                Some(StopReason::LeaseDeadline) => Ending::LeaseLost("renew deadline passed".into()),
                                Some(StopReason::Requested(why)) => Ending::LeaseLost(why),
                                Some(StopReason::ChildExited) | None => Ending::ChildExited,
                            });
                        }
                        break status;
                    }
                    Some(Event::ResignSignal) if ending.is_none() => {
                        ending = Some(Ending::Resign);
                        sup.request(Request::Stop { reason: StopReason::Requested("step-down requested".into()) });
                    }
                    Some(Event::ShutdownSignal(_)) => {
                        obs.notifier.stopping();
                        ending.get_or_insert(Ending::Shutdown);
                    }
                    Some(Event::Stopping { reason, kill_in }) => {
                        transition(cfg, obs, Role::Stopping { key: &me.key, revision: me.revision, reason: &reason, kill_in });
                        if reason == StopReason::LeaseDeadline {
                            let safe = match *state.borrow() { LeaseState::Alive { safe_until } => safe_until.as_millis() as i64, LeaseState::Lost => -1 };
                            tracing::warn!(safe_until_boot_ms = safe, now_boot_ms = BootInstant::now().as_millis() as u64,
                                renew_deadline_ms = cfg.timing.renew_deadline().as_millis() as u64,
                                "fail-closed deadline fired: no keepalive acknowledged within the renew deadline");
                            ending.get_or_insert(Ending::LeaseLost("renew deadline passed".into()));
                        }
                    }
                    Some(_) => {}
                    None => return Outcome::Exit(exit_code::INTERNAL),
                },
                changed = state.changed(), if lease_open => {
                    lease_open = changed.is_ok();
                    let now = if changed.is_ok() { *state.borrow_and_update() } else { LeaseState::Lost };
                    match now {
                        LeaseState::Alive { safe_until } => sup.request(Request::Extend(deadline_of(cfg, safe_until))),
                        LeaseState::Lost if ending.is_none() => {
                            ending = Some(Ending::LeaseLost("etcd reports the lease is gone".into()));
                            sup.request(Request::Stop { reason: StopReason::Requested("etcd reports the lease is gone".into()) });
                        }
                        LeaseState::Lost => {}
                    }
                }
                Some(()) = resign.recv(), if ending.is_none() => {
                    ending = Some(Ending::Resign);
                    sup.request(Request::Stop { reason: StopReason::Requested("step-down requested".into()) });
                }
                _ = &mut key_gone, if ending.is_none() => {
                    ending = Some(Ending::LeaseLost("our leader key was deleted".into()));
                    sup.request(Request::Stop { reason: StopReason::Requested("our leader key was deleted".into()) });
                }
            }
        };
        let restarting = matches!(ending, None | Some(Ending::ChildExited))
            && cfg.on_child_exit == OnChildExit::Restart;
        obs.child_exited(status.exit_code(), restarting);
        match ending.unwrap_or(Ending::ChildExited) {
            Ending::Resign => {
                release(cfg, obs, &me, session, "stepped down on request").await;
                tokio::select! {
                    sig = shutdown_signal(sup) => return Outcome::Exit(withdraw_code(sig)),
                    _ = sleep(cfg.resign_holdoff) => return Outcome::Recampaign,
                }
            }
            Ending::Shutdown => {
                session.revoke().await;
                tracing::info!(id = %cfg.id, %status, "leader stopped on request; lease revoked");
                return Outcome::Exit(status.exit_code());
            }
            Ending::LeaseLost(why) => return lost(cfg, obs, &me, session, why).await,
            Ending::ChildExited => match cfg.on_child_exit {
                OnChildExit::Exit => {
                    session.revoke().await;
                    tracing::info!(id = %cfg.id, %status, "child exited; lease revoked, exiting (--on-child-exit=exit)");
                    return Outcome::Exit(status.exit_code());
                }
                OnChildExit::Recampaign => {
                    release(
                        cfg,
                        obs,
                        &me,
                        session,
                        "child exited; recampaigning (--on-child-exit=recampaign)",
                    )
                    .await;
                    return Outcome::Recampaign;
                }
                OnChildExit::Restart => {
                    if started_at.elapsed() >= RESTART_RESET_AFTER {
                        restart_backoff.reset();
                    }
                    let wait = restart_backoff.step();
                    tracing::info!(id = %cfg.id, %status, restart_in_ms = wait.as_millis() as u64, "child exited; restarting (--on-child-exit=restart)");
                    tokio::select! {
                        sig = shutdown_signal(sup) => {
                            session.revoke().await;
                            let code = status.exit_code();
                            tracing::info!("leader withdrew on {} while waiting to restart", crate::signals::name(sig));
                            return Outcome::Exit(code);
                        }
                        _ = lease_lost(session.state()) => return lost(cfg, obs, &me, session, "lease lost while waiting to restart".into()).await,
                        _ = &mut key_gone => return lost(cfg, obs, &me, session, "our leader key was deleted".into()).await,
                        _ = sleep(wait) => {}
                    }
                }
            },
        }
    }
}

/// Gives leadership up on purpose (the child's tree is gone): revoke, so a standby takes over at
/// once, then log it.
async fn release(cfg: &Config, obs: &Observer, me: &Candidacy, session: Session, why: &str) {
    session.revoke().await;
    log_lost(cfg, obs, me, why);
}

/// The Lost transition of this leadership.
fn log_lost(cfg: &Config, obs: &Observer, me: &Candidacy, why: &str) {
    transition(
        cfg,
        obs,
        Role::Lost {
            key: &me.key,
            revision: me.revision,
            why,
        },
    );
}

/// The child's tree is gone and leadership with it: revoke what is left and apply --on-lease-lost.
async fn lost(
    cfg: &Config,
    obs: &Observer,
    me: &Candidacy,
    session: Session,
    why: String,
) -> Outcome {
    log_lost(cfg, obs, me, &why);
    // The lease is expired or about to be: revoking can only save a standby the last margin, so it
    // is not worth waiting long for an etcd that may be unreachable.
    let _ =
        tokio::time::timeout(cfg.timing.margin + Duration::from_secs(1), session.revoke()).await;
    match cfg.on_lease_lost {
        OnLeaseLost::Exit => Outcome::Exit(exit_code::LEASE_LOST),
        OnLeaseLost::Recampaign => Outcome::Recampaign,
    }
}

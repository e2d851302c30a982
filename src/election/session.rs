//! The etcd session: two leases, kept alive on our own timers, and the deadline they buy.
//!
//! The *candidacy lease* holds our key in the election (its name is the key's, as etcd's own
//! clients write it). The *tree lease* holds only our tree marker
//! ([`crate::election::queue::Election::tree_key`]): it lives as long as a child of ours may, so a
//! standby that finds our key gone without our release knows from the marker whether our tree may
//! still be dying (an operator's `etcdctl lease revoke` of the candidacy lease) or is surely dead
//! (the marker's lease expired too, or we released). Both are granted together and renewed on the
//! same schedule, so a crashed replica's marker goes with its key, within the TTL.
//!
//! Invariant: [`LeaseState::Alive::safe_until`] is the earlier, over both leases, of the send
//! instant of the last *acknowledged* keepalive plus the smaller of requested and granted TTL, on
//! [`BootInstant`]; either lease gone is [`LeaseState::Lost`]. So our child is dead before either
//! lease can expire. Keepalives are sent one at a time per lease (send, wait for its reply,
//! sleep), so each reply is matched to the request that caused it. Opening the stream sends a
//! keepalive too, and its reply counts.
//!
//! The retry schedule is the one [`crate::core::timing`] reasons about: every attempt (reconnect,
//! re-authenticate, open the stream, get the reply) is bounded by `attempt_timeout` as a whole, and
//! after a failed attempt the next one starts `attempt_timeout` after the failed one started. A
//! reply with `ttl <= 0`, or "lease not found" when (re)opening the stream, means the lease is gone
//! (revoked or expired): that is final and reported at once as [`LeaseState::Lost`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

use crate::core::clock::BootInstant;
use crate::core::duration::Short;
use crate::core::lifecycle::LeaseId;
use crate::core::timing::{Jitter, TimingModel};
use crate::election::connector::{within, Conn, Connector, EtcdError, Within};

/// What a session reports as it goes, for whoever shows it (status and metrics): the session
/// decides nothing by it, and a report never blocks the keepalives.
pub trait LeaseEvents: Send + Sync {
    /// A keepalive was acknowledged (or the lease granted, `rtt` then unknown).
    fn lease_renewed(&self, safe_until: BootInstant, rtt: Option<Duration>);
    /// The lease is gone or given up.
    fn lease_dropped(&self);
    /// One keepalive attempt failed; the next follows per the retry schedule.
    fn keepalive_failed(&self);
}

/// What we know about our lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// The server cannot expire the lease before `safe_until`.
    Alive { safe_until: BootInstant },
    /// etcd said the lease is gone, or `safe_until` passed without a renewal.
    Lost,
}

impl LeaseState {
    /// The state as of `now`: `Lost` once `safe_until` is reached, even if no reply said so.
    pub fn at(self, now: BootInstant) -> LeaseState {
        match self {
            LeaseState::Alive { safe_until } if now >= safe_until => LeaseState::Lost,
            s => s,
        }
    }
}

/// What both leases buy together: the earlier deadline; lost as soon as either is.
fn combined(parts: &[LeaseState; 2]) -> LeaseState {
    match parts {
        [LeaseState::Alive { safe_until: a }, LeaseState::Alive { safe_until: b }] => {
            LeaseState::Alive {
                safe_until: (*a).min(*b),
            }
        }
        _ => LeaseState::Lost,
    }
}

/// The state both keepalive tasks write, each its own part, and the one every reader sees.
struct Shared {
    parts: Mutex<[LeaseState; 2]>,
    tx: watch::Sender<LeaseState>,
    observer: Arc<dyn LeaseEvents>,
}

impl Shared {
    /// Records what lease `part` buys now and publishes both together; false if nobody listens.
    fn publish(&self, part: usize, state: LeaseState, rtt: Option<Duration>) -> bool {
        let now = {
            let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
            parts[part] = state;
            combined(&parts)
        };
        match now {
            LeaseState::Alive { safe_until } => self.observer.lease_renewed(safe_until, rtt),
            LeaseState::Lost => self.observer.lease_dropped(),
        }
        self.tx.send(now).is_ok()
    }
}

/// Which of the two leases a keepalive task renews.
const CANDIDACY: usize = 0;
const TREE: usize = 1;

/// The two granted leases and the tasks that keep them alive.
pub struct Session {
    connector: Arc<Connector>,
    /// The lease our key in the election is attached to, and named by.
    pub lease_id: LeaseId,
    /// The lease our tree marker is attached to.
    pub tree_lease: LeaseId,
    state: watch::Receiver<LeaseState>,
    keepalives: [JoinHandle<()>; 2],
}

/// How giving the lease up went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// etcd revoked it now: a standby can take over at once.
    Now,
    /// It was already gone.
    AlreadyGone,
    /// etcd could not be asked in time: it expires after its TTL.
    Failed(String),
}

impl Session {
    /// Grants both leases (one attempt each) and starts keeping them alive.
    pub async fn grant(
        connector: Arc<Connector>,
        timing: TimingModel,
        observer: Arc<dyn LeaseEvents>,
    ) -> Result<Session, EtcdError> {
        let sent = BootInstant::now();
        let started = Instant::now();
        // One after the other: the connector counts rejections in a row to tell "every endpoint
        // refuses us" (exit 3) from "this one does" (try the next), and two calls failing at once
        // on one endpoint would count as two endpoints.
        let candidacy = grant_one(&connector, timing).await?;
        let tree = match grant_one(&connector, timing).await {
            Ok(t) => t,
            Err(e) => {
                // Not left to live a TTL for nothing (no key is on it yet).
                let _ = revoke_one(&connector, candidacy.0).await;
                return Err(e);
            }
        };
        let alive = |granted| LeaseState::Alive {
            safe_until: timing.safe_until(sent, granted),
        };
        let parts = [alive(candidacy.1), alive(tree.1)];
        let (tx, rx) = watch::channel(combined(&parts));
        let shared = Arc::new(Shared {
            parts: Mutex::new(parts),
            tx,
            observer,
        });
        shared.publish(CANDIDACY, parts[CANDIDACY], None);
        // The first keepalive is due (at most) one interval after the grant was *sent*, like every
        // later one; each wait is jittered so that replicas started together spread out. Both
        // leases draw the same waits, so they are renewed together and a crashed replica's
        // tree marker expires with its key.
        let jitter = Jitter::new();
        let start = |part: usize, (lease, granted_ttl): (LeaseId, Duration)| {
            let mut jitter = jitter.clone();
            let keeper = KeepAlive {
                connector: connector.clone(),
                timing,
                lease,
                granted_ttl,
                part,
                shared: shared.clone(),
            };
            let first = started + timing.first_jittered(jitter.next());
            tokio::spawn(keeper.run(first, jitter))
        };
        let keepalives = [start(CANDIDACY, candidacy), start(TREE, tree)];
        tracing::debug!(lease = %candidacy.0, tree_lease = %tree.0,
            granted_ttl_s = candidacy.1.as_secs(), "leases granted");
        Ok(Session {
            connector,
            lease_id: candidacy.0,
            tree_lease: tree.0,
            state: rx,
            keepalives,
        })
    }

    /// A receiver that sees every change of the lease state.
    pub fn state(&self) -> watch::Receiver<LeaseState> {
        self.state.clone()
    }

    /// The lease state now; `Lost` once `safe_until` has passed even if no reply said so.
    pub fn current(&self) -> LeaseState {
        self.state.borrow().at(BootInstant::now())
    }

    /// Stops the keepalives and revokes both leases so a standby can take over at once, trying
    /// every endpoint (and a fresh token) within `within`. Never reports success it did not get.
    /// What it reports is the candidacy lease's fate (the key a standby waits on goes with it);
    /// the tree lease only says our tree is gone, which it is by now.
    pub async fn revoke(self, within: Duration) -> Revoked {
        for k in &self.keepalives {
            k.abort();
        }
        let (lease, tree) = (self.lease_id, self.tree_lease);
        let attempts = self.connector.endpoints().len().max(2);
        let connector = &self.connector;
        let tries = |lease: LeaseId| async move {
            let mut last = String::from("no attempt");
            for _ in 0..attempts {
                match revoked(revoke_one(connector, lease).await) {
                    Ok(done) => return done,
                    Err(why) => last = why,
                }
            }
            Revoked::Failed(last)
        };
        let both = async { tokio::join!(tries(lease), tries(tree)) };
        let (outcome, tree_outcome) = timeout(within, both).await.unwrap_or_else(|_| {
            let late = || Revoked::Failed("timed out".into());
            (late(), late())
        });
        // At debug: the callers say what the outcome means (a leadership given up, a lease
        // replaced), and a failure to reach etcd is the connector's to tell.
        match &outcome {
            Revoked::Now => tracing::debug!(%lease, "lease revoked"),
            Revoked::AlreadyGone => tracing::debug!(%lease, "lease was already gone"),
            Revoked::Failed(why) => tracing::debug!(%lease, error = %why,
                "revoking the lease failed; it expires after its TTL"),
        }
        if let Revoked::Failed(why) = &tree_outcome {
            tracing::debug!(lease = %tree, error = %why, "revoking the tree lease failed; it expires after its TTL");
        }
        outcome
    }
}

/// Grants one lease: its id and the TTL the server granted.
async fn grant_one(
    connector: &Connector,
    timing: TimingModel,
) -> Result<(LeaseId, Duration), EtcdError> {
    let ttl = timing.ttl.as_secs() as i64;
    let resp = connector
        .call(|mut c| async move { Ok(c.lease_grant(ttl, None).await?) })
        .await?;
    Ok((
        LeaseId(resp.id()),
        Duration::from_secs(resp.ttl().max(0) as u64),
    ))
}

async fn revoke_one(connector: &Connector, lease: LeaseId) -> Result<(), EtcdError> {
    connector
        .call(|mut c| async move { Ok(c.lease_revoke(lease.0).await?) })
        .await
        .map(|_| ())
}

impl Drop for Session {
    fn drop(&mut self) {
        for k in &self.keepalives {
            k.abort();
        }
    }
}

/// The keepalive task's state.
struct KeepAlive {
    connector: Arc<Connector>,
    timing: TimingModel,
    lease: LeaseId,
    /// What the server granted; a reply that opens a stream does not show it to us.
    granted_ttl: Duration,
    /// Which lease of the session this is ([`CANDIDACY`] or [`TREE`]).
    part: usize,
    shared: Arc<Shared>,
}

/// How one keepalive attempt or stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broke {
    /// The lease is gone: stop.
    LeaseGone,
    /// Nobody listens any more: stop.
    Closed,
    /// Transport failure, timeout or closed stream: retry per the schedule.
    Retry,
}

impl KeepAlive {
    async fn run(self, first: Instant, mut jitter: Jitter) {
        let attempt = self.timing.attempt_timeout();
        let mut next = first;
        loop {
            tokio::time::sleep_until(next).await;
            let started = Instant::now();
            match self.open_and_keep(&mut jitter).await {
                Broke::LeaseGone => {
                    // At debug: the leadership loop says what it means (a stop, a new lease).
                    tracing::debug!(lease = %self.lease, "etcd reports the lease is gone");
                    self.shared.publish(self.part, LeaseState::Lost, None);
                    return;
                }
                Broke::Closed => return,
                Broke::Retry => self.shared.observer.keepalive_failed(),
            }
            next = next_attempt(started, attempt, Instant::now());
        }
    }

    /// One attempt to (re)open the stream, then keepalives on it until it breaks.
    async fn open_and_keep(&self, jitter: &mut Jitter) -> Broke {
        let attempt = self.timing.attempt_timeout();
        let sent = BootInstant::now();
        let started = Instant::now();
        let generation = self.connector.generation();
        // Connecting, authenticating and the first reply all count against one attempt.
        let (conn, mut keeper, mut stream) = match within(attempt, self.open()).await {
            Within::Done(opened) => opened,
            Within::Failed(e) => {
                // Reported to the connector already, which logs a run of failures once.
                tracing::debug!(error = %e, "keepalive: cannot open the stream");
                return not_opened(Some(&e));
            }
            Within::TimedOut => {
                // Whatever connection it was waiting on is not serving us: next time, a fresh one.
                let why = format!("keepalive: no answer within {}", Short(attempt));
                self.connector.lost(generation, &why);
                return not_opened(None);
            }
        };
        // Opening sent a keepalive, and its reply (TTL > 0, or the open would have failed) counts.
        if !self.publish(self.timing.safe_until(sent, self.granted_ttl), started) {
            return Broke::Closed;
        }
        let (broke, why) = self.keep(&mut keeper, &mut stream, started, jitter).await;
        if matches!(broke, Broke::Retry) {
            tracing::debug!(endpoint = %conn.endpoint, "keepalive stream broke; reconnecting");
            self.connector.lost(conn.generation, &why);
        }
        broke
    }

    /// Opens the keepalive stream, which sends a keepalive. An endpoint that fails fast (refused,
    /// reset) is followed at once by the next, within the same attempt, so one dead endpoint in
    /// the list does not cost a whole attempt.
    async fn open(&self) -> Result<(Conn, LeaseKeeper, LeaseKeepAliveStream), EtcdError> {
        let mut tries = self.connector.endpoints().len();
        loop {
            tries = tries.saturating_sub(1);
            match self.open_on_current().await {
                Err(e) if try_next_endpoint(&e, tries) => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                other => return other,
            }
        }
    }

    async fn open_on_current(
        &self,
    ) -> Result<(Conn, LeaseKeeper, LeaseKeepAliveStream), EtcdError> {
        let conn = self.connector.get().await?;
        match conn.client.clone().lease_keep_alive(self.lease.0).await {
            Ok((keeper, stream)) => Ok((conn, keeper, stream)),
            Err(e) => Err(self
                .connector
                .report(conn.generation, &conn.endpoint, e.into())),
        }
    }

    /// Keepalives on an open stream, one in flight at a time, until it breaks: how, and why.
    async fn keep(
        &self,
        keeper: &mut LeaseKeeper,
        stream: &mut LeaseKeepAliveStream,
        mut last: Instant,
        jitter: &mut Jitter,
    ) -> (Broke, String) {
        // The first wait on a (re)opened stream takes a random phase: replicas that reconnect
        // together after an etcd outage do not keep reaching it together.
        let mut wait = self.timing.first_jittered(jitter.next());
        let attempt = self.timing.attempt_timeout();
        loop {
            tokio::time::sleep_until(last + wait).await;
            wait = self.timing.jittered(jitter.next());
            let sent = BootInstant::now();
            last = Instant::now();
            let reply = async {
                keeper.keep_alive().await?;
                Ok(stream.message().await?.map(|r| r.ttl()))
            };
            let reply = within(attempt, reply).await;
            match renewal(&self.timing, sent, &reply) {
                Ok(safe_until) => {
                    if !self.publish(safe_until, last) {
                        return (Broke::Closed, String::new());
                    }
                }
                Err(broke) => {
                    let why = match &reply {
                        Within::Done(None) => "keepalive stream closed by etcd".to_owned(),
                        Within::Failed(e) => format!("keepalive: {}", e.reason()),
                        Within::TimedOut => {
                            format!("keepalive: no reply within {}", Short(attempt))
                        }
                        Within::Done(Some(_)) => "etcd reports the lease is gone".to_owned(),
                    };
                    tracing::debug!(reason = %why, "keepalive stream ends");
                    return (broke, why);
                }
            }
        }
    }

    /// Publishes the deadline bought by a keepalive sent at `started`; false if nobody listens.
    fn publish(&self, safe_until: BootInstant, started: Instant) -> bool {
        let rtt = started.elapsed();
        tracing::trace!(rtt = %Short(rtt), lease = %self.lease, "keepalive acknowledged");
        self.connector.reached();
        let rtt = (self.part == CANDIDACY).then_some(rtt);
        self.shared
            .publish(self.part, LeaseState::Alive { safe_until }, rtt)
    }
}

/// How an attempt whose stream did not open ends; `error` is what failed (`None`: no answer in
/// time). "Lease not found" is final; anything else (an endpoint down or refusing us, no answer
/// in time) is retried per the schedule.
fn not_opened(error: Option<&EtcdError>) -> Broke {
    match error {
        Some(EtcdError::LeaseGone(_)) => Broke::LeaseGone,
        Some(_) | None => Broke::Retry,
    }
}

/// Whether a failed open moves on to the next endpoint within the same attempt: only when the
/// endpoint is unavailable (a rejection is the connector's to judge) and endpoints are left.
fn try_next_endpoint(e: &EtcdError, tries_left: usize) -> bool {
    matches!(e, EtcdError::Unavailable(_)) && tries_left > 0
}

/// What a keepalive's reply (its TTL; `None`: the stream closed), awaited within the attempt
/// timeout, means: the deadline it buys, counted from when the keepalive was *sent*, with the
/// smaller of requested and granted TTL; or why the stream ends. After a revoke or an expiry
/// etcd keeps the stream open and answers `ttl <= 0`: the lease is gone.
fn renewal(
    timing: &TimingModel,
    sent: BootInstant,
    reply: &Within<Option<i64>>,
) -> Result<BootInstant, Broke> {
    match reply {
        Within::Done(Some(ttl)) if *ttl > 0 => {
            Ok(timing.safe_until(sent, Duration::from_secs(*ttl as u64)))
        }
        Within::Done(Some(_)) => Err(Broke::LeaseGone),
        Within::Done(None) | Within::Failed(_) | Within::TimedOut => Err(Broke::Retry),
    }
}

/// When the attempt after a failed one starts: one attempt-time after the failed one started
/// (see timing), and never in the past.
fn next_attempt(started: Instant, attempt: Duration, now: Instant) -> Instant {
    (started + attempt).max(now + Duration::from_millis(1))
}

/// What one revoke call came to: done (`Ok`), or the error to report if no other try succeeds.
fn revoked<T>(call: Result<T, EtcdError>) -> Result<Revoked, String> {
    match call {
        Ok(_) => Ok(Revoked::Now),
        Err(EtcdError::LeaseGone(_)) => Ok(Revoked::AlreadyGone),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::timing::TimingInput;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn timing(ttl: u64) -> TimingModel {
        let input = TimingInput {
            ttl: Some(secs(ttl)),
            ..TimingInput::default()
        };
        TimingModel::new(input).expect("valid timing")
    }

    #[test]
    fn a_reply_in_time_buys_a_deadline_from_its_send_with_the_smaller_ttl() {
        let sent = BootInstant::now();
        // (requested TTL, granted TTL in the reply) -> deadline after the send
        let rows = [
            (10, 10, 10),
            (10, 5, 5),
            (10, 30, 10),
            (10, 1, 1),
            (2, 2, 2),
        ];
        for (requested, granted, want) in rows {
            let got = renewal(&timing(requested), sent, &Within::Done(Some(granted)));
            assert_eq!(got, Ok(sent + secs(want as u64)), "{requested} {granted}");
        }
    }

    #[test]
    fn a_reply_without_ttl_means_the_lease_is_gone() {
        let sent = BootInstant::now();
        for ttl in [0, -1, i64::MIN] {
            let got = renewal(&timing(10), sent, &Within::Done(Some(ttl)));
            assert_eq!(got, Err(Broke::LeaseGone), "ttl {ttl}");
        }
    }

    #[test]
    fn a_late_failed_or_closed_reply_is_retried() {
        let sent = BootInstant::now();
        let rows = [
            Within::TimedOut,
            Within::Done(None),
            Within::Failed(EtcdError::Unavailable("reset".into())),
            Within::Failed(EtcdError::Rejected("permission denied".into())),
            // An error on the stream is not etcd's "ttl 0": the next open tells.
            Within::Failed(EtcdError::LeaseGone("x".into())),
        ];
        for reply in rows {
            let got = renewal(&timing(10), sent, &reply);
            assert_eq!(got, Err(Broke::Retry), "{reply:?}");
        }
    }

    #[test]
    fn lease_not_found_when_opening_is_final_and_all_else_is_retried() {
        let rows = [
            (
                Some(EtcdError::LeaseGone("not found".into())),
                Broke::LeaseGone,
            ),
            (Some(EtcdError::Unavailable("down".into())), Broke::Retry),
            (Some(EtcdError::Rejected("bad token".into())), Broke::Retry),
            (None, Broke::Retry), // timed out
        ];
        for (error, want) in rows {
            assert_eq!(not_opened(error.as_ref()), want, "{error:?}");
        }
    }

    #[test]
    fn only_an_unavailable_endpoint_moves_to_the_next_within_an_attempt() {
        let down = EtcdError::Unavailable("refused".into());
        let rows = [
            (down.clone(), 2, true),
            (down.clone(), 1, true),
            (down, 0, false),
            (EtcdError::Rejected("denied".into()), 2, false),
            (EtcdError::LeaseGone("gone".into()), 2, false),
        ];
        for (e, tries_left, want) in rows {
            assert_eq!(
                try_next_endpoint(&e, tries_left),
                want,
                "{e:?} {tries_left}"
            );
        }
    }

    #[test]
    fn the_next_attempt_starts_one_attempt_time_after_the_failed_one_started() {
        let base = Instant::now();
        let ms = Duration::from_millis;
        // ((failed attempt started, now), next attempt), in ms after `base`; attempts of 500 ms
        let rows = [
            ((0, 100), 500),
            ((0, 499), 500),
            ((0, 500), 501),
            ((0, 2_000), 2_001),
            ((300, 400), 800),
        ];
        for ((started, now), want) in rows {
            let got = next_attempt(base + ms(started), ms(500), base + ms(now));
            assert_eq!(got - base, ms(want), "{started} {now}");
        }
    }

    #[test]
    fn both_leases_buy_the_earlier_deadline_and_either_lost_is_lost() {
        let t0 = BootInstant::now();
        let alive = |s: u64| LeaseState::Alive {
            safe_until: t0 + secs(s),
        };
        let lost = LeaseState::Lost;
        let rows = [
            ([alive(5), alive(5)], alive(5)),
            ([alive(5), alive(7)], alive(5)),
            ([alive(9), alive(7)], alive(7)),
            ([lost, alive(7)], lost),
            ([alive(7), lost], lost),
            ([lost, lost], lost),
        ];
        for (parts, want) in rows {
            assert_eq!(combined(&parts), want, "{parts:?}");
        }
    }

    #[test]
    fn the_lease_is_lost_once_its_deadline_is_reached() {
        let t0 = BootInstant::now();
        let alive = LeaseState::Alive {
            safe_until: t0 + secs(1),
        };
        let ms = Duration::from_millis;
        let rows = [
            (alive, t0, alive),
            (alive, t0 + ms(999), alive),
            (alive, t0 + secs(1), LeaseState::Lost),
            (alive, t0 + secs(60), LeaseState::Lost),
            (LeaseState::Lost, t0, LeaseState::Lost),
        ];
        for (state, now, want) in rows {
            assert_eq!(state.at(now), want, "{state:?} at {now:?}");
        }
    }

    #[test]
    fn a_revoke_is_done_already_gone_or_the_reason_to_try_again() {
        let rows: [(Result<(), EtcdError>, Result<Revoked, String>); 4] = [
            (Ok(()), Ok(Revoked::Now)),
            (
                Err(EtcdError::LeaseGone("x".into())),
                Ok(Revoked::AlreadyGone),
            ),
            (
                Err(EtcdError::Unavailable("down".into())),
                Err("etcd unavailable: down".into()),
            ),
            (
                Err(EtcdError::Rejected("denied".into())),
                Err("etcd rejected us: denied".into()),
            ),
        ];
        for (call, want) in rows {
            assert_eq!(revoked(call.clone()), want, "{call:?}");
        }
    }
}

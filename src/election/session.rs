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
//! lease can expire. Keepalives are sent one at a time per stream (send, wait for its reply,
//! sleep), so each reply is matched to the request that caused it; a stream whose reply is late
//! sends nothing more until that reply came. Opening the stream sends a keepalive too, and its
//! reply counts. Several streams of one lease may be in flight (a late one, attempts to open
//! others): each deadline holds on its own, and the published one only ever moves later.
//!
//! The retry schedule is the one [`crate::core::timing`] reasons about: attempts (reconnect,
//! re-authenticate, open the stream, get the reply) start `attempt_timeout` apart while none has
//! succeeded, each over a fresh connection; an attempt not answered in its turn stays in flight
//! up to [`TimingModel::slowest_attempt`], and the first to answer is kept. A reply with
//! `ttl <= 0`, or "lease not found" when (re)opening the stream, means the lease is gone (revoked
//! or expired): that is final and reported at once as [`LeaseState::Lost`].

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

/// One lease's state after a report: a deadline only ever moves later (each bound came from an
/// acknowledged send, so the later one holds too: a late reply to an older send never shortens
/// it), and a lost lease stays lost.
fn merged(old: LeaseState, new: LeaseState) -> LeaseState {
    match (old, new) {
        (LeaseState::Alive { safe_until: a }, LeaseState::Alive { safe_until: b }) => {
            LeaseState::Alive {
                safe_until: a.max(b),
            }
        }
        (LeaseState::Lost, _) | (_, LeaseState::Lost) => LeaseState::Lost,
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
            parts[part] = merged(parts[part], state);
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

/// A stream open for keepalives, on the connection it was opened on.
struct Open {
    conn: Conn,
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
    /// When the last keepalive on it was sent (the next is due an interval later).
    last: Instant,
}

/// A stream whose reply did not come within our patience. The next attempt starts on schedule
/// (the timing model is unchanged), but this stream is still listened to meanwhile: on a link
/// that is slow, not dead, its reply comes, counts from its send like any other, and the stream
/// is used again (the attempt in flight is dropped). Without this, every round trip longer than
/// the attempt timeout threw its reply away and opened a new connection, which on a slow link
/// never finished in time either: the lease was lost though etcd answered every keepalive.
struct Late {
    open: Open,
    /// When its unanswered keepalive was sent.
    sent: BootInstant,
}

/// What a late stream came to.
enum LateReply {
    /// Its reply came, with this TTL.
    Renewed(Duration),
    /// etcd says the lease is gone.
    LeaseGone,
    /// Nothing useful before the renew deadline, or the stream failed: forget it.
    Nothing,
}

impl Late {
    async fn reply(&mut self, until: Instant) -> LateReply {
        match tokio::time::timeout_at(until, self.open.stream.message()).await {
            Ok(Ok(Some(r))) if r.ttl() > 0 => {
                LateReply::Renewed(Duration::from_secs(r.ttl() as u64))
            }
            Ok(Ok(Some(_))) => LateReply::LeaseGone,
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => LateReply::Nothing,
        }
    }
}

/// How keeping a stream alive ended.
enum Kept {
    /// Final (lease gone, nobody listens).
    Final(Broke),
    /// The stream failed or closed (`why`): retry per the schedule from `started`.
    Broken { started: Instant, why: String },
    /// No reply within our patience: retry per the schedule, listening to it meanwhile.
    Late { late: Box<Late>, waited: Duration },
}

impl KeepAlive {
    async fn run(self, first: Instant, mut jitter: Jitter) {
        let mut patience = Patience::default();
        let mut late: Option<Box<Late>> = None;
        let mut next = first;
        loop {
            let open = match self.obtain(&mut next, late.take(), &mut patience).await {
                Ok(open) => open,
                Err(broke) => return self.end(broke),
            };
            let generation = open.conn.generation;
            let endpoint = open.conn.endpoint.clone();
            match self.keep(open, &mut jitter, &mut patience).await {
                Kept::Final(broke) => return self.end(broke),
                Kept::Broken { started, why } => {
                    self.shared.observer.keepalive_failed();
                    tracing::debug!(endpoint = %endpoint, "keepalive stream broke; reconnecting");
                    self.connector.lost(generation, &why);
                    next = next_attempt(started, self.timing.attempt_timeout(), Instant::now());
                }
                Kept::Late { late: l, waited } => {
                    self.shared.observer.keepalive_failed();
                    // The next attempt goes over a fresh connection (obtain gives this one up),
                    // as the model says; this stream keeps its own and is still heard.
                    tracing::debug!(endpoint = %endpoint, waited = %Short(waited),
                        "keepalive: no reply in time; reconnecting, still listening for it");
                    next = next_attempt(l.open.last, waited, Instant::now());
                    late = Some(l);
                }
            }
        }
    }

    fn end(&self, broke: Broke) {
        if broke == Broke::LeaseGone {
            // At debug: the leadership loop says what it means (a stop, a new lease).
            tracing::debug!(lease = %self.lease, "etcd reports the lease is gone");
            self.shared.publish(self.part, LeaseState::Lost, None);
        }
    }

    /// A stream to keep. Attempts to open one start per the retry schedule: the first at `next`,
    /// each later one an attempt timeout after the one before started, while none has succeeded;
    /// each new one goes over a fresh connection, as the timing model says. But an attempt that
    /// is not answered in time is not thrown away: it stays in flight (and a late stream keeps
    /// being heard) up to [`TimingModel::slowest_attempt`] after it started, and whichever
    /// answers first is used. On a dead link this is exactly the old schedule; on a slow one the
    /// answers that come late still count, instead of every attempt being cut off before its
    /// answer could arrive.
    async fn obtain(
        &self,
        next: &mut Instant,
        late: Option<Box<Late>>,
        patience: &mut Patience,
    ) -> Result<Open, Broke> {
        let slowest = self.timing.slowest_attempt();
        let attempt_timeout = self.timing.attempt_timeout();
        let mut inflight: Vec<InFlight<'_>> = Vec::new();
        // The connection of the attempt started last, to give up on when the next one starts.
        let mut last_generation = None;
        if let Some(mut l) = late {
            last_generation = Some(l.open.conn.generation);
            let until = l.open.last + slowest;
            inflight.push(Box::pin(async move {
                match l.reply(until).await {
                    LateReply::Renewed(ttl) => {
                        let rtt = l.open.last.elapsed();
                        let ttl = ttl.min(self.granted_ttl);
                        if !self.publish(self.timing.safe_until(l.sent, ttl), l.open.last) {
                            return Attempted::Failed(Broke::Closed);
                        }
                        tracing::debug!(rtt = %Short(rtt),
                            "keepalive: the late reply came; the link is slow, not down");
                        Attempted::Opened(Box::new(l.open), Some(rtt))
                    }
                    LateReply::LeaseGone => Attempted::Failed(Broke::LeaseGone),
                    LateReply::Nothing => Attempted::GaveUp,
                }
            }));
        }
        loop {
            let due = *next;
            let room = inflight.len() < MAX_IN_FLIGHT;
            let heard = std::future::poll_fn(|cx| {
                for i in 0..inflight.len() {
                    if let std::task::Poll::Ready(done) = inflight[i].as_mut().poll(cx) {
                        drop(inflight.swap_remove(i));
                        return std::task::Poll::Ready(Some(done));
                    }
                }
                std::task::Poll::Pending
            });
            let heard = tokio::select! {
                done = heard => done,
                _ = tokio::time::sleep_until(due), if room => None,
            };
            match heard {
                Some(Attempted::Opened(open, late_rtt)) => {
                    if let Some(rtt) = late_rtt {
                        patience.sample(rtt);
                    }
                    return Ok(*open);
                }
                Some(Attempted::Failed(Broke::Retry)) => self.shared.observer.keepalive_failed(),
                Some(Attempted::Failed(broke)) => return Err(broke),
                Some(Attempted::GaveUp) => {}
                None => {
                    // An attempt is due: the one before it has had its time (still in flight,
                    // given up, or failed: none succeeded, or we would have returned); the new
                    // one goes over a fresh connection. Also when nothing is in flight any more:
                    // a late stream given up at once (our patience was already its bound) left
                    // its connection current, and the retry must not be spent on it.
                    if let Some(generation) = last_generation.take() {
                        // A no-op on the connection if the connector moved on already.
                        let why = format!("keepalive: no answer within {}", Short(attempt_timeout));
                        self.connector.lost(generation, &why);
                    }
                    let started = Instant::now();
                    last_generation = Some(self.connector.generation());
                    inflight.push(Box::pin(async move {
                        match self.open_attempt(started + slowest, attempt_timeout).await {
                            Ok(open) => Attempted::Opened(Box::new(open), None),
                            Err(broke) => Attempted::Failed(broke),
                        }
                    }));
                    *next = started + attempt_timeout;
                }
            }
        }
    }

    /// One attempt to (re)open the stream; its first reply counts. It may outlive its turn in
    /// the schedule (`attempt_timeout`), never `until`.
    async fn open_attempt(&self, until: Instant, attempt_timeout: Duration) -> Result<Open, Broke> {
        let sent = BootInstant::now();
        let started = Instant::now();
        // Connecting, authenticating and the first reply all count against one attempt.
        let opened = tokio::time::timeout_at(until, self.open()).await;
        let (conn, keeper, stream) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(e)) => {
                // Reported to the connector already, which logs a run of failures once.
                tracing::debug!(error = %e, "keepalive: cannot open the stream");
                return Err(not_opened(Some(&e)));
            }
            Err(_) => {
                // Its connection was given up when the next attempt started (or none is left).
                tracing::debug!(
                    waited = %Short(until.saturating_duration_since(started)),
                    "keepalive: reconnecting timed out"
                );
                return Err(not_opened(None));
            }
        };
        let took = started.elapsed();
        if took > attempt_timeout {
            tracing::debug!(took = %Short(took), "keepalive: reconnected on a slow link");
        }
        // Opening sent a keepalive, and its reply (TTL > 0, or the open would have failed) counts.
        if !self.publish(self.timing.safe_until(sent, self.granted_ttl), started) {
            return Err(Broke::Closed);
        }
        Ok(Open {
            conn,
            keeper,
            stream,
            last: started,
        })
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

    /// Keepalives on an open stream, one in flight at a time, each reply awaited as long as our
    /// patience with this link says.
    async fn keep(&self, mut open: Open, jitter: &mut Jitter, patience: &mut Patience) -> Kept {
        // The first wait on a (re)opened stream takes a random phase: replicas that reconnect
        // together after an etcd outage do not keep reaching it together.
        let mut wait = self.timing.first_jittered(jitter.next());
        loop {
            tokio::time::sleep_until(open.last + wait).await;
            wait = self.timing.jittered(jitter.next());
            let sent = BootInstant::now();
            open.last = Instant::now();
            let waited = patience.reply(&self.timing);
            let reply = async {
                open.keeper.keep_alive().await?;
                Ok(open.stream.message().await?.map(|r| r.ttl()))
            };
            let reply = within(waited, reply).await;
            if matches!(reply, Within::TimedOut) {
                return Kept::Late {
                    late: Box::new(Late { open, sent }),
                    waited,
                };
            }
            match renewal(&self.timing, sent, &reply) {
                Ok(safe_until) => {
                    patience.sample(open.last.elapsed());
                    if !self.publish(safe_until, open.last) {
                        return Kept::Final(Broke::Closed);
                    }
                }
                Err(broke) => {
                    let why = match &reply {
                        Within::Done(None) => "keepalive stream closed by etcd".to_owned(),
                        Within::Failed(e) => format!("keepalive: {}", e.reason()),
                        Within::TimedOut => format!("keepalive: no reply within {}", Short(waited)),
                        Within::Done(Some(_)) => "etcd reports the lease is gone".to_owned(),
                    };
                    tracing::debug!(reason = %why, "keepalive stream ends");
                    return match broke {
                        Broke::Retry => Kept::Broken {
                            started: open.last,
                            why,
                        },
                        final_ => Kept::Final(final_),
                    };
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

/// The most attempts one keepalive task has in flight: a new one waits for one to end. At the
/// defaults at most four are (each lives up to the slowest attempt, 1.67 s, and one starts every
/// 0.5 s); with a very short interval, without a cap, a black hole piled up dozens of
/// connections per replica that all reached etcd, each authenticating, the moment it recovered.
const MAX_IN_FLIGHT: usize = 8;

/// How one attempt in flight ended.
enum Attempted {
    /// A stream to keep; with the round trip of a late reply, when it was one.
    Opened(Box<Open>, Option<Duration>),
    Failed(Broke),
    /// A late stream said nothing useful in time.
    GaveUp,
}

/// An attempt in flight: opening a stream, or a late stream's reply.
type InFlight<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Attempted> + Send + 'a>>;

/// How long a reply on an open stream is awaited on this link before the next attempt starts: the model's attempt timeout
/// while round trips stay below it; on a slower link, a retransmission timeout in the manner of
/// TCP's (RFC 6298: smoothed round trip plus four times its variation, from the replies on open
/// streams, late ones included), never above [`TimingModel::slowest_attempt`]. It only decides
/// when to give up on a stream, never the deadline: that comes from acknowledged sends alone.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Patience {
    /// (smoothed round trip, its variation), once a reply was seen.
    rtt: Option<(Duration, Duration)>,
}

impl Patience {
    fn sample(&mut self, r: Duration) {
        self.rtt = Some(match self.rtt {
            None => (r, r / 2),
            Some((srtt, var)) => {
                let diff = srtt.abs_diff(r);
                (srtt * 7 / 8 + r / 8, var * 3 / 4 + diff / 4)
            }
        });
    }

    /// The wait for one reply on an open stream.
    fn reply(&self, timing: &TimingModel) -> Duration {
        let rto = self.rtt.map_or(Duration::ZERO, |(s, v)| s + v * 4);
        rto.clamp(timing.attempt_timeout(), timing.slowest_attempt())
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
    fn a_deadline_only_moves_later_and_a_lost_lease_stays_lost() {
        let t0 = BootInstant::now();
        let alive = |s: u64| LeaseState::Alive {
            safe_until: t0 + secs(s),
        };
        let rows = [
            (alive(10), alive(12), alive(12)),
            (alive(12), alive(10), alive(12)),
            (alive(10), LeaseState::Lost, LeaseState::Lost),
            (LeaseState::Lost, alive(20), LeaseState::Lost),
        ];
        for (old, new, want) in rows {
            assert_eq!(merged(old, new), want, "{old:?} then {new:?}");
        }
    }

    #[test]
    fn patience_is_the_attempt_timeout_until_the_link_proves_slower() {
        let ms = Duration::from_millis;
        let t = timing(10); // attempt 500 ms, slowest (6 s - 1 s) / 3
        let slowest = t.slowest_attempt();
        assert_eq!(slowest, Duration::from_nanos(1_666_666_666));
        // (round trips seen, then: the wait for a reply)
        let rows: [(&[u64], Duration); 6] = [
            (&[], ms(500)),
            (&[1, 2, 1, 3], ms(500)),
            (&[100; 20], ms(500)),
            // A first slow reply: wait long while the variation is unknown.
            (&[700], slowest),
            // A steadily slow link: a little over its round trip.
            (&[700; 40], ms(700)),
            // Ever slower: never beyond the bound that keeps one lost keepalive harmless.
            (&[5_000; 10], slowest),
        ];
        for (seen, reply) in rows {
            let mut p = Patience::default();
            seen.iter().for_each(|&r| p.sample(ms(r)));
            let got_reply = p.reply(&t);
            let near = |got: Duration, want: Duration| {
                got >= want && got <= want + ms(20) || got == slowest && want == slowest
            };
            assert!(
                near(got_reply, reply),
                "{seen:?}: reply {got_reply:?}, want {reply:?}"
            );
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

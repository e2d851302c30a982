//! What the outside world can see of a replica: its live status, its Prometheus metrics and its
//! systemd notifications, fed by the leadership loop and the keepalive task, read by the HTTP
//! endpoints ([`crate::report::http`]). Nothing here decides anything; it only reports.
//!
//! A metric shows only what happened: `last_child_exit_code` appears once a child has exited
//! (a 0 before that would read as a clean exit), the takeover and stop histograms count each
//! takeover and each stop once, and the time to ready only children that send `READY=1`.
//!
//! What the child said of itself on its notify socket ([`ChildView`]) is shown in `/status`,
//! decides `/leader` when the leader waits for `READY=1` (`--ready-timeout`), and is reflected in
//! our own `STATUS=` to systemd ([`Observer::mirror_child`], rate-limited by its caller).

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
use tokio::sync::watch;

use crate::core::clock::BootInstant;
use crate::core::lifecycle::Phase;
use crate::core::timing::TimingModel;
use crate::election::session::LeaseEvents;
use crate::health::{Outcome, Report};
use crate::notify_socket::{self, Expectations, Notices};
use crate::report::exposition::{self, Format};
use crate::report::notify::Notifier;

/// The live status behind `/status`.
#[derive(Debug, Clone)]
pub struct Status {
    pub phase: Phase,
    /// The instant the lease cannot have expired before, from the last acknowledged keepalive.
    pub safe_until: Option<BootInstant>,
    /// The last phase entered: its name, why, and when.
    pub last_transition: Option<(&'static str, String, BootInstant)>,
    pub became_standby: Option<BootInstant>,
    /// When this replica became first in line (joined at the head of the queue, or the candidate
    /// ahead went), until its child starts: the start of a takeover.
    pub first_in_line: Option<BootInstant>,
    /// The last health check of the current child (`--health-cmd`, `--health-url`).
    pub health: Option<HealthView>,
    /// What the current child said of itself on its notify socket, from its start (kept while
    /// it is stopped, as its health is).
    pub child: Option<ChildView>,
    /// When the takeover that started the current child began (first in line), until its
    /// `READY=1`: the time to ready is measured from it.
    takeover_began: Option<BootInstant>,
    /// `--hot-standby`: the role the child was last told, and the one it confirmed.
    pub hot: Option<HotView>,
}

/// `--hot-standby`: what the child was told and what it said (`ROLE=`), for `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotView {
    /// "leader" or "standby".
    pub told: &'static str,
    pub told_at: BootInstant,
    /// The role of its last `ROLE=` message, if any.
    pub confirmed: Option<&'static str>,
}

/// What the current child said of itself, for `/status` and `/leader`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildView {
    pub started_at: BootInstant,
    /// Whether it counts as ready: it sent `READY=1`, or nobody waits for that.
    pub ready: bool,
    /// Whether the leader waits for its `READY=1` (`--ready-timeout`).
    pub awaits_ready: bool,
    /// How long after its start it sent `READY=1`, if it did.
    pub ready_after: Option<Duration>,
    /// Its last `STATUS=` text (sanitised).
    pub status: Option<String>,
    /// It sent `STOPPING=1`.
    pub stopping: bool,
    /// What its last `EXTEND_TIMEOUT_USEC=` asked for.
    pub extend_timeout: Option<Duration>,
    /// When its last `WATCHDOG=1` came.
    pub last_ping: Option<BootInstant>,
}

impl ChildView {
    fn started(at: BootInstant, expect: Expectations) -> ChildView {
        ChildView {
            started_at: at,
            ready: !expect.awaits_ready(),
            awaits_ready: expect.awaits_ready(),
            ready_after: None,
            status: None,
            stopping: false,
            extend_timeout: None,
            last_ping: None,
        }
    }

    /// Whether the child used the protocol, or is waited for: then there is something to say.
    fn worth_showing(&self) -> bool {
        self.awaits_ready || self.ready_after.is_some() || self.status.is_some()
    }
}

/// The last health check, for `/status`.
#[derive(Debug, Clone)]
pub struct HealthView {
    pub healthy: bool,
    pub consecutive_failures: u32,
    pub retries: u32,
    /// "healthy", or why the check failed.
    pub last: String,
    pub checked_at: BootInstant,
    pub took: Duration,
}

/// Health-check metrics (zero without a check).
struct HealthMetrics {
    checks: Family<Vec<(String, String)>, Counter>,
    consecutive_failures: Gauge,
    step_downs: Counter,
}

impl HealthMetrics {
    fn register(registry: &mut Registry) -> HealthMetrics {
        HealthMetrics {
            checks: registered(
                registry,
                "health_checks",
                "Health checks of the leader's child, by result (healthy, unhealthy)",
                Family::default(),
            ),
            consecutive_failures: registered(
                registry,
                "health_consecutive_failures",
                "Failed health checks in a row of the current child",
                Gauge::default(),
            ),
            step_downs: registered(
                registry,
                "health_step_downs",
                "Times this replica stepped down because its child failed its health checks",
                Counter::default(),
            ),
        }
    }
}

/// Registers `metric` and returns it: the registry keeps a handle, the caller updates the value.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Status {
    pub fn is_leader(&self) -> bool {
        matches!(self.phase, Phase::Leading { .. })
    }
}

struct Metrics {
    registry: Registry,
    is_leader: Gauge,
    /// `--slots N`: 1 for the slot held while its child runs, 0 for slots held before.
    slot_leading: Family<Vec<(String, String)>, Gauge>,
    transitions: Family<Vec<(String, String)>, Counter>,
    lease: LeaseMetrics,
    child: ChildMetrics,
    election_wait: Histogram,
    takeover_wait: Histogram,
    stop_duration: Histogram,
    kill_teardown: Histogram,
    kill_teardown_over_margin: Counter,
    health: HealthMetrics,
    notify: NotifyMetrics,
    hot: HotMetrics,
}

/// `--hot-standby`: promotions and demotions of this replica's child.
struct HotMetrics {
    promotions: Counter,
    demotions: Family<Vec<(String, String)>, Counter>,
    promotion_confirm: Histogram,
    demotion_confirm: Histogram,
}

impl HotMetrics {
    fn register(registry: &mut Registry) -> HotMetrics {
        HotMetrics {
            promotions: registered(
                registry,
                "promotions",
                "--hot-standby: times this replica's standby child was told it leads",
                Counter::default(),
            ),
            demotions: registered(
                registry,
                "demotions",
                "--hot-standby: demotions of this replica's child, by how they ended (confirmed: it sent ROLE=standby; stopped: its tree was stopped first, at the lease deadline or on a loss of leadership)",
                Family::default(),
            ),
            promotion_confirm: registered(
                registry,
                "promotion_confirm_seconds",
                "--hot-standby: time from telling the child it leads to its ROLE=leader",
                Histogram::new(STOP_BUCKETS),
            ),
            demotion_confirm: registered(
                registry,
                "demotion_confirm_seconds",
                "--hot-standby: time from telling the child to stand by to its ROLE=standby",
                Histogram::new(STOP_BUCKETS),
            ),
        }
    }
}

/// What the children said on their notify sockets, and what came of it.
struct NotifyMetrics {
    /// Per [`notify_socket::Outcome`], in its order.
    datagrams: [Counter; 4],
    watchdog_step_downs: Family<Vec<(String, String)>, Counter>,
    ready_timeouts: Counter,
    child_ready: Gauge,
    takeover_ready: Histogram,
}

impl NotifyMetrics {
    fn register(registry: &mut Registry) -> NotifyMetrics {
        let datagrams: Family<Vec<(String, String)>, Counter> = registered(
            registry,
            "notify_datagrams",
            "Datagrams on the children's notify sockets, by what became of them (accepted; ignored: foreign, from outside the child's tree; malformed; oversized)",
            Family::default(),
        );
        let outcomes = [
            notify_socket::Outcome::Accepted,
            notify_socket::Outcome::Foreign,
            notify_socket::Outcome::Malformed,
            notify_socket::Outcome::Oversized,
        ];
        NotifyMetrics {
            datagrams: outcomes.map(|o| {
                datagrams
                    .get_or_create(&vec![("result".to_owned(), o.label().to_owned())])
                    .clone()
            }),
            watchdog_step_downs: registered(
                registry,
                "watchdog_step_downs",
                "Times this replica stepped down because its child missed its watchdog (--watchdog) or sent WATCHDOG=trigger, by reason (missed, trigger)",
                Family::default(),
            ),
            ready_timeouts: registered(
                registry,
                "ready_timeouts",
                "Times this replica stepped down because its child sent no READY=1 within --ready-timeout",
                Counter::default(),
            ),
            child_ready: registered(
                registry,
                "child_ready",
                "1 while this replica leads and its child is ready (it sent READY=1, or --ready-timeout is not set)",
                Gauge::default(),
            ),
            takeover_ready: registered(
                registry,
                "takeover_ready_seconds",
                "Time from becoming first in line to this replica's child sending READY=1 (only children that send it)",
                Histogram::new(TAKEOVER_BUCKETS),
            ),
        }
    }
}

impl Metrics {
    /// Every metric, registered under `singleton_exec_` in the order `/metrics` shows them.
    fn register() -> Metrics {
        let mut r = Registry::with_prefix("singleton_exec");
        let is_leader = registered(
            &mut r,
            "is_leader",
            "1 while this replica leads and its child runs",
            Gauge::default(),
        );
        let slot_leading = registered(
            &mut r,
            "slot_leading",
            "With --slots N: 1 while this replica holds the slot and its child runs, 0 for a slot it held before",
            Family::default(),
        );
        let transitions = registered(
            &mut r,
            "leadership_transitions",
            "Role changes, by the role entered",
            Family::default(),
        );
        let lease = LeaseMetrics::register(&mut r);
        let child = ChildMetrics::register(&mut r);
        let election_wait = registered(
            &mut r,
            "election_wait_seconds",
            "Time from joining the election to leading",
            Histogram::new(WAIT_BUCKETS),
        );
        let takeover_wait = registered(
            &mut r,
            "takeover_wait_seconds",
            "Time from becoming first in line (joining at the head of the queue, or the candidate ahead leaving) to this replica's child starting",
            Histogram::new(TAKEOVER_BUCKETS),
        );
        let stop_duration = registered(
            &mut r,
            "stop_seconds",
            "Time from the start of a stop sequence (stop signal, or SIGKILL at once) to the child's whole tree being gone",
            Histogram::new(STOP_BUCKETS),
        );
        let kill_teardown = registered(
            &mut r,
            "kill_teardown_seconds",
            "Time from the first SIGKILL of a stop to the child's whole tree being gone: the kernel's teardown, which --margin must exceed",
            Histogram::new(STOP_BUCKETS),
        );
        let kill_teardown_over_margin = registered(
            &mut r,
            "kill_teardown_over_margin",
            "Stops whose teardown after SIGKILL took longer than --margin (raise --margin)",
            Counter::default(),
        );
        let health = HealthMetrics::register(&mut r);
        let notify = NotifyMetrics::register(&mut r);
        let hot = HotMetrics::register(&mut r);
        Metrics {
            registry: r,
            is_leader,
            slot_leading,
            transitions,
            lease,
            child,
            election_wait,
            takeover_wait,
            stop_duration,
            kill_teardown,
            kill_teardown_over_margin,
            health,
            notify,
            hot,
        }
    }
}

/// The lease's keepalives and the fail-closed deadline they move.
struct LeaseMetrics {
    keepalive_rtt: Histogram,
    keepalive_failures: Counter,
    deadline_seconds: Gauge<f64, AtomicU64>,
}

impl LeaseMetrics {
    fn register(registry: &mut Registry) -> LeaseMetrics {
        LeaseMetrics {
            keepalive_rtt: registered(
                registry,
                "keepalive_rtt_seconds",
                "Round trip of acknowledged lease keepalives",
                Histogram::new(RTT_BUCKETS),
            ),
            keepalive_failures: registered(
                registry,
                "keepalive_failures",
                "Keepalives that failed or timed out",
                Counter::default(),
            ),
            deadline_seconds: registered(
                registry,
                "deadline_seconds",
                "Seconds until the fail-closed deadline (stop the child unless a keepalive is acknowledged); negative once passed",
                Gauge::default(),
            ),
        }
    }
}

/// How the leader's children ended.
struct ChildMetrics {
    restarts: Counter,
    /// Registered when the first child exits: before that there is no exit code to show.
    last_exit_code: Option<Gauge>,
}

impl ChildMetrics {
    fn register(registry: &mut Registry) -> ChildMetrics {
        ChildMetrics {
            restarts: registered(
                registry,
                "child_restarts",
                "Child restarts under --on-child-exit=restart",
                Counter::default(),
            ),
            last_exit_code: None,
        }
    }

    /// The gauge of the last exit code, registered on first use.
    fn last_exit_code(&mut self, registry: &mut Registry) -> &Gauge {
        self.last_exit_code.get_or_insert_with(|| {
            registered(
                registry,
                "last_child_exit_code",
                "Exit code of the last child (128+S if killed by signal S); absent until a child has exited",
                Gauge::default(),
            )
        })
    }
}

/// Keepalive round trips, in seconds: a healthy etcd answers in milliseconds.
const RTT_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Waits from joining an election to leading, in seconds: from a handoff to hours in the queue.
const WAIT_BUCKETS: [f64; 10] = [0.01, 0.1, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0];
/// Takeovers, in seconds: milliseconds after a release, up to seconds while a former holder's
/// tree may still be dying or an orphaned key ahead waits for its lease.
const TAKEOVER_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Stops, in seconds: milliseconds for a child that exits on its stop signal, up to `--grace`
/// (then SIGKILL) for one that does not.
const STOP_BUCKETS: [f64; 13] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Shared by the leadership loop, the keepalive task and the HTTP server.
pub struct Observer {
    pub id: String,
    pub election: String,
    pub timing: TimingModel,
    pub notifier: Notifier,
    /// What a leader expects of its child (`--watchdog`, `--ready-timeout`).
    expect: Expectations,
    status: Mutex<Status>,
    /// The current child's notices, live: its heartbeats wake nobody, so `/status` reads the
    /// last one here.
    notices: Mutex<Option<watch::Receiver<Notices>>>,
    /// `--hot-standby`: the child's notices, kept across leaderships (the child is).
    hot_notices: Mutex<Option<watch::Receiver<Notices>>>,
    metrics: Mutex<Metrics>,
    /// The slots this replica has held (`--slots N`), for their metric.
    held: Mutex<Vec<u32>>,
}

fn slot_label(slot: u32) -> Vec<(String, String)> {
    vec![("slot".to_owned(), slot.to_string())]
}

impl Observer {
    pub fn new(id: String, election: String, timing: TimingModel, notifier: Notifier) -> Self {
        Observer {
            id,
            election,
            timing,
            notifier,
            expect: Expectations::default(),
            status: Mutex::new(Status {
                phase: Phase::Starting,
                safe_until: None,
                last_transition: None,
                became_standby: None,
                first_in_line: None,
                health: None,
                child: None,
                takeover_began: None,
                hot: None,
            }),
            notices: Mutex::new(None),
            hot_notices: Mutex::new(None),
            metrics: Mutex::new(Metrics::register()),
            held: Mutex::new(Vec::new()),
        }
    }

    /// What a leader expects of its child: whether it waits for `READY=1` decides `/leader`.
    pub fn expecting(mut self, expect: Expectations) -> Self {
        self.expect = expect;
        self
    }

    pub fn status(&self) -> Status {
        let mut st = self.status.lock().expect("status lock").clone();
        let notices = self.notices.lock().expect("notices lock");
        if let (Some(view), Some(n)) = (&mut st.child, notices.as_ref()) {
            view.last_ping = n.borrow().last_ping;
        }
        let hot_notices = self.hot_notices.lock().expect("notices lock");
        if let (Some(view), Some(n)) = (&mut st.hot, hot_notices.as_ref()) {
            view.confirmed = n.borrow().role.map(|r| r.role.as_str());
        }
        st
    }

    /// `--hot-standby`: the current child's notices, for the role it confirmed.
    pub fn hot_listened(&self, notices: watch::Receiver<Notices>) {
        *self.hot_notices.lock().expect("notices lock") = Some(notices);
    }

    /// `--hot-standby`: the child was told `role` (`promotion`: it was told it leads).
    pub fn hot_told(&self, role: &'static str, promotion: bool) {
        self.status.lock().expect("status lock").hot = Some(HotView {
            told: role,
            told_at: BootInstant::now(),
            confirmed: None,
        });
        if promotion {
            self.metrics
                .lock()
                .expect("metrics lock")
                .hot
                .promotions
                .inc();
        }
    }

    /// `--hot-standby`: the leader's child was told it leads and has not confirmed yet: it is
    /// not ready (`/leader` answers 503, `child_ready` is 0) until it does.
    pub fn hot_promoting(&self) {
        {
            let mut st = self.status.lock().expect("status lock");
            if let Some(view) = &mut st.child {
                view.ready = false;
                view.awaits_ready = true;
            }
        }
        let m = self.metrics.lock().expect("metrics lock");
        m.notify.child_ready.set(0);
    }

    /// `--hot-standby`: the child confirmed its promotion, `took` after it was told: ready now
    /// (the takeover's time to ready is measured to here).
    pub fn hot_promotion_confirmed(&self, took: Duration) {
        let now = BootInstant::now();
        {
            let mut st = self.status.lock().expect("status lock");
            if let Some(view) = &mut st.child {
                view.ready = true;
                view.ready_after = Some(now.saturating_duration_since(view.started_at));
            }
        }
        self.child_became_ready(now);
        let ready = self.child_ready();
        let m = self.metrics.lock().expect("metrics lock");
        m.hot.promotion_confirm.observe(took.as_secs_f64());
        m.notify.child_ready.set(i64::from(ready));
    }

    /// `--hot-standby`: a demotion ended: confirmed `took` after it was told, or (`None`) the
    /// child's tree was stopped first.
    pub fn hot_demotion_ended(&self, confirmed: Option<Duration>) {
        let m = self.metrics.lock().expect("metrics lock");
        let outcome = match confirmed {
            Some(took) => {
                m.hot.demotion_confirm.observe(took.as_secs_f64());
                "confirmed"
            }
            None => "stopped",
        };
        m.hot
            .demotions
            .get_or_create(&vec![("outcome".to_owned(), outcome.to_owned())])
            .inc();
    }

    /// The current child's notices, read live for its last heartbeat.
    pub fn child_listened(&self, notices: watch::Receiver<Notices>) {
        *self.notices.lock().expect("notices lock") = Some(notices);
    }

    /// Enters `phase`: one log line, the status, the metrics and systemd `STATUS=`, all from the
    /// same value.
    pub fn enter(&self, phase: Phase) {
        let now = BootInstant::now();
        let name = phase.name();
        let why = phase.summary();
        self.log(&phase, &why);
        {
            let mut st = self.status.lock().expect("status lock");
            let was_standby = matches!(st.phase, Phase::Standby { .. });
            match &phase {
                Phase::Standby { .. } => {
                    if !was_standby {
                        st.became_standby = Some(now);
                    }
                    // Set once this candidacy is first in line, after it joined.
                    st.first_in_line = None;
                }
                Phase::Leading { .. } => {
                    let m = self.metrics.lock().expect("metrics lock");
                    let since = |at: BootInstant| now.saturating_duration_since(at).as_secs_f64();
                    if let Some(at) = st.became_standby.take() {
                        m.election_wait.observe(since(at));
                    }
                    st.takeover_began = st.first_in_line;
                    if let Some(at) = st.first_in_line.take() {
                        m.takeover_wait.observe(since(at));
                    }
                }
                _ => {}
            }
            if matches!(phase, Phase::Leading { .. } | Phase::Standby { .. }) {
                st.health = None; // a new child, or none: the last result was of another one
                *self.notices.lock().expect("notices lock") = None;
                st.child = match phase {
                    Phase::Leading { .. } => Some(ChildView::started(now, self.expect)),
                    _ => None,
                };
            }
            st.last_transition = Some((name, why.clone(), now));
            st.phase = phase.clone();
        }
        let child_ready = self.child_ready();
        let m = self.metrics.lock().expect("metrics lock");
        m.is_leader
            .set(i64::from(matches!(phase, Phase::Leading { .. })));
        m.notify.child_ready.set(i64::from(child_ready));
        let held = match &phase {
            Phase::Leading { slot, .. } => *slot,
            _ => None,
        };
        if let Some(slot) = held {
            m.slot_leading.get_or_create(&slot_label(slot)).set(1);
        } else {
            // Every slot this replica held: it holds none now.
            for slot in &self.slots_held_before() {
                m.slot_leading.get_or_create(&slot_label(*slot)).set(0);
            }
        }
        drop(m);
        if let Some(slot) = held {
            let mut before = self.held.lock().expect("held lock");
            if !before.contains(&slot) {
                before.push(slot);
            }
        }
        let m = self.metrics.lock().expect("metrics lock");
        m.transitions
            .get_or_create(&vec![("role".to_owned(), name.to_owned())])
            .inc();
        drop(m);
        self.mirror_child();
    }

    /// Our `STATUS=` to systemd: the role and why, and what the child said of itself when it
    /// uses the protocol (`...; child ready: serving 3 clients`). Sent on every phase entered,
    /// and by the leadership loop when the child's word changes (rate-limited there).
    pub fn mirror_child(&self) {
        let line = systemd_status(&self.status());
        self.notifier.status(&line);
    }

    fn slots_held_before(&self) -> Vec<u32> {
        self.held.lock().expect("held lock").clone()
    }

    /// One line per phase entered, at info: starting, standby, leader. How a leadership ends is
    /// told where it is decided, each in one line: the stop by the process thread (a warning
    /// when the lease is lost or at risk), the release by the leadership loop; the phases
    /// `stopping` and `lost` are logged at debug. Only fields the phase has are shown: no empty
    /// key, no `pid=0`.
    fn log(&self, phase: &Phase, why: &str) {
        use tracing::field::display;
        let (id, role) = (self.id.as_str(), phase.name());
        let key = phase.key();
        let revision = phase.create_revision();
        let lease = phase.lease().map(display);
        let pid = phase.child_pid();
        let slot = match phase {
            Phase::Leading { slot, .. } => *slot,
            _ => None,
        };
        match phase {
            Phase::Starting | Phase::Standby { .. } | Phase::Leading { .. } => {
                tracing::info!(role, id, key, revision, lease, pid, slot, "{role}: {why}")
            }
            Phase::Stopping { .. } | Phase::Lost { .. } => {
                tracing::debug!(role, id, key, revision, "{role}: {why}")
            }
        }
    }

    /// A health check of the child ended.
    pub fn health_checked(&self, report: &Report) {
        let healthy = matches!(report.outcome, Outcome::Healthy);
        self.status.lock().expect("status lock").health = Some(HealthView {
            healthy,
            consecutive_failures: report.failures,
            retries: report.retries,
            last: match &report.outcome {
                Outcome::Healthy => "healthy".into(),
                Outcome::Failed(why) => why.clone(),
            },
            checked_at: BootInstant::now(),
            took: report.took,
        });
        let m = self.metrics.lock().expect("metrics lock");
        let result = if healthy { "healthy" } else { "unhealthy" };
        m.health
            .checks
            .get_or_create(&vec![("result".to_owned(), result.to_owned())])
            .inc();
        m.health
            .consecutive_failures
            .set(i64::from(report.failures));
    }

    /// What the current child has said now ([`Notices`]); `/status` shows it, `/leader` and the
    /// `child_ready` metric follow it.
    pub fn child_noticed(&self, n: &Notices) {
        {
            let mut st = self.status.lock().expect("status lock");
            let Some(view) = &mut st.child else { return };
            view.ready_after = n
                .ready_at
                .map(|at| at.saturating_duration_since(view.started_at));
            view.ready = self.expect.ready(n);
            view.status = n.status.clone();
            view.stopping = n.stopping_at.is_some();
            view.extend_timeout = n.extension.map(|e| e.asked);
            view.last_ping = n.last_ping;
        }
        let ready = self.child_ready();
        let m = self.metrics.lock().expect("metrics lock");
        m.notify.child_ready.set(i64::from(ready));
    }

    /// The current child sent `READY=1` at `at`: the time to ready of its takeover, if it
    /// started with one (a restart under the same leadership is no takeover).
    pub fn child_became_ready(&self, at: BootInstant) {
        let began = self
            .status
            .lock()
            .expect("status lock")
            .takeover_began
            .take();
        if let Some(began) = began {
            let m = self.metrics.lock().expect("metrics lock");
            m.notify
                .takeover_ready
                .observe(at.saturating_duration_since(began).as_secs_f64());
        }
    }

    /// Whether this replica leads with a child that is ready (`/leader`, `child_ready`).
    pub fn child_ready(&self) -> bool {
        let st = self.status.lock().expect("status lock");
        st.is_leader() && st.child.as_ref().is_some_and(|c| c.ready)
    }

    /// The leader steps down because its child missed its watchdog (or, `trigger`, asked to).
    pub fn watchdog_step_down(&self, trigger: bool) {
        let reason = if trigger { "trigger" } else { "missed" };
        let m = self.metrics.lock().expect("metrics lock");
        m.notify
            .watchdog_step_downs
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc();
    }

    /// The leader steps down because its child sent no `READY=1` in time.
    pub fn ready_timed_out(&self) {
        let m = self.metrics.lock().expect("metrics lock");
        m.notify.ready_timeouts.inc();
    }

    /// The leader steps down because its child failed its health checks.
    pub fn health_step_down(&self) {
        let m = self.metrics.lock().expect("metrics lock");
        m.health.step_downs.inc();
    }

    /// The child's tree is gone: the main child exited with `code`.
    pub fn child_exited(&self, code: i32, restarting: bool) {
        let mut guard = self.metrics.lock().expect("metrics lock");
        let m = &mut *guard;
        m.child.last_exit_code(&mut m.registry).set(i64::from(code));
        if restarting {
            m.child.restarts.inc();
        }
    }

    /// A stop sequence ended with the child's tree gone, `took` after it began (as the process
    /// thread measured it, so the time this loop took to hear of it does not count).
    pub fn stop_took(&self, took: Duration) {
        let m = self.metrics.lock().expect("metrics lock");
        m.stop_duration.observe(took.as_secs_f64());
    }

    /// A tree took `teardown` to go after its first SIGKILL; whether that is longer than
    /// `margin` (counted, and the caller warns).
    pub fn kill_teardown(&self, teardown: Duration, margin: Duration) -> bool {
        let m = self.metrics.lock().expect("metrics lock");
        m.kill_teardown.observe(teardown.as_secs_f64());
        let over = teardown > margin;
        if over {
            m.kill_teardown_over_margin.inc();
        }
        over
    }

    /// This replica became first in line at `at` (see [`Status::first_in_line`]); its takeover
    /// is counted when its child starts.
    pub fn first_in_line(&self, at: BootInstant) {
        self.status.lock().expect("status lock").first_in_line = Some(at);
    }

    /// A new lease or an acknowledged keepalive.
    pub fn lease_renewed(&self, safe_until: BootInstant, rtt: Option<Duration>) {
        self.status.lock().expect("status lock").safe_until = Some(safe_until);
        if let Some(rtt) = rtt {
            self.metrics
                .lock()
                .expect("metrics lock")
                .lease
                .keepalive_rtt
                .observe(rtt.as_secs_f64());
        }
    }

    /// The lease is gone or being replaced.
    pub fn lease_dropped(&self) {
        self.status.lock().expect("status lock").safe_until = None;
    }

    pub fn keepalive_failed(&self) {
        self.metrics
            .lock()
            .expect("metrics lock")
            .lease
            .keepalive_failures
            .inc();
    }

    /// Whether the etcd session is fresh: a lease whose renew deadline has not passed.
    pub fn session_fresh(&self) -> bool {
        self.status()
            .safe_until
            .is_some_and(|s| !self.timing.stop_at(s).has_passed())
    }

    /// Milliseconds until the fail-closed deadline (negative once passed), if there is a lease.
    pub fn ms_until_deadline(&self) -> Option<i64> {
        self.status().safe_until.map(|s| {
            let stop = self.timing.stop_at(s);
            let now = BootInstant::now();
            if stop >= now {
                stop.saturating_duration_since(now).as_millis() as i64
            } else {
                -(now.saturating_duration_since(stop).as_millis() as i64)
            }
        })
    }

    /// The metrics in `format`.
    pub fn encode_metrics(&self, format: Format) -> String {
        let deadline = self
            .ms_until_deadline()
            .map(|ms| ms as f64 / 1000.0)
            .unwrap_or(0.0);
        let m = self.metrics.lock().expect("metrics lock");
        m.lease.deadline_seconds.set(deadline);
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &m.registry);
        drop(m);
        match format {
            Format::OpenMetrics => out,
            Format::PrometheusText => exposition::to_prometheus_text(&out),
        }
    }
}
/// The `STATUS=` line for systemd: `ROLE[ fencing_revision N]: WHY`, and what the child said
/// of itself when it uses the protocol or is waited for.
fn systemd_status(st: &Status) -> String {
    let (name, why) = match &st.last_transition {
        Some((name, why, _)) => (*name, why.as_str()),
        None => (st.phase.name(), ""),
    };
    let rev = st
        .phase
        .fencing_revision()
        .map(|r| format!(" fencing_revision {r}"))
        .unwrap_or_default();
    let mut line = format!("{name}{rev}: {why}");
    let child = st.child.as_ref().filter(|c| c.worth_showing());
    if let (Some(c), Phase::Leading { .. } | Phase::Stopping { .. }) = (child, &st.phase) {
        line += if c.ready {
            "; child ready"
        } else {
            "; child not ready"
        };
        if let Some(status) = &c.status {
            line += ": ";
            line += status;
        }
    }
    line
}

impl notify_socket::Tally for Observer {
    fn datagram(&self, outcome: notify_socket::Outcome) {
        let m = self.metrics.lock().expect("metrics lock");
        m.notify.datagrams[outcome as usize].inc();
    }
}

impl LeaseEvents for Observer {
    fn lease_renewed(&self, safe_until: BootInstant, rtt: Option<Duration>) {
        Observer::lease_renewed(self, safe_until, rtt)
    }
    fn lease_dropped(&self) {
        Observer::lease_dropped(self)
    }
    fn keepalive_failed(&self) {
        Observer::keepalive_failed(self)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::lifecycle::{LeaseId, StopReason};
    use crate::core::timing::TimingInput;
    use crate::health::Verdict;

    /// An observer with a 10 s TTL (grace 3 s, margin 1 s) and no systemd socket.
    pub(crate) fn observer() -> Observer {
        let timing = TimingModel::new(TimingInput {
            ttl: Some(Duration::from_secs(10)),
            keepalive_interval: None,
            grace: None,
            margin: None,
        })
        .expect("the default timing");
        Observer::new("r1".into(), "app".into(), timing, Notifier::default())
    }

    pub(crate) fn standby() -> Phase {
        Phase::Standby {
            lease: LeaseId(0xa1),
            key: "/singleton-exec/app/a1".into(),
            revision: 5,
        }
    }

    pub(crate) fn leading(slot: Option<u32>) -> Phase {
        Phase::Leading {
            lease: LeaseId(0xa1),
            key: "/singleton-exec/app/a1".into(),
            revision: 9,
            pid: 4242,
            slot,
        }
    }

    fn stopping(reason: StopReason) -> Phase {
        Phase::Stopping {
            key: "/singleton-exec/app/a1".into(),
            revision: 9,
            reason,
            kill_in: Duration::from_secs(3),
        }
    }

    fn lost(reason: StopReason) -> Phase {
        Phase::Lost {
            key: "/singleton-exec/app/a1".into(),
            revision: 9,
            reason,
        }
    }

    /// One sample's value in the `/metrics` text: `name` with its labels, as printed.
    pub(crate) fn sample(obs: &Observer, name: &str) -> Option<f64> {
        let text = obs.encode_metrics(Format::PrometheusText);
        let line = text.lines().find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' '))
        })?;
        line.rsplit(' ').next()?.parse().ok()
    }

    #[test]
    fn the_leader_gauge_and_the_role_follow_the_phase() {
        let obs = observer();
        let rows = [
            (Phase::Starting, "starting", false),
            (standby(), "standby", false),
            (leading(None), "leader", true),
            (stopping(StopReason::Deadline), "stopping", false),
            (lost(StopReason::LeaseGone), "lost", false),
            (leading(Some(1)), "leader", true),
            (stopping(StopReason::Resign), "stopping", false),
        ];
        for (phase, role, leader) in rows {
            obs.enter(phase.clone());
            let st = obs.status();
            assert_eq!(
                (st.phase.name(), st.is_leader()),
                (role, leader),
                "{phase:?}"
            );
            let gauge = sample(&obs, "singleton_exec_is_leader");
            assert_eq!(gauge, Some(f64::from(u8::from(leader))), "{phase:?}");
            let (name, why, _) = st.last_transition.expect("a transition");
            assert_eq!((name, why), (role, phase.summary()));
        }
    }

    #[test]
    fn transitions_and_election_waits_are_counted() {
        let obs = observer();
        for phase in [
            standby(),
            standby(), // still standby: the wait goes on
            leading(None),
            stopping(StopReason::Resign),
            lost(StopReason::Resign),
            standby(),
            leading(None),
            leading(None), // a restart: no new wait
        ] {
            obs.enter(phase);
        }
        let count = |role: &str| {
            let name = format!("singleton_exec_leadership_transitions_total{{role=\"{role}\"}}");
            sample(&obs, &name)
        };
        assert_eq!(count("standby"), Some(3.0));
        assert_eq!(count("leader"), Some(3.0));
        assert_eq!(count("stopping"), Some(1.0));
        assert_eq!(count("lost"), Some(1.0));
        assert_eq!(count("starting"), None);
        let waits = sample(&obs, "singleton_exec_election_wait_seconds_count");
        assert_eq!(waits, Some(2.0));
    }

    #[test]
    fn a_slot_is_leading_while_held_and_zero_after() {
        let obs = observer();
        let slot = |n: u32| {
            sample(
                &obs,
                &format!("singleton_exec_slot_leading{{slot=\"{n}\"}}"),
            )
        };
        obs.enter(leading(None));
        assert_eq!(
            (slot(0), slot(2)),
            (None, None),
            "the singleton has no slot metric"
        );
        obs.enter(leading(Some(2)));
        assert_eq!(slot(2), Some(1.0));
        obs.enter(stopping(StopReason::Unhealthy));
        assert_eq!(slot(2), Some(0.0));
        obs.enter(leading(Some(0)));
        assert_eq!((slot(0), slot(2)), (Some(1.0), Some(0.0)));
        obs.enter(standby());
        assert_eq!((slot(0), slot(2)), (Some(0.0), Some(0.0)));
    }

    fn report(failures: u32, outcome: Outcome) -> Report {
        Report {
            verdict: Verdict::Failing(failures),
            outcome,
            failures,
            retries: 3,
            took: Duration::from_millis(12),
        }
    }

    #[test]
    fn the_last_health_check_belongs_to_the_current_child() {
        let obs = observer();
        obs.enter(leading(None));
        obs.health_checked(&report(2, Outcome::Failed("exit status 1".into())));
        let h = obs.status().health.expect("a health view");
        assert_eq!(
            (h.healthy, h.consecutive_failures, h.retries),
            (false, 2, 3)
        );
        assert_eq!(
            (h.last.as_str(), h.took),
            ("exit status 1", Duration::from_millis(12))
        );
        obs.health_checked(&report(0, Outcome::Healthy));
        assert_eq!(obs.status().health.map(|h| h.last), Some("healthy".into()));
        // Stopping the same child keeps its last result; a new child, or none, clears it.
        let rows = [
            (stopping(StopReason::Unhealthy), true),
            (lost(StopReason::Unhealthy), true),
            (standby(), false),
            (leading(None), false),
        ];
        for (phase, kept) in rows {
            obs.enter(leading(None));
            obs.health_checked(&report(0, Outcome::Healthy));
            obs.enter(phase.clone());
            assert_eq!(obs.status().health.is_some(), kept, "{phase:?}");
        }
    }

    #[test]
    fn health_metrics_count_results_and_step_downs() {
        let obs = observer();
        obs.health_checked(&report(1, Outcome::Failed("x".into())));
        obs.health_checked(&report(2, Outcome::Failed("x".into())));
        obs.health_checked(&report(0, Outcome::Healthy));
        obs.health_checked(&report(1, Outcome::Failed("x".into())));
        obs.health_step_down();
        let get = |n: &str| sample(&obs, n);
        assert_eq!(
            get("singleton_exec_health_checks_total{result=\"unhealthy\"}"),
            Some(3.0)
        );
        assert_eq!(
            get("singleton_exec_health_checks_total{result=\"healthy\"}"),
            Some(1.0)
        );
        assert_eq!(get("singleton_exec_health_consecutive_failures"), Some(1.0));
        assert_eq!(get("singleton_exec_health_step_downs_total"), Some(1.0));
    }

    /// A child waited for is ready once it says so, one that is not from its start; what it
    /// says is shown in our STATUS= to systemd once it uses the protocol.
    #[test]
    fn the_child_is_ready_as_it_says_and_the_systemd_status_tells_it() {
        use crate::notify_socket::{Expectations, Notices};
        let awaited = Expectations {
            watchdog: None,
            ready_timeout: Some(Duration::from_secs(5)),
            stop_timeout: None,
        };
        // (expectations, notices, ready, STATUS= line)
        let base = "leader fencing_revision 9: child started (fencing revision 9)";
        let said = |ready: bool, status: Option<&str>| Notices {
            ready_at: ready.then(BootInstant::now),
            status: status.map(str::to_owned),
            ..Notices::default()
        };
        let rows = [
            (
                Expectations::default(),
                said(false, None),
                true,
                base.to_owned(),
            ),
            (
                awaited,
                said(false, None),
                false,
                format!("{base}; child not ready"),
            ),
            (
                awaited,
                said(true, None),
                true,
                format!("{base}; child ready"),
            ),
            (
                Expectations::default(),
                said(false, Some("loading")),
                true,
                format!("{base}; child ready: loading"),
            ),
            (
                awaited,
                said(false, Some("loading")),
                false,
                format!("{base}; child not ready: loading"),
            ),
        ];
        for (expect, notices, ready, line) in rows {
            let obs = observer().expecting(expect);
            obs.enter(standby());
            assert!(!obs.child_ready(), "a standby has no child");
            obs.enter(leading(None));
            obs.child_noticed(&notices);
            assert_eq!(obs.child_ready(), ready, "{notices:?}");
            assert_eq!(systemd_status(&obs.status()), line, "{notices:?}");
            assert_eq!(
                sample(&obs, "singleton_exec_child_ready"),
                Some(f64::from(u8::from(ready)))
            );
            // Stopping, the line still says it; back in the queue, no child is left to tell of.
            obs.enter(stopping(StopReason::WatchdogMissed));
            let stopping_line = systemd_status(&obs.status());
            assert!(
                stopping_line.starts_with(
                    "stopping fencing_revision 9: stopping the child: the child sent no WATCHDOG=1"
                ),
                "{stopping_line}"
            );
            obs.enter(standby());
            assert_eq!(
                systemd_status(&obs.status()),
                "standby: waiting for leadership"
            );
            assert_eq!(sample(&obs, "singleton_exec_child_ready"), Some(0.0));
        }
    }

    #[test]
    fn notify_metrics_count_datagrams_step_downs_and_the_time_to_ready() {
        use crate::notify_socket::{Outcome, Tally};
        let obs = observer();
        for o in [
            Outcome::Accepted,
            Outcome::Accepted,
            Outcome::Foreign,
            Outcome::Malformed,
            Outcome::Oversized,
        ] {
            obs.datagram(o);
        }
        let get = |n: &str| sample(&obs, n);
        let datagrams = |r: &str| {
            get(&format!(
                "singleton_exec_notify_datagrams_total{{result=\"{r}\"}}"
            ))
        };
        assert_eq!(
            ["accepted", "foreign", "malformed", "oversized"].map(datagrams),
            [Some(2.0), Some(1.0), Some(1.0), Some(1.0)]
        );
        obs.watchdog_step_down(false);
        obs.watchdog_step_down(true);
        obs.watchdog_step_down(false);
        obs.ready_timed_out();
        assert_eq!(
            get("singleton_exec_watchdog_step_downs_total{reason=\"missed\"}"),
            Some(2.0)
        );
        assert_eq!(
            get("singleton_exec_watchdog_step_downs_total{reason=\"trigger\"}"),
            Some(1.0)
        );
        assert_eq!(get("singleton_exec_ready_timeouts_total"), Some(1.0));
        // A takeover's time to ready, from first in line to READY=1, once.
        let ready = || get("singleton_exec_takeover_ready_seconds_count");
        obs.enter(standby());
        let began = BootInstant::now();
        obs.first_in_line(began);
        obs.enter(leading(None));
        assert_eq!(ready(), Some(0.0));
        obs.child_became_ready(began + Duration::from_millis(800));
        assert_eq!(ready(), Some(1.0));
        assert_eq!(get("singleton_exec_takeover_ready_seconds_sum"), Some(0.8));
        // A restart under the same leadership is no takeover.
        obs.enter(leading(None));
        obs.child_became_ready(BootInstant::now());
        assert_eq!(ready(), Some(1.0));
    }

    #[test]
    fn the_session_is_fresh_until_the_stop_deadline() {
        let obs = observer();
        let now = BootInstant::now();
        assert!(!obs.session_fresh(), "no lease yet");
        assert_eq!(obs.ms_until_deadline(), None);
        assert_eq!(sample(&obs, "singleton_exec_deadline_seconds"), Some(0.0));
        // Safe for 10 s: the stop begins grace (3 s) and margin (1 s) before, about 6 s from now.
        obs.lease_renewed(
            now + Duration::from_secs(10),
            Some(Duration::from_millis(4)),
        );
        assert!(obs.session_fresh());
        let ms = obs.ms_until_deadline().unwrap();
        assert!((5_000..=6_000).contains(&ms), "{ms}");
        let s = sample(&obs, "singleton_exec_deadline_seconds").unwrap();
        assert!((5.0..=6.0).contains(&s), "{s}");
        assert_eq!(
            sample(&obs, "singleton_exec_keepalive_rtt_seconds_count"),
            Some(1.0)
        );
        // Safe for only 2 s: the stop deadline passed 2 s ago.
        obs.lease_renewed(now + Duration::from_secs(2), None);
        assert!(!obs.session_fresh());
        let ms = obs.ms_until_deadline().unwrap();
        assert!((-2_100..=-1_000).contains(&ms), "{ms}");
        assert_eq!(
            sample(&obs, "singleton_exec_keepalive_rtt_seconds_count"),
            Some(1.0)
        );
        obs.lease_dropped();
        assert!(!obs.session_fresh());
        assert_eq!(obs.ms_until_deadline(), None);
    }

    #[test]
    fn keepalive_failures_and_child_exits_are_counted() {
        let obs = observer();
        obs.keepalive_failed();
        obs.keepalive_failed();
        obs.child_exited(137, true);
        obs.child_exited(3, true);
        obs.child_exited(0, false);
        let get = |n: &str| sample(&obs, n);
        assert_eq!(get("singleton_exec_keepalive_failures_total"), Some(2.0));
        assert_eq!(get("singleton_exec_child_restarts_total"), Some(2.0));
        assert_eq!(get("singleton_exec_last_child_exit_code"), Some(0.0));
        obs.child_exited(137, false);
        assert_eq!(get("singleton_exec_last_child_exit_code"), Some(137.0));
    }

    #[test]
    fn no_exit_code_is_shown_before_a_child_has_exited() {
        let obs = observer();
        obs.enter(standby());
        obs.enter(leading(None));
        for format in [Format::PrometheusText, Format::OpenMetrics] {
            let text = obs.encode_metrics(format);
            assert!(!text.contains("last_child_exit_code"), "{text}");
        }
        obs.child_exited(0, false);
        assert_eq!(
            sample(&obs, "singleton_exec_last_child_exit_code"),
            Some(0.0)
        );
        let text = obs.encode_metrics(Format::OpenMetrics);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(
            text.matches("# TYPE singleton_exec_last_child_exit_code gauge")
                .count(),
            1
        );
        // Registered once, however many children exit.
        obs.child_exited(3, false);
        let text = obs.encode_metrics(Format::PrometheusText);
        assert_eq!(
            text.matches("# HELP singleton_exec_last_child_exit_code ")
                .count(),
            1
        );
        assert_eq!(
            sample(&obs, "singleton_exec_last_child_exit_code"),
            Some(3.0)
        );
    }

    /// A takeover is timed from becoming first in line to the child's start, once per
    /// leadership; a stop is counted once, with what it took.
    #[test]
    fn takeovers_and_stops_are_timed_once_each() {
        let obs = observer();
        let get = |n: &str| sample(&obs, n);
        let takeovers = || get("singleton_exec_takeover_wait_seconds_count");
        let stops = || get("singleton_exec_stop_seconds_count");
        assert_eq!((takeovers(), stops()), (Some(0.0), Some(0.0)));
        obs.enter(standby());
        obs.first_in_line(BootInstant::now() - Duration::from_millis(40));
        obs.enter(leading(None));
        assert_eq!(takeovers(), Some(1.0));
        let took = get("singleton_exec_takeover_wait_seconds_sum").unwrap();
        assert!((0.04..1.0).contains(&took), "{took}");
        // A restart under the same leadership is no takeover.
        obs.enter(leading(None));
        assert_eq!(takeovers(), Some(1.0));
        // A stop is counted with the time the process thread measured; an exit is no stop.
        obs.enter(stopping(StopReason::Resign));
        obs.stop_took(Duration::from_millis(250));
        obs.child_exited(143, false);
        assert_eq!(stops(), Some(1.0));
        assert_eq!(get("singleton_exec_stop_seconds_sum"), Some(0.25));
        obs.enter(leading(None));
        obs.child_exited(0, false);
        assert_eq!(stops(), Some(1.0));
        // First in line, then back in the queue (a start refused): no takeover counted.
        obs.first_in_line(BootInstant::now());
        obs.enter(standby());
        obs.enter(leading(None));
        assert_eq!(takeovers(), Some(1.0));
    }

    #[test]
    fn a_kill_teardown_longer_than_the_margin_is_counted() {
        let obs = observer();
        let get = |n: &str| sample(&obs, n);
        let margin = Duration::from_millis(100);
        // (teardown, over the margin)
        for (ms, over) in [
            (0, false),
            (40, false),
            (100, false),
            (101, true),
            (1670, true),
        ] {
            assert_eq!(
                obs.kill_teardown(Duration::from_millis(ms), margin),
                over,
                "{ms}"
            );
        }
        assert_eq!(get("singleton_exec_kill_teardown_seconds_count"), Some(5.0));
        assert_eq!(
            get("singleton_exec_kill_teardown_over_margin_total"),
            Some(2.0)
        );
    }

    #[test]
    fn the_prometheus_text_has_help_and_type_for_every_sample() {
        let obs = observer();
        obs.enter(standby());
        obs.enter(leading(Some(1)));
        obs.keepalive_failed();
        obs.child_exited(1, true);
        obs.health_checked(&report(0, Outcome::Healthy));
        let text = obs.encode_metrics(Format::PrometheusText);
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        let mut described = std::collections::BTreeSet::new();
        for line in text.lines() {
            let words: Vec<&str> = line.split(' ').collect();
            match words[..] {
                ["#", "HELP", name, ..] => assert!(described.insert(("help", name)), "{line}"),
                ["#", "TYPE", name, kind] => {
                    assert!(described.contains(&("help", name)), "no HELP before {line}");
                    assert!(described.insert(("type", name)), "{line}");
                    if kind == "counter" {
                        assert!(name.ends_with("_total"), "{line}");
                    }
                }
                _ => {
                    let name = line.split(['{', ' ']).next().unwrap_or(line);
                    let family = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| name.strip_suffix(s))
                        .filter(|f| described.contains(&("type", *f)))
                        .unwrap_or(name);
                    assert!(described.contains(&("type", family)), "no TYPE for {line}");
                }
            }
        }
        // The OpenMetrics form names the counter family without _total.
        let om = obs.encode_metrics(Format::OpenMetrics);
        assert!(
            om.contains("# TYPE singleton_exec_keepalive_failures counter\n"),
            "{om}"
        );
        assert!(
            om.contains("\nsingleton_exec_keepalive_failures_total 1\n"),
            "{om}"
        );
    }
}

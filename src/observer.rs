//! What the outside world can see of a replica: its live status, its Prometheus metrics and its
//! systemd notifications, fed by the leadership loop and the keepalive task, read by the HTTP
//! endpoints ([`crate::http`]). Nothing here decides anything; it only reports.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::clock::BootInstant;
use crate::notify::Notifier;
use crate::timing::TimingModel;

/// The replica's role as shown in `/status` and `STATUS=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleName {
    Starting,
    Standby,
    Leader,
    Stopping,
    Lost,
}

impl RoleName {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleName::Starting => "starting",
            RoleName::Standby => "standby",
            RoleName::Leader => "leader",
            RoleName::Stopping => "stopping",
            RoleName::Lost => "lost",
        }
    }
}

/// The live status behind `/status`.
#[derive(Debug, Clone)]
pub struct Status {
    pub role: RoleName,
    pub key: Option<String>,
    pub lease: Option<i64>,
    pub revision: Option<i64>,
    pub child_pid: Option<i32>,
    /// The instant the lease cannot have expired before, from the last acknowledged keepalive.
    pub safe_until: Option<BootInstant>,
    pub last_transition: Option<(RoleName, String, BootInstant)>,
    pub became_standby: Option<BootInstant>,
}

struct Metrics {
    registry: Registry,
    is_leader: Gauge,
    transitions: Family<Vec<(String, String)>, Counter>,
    keepalive_rtt: Histogram,
    keepalive_failures: Counter,
    deadline_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    child_restarts: Counter,
    last_exit_code: Gauge,
    election_wait: Histogram,
}

/// Shared by the leadership loop, the keepalive task and the HTTP server.
pub struct Observer {
    pub id: String,
    pub election: String,
    pub timing: TimingModel,
    pub notifier: Notifier,
    status: Mutex<Status>,
    metrics: Mutex<Metrics>,
}

impl Observer {
    pub fn new(id: String, election: String, timing: TimingModel, notifier: Notifier) -> Self {
        let mut registry = Registry::with_prefix("singleton_exec");
        let is_leader = Gauge::default();
        registry.register(
            "is_leader",
            "1 while this replica leads and its child runs",
            is_leader.clone(),
        );
        let transitions = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "leadership_transitions",
            "Role changes, by the role entered",
            transitions.clone(),
        );
        let keepalive_rtt = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ]);
        registry.register(
            "keepalive_rtt_seconds",
            "Round trip of acknowledged lease keepalives",
            keepalive_rtt.clone(),
        );
        let keepalive_failures = Counter::default();
        registry.register(
            "keepalive_failures",
            "Keepalives that failed or timed out",
            keepalive_failures.clone(),
        );
        let deadline_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "deadline_seconds",
            "Seconds until the fail-closed deadline (stop the child unless a keepalive is acknowledged); negative once passed",
            deadline_seconds.clone(),
        );
        let child_restarts = Counter::default();
        registry.register(
            "child_restarts",
            "Child restarts under --on-child-exit=restart",
            child_restarts.clone(),
        );
        let last_exit_code = Gauge::default();
        registry.register(
            "last_child_exit_code",
            "Exit code of the last child (128+S if killed by signal S)",
            last_exit_code.clone(),
        );
        let election_wait =
            Histogram::new([0.01, 0.1, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0]);
        registry.register(
            "election_wait_seconds",
            "Time from joining the election to leading",
            election_wait.clone(),
        );
        Observer {
            id,
            election,
            timing,
            notifier,
            status: Mutex::new(Status {
                role: RoleName::Starting,
                key: None,
                lease: None,
                revision: None,
                child_pid: None,
                safe_until: None,
                last_transition: None,
                became_standby: None,
            }),
            metrics: Mutex::new(Metrics {
                registry,
                is_leader,
                transitions,
                keepalive_rtt,
                keepalive_failures,
                deadline_seconds,
                child_restarts,
                last_exit_code,
                election_wait,
            }),
        }
    }

    pub fn status(&self) -> Status {
        self.status.lock().expect("status lock").clone()
    }

    /// Records a role change and tells systemd.
    pub fn transition(
        &self,
        role: RoleName,
        key: Option<&str>,
        revision: Option<i64>,
        lease: Option<i64>,
        why: &str,
    ) {
        let now = BootInstant::now();
        {
            let mut st = self.status.lock().expect("status lock");
            if role == RoleName::Standby && st.role != RoleName::Standby {
                st.became_standby = Some(now);
            }
            if role == RoleName::Leader {
                if let Some(since) = st.became_standby.take() {
                    self.metrics
                        .lock()
                        .expect("metrics lock")
                        .election_wait
                        .observe(now.saturating_duration_since(since).as_secs_f64());
                }
            }
            st.role = role;
            st.key = key.map(str::to_owned);
            st.revision = revision;
            st.lease = lease;
            if role != RoleName::Leader && role != RoleName::Stopping {
                st.child_pid = None;
            }
            st.last_transition = Some((role, why.to_owned(), now));
        }
        let m = self.metrics.lock().expect("metrics lock");
        m.is_leader.set(i64::from(role == RoleName::Leader));
        m.transitions
            .get_or_create(&vec![("role".to_owned(), role.as_str().to_owned())])
            .inc();
        drop(m);
        let rev = revision
            .map(|r| format!(" revision {r}"))
            .unwrap_or_default();
        self.notifier
            .status(&format!("{}{rev}: {why}", role.as_str()));
    }

    pub fn child_started(&self, pid: i32) {
        self.status.lock().expect("status lock").child_pid = Some(pid);
    }

    pub fn child_exited(&self, code: i32, restarting: bool) {
        self.status.lock().expect("status lock").child_pid = None;
        let m = self.metrics.lock().expect("metrics lock");
        m.last_exit_code.set(i64::from(code));
        if restarting {
            m.child_restarts.inc();
        }
    }

    /// A new lease or an acknowledged keepalive.
    pub fn lease_renewed(&self, safe_until: BootInstant, rtt: Option<Duration>) {
        self.status.lock().expect("status lock").safe_until = Some(safe_until);
        if let Some(rtt) = rtt {
            self.metrics
                .lock()
                .expect("metrics lock")
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

    /// The metrics in Prometheus text format.
    pub fn encode_metrics(&self) -> String {
        let deadline = self
            .ms_until_deadline()
            .map(|ms| ms as f64 / 1000.0)
            .unwrap_or(0.0);
        let m = self.metrics.lock().expect("metrics lock");
        m.deadline_seconds.set(deadline);
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &m.registry);
        out
    }
}

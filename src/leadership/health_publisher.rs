//! Shows what the leader knows of its child in etcd, at `PREFIX/NAME@health` (or its slot's
//! health key) under the leader's lease, so `singleton-exec status` can print it from anywhere:
//! the last health check's result, and what the child said on its notify socket (ready or not,
//! its status text). One record ([`HealthRecord`]) per leadership, written by a task of its own:
//! never in the leadership loop's way, the latest value wins, one write at a time, and a failed
//! write costs nothing but the display.
//!
//! Nothing is written until there is something to show (a check's result, a child that is
//! waited for or that said something), so a replica that uses neither writes nothing. Writes
//! are few: a check's result only when its state changes (healthy or not, the failure count);
//! what the child says at most as often as the leadership loop passes it on, which is rate-limited
//! there ([`super::child_notify`]).

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::election::connector::{Connector, EtcdError};
use crate::election::queue::{Candidacy, CheckRecord, Election, HealthRecord};
use crate::health::{Outcome, Report};

use super::Ctx;

/// The task that writes, once started, and the latest value for it to write.
pub(super) struct HealthPublisher {
    /// Where and as whom the task will write; taken when it starts.
    writer: Option<Writer>,
    started: Option<(watch::Sender<Shown>, JoinHandle<()>)>,
    /// What is shown now (also before the task starts).
    shown: Shown,
}

/// What `status` shows of the leader's child.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Shown {
    check: Option<CheckShown>,
    child: ChildShown,
}

/// The last health check.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CheckShown {
    healthy: bool,
    failures: u32,
    retries: u32,
    detail: String,
}

/// What the child said of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ChildShown {
    pub ready: bool,
    pub ready_after_ms: Option<u64>,
    pub status: Option<String>,
}

impl Default for ChildShown {
    /// A child that has said nothing and is not waited for.
    fn default() -> Self {
        ChildShown {
            ready: true,
            ready_after_ms: None,
            status: None,
        }
    }
}

impl CheckShown {
    fn of(report: &Report) -> CheckShown {
        CheckShown {
            healthy: matches!(report.outcome, Outcome::Healthy),
            failures: report.failures,
            retries: report.retries,
            detail: match &report.outcome {
                Outcome::Healthy => "healthy".into(),
                Outcome::Failed(why) => why.clone(),
            },
        }
    }

    /// Only a change of state is worth a write; a new failure detail alone is not.
    fn differs_from(&self, current: Option<&CheckShown>) -> bool {
        current.is_none_or(|c| c.healthy != self.healthy || c.failures != self.failures)
    }
}

/// Where and as whom the task writes.
struct Writer {
    connector: Arc<Connector>,
    election: Election,
    key: String,
    me: Candidacy,
    id: String,
}

/// How one write went.
enum Written {
    Done,
    /// etcd refused the write for good (the role may not write this key): stop trying.
    Refused(String),
    /// etcd did not answer, or failed: the next change tries again.
    Failed(String),
}

impl HealthPublisher {
    /// The publisher of one leadership; it writes nothing until something is shown.
    pub(super) fn new(ctx: &Ctx<'_>, me: &Candidacy) -> HealthPublisher {
        let key = match (&ctx.slots, me.slot) {
            (Some(slots), Some(slot)) => slots.health_key(slot),
            _ => ctx.election.health_key(),
        };
        HealthPublisher {
            writer: Some(Writer {
                connector: ctx.connector.clone(),
                election: ctx.election.clone(),
                key,
                me: me.clone(),
                id: ctx.cfg.id.clone(),
            }),
            started: None,
            shown: Shown::default(),
        }
    }

    /// A health check's result, written when its state changed.
    pub(super) fn show_check(&mut self, report: &Report) {
        let check = CheckShown::of(report);
        if check.differs_from(self.shown.check.as_ref()) {
            self.shown.check = Some(check);
            self.publish();
        }
    }

    /// What the child said of itself, written when it changed; `force`: written even if it is
    /// what a child that said nothing shows (a new child, which a record of the last one must
    /// not be taken for).
    pub(super) fn show_child(&mut self, child: ChildShown, force: bool) {
        if self.shown.child == child && !(force && self.started.is_some()) {
            return;
        }
        let worth_a_record = force || child != ChildShown::default();
        self.shown.child = child;
        if self.started.is_some() || worth_a_record {
            self.publish();
        }
    }

    /// Hands the current value to the task, starting it if need be.
    fn publish(&mut self) {
        let value = self.shown.clone();
        if let Some((tx, _)) = &self.started {
            // The task is gone only after a refusal: nothing more is shown then.
            let _ = tx.send(value);
            return;
        }
        let Some(writer) = self.writer.take() else {
            return;
        };
        let (tx, rx) = watch::channel(value);
        let task = tokio::spawn(writer.run(rx));
        self.started = Some((tx, task));
    }
}

impl Writer {
    /// Writes the first value, then each change (the latest, one write at a time), until a
    /// refusal.
    async fn run(self, mut rx: watch::Receiver<Shown>) {
        loop {
            let shown = rx.borrow_and_update().clone();
            match self.write(shown).await {
                Written::Done => {}
                Written::Refused(why) => {
                    tracing::warn!(key = %self.key, error = %why,
                        "cannot show health results in etcd (grant write on this key): `status` shows none of the child's health, readiness or status");
                    return;
                }
                Written::Failed(why) => {
                    tracing::debug!(error = %why, "cannot show the child's health and readiness in etcd")
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    async fn write(&self, s: Shown) -> Written {
        let value = HealthRecord {
            id: self.id.clone(),
            key: self.me.key.clone(),
            revision: self.me.revision,
            check: s.check.map(|c| CheckRecord {
                healthy: c.healthy,
                consecutive_failures: c.failures,
                retries: c.retries,
                last: c.detail,
            }),
            ready: s.child.ready,
            ready_after_ms: s.child.ready_after_ms,
            child_status: s.child.status,
        };
        let (election, lease, key) = (&self.election, self.me.lease, self.key.as_str());
        // A permission error is no fault of the endpoint: it comes back as a value, so that the
        // connector does not count it as a rejection (and switch endpoints).
        let put = self.connector.call(|mut c| async move {
            match election.put_health(&mut c, key, lease, &value).await {
                Ok(()) => Ok(Written::Done),
                Err(EtcdError::Rejected(why)) => Ok(Written::Refused(why)),
                Err(e) => Err(e),
            }
        });
        let Ok(answer) = tokio::time::timeout(self.connector.request_timeout(), put).await else {
            return Written::Failed("timed out".into());
        };
        answer.unwrap_or_else(|e| Written::Failed(e.to_string()))
    }
}

impl Drop for HealthPublisher {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.started {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn report(outcome: Outcome, failures: u32) -> Report {
        Report {
            outcome,
            verdict: crate::health::Verdict::Healthy,
            failures,
            retries: 3,
            took: Duration::from_millis(1),
        }
    }

    #[test]
    fn only_a_change_of_state_is_written() {
        let healthy = CheckShown::of(&report(Outcome::Healthy, 0));
        let failed = |n, why: &str| CheckShown::of(&report(Outcome::Failed(why.into()), n));
        let rows = [
            (None, healthy.clone(), true),
            (Some(healthy.clone()), healthy.clone(), false),
            (Some(healthy.clone()), failed(1, "exit 1"), true),
            // The same count with another detail: not worth a write.
            (Some(failed(1, "exit 1")), failed(1, "timed out"), false),
            (Some(failed(1, "exit 1")), failed(2, "exit 1"), true),
            (Some(failed(2, "exit 1")), healthy.clone(), true),
        ];
        for (current, new, want) in rows {
            assert_eq!(
                new.differs_from(current.as_ref()),
                want,
                "{current:?} -> {new:?}"
            );
        }
        assert_eq!(healthy.detail, "healthy");
        assert_eq!(failed(1, "exit 1").detail, "exit 1");
        assert_eq!(healthy.retries, 3);
    }
}

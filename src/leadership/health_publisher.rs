//! Shows the leader's last health result in etcd, at `PREFIX/NAME@health` (or its slot's health
//! key) under the leader's lease, so `singleton-exec status` can print it from anywhere. Written
//! only when what it shows changes (healthy or not, the failure count), by a task of its own: never
//! in the leadership loop's way, the latest value wins, and a failed write costs nothing but the
//! display.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::election::connector::{Connector, EtcdError};
use crate::election::queue::{Candidacy, Election, HealthRecord};
use crate::health::{Outcome, Report};

use super::Ctx;

/// The task that writes, and the latest value for it to write.
pub(super) struct HealthPublisher {
    shown: watch::Sender<Option<Shown>>,
    task: JoinHandle<()>,
}

/// What `status` shows of the leader's health.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shown {
    healthy: bool,
    failures: u32,
    detail: String,
}

impl Shown {
    fn of(report: &Report) -> Shown {
        Shown {
            healthy: matches!(report.outcome, Outcome::Healthy),
            failures: report.failures,
            detail: match &report.outcome {
                Outcome::Healthy => "healthy".into(),
                Outcome::Failed(why) => why.clone(),
            },
        }
    }

    /// Only a change of state is worth a write; a new failure detail alone is not.
    fn differs_from(&self, current: Option<&Shown>) -> bool {
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
    retries: u32,
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
    pub(super) fn start(ctx: &Ctx<'_>, me: &Candidacy) -> HealthPublisher {
        let (shown, mut rx) = watch::channel::<Option<Shown>>(None);
        let key = match (&ctx.slots, me.slot) {
            (Some(slots), Some(slot)) => slots.health_key(slot),
            _ => ctx.election.health_key(),
        };
        let writer = Writer {
            connector: ctx.connector.clone(),
            election: ctx.election.clone(),
            key,
            me: me.clone(),
            id: ctx.cfg.id.clone(),
            retries: ctx.cfg.health.as_ref().map_or(0, |h| h.retries),
        };
        let task = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let Some(s) = rx.borrow_and_update().clone() else {
                    continue;
                };
                match writer.write(s).await {
                    Written::Done => {}
                    Written::Refused(why) => {
                        tracing::warn!(key = %writer.key, error = %why,
                            "cannot show health results in etcd (grant write on this key): `status` shows none");
                        return;
                    }
                    Written::Failed(why) => {
                        tracing::debug!(error = %why, "cannot show the health result in etcd")
                    }
                }
            }
        });
        HealthPublisher { shown, task }
    }

    pub(super) fn show(&self, report: &Report) {
        let s = Shown::of(report);
        self.shown.send_if_modified(|cur| {
            let changed = s.differs_from(cur.as_ref());
            if changed {
                *cur = Some(s);
            }
            changed
        });
    }
}

impl Writer {
    async fn write(&self, s: Shown) -> Written {
        let value = HealthRecord {
            id: self.id.clone(),
            key: self.me.key.clone(),
            revision: self.me.revision,
            healthy: s.healthy,
            consecutive_failures: s.failures,
            retries: self.retries,
            last: s.detail,
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
        self.task.abort();
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
        let healthy = Shown::of(&report(Outcome::Healthy, 0));
        let failed = |n, why: &str| Shown::of(&report(Outcome::Failed(why.into()), n));
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
    }
}

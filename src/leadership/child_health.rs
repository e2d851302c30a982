//! The health checks of one child, as the leadership loop runs them: the [`Monitor`] that says
//! when a check is due and what its result means, the environment a command check gets (the
//! child's); the leadership's [`HealthPublisher`] shows each result in etcd. A verdict of
//! [`Verdict::Unhealthy`] asks the leader to step down; whether it still counts is the
//! transition's to say ([`super::transition::Lead::checks_allowed`]).

use crate::core::duration::Short;
use crate::core::lifecycle::StopReason;
use crate::health::{Monitor, Outcome, Results, Verdict};
use crate::process::contract::Request;

use super::health_publisher::HealthPublisher;
use super::{Ctx, ProcessThread};

pub(super) struct ChildHealth {
    monitor: Monitor,
    env: Vec<(String, String)>,
}

impl ChildHealth {
    /// Starts checking a child that started now; `None` without `--health-*`.
    pub(super) fn start(
        ctx: &Ctx<'_>,
        me: &crate::election::queue::Candidacy,
    ) -> Option<(ChildHealth, Results)> {
        let h = ctx.cfg.health.as_ref()?;
        let (monitor, results) = Monitor::new(h, tokio::time::Instant::now());
        let health = ChildHealth {
            monitor,
            env: super::leader_env(ctx.cfg, me),
        };
        Some((health, results))
    }

    /// Starts the check that is due (a command check runs in the process thread).
    pub(super) fn start_check(&mut self, process: &ProcessThread) {
        if let Some(c) = self.monitor.start() {
            process.request(Request::Check {
                id: c.id,
                command: c.command,
                env: self.env.clone(),
                timeout: c.timeout,
            });
        }
    }

    /// A command check ended in the process thread.
    pub(super) fn check_ended(
        &mut self,
        id: u64,
        exit: crate::process::contract::CheckExit,
        output: &str,
    ) {
        self.monitor.check_ended(id, exit, output);
    }

    /// Reports a result (in `/status` and, through `publish`, in etcd); `Some(Unhealthy)` when
    /// the leader must step down.
    pub(super) fn record(
        &mut self,
        ctx: &Ctx<'_>,
        id: u64,
        outcome: Outcome,
        publish: &mut HealthPublisher,
    ) -> Option<StopReason> {
        let report = self.monitor.record(id, outcome)?;
        ctx.obs.health_checked(&report);
        publish.show_check(&report);
        let took = tracing::field::display(Short(report.took));
        match (&report.verdict, &report.outcome) {
            (Verdict::Healthy, _) => {
                tracing::debug!(took, "health check passed");
                None
            }
            (Verdict::Ignored, Outcome::Failed(why)) => {
                tracing::info!(%why, took, "health check failed during --health-start-period: not counted");
                None
            }
            (Verdict::Failing(n), Outcome::Failed(why)) => {
                tracing::warn!(%why, failures = n, retries = report.retries, took, "health check failed");
                None
            }
            (Verdict::Unhealthy(n), Outcome::Failed(why)) => {
                tracing::warn!(%why, failures = n, retries = report.retries, took,
                    "health check failed {n} times in a row: stepping down so a standby takes over");
                ctx.obs.health_step_down();
                Some(StopReason::Unhealthy)
            }
            (_, Outcome::Healthy) => None,
        }
    }

    /// Resolves when the next check is due.
    pub(super) async fn due(&self) {
        self.monitor.due().await
    }
}

/// Resolves when a check is due; never without health checks.
pub(super) async fn check_due(health: Option<&ChildHealth>) {
    match health {
        Some(h) => h.due().await,
        None => std::future::pending().await,
    }
}

/// The next check result; never without health checks.
pub(super) async fn check_result(results: Option<&mut Results>) -> Option<(u64, Outcome)> {
    match results {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

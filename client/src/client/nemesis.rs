//! Faults the client injects into its own traffic, for tests only (feature `nemesis`, off by
//! default; the node's own tests turn it on).
//!
//! Late copies are what issue 17 saw a real network do: an attempt the client gave up on (a
//! QUIC stream frame still queued for a node that was frozen) reached a leader seconds later,
//! after the write's retry had been acknowledged and other clients had written the key. Here
//! each write attempt that got no answer, and every `every`-th other write attempt, is
//! delivered once more after `after` to the node that then leads its range; the answer is
//! dropped. Without sessions, such a copy applies the write again.
//!
//! Lost answers are the other half: the write applied, its answer did not come back, and the
//! client sends it again while it still awaits it, which is when a range must answer from its
//! record rather than apply again.

use super::{Client, lock};
use crate::connection::CallError;
use flotilla_api::{ApiError, Command, Reply, Request};
use flotilla_shard_manager::Attempts;
use std::time::Duration;

/// The faults in force.
#[derive(Debug)]
pub(super) struct Faults {
    /// Whether writes go in sessions (the default, and the product's only mode).
    pub(super) sessions: bool,
    late: Option<LateCopies>,
    attempts: u64,
    /// Every this many answered write attempts, the answer is dropped.
    drop_every: Option<u64>,
    answers: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            sessions: true,
            late: None,
            attempts: 0,
            drop_every: None,
            answers: 0,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct LateCopies {
    after: Duration,
    every: u64,
}

impl Client {
    /// Test only: writes go without sessions, as clients before sessions sent them. A retried
    /// put or delete may then apply more than once.
    pub fn disable_sessions(&self) {
        lock(&self.inner.nemesis).sessions = false;
    }

    /// Test only: from now on, each write attempt that got no answer, and every `every`-th
    /// other write attempt, is delivered once more `after` later to the node that then leads
    /// its range, as a delayed network copy would be.
    pub fn deliver_late_copies(&self, after: Duration, every: u64) {
        lock(&self.inner.nemesis).late = Some(LateCopies {
            after,
            every: every.max(1),
        });
    }

    /// Test only: from now on, the answer to every `every`-th answered write attempt is lost:
    /// the attempt applied (or was refused), and the client hears nothing before its timeout.
    pub fn drop_answers(&self, every: u64) {
        lock(&self.inner.nemesis).drop_every = Some(every.max(1));
    }

    /// The reply to `attempt` as the client sees it: a lost one if an answer is due to be
    /// dropped.
    pub(super) fn lose_answer(
        &self,
        attempt: &Request,
        reply: Result<Result<Reply, ApiError>, CallError>,
    ) -> Result<Result<Reply, ApiError>, CallError> {
        if !is_write(attempt) || !matches!(reply, Ok(Ok(_))) {
            return reply;
        }
        let mut faults = lock(&self.inner.nemesis);
        let Some(every) = faults.drop_every else {
            return reply;
        };
        faults.answers += 1;
        if !faults.answers.is_multiple_of(every) {
            return reply;
        }
        Err(CallError::Lost)
    }

    /// Schedules the late copy of `attempt` if one is due.
    pub(super) fn after_attempt(
        &self,
        key: &[u8],
        attempt: &Request,
        reply: &Result<Result<Reply, ApiError>, CallError>,
    ) {
        if !is_write(attempt) {
            return;
        }
        let answered = matches!(reply, Ok(Ok(_)));
        let due = {
            let mut faults = lock(&self.inner.nemesis);
            faults.attempts += 1;
            let attempts = faults.attempts;
            faults
                .late
                .filter(|late| !answered || attempts.is_multiple_of(late.every))
        };
        let Some(late) = due else { return };
        let (client, key, attempt) = (self.clone(), key.to_vec(), attempt.clone());
        tokio::spawn(async move {
            tokio::time::sleep(late.after).await;
            let node = lock(&client.inner.router)
                .route(&key, &mut Attempts::default())
                .node;
            let timeout = client.inner.options.attempt_timeout;
            let _ = client.call(node, attempt, timeout).await;
        });
    }

    /// A write without a session: retried after an attempt that may have applied only if it
    /// is a put or a delete, as clients before sessions did.
    pub(super) async fn write_without_session(
        &self,
        command: Command,
    ) -> Result<super::Outcome, super::ClientError> {
        let key = super::command_key(&command).to_vec();
        let deadline = std::time::Instant::now() + self.inner.options.deadline;
        let kind = super::Kind::Bare {
            retry_maybe_applied: !matches!(command, Command::CompareAndSwap { .. }),
        };
        let answered = self
            .attempt_loop(&key, kind, deadline, |target| Request::Kv {
                group: target.group,
                epoch: target.epoch,
                command: command.clone(),
            })
            .await
            .map_err(super::stop_error)?;
        Ok(super::Outcome {
            response: answered.response,
        })
    }
}

fn is_write(request: &Request) -> bool {
    match request {
        Request::Write { .. } => true,
        Request::Kv { command, .. } => {
            !matches!(command, Command::Get { .. } | Command::Scan { .. })
        }
        _ => false,
    }
}

//! The access check of the client streams: the current [`Policy`] (replaced on SIGHUP), applied
//! to every request read, with refusals counted and logged at most once per client per interval.

use crate::access::{AccessSettings, Policy, RefusalLog};
use crate::api::{ApiError, Request};
use flotilla_transport_quic::{ClientConnection, PeerIdentity};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

/// Who is on a client connection: the identity and the serial number its certificate proves.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    identity: PeerIdentity,
    serial: Option<Vec<u8>>,
}

impl Caller {
    /// A caller whose (verified) certificate proves `identity` and has serial number `serial`.
    pub(crate) fn new(identity: PeerIdentity, serial: Option<Vec<u8>>) -> Self {
        Self { identity, serial }
    }

    /// The caller of `connection`.
    pub(crate) fn of(connection: &ClientConnection) -> Self {
        Self {
            identity: connection.identity().clone(),
            serial: connection.serial(),
        }
    }
}

/// The policy every client stream consults, shared by all of them.
#[derive(Debug)]
pub(crate) struct Gate {
    policy: RwLock<Arc<Policy>>,
    log: Mutex<RefusalLog>,
    refused: AtomicU64,
    started: Instant,
}

impl Gate {
    /// A gate applying `policy`, logging refusals as `settings` say.
    pub(crate) fn new(policy: Policy, settings: &AccessSettings) -> Self {
        Self {
            policy: RwLock::new(Arc::new(policy)),
            log: Mutex::new(RefusalLog::new(
                settings.refusal_log_interval_ms,
                settings.refusal_log_clients_max,
            )),
            refused: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// Applies `policy` to every request read from now on, on every connection.
    pub(crate) fn replace(&self, policy: Policy, settings: &AccessSettings) {
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(policy);
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_limits(
                settings.refusal_log_interval_ms,
                settings.refusal_log_clients_max,
            );
    }

    /// Whether `caller` may send `request`; a refusal is counted and perhaps logged.
    pub(crate) fn check(&self, caller: &Caller, request: &Request) -> Result<(), ApiError> {
        let policy = Arc::clone(&self.policy.read().unwrap_or_else(PoisonError::into_inner));
        let result = policy.check_certificate(&caller.identity, caller.serial.as_deref(), request);
        result.map_err(|denied| {
            self.note_refusal(&denied);
            denied.into()
        })
    }

    fn note_refusal(&self, denied: &crate::access::Denied) {
        let refused_total = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let line = self
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .note(&denied.who, now_ms);
        if let Some(suppressed) = line {
            tracing::warn!(
                refused_total,
                unlogged_since_last_line = suppressed,
                "refused a request: {denied}"
            );
        }
    }
}

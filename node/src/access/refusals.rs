//! The refusal log's rate limit, as a pure function of the time the caller passes: at most one
//! line per client per interval, and the line says how many refusals it stands for.

use std::collections::HashMap;

/// When each client's refusals were last logged, and how many were not logged since.
#[derive(Clone, Debug)]
pub struct RefusalLog {
    interval_ms: u64,
    clients_max: usize,
    clients: HashMap<String, Window>,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    logged_at_ms: u64,
    suppressed: u64,
}

impl RefusalLog {
    /// At most one line per client per `interval_ms`, tracking at most `clients_max` clients.
    #[must_use]
    pub fn new(interval_ms: u64, clients_max: usize) -> Self {
        assert!(
            interval_ms > 0,
            "a refusal log interval of 0 logs every refusal"
        );
        assert!(
            clients_max > 0,
            "a refusal log that tracks no client logs nothing"
        );
        Self {
            interval_ms,
            clients_max,
            clients: HashMap::new(),
        }
    }

    /// Takes new limits (a configuration reload), keeping what it tracks.
    pub fn set_limits(&mut self, interval_ms: u64, clients_max: usize) {
        *self = Self {
            clients: std::mem::take(&mut self.clients),
            ..Self::new(interval_ms, clients_max)
        };
    }

    /// Notes a refusal of `client` at `now_ms`: `Some(suppressed)` if it is to be logged, with
    /// the refusals of that client not logged since its last line; `None` to stay quiet.
    pub fn note(&mut self, client: &str, now_ms: u64) -> Option<u64> {
        if let Some(window) = self.clients.get_mut(client) {
            if now_ms.saturating_sub(window.logged_at_ms) < self.interval_ms {
                window.suppressed += 1;
                return None;
            }
            let suppressed = window.suppressed;
            *window = Window {
                logged_at_ms: now_ms,
                suppressed: 0,
            };
            return Some(suppressed);
        }
        if self.clients.len() >= self.clients_max {
            let interval_ms = self.interval_ms;
            self.clients
                .retain(|_, window| now_ms.saturating_sub(window.logged_at_ms) < interval_ms);
        }
        if self.clients.len() >= self.clients_max {
            return None;
        }
        let window = Window {
            logged_at_ms: now_ms,
            suppressed: 0,
        };
        self.clients.insert(client.to_owned(), window);
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_client_per_interval_counting_the_rest() {
        let mut log = RefusalLog::new(5000, 8);
        assert_eq!(log.note("a", 0), Some(0));
        assert_eq!(log.note("a", 10), None);
        assert_eq!(log.note("b", 20), Some(0));
        assert_eq!(log.note("a", 4999), None);
        assert_eq!(log.note("a", 5000), Some(2));
        assert_eq!(log.note("a", 5001), None);
        assert_eq!(log.note("b", 9000), Some(0));
    }

    #[test]
    fn a_full_table_forgets_quiet_clients_and_stays_bounded() {
        let mut log = RefusalLog::new(100, 2);
        assert_eq!(log.note("a", 0), Some(0));
        assert_eq!(log.note("b", 50), Some(0));
        assert_eq!(
            log.note("c", 60),
            None,
            "full: c is counted elsewhere, not logged"
        );
        assert_eq!(
            log.note("c", 120),
            Some(0),
            "a's window ended: a is forgotten"
        );
        assert_eq!(log.clients.len(), 2);
    }
}

//! A replica's timers as data: a fixed table of deadlines in ticks, checked on every `tick()`.

/// The timers a replica runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Follower and candidate: campaign when it fires.
    Election = 0,
    /// Leader: send heartbeats when it fires.
    Heartbeat = 1,
    /// Leader: step down unless a quorum was active since it last fired.
    CheckQuorum = 2,
    /// Leader: give up a leadership transfer that did not finish.
    Transfer = 3,
}

const TIMER_COUNT: usize = 4;

/// The deadlines of every timer and the replica's logical clock.
#[derive(Clone, Debug, Default)]
pub(crate) struct TimerTable {
    now_ticks: u64,
    deadlines: [Option<u64>; TIMER_COUNT],
}

impl TimerTable {
    /// The replica's logical time in ticks.
    pub(crate) fn now(&self) -> u64 {
        self.now_ticks
    }

    /// Advances the clock by one tick.
    pub(crate) fn advance(&mut self) {
        self.now_ticks += 1;
    }

    /// Arms `timer` to fire `after_ticks` from now.
    pub(crate) fn set(&mut self, timer: Timer, after_ticks: u64) {
        self.deadlines[timer as usize] = Some(self.now_ticks + after_ticks);
    }

    /// Disarms `timer`.
    pub(crate) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer as usize] = None;
    }

    /// Whether `timer` is armed and its deadline has passed.
    pub(crate) fn expired(&self, timer: Timer) -> bool {
        self.deadlines[timer as usize].is_some_and(|deadline| deadline <= self.now_ticks)
    }

    /// The earliest armed deadline, in ticks since the replica started.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.deadlines.iter().flatten().copied().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_fires_at_its_deadline_and_not_before() {
        let mut timers = TimerTable::default();
        timers.set(Timer::Election, 2);
        timers.advance();
        assert!(!timers.expired(Timer::Election));
        timers.advance();
        assert!(timers.expired(Timer::Election));
        assert!(!timers.expired(Timer::Heartbeat));
    }

    #[test]
    fn next_deadline_is_the_earliest_armed_timer() {
        let mut timers = TimerTable::default();
        assert_eq!(timers.next_deadline(), None);
        timers.set(Timer::Election, 7);
        timers.set(Timer::Heartbeat, 3);
        assert_eq!(timers.next_deadline(), Some(3));
        timers.stop(Timer::Heartbeat);
        assert_eq!(timers.next_deadline(), Some(7));
    }
}

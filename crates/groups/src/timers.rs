//! Deadlines: keyed timers on the coordinator's clock (ms, given with each
//! event). Scheduling a key again replaces its deadline, as Kafka's
//! coordinator timer does; the shell only learns the earliest deadline and
//! delivers [`crate::Event::Timer`] at or after it.

use std::collections::{BTreeMap, HashMap};

/// What a timer is for. One timer per key at most.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKey {
    /// A member's session (or a pending member id's lifetime).
    Session {
        /// Group id.
        group: String,
        /// Member id.
        member: String,
    },
    /// The end of a rebalance's join phase (or a step of the initial delay).
    Join {
        /// Group id.
        group: String,
    },
    /// The end of the sync phase: members that have not sent SyncGroup
    /// by then are removed.
    Sync {
        /// Group id.
        group: String,
    },
    /// The periodic expiry of old offsets.
    Retention,
}

/// What to do when a timer fires, beyond what its key says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerAction {
    /// Check the member's session (Session keys).
    ExpireSession,
    /// Complete the join phase (Join keys).
    CompleteJoin,
    /// A step of the initial rebalance delay of a group that was empty
    /// (Join keys): wait `delay_ms` more while members keep arriving, at
    /// most `remaining_ms` in all.
    InitialDelay {
        /// This step's delay.
        delay_ms: i64,
        /// Time left after this step.
        remaining_ms: i64,
    },
    /// Remove members that have not synced in this generation (Sync keys).
    ExpireSync {
        /// The generation the timer was armed for.
        generation: i32,
    },
    /// Expire old offsets (the Retention key).
    ExpireOffsets,
}

#[derive(Clone, Copy, Debug)]
struct Scheduled {
    at_ms: i64,
    sequence: u64,
    action: TimerAction,
}

/// The set of armed timers.
#[derive(Debug, Default)]
pub struct Timers {
    by_key: HashMap<TimerKey, Scheduled>,
    /// (deadline, arming order) → key: the firing order.
    order: BTreeMap<(i64, u64), TimerKey>,
    sequence: u64,
}

impl Timers {
    /// Arms `key` to fire at `at_ms`, replacing any deadline it had.
    pub fn schedule(&mut self, key: TimerKey, at_ms: i64, action: TimerAction) {
        self.cancel(&key);
        self.sequence += 1;
        let scheduled = Scheduled {
            at_ms,
            sequence: self.sequence,
            action,
        };
        self.order.insert((at_ms, self.sequence), key.clone());
        self.by_key.insert(key, scheduled);
        debug_assert_eq!(self.by_key.len(), self.order.len());
    }

    /// Disarms `key` (no-op when it is not armed).
    pub fn cancel(&mut self, key: &TimerKey) {
        if let Some(old) = self.by_key.remove(key) {
            let removed = self.order.remove(&(old.at_ms, old.sequence));
            assert!(removed.is_some(), "timer order out of step with keys");
        }
    }

    /// The deadline of `key`, if armed.
    pub fn deadline(&self, key: &TimerKey) -> Option<i64> {
        self.by_key.get(key).map(|s| s.at_ms)
    }

    /// The action of `key`, if armed.
    pub fn action(&self, key: &TimerKey) -> Option<TimerAction> {
        self.by_key.get(key).map(|s| s.action)
    }

    /// The earliest deadline.
    pub fn earliest(&self) -> Option<i64> {
        self.order.keys().next().map(|(at, _)| *at)
    }

    /// Disarms and returns the first timer due at `now_ms`, in deadline
    /// order (arming order among equal deadlines).
    pub fn pop_due(&mut self, now_ms: i64) -> Option<(TimerKey, TimerAction)> {
        let (&(at_ms, sequence), _) = self.order.iter().next()?;
        if at_ms > now_ms {
            return None;
        }
        let key = self.order.remove(&(at_ms, sequence))?;
        let scheduled = self.by_key.remove(&key);
        assert!(
            scheduled.is_some_and(|s| s.sequence == sequence),
            "timer keys out of step with order"
        );
        scheduled.map(|s| (key, s.action))
    }

    /// Disarms every timer of `group`.
    pub fn cancel_group(&mut self, group: &str) {
        let keys: Vec<TimerKey> = self
            .by_key
            .keys()
            .filter(|k| match k {
                TimerKey::Session { group: g, .. }
                | TimerKey::Join { group: g }
                | TimerKey::Sync { group: g } => g == group,
                TimerKey::Retention => false,
            })
            .cloned()
            .collect();
        for key in keys {
            self.cancel(&key);
        }
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True when no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(member: &str) -> TimerKey {
        TimerKey::Session {
            group: "g".into(),
            member: member.into(),
        }
    }

    #[test]
    fn rescheduling_replaces_and_order_is_by_deadline_then_arming() {
        let mut t = Timers::default();
        t.schedule(session("a"), 100, TimerAction::ExpireSession);
        t.schedule(session("b"), 50, TimerAction::ExpireSession);
        t.schedule(session("c"), 50, TimerAction::ExpireSession);
        t.schedule(session("a"), 10, TimerAction::ExpireSession);
        assert_eq!(t.len(), 3);
        assert_eq!(t.earliest(), Some(10));
        assert_eq!(t.pop_due(9), None);
        assert_eq!(t.pop_due(60).map(|(k, _)| k), Some(session("a")));
        assert_eq!(t.pop_due(60).map(|(k, _)| k), Some(session("b")));
        assert_eq!(t.pop_due(60).map(|(k, _)| k), Some(session("c")));
        assert_eq!(t.pop_due(60), None);
        assert!(t.is_empty());
    }

    #[test]
    fn cancel_and_cancel_group() {
        let mut t = Timers::default();
        t.schedule(session("a"), 5, TimerAction::ExpireSession);
        t.schedule(
            TimerKey::Join { group: "g".into() },
            7,
            TimerAction::CompleteJoin,
        );
        t.schedule(
            TimerKey::Join { group: "h".into() },
            8,
            TimerAction::CompleteJoin,
        );
        t.schedule(TimerKey::Retention, 9, TimerAction::ExpireOffsets);
        t.cancel(&session("zz"));
        t.cancel_group("g");
        assert_eq!(t.len(), 2);
        assert_eq!(t.deadline(&TimerKey::Join { group: "h".into() }), Some(8));
        assert_eq!(
            t.action(&TimerKey::Retention),
            Some(TimerAction::ExpireOffsets)
        );
        t.cancel(&TimerKey::Retention);
        assert_eq!(t.earliest(), Some(8));
    }
}

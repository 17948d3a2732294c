//! The states of a transactional id and Kafka's table of legal
//! transitions between them (`TransactionState` in Kafka's coordinator).
//!
//! ```text
//! Empty ─add─> Ongoing ─EndTxn(commit)─> PrepareCommit ─markers─> CompleteCommit
//!                │  │
//!                │  └─EndTxn(abort)────> PrepareAbort ──markers──> CompleteAbort
//!                │                          ^
//!                └─InitProducerId/timeout─> PrepareEpochFence (bump the epoch)
//!
//! Empty, CompleteCommit, CompleteAbort ─InitProducerId─> Empty
//!                                      ─add──────────> Ongoing (a new transaction)
//!                                      ─expiry───────> Dead (a tombstone)
//! ```
//!
//! `add` is AddPartitionsToTxn or AddOffsetsToTxn (also Ongoing -> Ongoing).

/// The state of a transactional id, with Kafka's numbering (the
/// `TransactionStatus` byte of a `__transaction_state` record) and names
/// (what DescribeTransactions and ListTransactions print).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    /// No transaction: just initialised, or between transactions.
    Empty,
    /// A transaction is open (partitions were added).
    Ongoing,
    /// EndTxn(commit) is durable; COMMIT markers are being written.
    PrepareCommit,
    /// EndTxn(abort), a timeout or a fencing is durable; ABORT markers are
    /// being written.
    PrepareAbort,
    /// Every COMMIT marker is written.
    CompleteCommit,
    /// Every ABORT marker is written.
    CompleteAbort,
    /// The id is expiring (only ever a pending state: its tombstone is being
    /// written).
    Dead,
    /// The epoch is being bumped to fence a producer before its transaction
    /// is aborted (only ever a pending state, immediately followed by
    /// PrepareAbort).
    PrepareEpochFence,
}

impl TxnState {
    /// Every state, in id order.
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// Kafka's id of the state (the record's `TransactionStatus`).
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    /// The state with Kafka's id `id`.
    pub fn from_id(id: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.id() == id)
    }

    /// Kafka's name of the state ("Empty", "Ongoing", "PrepareCommit", ...).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// The state named `name` (ListTransactions state filters).
    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The states a transactional id may move to this one from (Kafka's
    /// `validPreviousStates`).
    pub fn valid_previous(self) -> &'static [TxnState] {
        use TxnState::*;
        match self {
            Empty => &[Empty, CompleteCommit, CompleteAbort],
            Ongoing => &[Ongoing, Empty, CompleteCommit, CompleteAbort],
            PrepareCommit => &[Ongoing],
            PrepareAbort => &[Ongoing, PrepareEpochFence],
            CompleteCommit => &[PrepareCommit],
            CompleteAbort => &[PrepareAbort],
            Dead => &[Empty, CompleteAbort, CompleteCommit],
            PrepareEpochFence => &[Ongoing],
        }
    }

    /// Whether `self -> to` is a legal transition.
    pub fn can_move_to(self, to: TxnState) -> bool {
        to.valid_previous().contains(&self)
    }

    /// Whether an id in this state may expire after
    /// `transactional.id.expiration.ms` without updates.
    pub fn expiration_allowed(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }

    /// Whether a transaction is open or being completed in this state
    /// (its partitions may hold undecided records).
    pub fn has_pending_transaction(self) -> bool {
        matches!(
            self,
            TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
        )
    }
}

impl std::fmt::Display for TxnState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TxnState::*;

    #[test]
    fn ids_and_names_are_kafkas() {
        let expected = [
            (Empty, 0, "Empty"),
            (Ongoing, 1, "Ongoing"),
            (PrepareCommit, 2, "PrepareCommit"),
            (PrepareAbort, 3, "PrepareAbort"),
            (CompleteCommit, 4, "CompleteCommit"),
            (CompleteAbort, 5, "CompleteAbort"),
            (Dead, 6, "Dead"),
            (PrepareEpochFence, 7, "PrepareEpochFence"),
        ];
        for (state, id, name) in expected {
            assert_eq!((state.id(), state.name()), (id, name));
            assert_eq!(TxnState::from_id(id), Some(state));
            assert_eq!(TxnState::from_name(name), Some(state));
            assert_eq!(state.to_string(), name);
        }
        assert_eq!(TxnState::from_id(8), None);
        assert_eq!(TxnState::from_id(-1), None);
        assert_eq!(TxnState::from_name("ongoing"), None, "names are exact");
    }

    #[test]
    fn the_transition_table_is_kafkas() {
        // Every legal (from, to) pair, and nothing else.
        let legal = [
            (Empty, Empty),
            (CompleteCommit, Empty),
            (CompleteAbort, Empty),
            (Ongoing, Ongoing),
            (Empty, Ongoing),
            (CompleteCommit, Ongoing),
            (CompleteAbort, Ongoing),
            (Ongoing, PrepareCommit),
            (Ongoing, PrepareAbort),
            (PrepareEpochFence, PrepareAbort),
            (PrepareCommit, CompleteCommit),
            (PrepareAbort, CompleteAbort),
            (Empty, Dead),
            (CompleteAbort, Dead),
            (CompleteCommit, Dead),
            (Ongoing, PrepareEpochFence),
        ];
        for from in TxnState::ALL {
            for to in TxnState::ALL {
                assert_eq!(
                    from.can_move_to(to),
                    legal.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
        // Nothing leaves Dead, and only an abort leaves PrepareEpochFence.
        assert!(TxnState::ALL.iter().all(|to| !Dead.can_move_to(*to)));
        let from_fence: Vec<_> = TxnState::ALL
            .into_iter()
            .filter(|to| PrepareEpochFence.can_move_to(*to))
            .collect();
        assert_eq!(from_fence, vec![PrepareAbort]);
    }

    #[test]
    fn expiration_and_pending_transactions() {
        let expiring: Vec<_> = TxnState::ALL
            .into_iter()
            .filter(|s| s.expiration_allowed())
            .collect();
        assert_eq!(expiring, vec![Empty, CompleteCommit, CompleteAbort]);
        let pending: Vec<_> = TxnState::ALL
            .into_iter()
            .filter(|s| s.has_pending_transaction())
            .collect();
        assert_eq!(pending, vec![Ongoing, PrepareCommit, PrepareAbort]);
        // Expiring states are exactly those Dead may follow.
        for s in TxnState::ALL {
            assert_eq!(s.expiration_allowed(), s.can_move_to(Dead), "{s}");
        }
    }
}

//! Loading a `__transaction_state` partition: decoding the batches read
//! from its log and replaying the records into transactional ids, in log
//! order. The shell reads; this decides what the bytes mean and what state
//! they rebuild.
//!
//! The last record of an id wins; a tombstone removes it. Records that do
//! not decode, or describe a state Kafka never stores, are skipped with a
//! warning (the id keeps what earlier records said), as Kafka skips keys
//! it does not know.

use std::collections::BTreeMap;

use crate::config::TRANSACTIONAL_ID_BYTES_MAX;
use crate::metadata::TxnMetadata;
use crate::records::{self, Entry, RecordError};

/// The records of a chunk of log and where the next chunk starts.
#[derive(Debug, PartialEq, Eq)]
pub struct DecodedChunk {
    /// Decoded records, in log order.
    pub entries: Vec<Entry>,
    /// Records skipped because they do not decode.
    pub skipped: usize,
    /// Offset after the last whole batch of the chunk.
    pub next_offset: i64,
}

/// Why a chunk cannot be replayed.
#[derive(Debug, PartialEq, Eq)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Decodes the whole batches at the start of `chunk` (bytes read from the
/// log at some offset; a last batch cut short by the read is left for the
/// next chunk). A chunk without one whole batch, or a batch that fails
/// validation or does not decode, is an error: the partition cannot be
/// served from a log it cannot read. Single records that do not decode are
/// skipped.
pub fn decode_chunk(chunk: &[u8]) -> Result<DecodedChunk, LoadError> {
    use ringbroker_protocol::batch::{batches, BatchError};
    let mut entries = Vec::new();
    let mut skipped = 0usize;
    let mut next_offset = None;
    for item in batches(chunk) {
        match item {
            Ok((header, range)) => {
                // Only the bounded decoder: a compressed batch can claim
                // any decompressed size.
                let decoded =
                    ringbroker_protocol::records::decode_records(&chunk[range]).map_err(|e| {
                        LoadError(format!(
                            "batch at offset {} does not decode: {e}",
                            header.base_offset
                        ))
                    })?;
                for record in decoded {
                    if record.control {
                        continue;
                    }
                    let Some(key) = &record.key else {
                        skipped += 1;
                        log::warn!("record at offset {} has no key", record.offset);
                        continue;
                    };
                    match records::decode(key, record.value.as_deref()) {
                        Ok(entry) => entries.push(entry),
                        Err(RecordError::UnknownKeyVersion(v)) => {
                            log::warn!(
                                "record at offset {}: unknown key version {v}; skipped",
                                record.offset
                            );
                            skipped += 1;
                        }
                        Err(e) => {
                            log::warn!("record at offset {}: {e}; skipped", record.offset);
                            skipped += 1;
                        }
                    }
                }
                next_offset = Some(header.last_offset().saturating_add(1));
            }
            Err(BatchError::Truncated { .. }) if next_offset.is_some() => break,
            Err(e) => {
                return Err(LoadError(format!(
                    "invalid batch after offset {}: {e}",
                    next_offset.map_or("(start)".to_string(), |o| o.to_string())
                )))
            }
        }
    }
    match next_offset {
        Some(next_offset) => Ok(DecodedChunk {
            entries,
            skipped,
            next_offset,
        }),
        None => Err(LoadError("no whole batch in the chunk read".to_string())),
    }
}

/// Replays one record into the ids of a partition being loaded.
pub(crate) fn replay(txns: &mut BTreeMap<String, TxnMetadata>, entry: Entry) {
    let id = entry.transactional_id;
    if id.is_empty() || id.len() > TRANSACTIONAL_ID_BYTES_MAX {
        log::warn!("a stored transactional id of {} bytes; skipped", id.len());
        return;
    }
    match entry.value {
        None => {
            txns.remove(&id);
        }
        Some(value) => match TxnMetadata::from_value(&id, value) {
            Ok(meta) => {
                txns.insert(id, meta);
            }
            Err(reason) => log::warn!("transactional id {id}: {reason}; record skipped"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::TxnLogValue;
    use crate::state::TxnState;
    use crate::types::TopicPartition;
    use bytes::Bytes;

    fn value(pid: i64, epoch: i16, state: TxnState) -> TxnLogValue {
        let mut v = TxnLogValue::new(pid, epoch, 60_000, state);
        if state != TxnState::Empty {
            v.partitions.insert(TopicPartition::new("t", 0));
            v.start_ms = 10;
        }
        v.last_update_ms = 11;
        v
    }

    fn entry(id: &str, v: Option<TxnLogValue>) -> Entry {
        Entry {
            transactional_id: id.into(),
            value: v,
        }
    }

    #[test]
    fn the_last_record_wins_and_tombstones_delete() {
        let mut txns = BTreeMap::new();
        for e in [
            entry("a", Some(value(1, 0, TxnState::Empty))),
            entry("a", Some(value(1, 0, TxnState::Ongoing))),
            entry("b", Some(value(2, 5, TxnState::PrepareCommit))),
            entry("c", Some(value(3, 0, TxnState::Empty))),
            entry("c", None),
            entry("d", None),
        ] {
            replay(&mut txns, e);
        }
        assert_eq!(txns.keys().collect::<Vec<_>>(), vec!["a", "b"]);
        let a = &txns["a"];
        assert_eq!(
            (a.state, a.producer_id, a.partitions.len()),
            (TxnState::Ongoing, 1, 1)
        );
        assert_eq!((a.start_ms, a.last_update_ms, a.pending), (10, 11, None));
        let b = &txns["b"];
        assert_eq!(
            (b.state, b.producer_epoch, b.last_producer_epoch),
            (TxnState::PrepareCommit, 5, -1)
        );
    }

    #[test]
    fn records_kafka_never_writes_are_skipped() {
        let mut txns = BTreeMap::new();
        replay(&mut txns, entry("a", Some(value(1, 3, TxnState::Ongoing))));
        for bad in [
            value(1, 4, TxnState::Dead),
            value(1, 4, TxnState::PrepareEpochFence),
            value(-1, 4, TxnState::Empty),
            value(1, -1, TxnState::Empty),
        ] {
            replay(&mut txns, entry("a", Some(bad)));
        }
        let a = &txns["a"];
        assert_eq!((a.state, a.producer_epoch), (TxnState::Ongoing, 3), "kept");
        replay(&mut txns, entry("", Some(value(1, 0, TxnState::Empty))));
        let long = "x".repeat(TRANSACTIONAL_ID_BYTES_MAX + 1);
        replay(&mut txns, entry(&long, Some(value(1, 0, TxnState::Empty))));
        assert_eq!(txns.len(), 1);
    }

    #[test]
    fn chunks_decode_whole_batches_and_refuse_garbage() {
        let v = value(1, 0, TxnState::Ongoing);
        let a = records::batch(
            &[
                (records::key("a"), Some(records::value(&v, 1))),
                (Bytes::from_static(b"\x00\x07zz"), None), // an unknown key version
                (records::key("b"), Some(Bytes::from_static(b"\x00\x09"))), // an unknown value version
            ],
            0,
        );
        let b = records::batch(&[(records::key("a"), None)], 0);
        let mut chunk = a.to_vec();
        let mut second = b.to_vec();
        ringbroker_protocol::batch::stamp_base_offset(&mut second, 3);
        chunk.extend_from_slice(&second);
        let whole = decode_chunk(&chunk).expect("decodes");
        assert_eq!((whole.next_offset, whole.skipped), (4, 2));
        assert_eq!(whole.entries, vec![entry("a", Some(v)), entry("a", None)]);
        // Cut inside the second batch: the first is returned.
        let cut = decode_chunk(&chunk[..a.len() + 10]).expect("decodes");
        assert_eq!((cut.entries.len(), cut.next_offset), (1, 3));
        // Nothing whole, or corrupt bytes: an error.
        assert!(decode_chunk(&chunk[..10]).is_err());
        let mut corrupt = chunk.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(decode_chunk(&corrupt).is_err());
        assert!(decode_chunk(&[]).is_err());
    }
}

//! Decoding the records of a v2 batch, for the few places that need them
//! (the `__consumer_offsets` replay, ListOffsets by timestamp), never the
//! produce or fetch path.
//!
//! The `kafka-protocol` record decoder trusts what it reads: it
//! decompresses without a bound, zero-fills whatever length a snappy block
//! declares, and sizes header maps from the declared count. So the batch is
//! validated first ([`validate_batch`]: CRC32C, lengths, and for
//! uncompressed batches the framing of every record), compressed records
//! are decompressed here with a bound ([`DECOMPRESSED_BATCH_BYTES_MAX`])
//! and their framing checked like uncompressed ones, and only then does the
//! reference decoder see the bytes.

use std::io::Read;

use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};

use crate::batch::{check_records, validate_batch, BatchError, BATCH_HEADER_LEN};
use crate::limits::DECOMPRESSED_BATCH_BYTES_MAX;

/// The header of snappy data framed as Kafka's Java client writes it
/// (snappy-java's stream format): magic, version 1, compatible version 1.
const XERIAL_SNAPPY_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// Why the records of a batch cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    /// The batch itself is invalid, or its decompressed records are
    /// malformed.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The compressed records are not valid data of their codec.
    #[error("{codec} records do not decompress: {reason}")]
    Decompress {
        /// The codec.
        codec: &'static str,
        /// What the decompressor said.
        reason: String,
    },
    /// The records decompress to more than the bound.
    #[error("records decompress to more than {limit} bytes")]
    TooLarge {
        /// The bound.
        limit: usize,
    },
    /// The reference decoder refused the records.
    #[error("records do not decode: {0}")]
    Decode(String),
}

/// Decodes the records of `batch` (exactly one v2 batch), decompressing
/// at most [`DECOMPRESSED_BATCH_BYTES_MAX`] bytes.
pub fn decode_records(batch: &[u8]) -> Result<Vec<Record>, RecordsError> {
    decode_records_within(batch, DECOMPRESSED_BATCH_BYTES_MAX)
}

/// [`decode_records`] with the decompression bound `limit`.
pub fn decode_records_within(batch: &[u8], limit: usize) -> Result<Vec<Record>, RecordsError> {
    let header = validate_batch(batch)?;
    if header
        .base_offset
        .checked_add(i64::from(header.last_offset_delta))
        .is_none()
    {
        return Err(RecordsError::Decode(format!(
            "offsets from {} overflow",
            header.base_offset
        )));
    }
    let mut bytes = Bytes::copy_from_slice(batch);
    let decoded = match header.compression_code() {
        // validate_batch checked the framing of every record.
        0 => RecordBatchDecoder::decode(&mut bytes),
        code => {
            let plain = Bytes::from(decompress(code, &batch[BATCH_HEADER_LEN..], limit)?);
            check_records(&plain, &header)?;
            let already_decompressed = |_: &mut Bytes, _| Ok(plain.clone());
            RecordBatchDecoder::decode_with_custom_compression(
                &mut bytes,
                Some(already_decompressed),
            )
        }
    };
    decoded
        .map(|set| set.records)
        .map_err(|e| RecordsError::Decode(e.to_string()))
}

/// Decompresses the records section of a batch compressed with `code`
/// (1-4) within [`DECOMPRESSED_BATCH_BYTES_MAX`]: for checks that must look
/// at records (keys on compacted topics) without trusting what a batch
/// claims to decompress to.
pub(crate) fn decompress_bounded(code: u8, compressed: &[u8]) -> Result<Vec<u8>, RecordsError> {
    decompress(code, compressed, DECOMPRESSED_BATCH_BYTES_MAX)
}

/// Decompresses the records section of a batch compressed with `code`
/// (1 gzip, 2 snappy, 3 lz4, 4 zstd), producing at most `limit` bytes.
fn decompress(code: u8, compressed: &[u8], limit: usize) -> Result<Vec<u8>, RecordsError> {
    match code {
        1 => read_within("gzip", flate2::read::GzDecoder::new(compressed), limit),
        2 => snappy(compressed, limit),
        3 => {
            let decoder = lz4::Decoder::new(compressed).map_err(|e| RecordsError::Decompress {
                codec: "lz4",
                reason: e.to_string(),
            })?;
            read_within("lz4", decoder, limit)
        }
        4 => {
            let decoder = zstd::stream::read::Decoder::with_buffer(compressed).map_err(|e| {
                RecordsError::Decompress {
                    codec: "zstd",
                    reason: e.to_string(),
                }
            })?;
            read_within("zstd", decoder, limit)
        }
        other => Err(BatchError::UnknownCompression(other).into()),
    }
}

/// Reads `reader` to its end, failing past `limit` bytes.
fn read_within(
    codec: &'static str,
    reader: impl Read,
    limit: usize,
) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| RecordsError::Decompress {
            codec,
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(RecordsError::TooLarge { limit });
    }
    Ok(out)
}

/// Snappy records: snappy-java's framing (the header, then blocks of a
/// big-endian u32 length and raw snappy data), or raw snappy without the
/// header, as the Java client reads them.
fn snappy(compressed: &[u8], limit: usize) -> Result<Vec<u8>, RecordsError> {
    let error = |reason: String| RecordsError::Decompress {
        codec: "snappy",
        reason,
    };
    let Some(mut rest) = compressed.strip_prefix(XERIAL_SNAPPY_HEADER) else {
        return snappy_block(compressed, Vec::new(), limit);
    };
    let mut out = Vec::new();
    while !rest.is_empty() {
        let Some((length, tail)) = rest.split_first_chunk::<4>() else {
            return Err(error("truncated block length".into()));
        };
        let length = u32::from_be_bytes(*length) as usize;
        if length > tail.len() {
            return Err(error("block past the end of the records".into()));
        }
        let (block, tail) = tail.split_at(length);
        out = snappy_block(block, out, limit)?;
        rest = tail;
    }
    Ok(out)
}

/// Appends the raw snappy `block` to `out`, keeping `out` within `limit`.
fn snappy_block(block: &[u8], mut out: Vec<u8>, limit: usize) -> Result<Vec<u8>, RecordsError> {
    let error = |e: snap::Error| RecordsError::Decompress {
        codec: "snappy",
        reason: e.to_string(),
    };
    let length = snap::raw::decompress_len(block).map_err(error)?;
    let start = out.len();
    if length > limit.saturating_sub(start) {
        return Err(RecordsError::TooLarge { limit });
    }
    out.resize(start + length, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(error)?;
    out.truncate(start + written);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::build_batch;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::compression::Compressor;
    use kafka_protocol::records::{
        Compression, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    const COMPRESSIONS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn records(count: i64, value_len: usize) -> Vec<Record> {
        (0..count)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: 7,
                producer_epoch: 1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: i as i32,
                timestamp: 1_000 + i,
                key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![b'v'; value_len])),
                headers: [(
                    kafka_protocol::protocol::StrBytes::from_static_str("h"),
                    Some(Bytes::from_static(b"hv")),
                )]
                .into_iter()
                .collect(),
            })
            .collect()
    }

    fn encode(records: &[Record], compression: Compression) -> Vec<u8> {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encode");
        buf.to_vec()
    }

    /// A v2 batch of `count` records whose records section is `section`
    /// (already compressed with `code`), with a valid CRC.
    fn batch_with_section(code: i16, count: i32, section: &[u8]) -> Vec<u8> {
        let mut batch = build_batch(0, None, &[(None, b"x")]);
        batch.truncate(BATCH_HEADER_LEN);
        batch.extend_from_slice(section);
        let length = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&length.to_be_bytes());
        batch[21..23].copy_from_slice(&code.to_be_bytes());
        batch[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        batch[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    #[test]
    fn every_codec_decodes_like_the_reference_decoder() {
        let original = records(5, 100);
        for compression in COMPRESSIONS {
            let batch = encode(&original, compression);
            let decoded = decode_records(&batch).expect("decodes");
            let reference = RecordBatchDecoder::decode(&mut Bytes::from(batch.clone()))
                .expect("reference decodes");
            assert_eq!(decoded, reference.records, "{compression:?}");
            assert_eq!(decoded.len(), 5);
            assert_eq!(decoded[3].value.as_deref(), Some(&[b'v'; 100][..]));
        }
    }

    #[test]
    fn decompression_is_bounded() {
        let batch = encode(&records(50, 10_000), Compression::None);
        assert!(
            decode_records_within(&batch, 1_000).is_ok(),
            "no bound without compression"
        );
        for compression in &COMPRESSIONS[1..] {
            let batch = encode(&records(50, 10_000), *compression);
            assert!(batch.len() < 100_000, "{compression:?} compresses");
            assert_eq!(
                decode_records_within(&batch, 100_000),
                Err(RecordsError::TooLarge { limit: 100_000 }),
                "{compression:?}"
            );
            assert!(decode_records_within(&batch, 1_000_000).is_ok());
        }
    }

    /// Regression: a snappy block declaring 4 GiB made the reference
    /// decoder zero-fill 4 GiB per block before failing.
    #[test]
    fn snappy_block_declaring_gigabytes_is_refused_without_allocating() {
        let mut section = XERIAL_SNAPPY_HEADER.to_vec();
        for _ in 0..4 {
            let block = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
            section.put_u32(block.len() as u32);
            section.extend_from_slice(&block);
        }
        let batch = batch_with_section(2, 1, &section);
        assert_eq!(
            decode_records(&batch),
            Err(RecordsError::TooLarge {
                limit: DECOMPRESSED_BATCH_BYTES_MAX
            })
        );
        let raw = batch_with_section(2, 1, &[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
        assert!(decode_records(&raw).is_err());
    }

    /// Regression: a compressed record declaring two billion headers made
    /// the reference decoder reserve (and initialise) a header map for
    /// them before reading one.
    #[test]
    fn compressed_records_are_framed_like_uncompressed_ones() {
        // One record: attributes, timestamp delta, offset delta, null key,
        // null value, then a header count of i32::MAX and nothing more.
        let mut record = vec![0, 0, 0, 1, 1];
        record.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0x0f]);
        let mut plain = vec![record.len() as u8 * 2];
        plain.extend_from_slice(&record);
        let mut section = BytesMut::new();
        kafka_protocol::compression::Snappy::compress(&mut section, |buf| {
            buf.put_slice(&plain);
            Ok(())
        })
        .expect("compress");
        let batch = batch_with_section(2, 1, &section);
        assert!(matches!(
            decode_records(&batch),
            Err(RecordsError::Batch(BatchError::BadRecord { index: 0, .. }))
        ));
    }

    #[test]
    fn invalid_batches_and_data_are_errors() {
        let mut batch = encode(&records(2, 10), Compression::Gzip);
        let last = batch.len() - 1;
        batch[last] ^= 1;
        assert!(matches!(
            decode_records(&batch),
            Err(RecordsError::Batch(BatchError::BadCrc { .. }))
        ));
        for code in 1..=4 {
            let garbage = batch_with_section(code, 1, b"not compressed at all");
            assert!(decode_records(&garbage).is_err(), "codec {code}");
        }
    }
}

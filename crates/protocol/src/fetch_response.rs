//! The Fetch response, framed by hand so record bytes stay in the segment
//! files: the frame is a list of in-memory header chunks and file ranges
//! that the connection sends with sendfile. Versions 4 to 16.

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::FileSlice;
use crate::frame::{Chunk, ResponseFrame};

/// Highest Fetch version this encoder writes.
pub const FETCH_VERSION_MAX: i16 = 16;
/// Lowest Fetch version this encoder writes.
pub const FETCH_VERSION_MIN: i16 = 4;

/// One partition of a fetch response.
#[derive(Clone, Debug)]
pub struct PartitionData {
    /// Partition index.
    pub partition: i32,
    /// Kafka error code.
    pub error_code: i16,
    /// High watermark.
    pub high_watermark: i64,
    /// Last stable offset.
    pub last_stable_offset: i64,
    /// Log start offset.
    pub log_start_offset: i64,
    /// Record bytes in a segment file.
    pub records: Option<FileSlice>,
    /// READ_COMMITTED fetches: the aborted transactions overlapping the
    /// records, as (producer id, first offset); `None` (a null array) for
    /// READ_UNCOMMITTED.
    pub aborted_transactions: Option<Vec<(i64, i64)>>,
}

/// One topic of a fetch response.
#[derive(Clone, Debug)]
pub struct TopicData {
    /// Topic name (versions < 13).
    pub name: String,
    /// Topic id (versions >= 13).
    pub topic_id: [u8; 16],
    /// Partitions, in request order.
    pub partitions: Vec<PartitionData>,
}

/// Top-level fields.
#[derive(Clone, Copy, Debug, Default)]
pub struct FetchHeader {
    /// Correlation id of the request.
    pub correlation_id: i32,
    /// Response version.
    pub version: i16,
    /// Top-level error code (v7+).
    pub error_code: i16,
    /// Fetch session id (v7+); 0 = sessionless.
    pub session_id: i32,
}

struct Writer {
    version: i16,
    chunks: Vec<Chunk>,
    buf: BytesMut,
    total: usize,
}

impl Writer {
    fn flexible(&self) -> bool {
        self.version >= 12
    }
    fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.put_u8(v as u8);
    }
    fn array_len(&mut self, n: usize) {
        if self.flexible() {
            self.uvarint(n as u64 + 1);
        } else {
            self.buf.put_i32(n as i32);
        }
    }
    fn null_array(&mut self) {
        if self.flexible() {
            self.uvarint(0);
        } else {
            self.buf.put_i32(-1);
        }
    }
    fn string(&mut self, s: &str) {
        if self.flexible() {
            self.uvarint(s.len() as u64 + 1);
        } else {
            self.buf.put_i16(s.len() as i16);
        }
        self.buf.put_slice(s.as_bytes());
    }
    fn tagged_fields(&mut self) {
        if self.flexible() {
            self.uvarint(0);
        }
    }
    fn records(&mut self, records: &Option<FileSlice>) {
        let len = records.as_ref().map_or(0, |r| r.len);
        if self.flexible() {
            self.uvarint(len as u64 + 1);
        } else {
            self.buf.put_i32(len as i32);
        }
        if let Some(slice) = records {
            if slice.len > 0 {
                let head = self.buf.split().freeze();
                self.push(Chunk::Bytes(head));
                self.push(Chunk::File(slice.clone()));
            }
        }
    }
    fn push(&mut self, chunk: Chunk) {
        self.total += match &chunk {
            Chunk::Bytes(b) => b.len(),
            Chunk::File(f) => f.len,
        };
        self.chunks.push(chunk);
    }
}

/// Encodes a complete Fetch response frame (size prefix included).
pub fn encode(header: FetchHeader, topics: &[TopicData]) -> ResponseFrame {
    let version = header.version;
    // Dispatch only lets advertised versions through.
    debug_assert!((FETCH_VERSION_MIN..=FETCH_VERSION_MAX).contains(&version));
    let mut w = Writer {
        version,
        chunks: Vec::with_capacity(2 + 2 * topics.len()),
        buf: BytesMut::with_capacity(256),
        total: 0,
    };
    w.buf.put_i32(header.correlation_id);
    w.tagged_fields();
    w.buf.put_i32(0); // throttle_time_ms
    if version >= 7 {
        w.buf.put_i16(header.error_code);
        w.buf.put_i32(header.session_id);
    }
    w.array_len(topics.len());
    for topic in topics {
        if version >= 13 {
            w.buf.put_slice(&topic.topic_id);
        } else {
            w.string(&topic.name);
        }
        w.array_len(topic.partitions.len());
        for p in &topic.partitions {
            w.buf.put_i32(p.partition);
            w.buf.put_i16(p.error_code);
            w.buf.put_i64(p.high_watermark);
            w.buf.put_i64(p.last_stable_offset);
            if version >= 5 {
                w.buf.put_i64(p.log_start_offset);
            }
            match &p.aborted_transactions {
                None => w.null_array(),
                Some(aborted) => {
                    w.array_len(aborted.len());
                    for &(producer_id, first_offset) in aborted {
                        w.buf.put_i64(producer_id);
                        w.buf.put_i64(first_offset);
                        w.tagged_fields();
                    }
                }
            }
            if version >= 11 {
                w.buf.put_i32(-1); // preferred_read_replica
            }
            w.records(&p.records);
            w.tagged_fields();
        }
        w.tagged_fields();
    }
    w.tagged_fields();
    let tail = w.buf.split().freeze();
    w.push(Chunk::Bytes(tail));

    // Prepend the size prefix to the first in-memory chunk.
    let size = w.total as i32;
    let mut chunks = w.chunks;
    if let Some(Chunk::Bytes(first)) = chunks.first_mut() {
        let mut with_size = BytesMut::with_capacity(4 + first.len());
        with_size.put_i32(size);
        with_size.put_slice(first);
        *first = with_size.freeze();
    } else {
        chunks.insert(0, Chunk::Bytes(Bytes::copy_from_slice(&size.to_be_bytes())));
    }
    ResponseFrame { chunks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::protocol::Decodable;
    use std::io::Write;
    use std::sync::Arc;

    fn flatten(frame: &ResponseFrame) -> Vec<u8> {
        let mut out = Vec::new();
        for c in &frame.chunks {
            match c {
                Chunk::Bytes(b) => out.extend_from_slice(b),
                Chunk::File(f) => out.extend(f.read_to_vec().unwrap()),
            }
        }
        out
    }

    /// Our hand-framed bytes must decode with the generated codec, for
    /// every version, with the file bytes in place.
    #[test]
    fn decodes_with_generated_codec_for_every_version() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"xxxxRECORDBYTESyyyy").unwrap();
        let slice = FileSlice {
            file: Arc::new(file),
            position: 4,
            len: 11,
        };
        for version in FETCH_VERSION_MIN..=FETCH_VERSION_MAX {
            let topics = vec![TopicData {
                name: "orders".into(),
                topic_id: [9; 16],
                partitions: vec![
                    PartitionData {
                        partition: 3,
                        error_code: 0,
                        high_watermark: 10,
                        last_stable_offset: 10,
                        log_start_offset: 2,
                        records: Some(slice.clone()),
                        aborted_transactions: Some(vec![(77, 5), (78, 6)]),
                    },
                    PartitionData {
                        partition: 4,
                        error_code: 1,
                        high_watermark: -1,
                        last_stable_offset: -1,
                        log_start_offset: -1,
                        records: None,
                        aborted_transactions: None,
                    },
                ],
            }];
            let frame = encode(
                FetchHeader {
                    correlation_id: 77,
                    version,
                    error_code: 0,
                    session_id: 0,
                },
                &topics,
            );
            let bytes = flatten(&frame);
            assert_eq!(bytes.len(), frame.len());
            let size = i32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
            assert_eq!(size, bytes.len() - 4, "v{version}");
            assert_eq!(&bytes[4..8], &77i32.to_be_bytes());
            let header_len = if version >= 12 { 9 } else { 8 };
            let mut body = Bytes::copy_from_slice(&bytes[header_len..]);
            let decoded = FetchResponse::decode(&mut body, version).unwrap();
            assert!(body.is_empty(), "v{version}: trailing bytes");
            let t = &decoded.responses[0];
            if version >= 13 {
                assert_eq!(t.topic_id.as_bytes(), &[9; 16]);
            } else {
                assert_eq!(t.topic.0.as_str(), "orders");
            }
            assert_eq!(t.partitions[0].partition_index, 3);
            assert_eq!(t.partitions[0].high_watermark, 10);
            assert_eq!(
                t.partitions[0].records.as_deref(),
                Some(&b"RECORDBYTES"[..])
            );
            assert_eq!(t.partitions[1].error_code, 1);
            let aborted: Vec<(i64, i64)> = t.partitions[0]
                .aborted_transactions
                .iter()
                .flatten()
                .map(|a| (a.producer_id.0, a.first_offset))
                .collect();
            assert_eq!(aborted, vec![(77, 5), (78, 6)], "v{version}");
            assert!(t.partitions[1].aborted_transactions.is_none(), "v{version}");
        }
    }
}

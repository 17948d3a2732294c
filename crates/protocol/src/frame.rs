//! Request framing: the 4-byte size prefix, the fixed start of every
//! request header, and response frames made of byte chunks and file ranges.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::Encodable;

/// A byte range of a segment file, to be sent to a socket without copying.
#[derive(Clone, Debug)]
pub struct FileSlice {
    /// The segment file, opened read-only.
    pub file: Arc<File>,
    /// First byte of the range.
    pub position: u64,
    /// Length of the range.
    pub len: usize,
}

impl FileSlice {
    /// Reads the range into memory (for tools and tests; fetch sends it with
    /// sendfile instead).
    pub fn read_to_vec(&self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; self.len];
        self.file.read_exact_at(&mut buf, self.position)?;
        Ok(buf)
    }
}

/// Why a frame was refused; the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is negative or zero.
    #[error("invalid frame size {0}")]
    InvalidSize(i32),
    /// The size prefix is over the configured maximum.
    #[error("frame of {size} bytes exceeds socket.request.max.bytes {max}")]
    TooLarge {
        /// Announced size.
        size: usize,
        /// Allowed size.
        max: usize,
    },
    /// Fewer bytes than the fixed header start.
    #[error("request of {0} bytes is shorter than a request header")]
    TooShort(usize),
}

/// Checks a size prefix against the limit; returns the body length.
pub fn frame_len(prefix: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let size = i32::from_be_bytes(prefix);
    if size <= 0 {
        return Err(FrameError::InvalidSize(size));
    }
    let size = size as usize;
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    Ok(size)
}

/// The fields every request header version starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawHeader {
    /// API key.
    pub api_key: i16,
    /// API version.
    pub api_version: i16,
    /// Correlation id echoed in the response.
    pub correlation_id: i32,
}

/// Reads the first 8 bytes of a request body.
pub fn peek_header(body: &[u8]) -> Result<RawHeader, FrameError> {
    if body.len() < 8 {
        return Err(FrameError::TooShort(body.len()));
    }
    Ok(RawHeader {
        api_key: i16::from_be_bytes([body[0], body[1]]),
        api_version: i16::from_be_bytes([body[2], body[3]]),
        correlation_id: i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
    })
}

/// A piece of a response.
#[derive(Clone, Debug)]
pub enum Chunk {
    /// Bytes already in memory.
    Bytes(Bytes),
    /// Bytes still in a segment file, sent with sendfile.
    File(FileSlice),
}

/// A complete response, size prefix included.
#[derive(Clone, Debug, Default)]
pub struct ResponseFrame {
    /// The chunks, in order.
    pub chunks: Vec<Chunk>,
}

impl ResponseFrame {
    /// Total bytes on the wire.
    pub fn len(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| match c {
                Chunk::Bytes(b) => b.len(),
                Chunk::File(f) => f.len,
            })
            .sum()
    }

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Encodes a response header (v0: correlation id; v1: plus empty tagged
/// fields) and `body`, with the size prefix.
pub fn encode_response<R: Encodable>(
    correlation_id: i32,
    header_version: i16,
    body: &R,
    version: i16,
) -> anyhow_free::Result<ResponseFrame> {
    let body_len = body
        .compute_size(version)
        .map_err(|e| anyhow_free::Error(e.to_string()))?;
    let header_len = if header_version >= 1 { 5 } else { 4 };
    let mut buf = BytesMut::with_capacity(4 + header_len + body_len);
    buf.put_i32((header_len + body_len) as i32);
    buf.put_i32(correlation_id);
    if header_version >= 1 {
        buf.put_u8(0);
    }
    body.encode(&mut buf, version)
        .map_err(|e| anyhow_free::Error(e.to_string()))?;
    assert_eq!(
        buf.len(),
        4 + header_len + body_len,
        "encoded size mismatch"
    );
    Ok(ResponseFrame {
        chunks: vec![Chunk::Bytes(buf.freeze())],
    })
}

/// A minimal error type for encoding failures (kafka-protocol reports
/// them as strings).
pub mod anyhow_free {
    /// An encoding failure.
    #[derive(Debug, Clone, thiserror::Error)]
    #[error("encoding failed: {0}")]
    pub struct Error(pub String);
    /// Result alias.
    pub type Result<T> = std::result::Result<T, Error>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiVersionsResponse;

    #[test]
    fn frame_len_bounds() {
        assert_eq!(frame_len(10i32.to_be_bytes(), 100), Ok(10));
        assert_eq!(
            frame_len(0i32.to_be_bytes(), 100),
            Err(FrameError::InvalidSize(0))
        );
        assert_eq!(
            frame_len((-5i32).to_be_bytes(), 100),
            Err(FrameError::InvalidSize(-5))
        );
        assert_eq!(
            frame_len(i32::MAX.to_be_bytes(), 100),
            Err(FrameError::TooLarge {
                size: i32::MAX as usize,
                max: 100
            })
        );
    }

    #[test]
    fn header_peek() {
        let body = [0, 18, 0, 3, 0, 0, 0, 42, 9];
        let h = peek_header(&body).unwrap();
        assert_eq!((h.api_key, h.api_version, h.correlation_id), (18, 3, 42));
        assert_eq!(peek_header(&body[..7]), Err(FrameError::TooShort(7)));
    }

    #[test]
    fn response_framing() {
        let frame = encode_response(7, 0, &ApiVersionsResponse::default(), 0).unwrap();
        let Chunk::Bytes(b) = &frame.chunks[0] else {
            panic!("bytes expected")
        };
        assert_eq!(
            i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize,
            b.len() - 4
        );
        assert_eq!(&b[4..8], &7i32.to_be_bytes());
        assert_eq!(frame.len(), b.len());
    }
}

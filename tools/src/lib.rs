//! Pieces shared by the tools: a small blocking Kafka client connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

/// A blocking Kafka connection.
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    correlation: i32,
}

impl Conn {
    /// Connects to `addr`.
    pub fn open(addr: &str) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
        Ok(Conn {
            stream,
            correlation: 0,
        })
    }

    /// Encodes a request frame; returns its correlation id and bytes.
    pub fn frame<Req: Encodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<(i32, Vec<u8>), String> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("ringbroker-tools")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, Req::header_version(version))
            .and_then(|()| req.encode(&mut buf, version))
            .map_err(|e| format!("encode {key:?}: {e}"))?;
        let mut out = (buf.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&buf);
        Ok((self.correlation, out))
    }

    /// Sends a request; returns its correlation id.
    pub fn send<Req: Encodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<i32, String> {
        let (corr, bytes) = self.frame(key, version, req)?;
        self.stream
            .write_all(&bytes)
            .map_err(|e| format!("send: {e}"))?;
        Ok(corr)
    }

    /// Reads one response from `stream`.
    pub fn recv<Resp: Decodable + HeaderVersion>(
        stream: &mut TcpStream,
        version: i16,
    ) -> Result<(i32, Resp), String> {
        let mut size = [0u8; 4];
        stream
            .read_exact(&mut size)
            .map_err(|e| format!("receive: {e}"))?;
        let size = i32::from_be_bytes(size);
        if !(0..=512 << 20).contains(&size) {
            return Err(format!("bad response size {size}"));
        }
        let mut body = vec![0u8; size as usize];
        stream
            .read_exact(&mut body)
            .map_err(|e| format!("receive: {e}"))?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, Resp::header_version(version))
            .map_err(|e| format!("header: {e}"))?;
        let resp = Resp::decode(&mut body, version).map_err(|e| format!("decode: {e}"))?;
        Ok((header.correlation_id, resp))
    }

    /// Sends a request and reads its response.
    pub fn call<Req: Encodable + HeaderVersion, Resp: Decodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<Resp, String> {
        self.send(key, version, req)?;
        Conn::recv(&mut self.stream, version).map(|(_, r)| r)
    }
}

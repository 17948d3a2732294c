//! Requests to other brokers over the Kafka protocol (replica fetches,
//! transaction markers): one connection, one request at a time, every
//! exchange bounded in time.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

/// How long a connection attempt or a response may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest response frame accepted from another broker.
const RESPONSE_FRAME_MAX: usize = 64 << 20;

/// A connection to another broker.
pub struct Connection {
    stream: TcpStream,
    correlation: i32,
    client_id: &'static str,
}

/// Connects to `host:port` within the I/O timeout; requests carry
/// `client_id`.
pub async fn connect(
    host: &str,
    port: u16,
    client_id: &'static str,
) -> std::io::Result<Connection> {
    let addr = format!("{host}:{port}");
    let connecting = TcpStream::connect(addr.as_str());
    let timer = glommio::timer::sleep(IO_TIMEOUT);
    futures::pin_mut!(connecting);
    futures::pin_mut!(timer);
    match futures::future::select(connecting, timer).await {
        futures::future::Either::Left((Ok(stream), _)) => {
            let _ignored = stream.set_nodelay(true);
            Ok(Connection {
                stream,
                correlation: 0,
                client_id,
            })
        }
        futures::future::Either::Left((Err(e), _)) => Err(std::io::Error::other(e.to_string())),
        futures::future::Either::Right(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

impl Connection {
    /// One request and its response, bounded in time.
    pub async fn call<Req: Encodable + HeaderVersion, Resp: Decodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
        wait: Duration,
    ) -> Result<Resp, String> {
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str(self.client_id)));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, Req::header_version(version))
            .and_then(|()| request.encode(&mut buf, version))
            .map_err(|e| format!("encoding {key:?}: {e}"))?;
        let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&buf);
        let exchange = async {
            self.stream
                .write_all(&frame)
                .await
                .map_err(|e| format!("send: {e}"))?;
            let mut size = [0u8; 4];
            self.stream
                .read_exact(&mut size)
                .await
                .map_err(|e| format!("receive: {e}"))?;
            let size = i32::from_be_bytes(size);
            let size = usize::try_from(size)
                .ok()
                .filter(|s| *s <= RESPONSE_FRAME_MAX)
                .ok_or_else(|| format!("bad response size {size}"))?;
            let mut body = vec![0u8; size];
            self.stream
                .read_exact(&mut body)
                .await
                .map_err(|e| format!("receive: {e}"))?;
            Ok::<Vec<u8>, String>(body)
        };
        let timer = glommio::timer::sleep(IO_TIMEOUT + wait);
        futures::pin_mut!(exchange);
        futures::pin_mut!(timer);
        let body = match futures::future::select(exchange, timer).await {
            futures::future::Either::Left((body, _)) => body?,
            futures::future::Either::Right(_) => return Err(format!("{key:?} timed out")),
        };
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, Resp::header_version(version))
            .map_err(|e| format!("response header: {e}"))?;
        if header.correlation_id != self.correlation {
            return Err(format!(
                "response {} to request {}",
                header.correlation_id, self.correlation
            ));
        }
        Resp::decode(&mut body, version).map_err(|e| format!("decode: {e}"))
    }
}

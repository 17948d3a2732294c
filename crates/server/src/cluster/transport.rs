//! Controller traffic: the framing on the CONTROLLER listener, the outbound
//! links that carry raft messages between voters, and request/response
//! exchanges (broker registration, heartbeats, forwarded metadata changes).
//!
//! A frame is `[length u32][kind u8][payload]` (big-endian length of kind
//! plus payload, at most `CONTROLLER_FRAME_BYTES_MAX`):
//!
//! - `RAFT`: a raft message (protobuf), one way; raft tolerates loss, so a
//!   full queue or a broken link drops it and tells raft.
//! - `REQUEST` / `RESPONSE`: `[correlation u64][JSON body]`; responses may
//!   come back in any order.
//!
//! Everything here runs on one shard's executor (the controller's, shard
//! 0); every queue is bounded.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use ringbroker_protocol::limits::{
    CONTROLLER_FRAME_BYTES_MAX, CONTROLLER_LINK_QUEUE_FRAMES, CONTROLLER_REQUEST_TIMEOUT_MS,
};

/// Frame kinds.
pub const KIND_RAFT: u8 = 1;
/// A request with a correlation id.
pub const KIND_REQUEST: u8 = 2;
/// The response to a request, same correlation id.
pub const KIND_RESPONSE: u8 = 3;

/// How long a failed connection waits before the next attempt.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Encodes one frame.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len() + 1).expect("controller frame fits in u32");
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    out
}

/// Reads one frame: `Ok(None)` at a clean end of stream; an error for a
/// bad length or a broken stream (the connection is then closed).
pub async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut prefix = [0u8; 4];
    match stream.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len == 0 || len > CONTROLLER_FRAME_BYTES_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("controller frame of {len} bytes"),
        ));
    }
    // Grow as bytes arrive: a large length alone allocates little.
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    let read = (&mut *stream)
        .take(len as u64)
        .read_to_end(&mut body)
        .await?;
    if read != len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let kind = body[0];
    body.remove(0);
    Ok(Some((kind, body)))
}

/// Splits a request or response payload into its correlation id and body.
pub fn split_correlation(payload: &[u8]) -> Option<(u64, &[u8])> {
    let id = u64::from_be_bytes(payload.get(..8)?.try_into().ok()?);
    Some((id, &payload[8..]))
}

/// Builds a request or response payload.
pub fn with_correlation(id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).await?;
    if let Err(e) = stream.set_nodelay(true) {
        log::debug!("TCP_NODELAY on controller link: {e}");
    }
    Ok(stream)
}

/// A one-way link to a peer: frames queue (bounded) and a task writes them,
/// reconnecting after failures. Frames that cannot be sent are handed to
/// `lost` so the sender can tell raft.
pub struct Link {
    queue: flume::Sender<Vec<u8>>,
}

impl Link {
    /// Starts the link's task.
    pub fn start(addr: SocketAddr, lost: Rc<dyn Fn(Vec<u8>)>) -> Link {
        let (queue, frames) = flume::bounded(CONTROLLER_LINK_QUEUE_FRAMES);
        glommio::spawn_local(run_link(addr, frames, lost)).detach();
        Link { queue }
    }

    /// Queues a frame; `Err` gives it back when the queue is full.
    pub fn send(&self, frame: Vec<u8>) -> Result<(), Vec<u8>> {
        self.queue.try_send(frame).map_err(|e| e.into_inner())
    }
}

async fn run_link(addr: SocketAddr, frames: flume::Receiver<Vec<u8>>, lost: Rc<dyn Fn(Vec<u8>)>) {
    let mut stream: Option<TcpStream> = None;
    while let Ok(frame) = frames.recv_async().await {
        if stream.is_none() {
            match connect(addr).await {
                Ok(s) => stream = Some(s),
                Err(e) => {
                    log::debug!("controller link to {addr}: {e}");
                    lost(frame);
                    // Everything queued meanwhile is stale for raft.
                    while let Ok(f) = frames.try_recv() {
                        lost(f);
                    }
                    glommio::timer::sleep(RECONNECT_BACKOFF).await;
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        if let Err(e) = s.write_all(&frame).await {
            log::debug!("controller link to {addr} broke: {e}");
            stream = None;
            lost(frame);
        }
    }
}

/// A request/response client to one address: requests carry correlation
/// ids, answers are matched to them, a broken connection fails every
/// request waiting on it (the next call reconnects).
pub struct Client {
    addr: SocketAddr,
    next_id: Cell<u64>,
    pending: Rc<RefCell<HashMap<u64, flume::Sender<Vec<u8>>>>>,
    connection: RefCell<Option<Connection>>,
}

/// An open connection: the writer task's queue and the socket (to shut it
/// down, which ends both tasks).
struct Connection {
    frames: flume::Sender<Vec<u8>>,
    fd: std::os::fd::RawFd,
    alive: Rc<Cell<bool>>,
}

impl Client {
    /// A client for `addr` (connects on first use).
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            next_id: Cell::new(1),
            pending: Rc::new(RefCell::new(HashMap::new())),
            connection: RefCell::new(None),
        }
    }

    /// The address this client talks to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn connect(&self) -> std::io::Result<flume::Sender<Vec<u8>>> {
        if let Some(c) = self.connection.borrow().as_ref() {
            if c.alive.get() {
                return Ok(c.frames.clone());
            }
        }
        use std::os::fd::{AsRawFd, FromRawFd};
        let mut write_half = connect(self.addr).await?;
        let fd = write_half.as_raw_fd();
        let read_fd = nix::unistd::dup(fd)?;
        // SAFETY: `read_fd` was just duplicated and is owned by this stream only.
        let mut read_half = unsafe { TcpStream::from_raw_fd(read_fd) };
        let (frames, queued) = flume::bounded::<Vec<u8>>(CONTROLLER_LINK_QUEUE_FRAMES);
        let alive = Rc::new(Cell::new(true));
        let writer_alive = alive.clone();
        glommio::spawn_local(async move {
            while let Ok(frame) = queued.recv_async().await {
                if write_half.write_all(&frame).await.is_err() {
                    break;
                }
            }
            writer_alive.set(false);
            let _ignored = nix::sys::socket::shutdown(
                write_half.as_raw_fd(),
                nix::sys::socket::Shutdown::Both,
            );
        })
        .detach();
        let pending = self.pending.clone();
        let reader_alive = alive.clone();
        let addr = self.addr;
        glommio::spawn_local(async move {
            while let Ok(Some((kind, payload))) = read_frame(&mut read_half).await {
                if kind != KIND_RESPONSE {
                    continue;
                }
                if let Some((id, body)) = split_correlation(&payload) {
                    if let Some(reply) = pending.borrow_mut().remove(&id) {
                        let _ignored = reply.try_send(body.to_vec());
                    }
                }
            }
            log::debug!("controller connection to {addr} ended");
            reader_alive.set(false);
            // Every waiter sees its reply channel close.
            pending.borrow_mut().clear();
        })
        .detach();
        let sender = frames.clone();
        *self.connection.borrow_mut() = Some(Connection { frames, fd, alive });
        Ok(sender)
    }

    /// Closes the connection (a caller gave up on an answer); the next
    /// call reconnects.
    pub fn reset(&self) {
        self.drop_connection();
    }

    fn drop_connection(&self) {
        if let Some(c) = self.connection.borrow_mut().take() {
            if c.alive.get() {
                let _ignored = nix::sys::socket::shutdown(c.fd, nix::sys::socket::Shutdown::Both);
            }
        }
    }

    /// Sends a request body and waits (bounded) for its response body.
    pub async fn call(&self, body: &[u8]) -> std::io::Result<Vec<u8>> {
        let frames = match self.connect().await {
            Ok(f) => f,
            Err(e) => {
                self.drop_connection();
                return Err(e);
            }
        };
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (reply_tx, reply_rx) = flume::bounded(1);
        self.pending.borrow_mut().insert(id, reply_tx);
        if frames
            .try_send(frame(KIND_REQUEST, &with_correlation(id, body)))
            .is_err()
        {
            self.pending.borrow_mut().remove(&id);
            return Err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "controller connection queue full",
            ));
        }
        let timeout = glommio::timer::sleep(Duration::from_millis(CONTROLLER_REQUEST_TIMEOUT_MS));
        let answer = reply_rx.recv_async();
        futures::pin_mut!(timeout);
        futures::pin_mut!(answer);
        match futures::future::select(answer, timeout).await {
            futures::future::Either::Left((Ok(body), _)) => Ok(body),
            futures::future::Either::Left((Err(_), _)) => {
                self.drop_connection();
                Err(std::io::ErrorKind::ConnectionReset.into())
            }
            futures::future::Either::Right(_) => {
                self.pending.borrow_mut().remove(&id);
                self.drop_connection();
                Err(std::io::ErrorKind::TimedOut.into())
            }
        }
    }
}

/// What a CONTROLLER listener does with the frames it receives.
pub trait ControllerHandler {
    /// A raft message from a peer voter.
    fn raft(&self, message: &[u8]);
    /// A request; the returned future yields the response body.
    fn request(
        &self,
        body: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u8>>>>;
}

/// Accepts controller connections until the listener fails; each
/// connection is served by its own tasks.
pub async fn serve_controller(
    listener: glommio::net::TcpListener,
    handler: Rc<dyn ControllerHandler>,
) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let handler = handler.clone();
                glommio::spawn_local(async move { serve_connection(stream, handler).await })
                    .detach();
            }
            Err(e) => {
                log::warn!("controller listener: {e}");
                glommio::timer::sleep(RECONNECT_BACKOFF).await;
            }
        }
    }
}

async fn serve_connection(mut stream: TcpStream, handler: Rc<dyn ControllerHandler>) {
    use std::os::fd::{AsRawFd, FromRawFd};
    let Ok(fd) = nix::unistd::dup(stream.as_raw_fd()) else {
        return;
    };
    // SAFETY: `fd` was just duplicated and is owned by this stream only.
    let mut write_half = unsafe { TcpStream::from_raw_fd(fd) };
    let (responses, queued) = flume::bounded::<Vec<u8>>(CONTROLLER_LINK_QUEUE_FRAMES);
    let writer = glommio::spawn_local(async move {
        while let Ok(frame) = queued.recv_async().await {
            if write_half.write_all(&frame).await.is_err() {
                break;
            }
        }
    })
    .detach();
    loop {
        match read_frame(&mut stream).await {
            Ok(Some((KIND_RAFT, message))) => handler.raft(&message),
            Ok(Some((KIND_REQUEST, payload))) => {
                let Some((id, body)) = split_correlation(&payload) else {
                    break;
                };
                let answer = handler.request(body.to_vec());
                let responses = responses.clone();
                glommio::spawn_local(async move {
                    let body = answer.await;
                    let _ignored = responses
                        .send_async(frame(KIND_RESPONSE, &with_correlation(id, &body)))
                        .await;
                })
                .detach();
            }
            Ok(Some((kind, _))) => {
                log::info!("closing a controller connection: frame kind {kind}");
                break;
            }
            Ok(None) => break,
            Err(e) => {
                log::debug!("controller connection: {e}");
                break;
            }
        }
    }
    drop(responses);
    drop(writer);
    let _ignored = nix::sys::socket::shutdown(stream.as_raw_fd(), nix::sys::socket::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_correlation_round_trip() {
        let f = frame(KIND_REQUEST, &with_correlation(7, b"{}"));
        assert_eq!(
            u32::from_be_bytes(f[..4].try_into().expect("4")) as usize,
            f.len() - 4
        );
        assert_eq!(f[4], KIND_REQUEST);
        assert_eq!(split_correlation(&f[5..]), Some((7, &b"{}"[..])));
        assert_eq!(split_correlation(b"short"), None);
    }
}

//! The listener and one task pair per connection.
//!
//! The reader reads frames and starts a handler task per request, queueing
//! the tasks in a bounded FIFO (the pipelining bound); the writer awaits
//! them in order, so responses leave in request order. Record bytes of
//! Fetch responses go out with sendfile(2) on the shard's blocking pool,
//! one job per response.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use crate::dispatch::{dispatch, Response};
use crate::shard::Shard;
use ringbroker_protocol::frame::{frame_len, Chunk, ResponseFrame};
use ringbroker_protocol::limits::SOCKET_SEND_TIMEOUT_MS;

/// Accepts connections until `stop` fires.
pub async fn run_listener(shard: Rc<Shard>, listener: TcpListener, stop: flume::Receiver<()>) {
    // Connections wait in the backlog until the broker serves.
    {
        let serving = shard.until_serving();
        let stopped = stop.recv_async();
        futures::pin_mut!(serving);
        futures::pin_mut!(stopped);
        if let futures::future::Either::Right(_) = futures::future::select(serving, stopped).await {
            return;
        }
    }
    loop {
        let accept = listener.accept();
        let stopped = stop.recv_async();
        futures::pin_mut!(accept);
        futures::pin_mut!(stopped);
        match futures::future::select(accept, stopped).await {
            futures::future::Either::Left((Ok(stream), _)) => {
                let shard = shard.clone();
                glommio::spawn_local(async move { serve(shard, stream).await }).detach();
            }
            futures::future::Either::Left((Err(e), _)) => {
                log::warn!("accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            futures::future::Either::Right(_) => return,
        }
    }
}

/// Serves one connection until it closes.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let fd = stream.as_raw_fd();
    if let Err(e) = stream.set_nodelay(true) {
        log::debug!("TCP_NODELAY: {e}");
    }
    set_send_timeout(fd);
    // A second handle on the same socket for the writer.
    let client_host: Rc<str> = match stream.peer_addr() {
        Ok(addr) => format!("/{}", addr.ip()).into(),
        Err(_) => "/unknown".into(),
    };
    let write_fd = match nix::unistd::dup(fd) {
        Ok(fd) => fd,
        Err(e) => {
            log::warn!("dup of connection socket failed: {e}");
            return;
        }
    };
    // SAFETY: `write_fd` was just duplicated and is owned only by this stream.
    let writer_stream = unsafe { TcpStream::from_raw_fd(write_fd) };
    let inflight = shard.config.max_inflight_requests_per_connection.max(1);
    let (tx, rx) = glommio::channels::local_channel::new_bounded(inflight);
    shard
        .stats
        .connections
        .set(shard.stats.connections.get() + 1);
    shard
        .stats
        .open_connections
        .set(shard.stats.open_connections.get() + 1);
    let writer = glommio::spawn_local(write_loop(shard.clone(), writer_stream, rx));
    read_loop(&shard, stream, tx, client_host).await;
    writer.await;
    shard
        .stats
        .open_connections
        .set(shard.stats.open_connections.get().saturating_sub(1));
}

async fn read_loop(
    shard: &Rc<Shard>,
    mut stream: TcpStream,
    tx: glommio::channels::local_channel::LocalSender<glommio::task::JoinHandle<Response>>,
    client_host: Rc<str>,
) {
    let max = shard.config.socket_request_max_bytes;
    // Idle connections close after connections.max.idle.ms without a request.
    let idle = Duration::from_millis(shard.config.connections_max_idle_ms.max(1));
    if let Err(e) = stream.set_read_timeout(Some(idle)) {
        log::debug!("read timeout: {e}");
    }
    loop {
        // At shutdown the reader stops: requests read whole so far are
        // answered, the rest are never started (the client sees the
        // connection close and retries them after the restart).
        let body = {
            let read = read_frame(&mut stream, max);
            let stopped = shard.stopped();
            futures::pin_mut!(read);
            futures::pin_mut!(stopped);
            match futures::future::select(read, stopped).await {
                futures::future::Either::Left((Some(body), _)) => body,
                _ => return,
            }
        };
        let shard = shard.clone();
        let host = client_host.clone();
        let task =
            glommio::spawn_local(async move { dispatch(&shard, Bytes::from(body), &host).await })
                .detach();
        if tx.send(task).await.is_err() {
            return;
        }
    }
}

/// Reads one size-prefixed request frame; `None` when the connection ends
/// or sends a bad size.
async fn read_frame(stream: &mut TcpStream, max: usize) -> Option<Vec<u8>> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await.ok()?;
    let len = match frame_len(prefix, max) {
        Ok(len) => len,
        Err(e) => {
            log::info!("closing connection: {e}");
            return None;
        }
    };
    // Grow the buffer as bytes arrive: a large size prefix alone
    // allocates nothing.
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    match stream.take(len as u64).read_to_end(&mut body).await {
        Ok(n) if n == len => Some(body),
        _ => None,
    }
}

async fn write_loop(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    rx: glommio::channels::local_channel::LocalReceiver<glommio::task::JoinHandle<Response>>,
) {
    let fd = stream.as_raw_fd();
    while let Some(task) = rx.recv().await {
        let Some(response) = task.await else {
            break;
        };
        let (frame, close) = match response {
            Response::Frame(frame) => (Some(frame), false),
            Response::Nothing => (None, false),
            Response::Close(frame) => (frame, true),
        };
        if let Some(frame) = frame {
            if let Err(e) = write_frame(&shard, &mut stream, fd, frame).await {
                log::debug!("connection write failed: {e}");
                break;
            }
        }
        if close {
            break;
        }
    }
    // Wake the reader (blocked in read) so both halves end.
    let _ignored = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Both);
    rx.recv().await; // drain so the reader's pending send completes
}

async fn write_frame(
    shard: &Shard,
    stream: &mut TcpStream,
    fd: RawFd,
    frame: ResponseFrame,
) -> std::io::Result<()> {
    let file_bytes: usize = frame
        .chunks
        .iter()
        .map(|c| match c {
            Chunk::File(slice) => slice.len,
            Chunk::Bytes(_) => 0,
        })
        .sum();
    if file_bytes == 0 {
        for chunk in frame.chunks {
            if let Chunk::Bytes(bytes) = chunk {
                stream.write_all(&bytes).await?;
            }
        }
        return stream.flush().await;
    }
    // The whole response (headers by send, record bytes by sendfile) in one
    // blocking-pool job: one thread hand-off per response, not one per
    // partition (benches/zero_copy.rs has the per-chunk costs).
    send_frame_blocking(fd, frame.chunks).await?;
    shard
        .stats
        .zero_copy_bytes
        .set(shard.stats.zero_copy_bytes.get() + file_bytes as u64);
    Ok(())
}

/// Sends `chunks` in order on the blocking socket `socket`: in-memory bytes
/// with send(2), file slices with sendfile(2). Runs on the shard's blocking
/// pool so neither a full socket buffer nor a cold page read blocks the
/// shard thread (the socket's send timeout bounds a stuck peer).
async fn send_frame_blocking(socket: RawFd, chunks: Vec<Chunk>) -> std::io::Result<()> {
    glommio::executor()
        .spawn_blocking(move || {
            // SAFETY: the writer task keeps the socket open until this
            // blocking call returns (it awaits it).
            let out = unsafe { BorrowedFd::borrow_raw(socket) };
            for chunk in &chunks {
                match chunk {
                    Chunk::Bytes(bytes) => send_all(out, bytes)?,
                    Chunk::File(slice) => {
                        sendfile_all(out, &slice.file, slice.position, slice.len)?
                    }
                }
            }
            Ok(())
        })
        .await
}

fn send_all(out: BorrowedFd<'_>, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match nix::sys::socket::send(
            out.as_raw_fd(),
            bytes,
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        ) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(std::io::Error::from(e)),
        }
    }
    Ok(())
}

fn sendfile_all(
    out: BorrowedFd<'_>,
    file: &std::fs::File,
    position: u64,
    len: usize,
) -> std::io::Result<()> {
    let mut offset = position as libc::off_t;
    let mut left = len;
    while left > 0 {
        match nix::sys::sendfile::sendfile(out, file, Some(&mut offset), left) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment file shorter than expected",
                ))
            }
            Ok(n) => left -= n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(std::io::Error::from(e)),
        }
    }
    Ok(())
}

fn set_send_timeout(fd: RawFd) {
    let timeout = libc::timeval {
        tv_sec: (SOCKET_SEND_TIMEOUT_MS / 1000) as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: plain setsockopt on a socket we own, with a correctly sized value.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        log::debug!("SO_SNDTIMEO: {}", std::io::Error::last_os_error());
    }
}

//! How record bytes should go from a segment file to a socket.
//!
//! Sends a page-cached file over a loopback TCP connection (a thread on
//! the other end reads and discards) in fetch-sized chunks, three ways:
//!
//! - `sendfile-inline`: sendfile(2) on the calling (shard) thread. Fastest
//!   per byte, but it blocks the thread when the peer's socket buffer is
//!   full, so a slow consumer would stall every partition on the shard.
//! - `sendfile-pool`: sendfile on a helper thread, the caller waiting for a
//!   reply per chunk: what the broker does (glommio's blocking pool).
//! - `uring-splice`: io_uring SPLICE file→pipe linked to SPLICE pipe→socket,
//!   one submit-and-wait per chunk (the kernel runs file splices on its
//!   io-wq workers).
//!
//! Prints GB/s, CPU seconds per GB (process CPU minus the reading thread)
//! and mean µs per chunk. Run: `cargo bench --bench zero_copy`
//! (`ZC_MB` sets the bytes sent per case, default 1024).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const FILE_BYTES: usize = 64 << 20;

fn cpu_time(who: libc::c_int) -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we pass.
    unsafe { libc::getrusage(who, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A connected loopback pair: the sending socket and a thread draining
/// the other end, which returns (bytes read, its own CPU time).
fn connection() -> (TcpStream, std::thread::JoinHandle<(u64, Duration)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let start = cpu_time(libc::RUSAGE_THREAD);
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n as u64,
            }
        }
        (total, cpu_time(libc::RUSAGE_THREAD) - start)
    });
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    (stream, reader)
}

fn sendfile_all(sock: RawFd, file: RawFd, mut offset: i64, mut len: usize) {
    while len > 0 {
        // SAFETY: valid fds and offset pointer for the duration of the call.
        let n = unsafe { libc::sendfile(sock, file, &mut offset, len) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            panic!("sendfile: {e}");
        }
        assert!(n > 0, "file shorter than expected");
        len -= n as usize;
    }
}

struct Splicer {
    ring: io_uring::IoUring,
    pipe_r: OwnedFd,
    pipe_w: OwnedFd,
}

impl Splicer {
    fn new(chunk: usize) -> Splicer {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two fds we then own.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: we own both fds now.
        let (pipe_r, pipe_w) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: plain fcntl on our pipe.
        unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, chunk.max(65536) as libc::c_int) };
        Splicer {
            ring: io_uring::IoUring::new(8).expect("io_uring"),
            pipe_r,
            pipe_w,
        }
    }

    fn send(&mut self, sock: RawFd, file: RawFd, mut offset: i64, mut len: usize) {
        use io_uring::{opcode, squeue, types};
        while len > 0 {
            let fill = opcode::Splice::new(
                types::Fd(file),
                offset,
                types::Fd(self.pipe_w.as_raw_fd()),
                -1,
                len as u32,
            )
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(1);
            let drain = opcode::Splice::new(
                types::Fd(self.pipe_r.as_raw_fd()),
                -1,
                types::Fd(sock),
                -1,
                len as u32,
            )
            .build()
            .user_data(2);
            // SAFETY: the entries reference fds that outlive the submission.
            unsafe {
                let mut sq = self.ring.submission();
                sq.push(&fill).expect("sq full");
                sq.push(&drain).expect("sq full");
            }
            self.ring.submit_and_wait(2).expect("submit");
            let (mut filled, mut drained) = (0i32, 0i32);
            for cqe in self.ring.completion() {
                match cqe.user_data() {
                    1 => filled = cqe.result(),
                    _ => drained = cqe.result(),
                }
            }
            assert!(filled > 0, "splice from file: {filled}");
            let mut drained = drained.max(0) as usize;
            // A short second splice leaves bytes in the pipe: drain them.
            while drained < filled as usize {
                let rest = opcode::Splice::new(
                    types::Fd(self.pipe_r.as_raw_fd()),
                    -1,
                    types::Fd(sock),
                    -1,
                    (filled as usize - drained) as u32,
                )
                .build()
                .user_data(3);
                // SAFETY: as above.
                unsafe { self.ring.submission().push(&rest).expect("sq full") };
                self.ring.submit_and_wait(1).expect("submit");
                let cqe = self.ring.completion().next().expect("cqe");
                assert!(cqe.result() > 0, "splice to socket: {}", cqe.result());
                drained += cqe.result() as usize;
            }
            offset += i64::from(filled);
            len -= filled as usize;
        }
    }
}

fn run(method: &str, chunk: usize, total: usize, file: &File) {
    let (stream, reader) = connection();
    let sock = stream.as_raw_fd();
    let fd = file.as_raw_fd();
    let chunks = total / chunk;
    let pool = (method == "sendfile-pool").then(|| {
        let (job_tx, job_rx) = mpsc::sync_channel::<(i64, usize, mpsc::SyncSender<()>)>(1);
        let worker = std::thread::spawn(move || {
            while let Ok((offset, len, done)) = job_rx.recv() {
                sendfile_all(sock, fd, offset, len);
                let _ = done.send(());
            }
        });
        (job_tx, worker)
    });
    let mut splicer = (method == "uring-splice").then(|| Splicer::new(chunk));
    let cpu0 = cpu_time(libc::RUSAGE_SELF);
    let t0 = Instant::now();
    for i in 0..chunks {
        let offset = ((i * chunk) % FILE_BYTES) as i64;
        match method {
            "sendfile-inline" => sendfile_all(sock, fd, offset, chunk),
            "sendfile-pool" => {
                let (tx, rx) = mpsc::sync_channel(1);
                pool.as_ref()
                    .expect("pool")
                    .0
                    .send((offset, chunk, tx))
                    .expect("job");
                rx.recv().expect("done");
            }
            _ => splicer
                .as_mut()
                .expect("splicer")
                .send(sock, fd, offset, chunk),
        }
    }
    let elapsed = t0.elapsed();
    let cpu = cpu_time(libc::RUSAGE_SELF) - cpu0;
    if let Some((tx, worker)) = pool {
        drop(tx);
        worker.join().expect("worker");
    }
    let mut stream = stream;
    stream.flush().expect("flush");
    drop(stream);
    let (received, reader_cpu) = reader.join().expect("reader");
    assert_eq!(received, (chunks * chunk) as u64);
    let gb = received as f64 / 1e9;
    println!(
        "{method:<16} chunk {:>5} KiB  {:6.2} GB/s  {:5.3} cpu s/GB (sender)  {:7.1} µs/chunk",
        chunk >> 10,
        gb / elapsed.as_secs_f64(),
        cpu.saturating_sub(reader_cpu).as_secs_f64() / gb,
        elapsed.as_secs_f64() * 1e6 / chunks as f64
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let total = std::env::var("ZC_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024usize)
        << 20;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let path = dir.path().join("segment.log");
    {
        let mut f = File::create(&path).expect("create");
        let block: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        for _ in 0..FILE_BYTES >> 20 {
            f.write_all(&block).expect("write");
        }
        f.sync_all().expect("sync");
    }
    let file = File::open(&path).expect("open");
    println!(
        "zero-copy send of a page-cached file over loopback TCP, {} MiB per case",
        total >> 20
    );
    for chunk in [16 << 10, 256 << 10, 1 << 20] {
        for round in 0..2 {
            // Interleaved twice: the second round is the one to read on a
            // noisy host (caches warm, turbo settled).
            if round == 1 {
                for method in ["sendfile-inline", "sendfile-pool", "uring-splice"] {
                    run(method, chunk, total, &file);
                }
            } else {
                for method in ["sendfile-inline", "sendfile-pool", "uring-splice"] {
                    run(method, chunk, total / 8, &file);
                }
            }
        }
    }
}

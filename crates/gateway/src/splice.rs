//! Zero-copy body forwarding between two plain TCP sockets with splice(2), as HAProxy does:
//! the bytes go socket → pipe → socket inside the kernel and never through our buffers. Used
//! by the HTTP/1 engine for large bodies of known length (and the data of large chunks).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

use crate::reqtimeout::BodyClock;

/// Bodies from this size on are spliced; below it the copy is cheaper than the pipe.
pub(crate) const MIN: u64 = 256 * 1024;

/// A kernel pipe, the splice buffer.
pub(crate) struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    size: usize,
}

impl Pipe {
    pub(crate) fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`, which we then own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A 1 MiB pipe (the default maximum for unprivileged processes) moves more per call
        // than the default 64 KiB; if refused, the default does.
        // SAFETY: fcntl on a descriptor we own.
        let got = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
        let size = if got > 0 { got as usize } else { 64 * 1024 };
        Ok(Pipe { r, w, size })
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice between descriptors we hold; null offsets (sockets and pipes have none).
    let n = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// Why a splice stopped early.
#[derive(Debug)]
pub(crate) enum SpliceError {
    /// Reading: EOF, an error or `read_timeout`.
    Source(io::Error),
    /// Writing: an error or `write_timeout`.
    Sink(io::Error),
    /// Reading a request body: its deadline passed (below the minimum rate).
    TooSlow,
}

/// Move exactly `len` bytes from `src` to `dst` through `pipe`. Each wait for the source to
/// have bytes is bounded by `read_timeout`, and by `body`'s deadline when the source is a
/// downstream sending a request body; each wait for the sink to take them by `write_timeout`.
pub(crate) async fn copy(
    pipe: &Pipe,
    src: &TcpStream,
    dst: &TcpStream,
    mut len: u64,
    read_timeout: Duration,
    write_timeout: Duration,
    mut body: Option<&mut BodyClock>,
) -> Result<(), SpliceError> {
    let timed_out = |what| io::Error::new(io::ErrorKind::TimedOut, what);
    let mut in_pipe = 0usize;
    while len > 0 || in_pipe > 0 {
        if len > 0 && in_pipe < pipe.size {
            let want = (pipe.size - in_pipe).min(len.min(usize::MAX as u64) as usize);
            let fill = || splice(src.as_raw_fd(), pipe.w.as_raw_fd(), want);
            // EAGAIN from socket → pipe means "socket empty" only when the pipe is empty. A
            // pipe holding bytes can be full in its slots (one per socket buffer fragment, 256
            // in 1 MiB) long before it is full in bytes: data sent with sendfile(2) (nginx,
            // Apache, Tomcat) arrives as many small page fragments. Clearing the socket's
            // readiness then would wait for a readiness edge that the already-queued bytes
            // never give, until the read timeout. So only an empty pipe's EAGAIN clears it
            // (`try_io`); a non-empty pipe is drained and the read tried again.
            let r = if in_pipe == 0 { src.try_io(Interest::READABLE, fill) } else { fill() };
            match r {
                Ok(0) => return Err(SpliceError::Source(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => {
                    in_pipe += n;
                    len -= n as u64;
                    if let Some(b) = body.as_deref_mut() {
                        b.received(n as u64);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if in_pipe == 0 {
                        let (until, rate_deadline) = match body.as_deref_mut() {
                            Some(b) => b.wait_until(read_timeout),
                            None => (Instant::now() + read_timeout, false),
                        };
                        match timeout_at(until, src.readable()).await {
                            Ok(Ok(())) => continue,
                            Ok(Err(e)) => return Err(SpliceError::Source(e)),
                            Err(_) if rate_deadline => return Err(SpliceError::TooSlow),
                            Err(_) => return Err(SpliceError::Source(timed_out("read timed out"))),
                        }
                    }
                }
                Err(e) => return Err(SpliceError::Source(e)),
            }
        }
        // Drain what the pipe holds.
        let r = dst.try_io(Interest::WRITABLE, || splice(pipe.r.as_raw_fd(), dst.as_raw_fd(), in_pipe));
        match r {
            Ok(n) => in_pipe -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => match timeout(write_timeout, dst.writable()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(SpliceError::Sink(e)),
                Err(_) => return Err(SpliceError::Sink(timed_out("write timed out"))),
            },
            Err(e) => return Err(SpliceError::Sink(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn moves_exactly_the_length_and_leaves_the_rest() {
        let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (a1, a2) = (l1.local_addr().unwrap(), l2.local_addr().unwrap());
        let total = 3 * 1024 * 1024 + 17;
        let writer = tokio::spawn(async move {
            let mut s = TcpStream::connect(a1).await.unwrap();
            let data: Vec<u8> = (0..total + 5).map(|i| (i % 251) as u8).collect();
            s.write_all(&data).await.unwrap();
            s
        });
        let (src, _) = l1.accept().await.unwrap();
        let reader = tokio::spawn(async move {
            let (mut s, _) = l2.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let dst = TcpStream::connect(a2).await.unwrap();
        let pipe = Pipe::new().unwrap();
        copy(&pipe, &src, &dst, total as u64, Duration::from_secs(5), Duration::from_secs(5), None).await.unwrap();
        drop(dst);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), total);
        assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        // The 5 bytes after the length are still in the source.
        let _w = writer.await.unwrap();
        let mut rest = [0u8; 5];
        let mut src = src;
        src.read_exact(&mut rest).await.unwrap();
        assert_eq!(rest.to_vec(), (total..total + 5).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    }

    /// What nginx, Apache and Tomcat do: sendfile(2) from a file into the socket. The bytes
    /// arrive as page fragments that fill the pipe's slots before its bytes; the copy must
    /// still go on (it once waited for the read timeout, which is an error here).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_sent_with_sendfile_is_moved_whole() {
        use std::io::Write;
        let total = 32 * 1024 * 1024 + 1234;
        let data: Vec<u8> = (0..total).map(|i| ((i * 7 + i / 4093) % 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (a1, a2) = (l1.local_addr().unwrap(), l2.local_addr().unwrap());
        let sender = std::thread::spawn(move || {
            let s = std::net::TcpStream::connect(a1).unwrap();
            let mut off: libc::off_t = 0;
            while (off as usize) < total {
                // SAFETY: sendfile from a file we own to a socket we own, `off` a valid offset.
                let n = unsafe { libc::sendfile(s.as_raw_fd(), file.as_raw_fd(), &mut off, total - off as usize) };
                assert!(n > 0, "sendfile: {}", io::Error::last_os_error());
            }
            s
        });
        let (src, _) = l1.accept().await.unwrap();
        let reader = tokio::spawn(async move {
            let (mut s, _) = l2.accept().await.unwrap();
            let mut got = Vec::with_capacity(total);
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let dst = TcpStream::connect(a2).await.unwrap();
        let pipe = Pipe::new().unwrap();
        let r = copy(&pipe, &src, &dst, total as u64, Duration::from_secs(20), Duration::from_secs(20), None).await;
        assert!(r.is_ok(), "the copy stopped: {r:?}");
        drop(dst);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), total);
        assert!(got == data, "the bytes differ");
        drop(sender.join().unwrap());
    }

    #[tokio::test]
    async fn a_short_source_is_a_source_error() {
        let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (a1, a2) = (l1.local_addr().unwrap(), l2.local_addr().unwrap());
        tokio::spawn(async move {
            let mut s = TcpStream::connect(a1).await.unwrap();
            s.write_all(&[1u8; 1000]).await.unwrap();
        });
        let (src, _) = l1.accept().await.unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l2.accept().await.unwrap();
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink).await;
        });
        let dst = TcpStream::connect(a2).await.unwrap();
        let pipe = Pipe::new().unwrap();
        let r = copy(&pipe, &src, &dst, 5000, Duration::from_secs(5), Duration::from_secs(5), None).await;
        assert!(matches!(r, Err(SpliceError::Source(_))), "{r:?}");
    }
}

//! The pump's wake-up line, its poll(2) wait and its non-blocking reads of target
//! sockets: with the libssh2 bindings and `heap`, the only modules with `unsafe` code.
//!
//! Worker threads never touch libssh2; when they hand the pump a buffer (or take one), they
//! ring the `Waker`. The pump sleeps in `wait` on the relay socket, the wake socket and
//! every target socket it is ready to read. A flag coalesces rings, so a busy connection
//! costs one syscall per pump pass, not one per buffer.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The sending half: cheap to clone, used by any thread.
#[derive(Clone)]
pub struct Waker {
    inner: Arc<WakerInner>,
}

struct WakerInner {
    pending: AtomicBool,
    tx: UnixStream,
}

/// The receiving half, owned by the pump.
pub struct WakeReceiver {
    inner: Arc<WakerInner>,
    rx: UnixStream,
}

/// A new wake line.
pub fn wake_pair() -> io::Result<(Waker, WakeReceiver)> {
    let (tx, rx) = UnixStream::pair()?;
    tx.set_nonblocking(true)?;
    rx.set_nonblocking(true)?;
    let inner = Arc::new(WakerInner {
        pending: AtomicBool::new(false),
        tx,
    });
    Ok((
        Waker {
            inner: inner.clone(),
        },
        WakeReceiver { inner, rx },
    ))
}

impl Waker {
    /// Makes the pump's next (or current) wait return.
    pub fn wake(&self) {
        if !self.inner.pending.swap(true, Ordering::SeqCst) {
            // A full socket buffer already means "wake up"; nothing to do on WouldBlock.
            let _ = (&self.inner.tx).write(&[1]);
        }
    }
}

impl WakeReceiver {
    /// Clears pending rings. Call before looking at the queues, so a ring that arrives
    /// after the look makes the next wait return. `woken`: the last wait saw a byte.
    pub fn clear(&mut self, woken: bool) {
        // A byte is written only after `pending` goes from false to true, so with the flag
        // false and no byte seen there is nothing to read: a busy pump skips the syscall.
        // A ringer pre-empted between its swap and its write leaves the flag false but a
        // byte behind; the next wait reports it (`woken`), and then we drain.
        if !self.inner.pending.swap(false, Ordering::SeqCst) && !woken {
            return;
        }
        let mut sink = [0u8; 64];
        while let Ok(n) = self.rx.read(&mut sink) {
            if n < sink.len() {
                break;
            }
        }
    }
}

/// Which way the relay socket must become ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    /// Wait for readable.
    pub read: bool,
    /// Wait for writable.
    pub write: bool,
}

/// What the wait saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Readiness {
    /// The relay socket is readable (or has an error/hang-up to report).
    pub socket_readable: bool,
    /// A copy thread or the signal handler rang.
    pub woken: bool,
    /// Any watched descriptor was ready.
    pub any: bool,
}

/// Target sockets the pump wants to read, for `wait` to watch beside the relay socket.
/// Refilled before each wait; kept between waits so that no wait allocates.
#[derive(Default)]
pub struct Targets {
    fds: Vec<libc::pollfd>,
}

impl Targets {
    /// Forgets the sockets of the last wait.
    pub fn clear(&mut self) {
        self.fds.clear();
    }

    /// Watches `socket` for reading and for its peer's FIN; returns its slot for
    /// `readable` and `hung_up`.
    pub fn watch(&mut self, socket: &TcpStream) -> usize {
        self.fds.push(libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLIN | POLL_PEER_SHUT,
            revents: 0,
        });
        self.fds.len() - 1
    }

    /// True when no socket is watched.
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// The socket in `slot` has data, an EOF or an error to read (after `wait`).
    pub fn readable(&self, slot: usize) -> bool {
        let ready = libc::POLLIN | POLL_PEER_SHUT | libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;
        self.fds.get(slot).is_some_and(|p| p.revents & ready != 0)
    }

    /// The peer of the socket in `slot` has sent its FIN: after the data still queued, a
    /// read will find the EOF (after `wait`).
    pub fn hung_up(&self, slot: usize) -> bool {
        let shut = POLL_PEER_SHUT | libc::POLLHUP;
        self.fds.get(slot).is_some_and(|p| p.revents & shut != 0)
    }
}

/// poll(2) with a timeout finer than a millisecond where the system has ppoll (the pump's
/// deferred ACK waits some hundred microseconds); elsewhere rounded up to milliseconds.
fn poll_fds(fds: &mut [libc::pollfd], timeout: Duration) -> libc::c_int {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        let limit = Duration::from_secs(i32::MAX as u64);
        let timeout = timeout.min(limit);
        let spec = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `fds` is a valid, initialised array of pollfd structs that lives for
        // the whole call, its length is passed alongside it, `spec` outlives the call, and
        // a null signal mask leaves the mask unchanged (plain poll).
        unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                &spec,
                std::ptr::null(),
            )
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `fds` is a valid, initialised array of pollfd structs that lives for
        // the whole call, and its length is passed alongside it.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) }
    }
}

/// poll's "peer shut down writing" (Linux); elsewhere only POLLHUP tells.
#[cfg(any(target_os = "linux", target_os = "android"))]
const POLL_PEER_SHUT: libc::c_short = libc::POLLRDHUP;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const POLL_PEER_SHUT: libc::c_short = 0;

/// Sleeps until the socket is ready as asked, a watched target is readable, the waker
/// rings, or the timeout passes. A negative `socket` is not watched.
pub fn wait(
    socket: RawFd,
    interest: Interest,
    wake: &WakeReceiver,
    targets: &mut Targets,
    timeout: Duration,
) -> io::Result<Readiness> {
    let mut events: libc::c_short = 0;
    if interest.read {
        events |= libc::POLLIN;
    }
    if interest.write {
        events |= libc::POLLOUT;
    }
    // The relay socket and the wake socket go at the end, so that target slots keep the
    // numbers `Targets::watch` gave them.
    let own = targets.fds.len();
    targets.fds.push(libc::pollfd {
        fd: socket,
        events,
        revents: 0,
    });
    targets.fds.push(libc::pollfd {
        fd: wake.rx.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    });
    let rc = poll_fds(&mut targets.fds, timeout);
    let relay = targets.fds[own].revents;
    let woken = targets.fds[own + 1].revents & libc::POLLIN != 0;
    targets.fds.truncate(own);
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(Readiness::default());
        }
        return Err(err);
    }
    let bad = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;
    Ok(Readiness {
        socket_readable: socket >= 0 && relay & (libc::POLLIN | bad) != 0,
        woken,
        any: rc > 0,
    })
}

/// Reads what a target socket has without blocking (MSG_DONTWAIT: the socket's own
/// blocking mode is shared with its writer thread and stays untouched). WouldBlock when
/// there is nothing to read.
pub fn recv_nowait(socket: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a valid, writable slice of `buf.len()` bytes for the whole call,
        // and the fd belongs to a live TcpStream.
        let rc = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Waits up to `ms` for `socket` to be readable or the wake line to ring.
    fn wait_ms(socket: &UnixStream, rx: &WakeReceiver, ms: u64) -> Readiness {
        let read = Interest {
            read: true,
            write: false,
        };
        let mut none = Targets::default();
        let timeout = Duration::from_millis(ms);
        wait(socket.as_raw_fd(), read, rx, &mut none, timeout).unwrap()
    }

    #[test]
    fn watched_targets_report_readable_and_read_without_blocking() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let (_waker, rx) = wake_pair().unwrap();
        let mut targets = Targets::default();
        let slot = targets.watch(&client);
        let none = Interest {
            read: false,
            write: false,
        };
        let quiet = Duration::from_millis(20);
        wait(-1, none, &rx, &mut targets, quiet).unwrap();
        assert!(!targets.readable(slot), "nothing sent yet");
        let mut buf = [0u8; 16];
        let empty = recv_nowait(&client, &mut buf).unwrap_err();
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);
        server.write_all(b"hello").unwrap();
        wait(-1, none, &rx, &mut targets, Duration::from_secs(5)).unwrap();
        assert!(targets.readable(slot));
        assert_eq!(recv_nowait(&client, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        drop(server);
        targets.clear();
        let slot = targets.watch(&client);
        wait(-1, none, &rx, &mut targets, Duration::from_secs(5)).unwrap();
        assert!(targets.readable(slot), "an EOF is readable too");
        assert_eq!(recv_nowait(&client, &mut buf).unwrap(), 0);
    }

    #[test]
    fn ring_wakes_a_wait_and_clear_resets_it() {
        let (waker, mut rx) = wake_pair().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        let started = Instant::now();
        let r = wait_ms(&a, &rx, 50);
        assert!(!r.woken && started.elapsed() >= Duration::from_millis(40));
        let w = waker.clone();
        std::thread::spawn(move || w.wake());
        let r = wait_ms(&a, &rx, 5000);
        assert!(r.woken);
        rx.clear(r.woken);
        let r = wait_ms(&a, &rx, 10);
        assert!(!r.woken);
        // A byte written while the flag is already clear (a pre-empted ringer) is drained
        // once a wait has seen it.
        (&rx.inner.tx).write_all(&[1]).unwrap();
        let r = wait_ms(&a, &rx, 5000);
        assert!(r.woken);
        rx.clear(r.woken);
        let r = wait_ms(&a, &rx, 10);
        assert!(!r.woken, "the stray byte must be drained");
        // After clear, a new ring writes again.
        waker.wake();
        let r = wait_ms(&a, &rx, 5000);
        assert!(r.woken);
    }
}

//! The pump's side of one forwarded connection: its libssh2 channel and the state machine
//! that moves bytes between that channel, the target socket (read here without blocking)
//! and, while the target lags behind, a writer thread.
//!
//! Only the pump thread ever calls into this module. libssh2's non-blocking rules shape it
//! (docs/libssh2.md §10): after EAGAIN the same call must be repeated with the same
//! bytes, and only one packet may be half-sent per session, so an operation that would
//! block is always driven to completion (`in_flight`) before anything else on the channel.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{TryRecvError, TrySendError};

use crate::libssh2;
use crate::wake::{self, Targets};
use crate::worker::{Down, Link, Up};

/// A connection's first read buffer for target -> relay. Small, so that idle connections
/// hold little; each read that fills it grows it fourfold, up to `READ_CHUNK`.
const FIRST_READ: usize = 8 * 1024;
/// Bytes read from a busy target at once: eight SSH packets' worth (libssh2 sends at most
/// 32700 bytes per packet). Each read is a pass of the pump (a poll, a receive), so bigger
/// reads cost less per byte: target -> relay CPU per GB with aes256-gcm, 8 interleaved
/// rounds, 0.960 s at 64 KiB, 0.930 at 128 KiB, 0.870 at 256 KiB (`ssh -R` 0.992). Only a
/// connection whose reads keep filling its buffer gets this big.
const READ_CHUNK: usize = 256 * 1024;

/// How often a back-pressured connection checks whether the relay closed its channel.
const CLOSE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// libssh2 error codes that mean the whole session is broken, not just one channel.
const SESSION_FATAL: &[i32] = &[
    libssh2_sys::LIBSSH2_ERROR_KEX_FAILURE,
    libssh2_sys::LIBSSH2_ERROR_ALLOC,
    libssh2_sys::LIBSSH2_ERROR_SOCKET_SEND,
    libssh2_sys::LIBSSH2_ERROR_TIMEOUT,
    libssh2_sys::LIBSSH2_ERROR_DECRYPT,
    libssh2_sys::LIBSSH2_ERROR_SOCKET_DISCONNECT,
    libssh2_sys::LIBSSH2_ERROR_PROTO,
    libssh2_sys::LIBSSH2_ERROR_SOCKET_TIMEOUT,
    libssh2_sys::LIBSSH2_ERROR_SOCKET_RECV,
    libssh2_sys::LIBSSH2_ERROR_ENCRYPT,
    libssh2_sys::LIBSSH2_ERROR_BAD_SOCKET,
];

/// True when a libssh2 error code means the session itself is gone.
pub fn is_session_fatal(code: i32) -> bool {
    SESSION_FATAL.contains(&code)
}

/// The code of the error libssh2 recorded last (ssh2 turns channel errors into
/// `io::Error`s that lose it).
pub fn last_code(session: &ssh2::Session) -> i32 {
    match ssh2::Error::last_session_error(session).map(|e| e.code()) {
        Some(ssh2::ErrorCode::Session(code)) => code,
        _ => 0,
    }
}

/// The libssh2 call that returned EAGAIN with its packet half-sent, and so must be
/// repeated before any other call on this channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Write,
    Read,
    Eof,
    Close,
}

/// Target -> relay bytes on their way into the channel: `buf[done..end]` is left.
#[derive(Debug)]
struct Outgoing {
    buf: Vec<u8>,
    done: usize,
    end: usize,
    /// The read filled a small buffer: grow it before the next read.
    grow: bool,
}

impl Outgoing {
    /// A whole message from the worker (a dynamic forward's reply).
    fn all_of(buf: Vec<u8>) -> Outgoing {
        let end = buf.len();
        Outgoing {
            buf,
            done: 0,
            end,
            grow: false,
        }
    }
}

/// What one step of a connection did.
#[derive(Debug, Default)]
pub struct Step {
    /// Something moved or changed state.
    pub progress: bool,
    /// The session is broken (libssh2 code and message).
    pub fatal: Option<String>,
    /// A libssh2 call would block on sending.
    pub wants_write: bool,
    /// The relay sent this channel something (data, EOF, CLOSE): evidence it is alive.
    pub inbound: bool,
}

/// One forwarded connection as the pump sees it.
pub struct Conn {
    /// Connection number, for logs.
    pub id: u64,
    /// Index of the forward it came through.
    pub forward: usize,
    channel: ssh2::Channel,
    link: Link,
    target: Option<Arc<TcpStream>>,
    target_addr: Option<SocketAddr>,
    in_flight: Option<Op>,
    /// Target -> relay: the bytes being written.
    pending_up: Option<Outgoing>,
    /// The buffer target reads go into, kept between reads (empty until the first).
    up_buf: Vec<u8>,
    /// Poll saw the target readable and no read since has found it empty.
    target_readable: bool,
    /// Poll saw the target's FIN: after a short read, read on to its EOF in the same pass,
    /// so the last data and the EOF leave together (no extra wake-up for the EOF).
    target_hung_up: bool,
    /// This connection's slot in the pump's last poll, if it was watched.
    poll_slot: Option<usize>,
    /// Data went to the target and no answer has been read since (for busy polling).
    awaiting_answer: bool,
    target_eof: bool,
    eof_sent: bool,
    /// Relay -> target: messages the full queue did not take yet.
    stash: VecDeque<Down>,
    remote_eof: bool,
    closing_since: Option<Instant>,
    last_close_check: Instant,
    closed: bool,
    reason: Option<String>,
    /// Bytes from the target to the relay.
    pub bytes_up: u64,
    /// Bytes from the relay to the target.
    pub bytes_down: u64,
    /// Bytes (down, up) already added to the metrics.
    reported: (u64, u64),
    /// When the connection arrived.
    pub started: Instant,
    /// When bytes last moved.
    pub last_activity: Instant,
}

impl Conn {
    /// Wraps a freshly accepted channel and its worker's queues.
    pub fn new(id: u64, forward: usize, mut channel: ssh2::Channel, link: Link) -> Conn {
        let now = Instant::now();
        // A relay that sends extended data on a tcpip channel would otherwise fill
        // libssh2's queue with bytes no stream-0 read ever takes. Merge does no I/O.
        let _ = channel.handle_extended_data(ssh2::ExtendedData::Merge);
        Conn {
            id,
            forward,
            channel,
            link,
            target: None,
            target_addr: None,
            in_flight: None,
            pending_up: None,
            up_buf: Vec::new(),
            target_readable: false,
            target_hung_up: false,
            poll_slot: None,
            awaiting_answer: false,
            target_eof: false,
            eof_sent: false,
            stash: VecDeque::new(),
            remote_eof: false,
            closing_since: None,
            last_close_check: now,
            closed: false,
            reason: None,
            bytes_up: 0,
            bytes_down: 0,
            reported: (0, 0),
            started: now,
            last_activity: now,
        }
    }

    /// Bytes moved (to target, from target) since the last call: the metrics count live
    /// connections too, not only closed ones.
    pub fn unreported_bytes(&mut self) -> (u64, u64) {
        let delta = (
            self.bytes_down - self.reported.0,
            self.bytes_up - self.reported.1,
        );
        self.reported = (self.bytes_down, self.bytes_up);
        delta
    }

    /// Finished: the channel is closed and may be dropped without I/O.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True once the connection is shutting down.
    pub fn is_closing(&self) -> bool {
        self.closing_since.is_some()
    }

    /// True while a libssh2 call of this channel has a half-sent packet.
    pub fn has_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Why it ended (or "open").
    pub fn reason(&self) -> &str {
        self.reason.as_deref().unwrap_or("open")
    }

    /// The address the target answered on, once dialed.
    pub fn target_addr(&self) -> Option<SocketAddr> {
        self.target_addr
    }

    /// True when unread relay data is queued in libssh2 for this channel and nothing
    /// stops us reading it. Does no I/O: used right before the pump sleeps, to catch data
    /// another channel's call drained off the socket.
    pub fn has_unread(&self) -> bool {
        self.in_flight.is_none()
            && !self.is_closing()
            && !self.remote_eof
            && self.stash.is_empty()
            && self.has_queued_input()
    }

    /// True when nothing is buffered or half-sent either way: no relay data queued in
    /// libssh2, for the writer or in the stash, no target data waiting to go out, no
    /// packet in flight. Such a connection can be closed at a stop without losing a byte.
    pub fn is_quiet(&self) -> bool {
        self.in_flight.is_none()
            && self.stash.is_empty()
            && self.pending_up.is_none()
            && !self.target_readable
            && self.link.up.is_empty()
            && self.link.down.is_empty()
            && self.link.writer_idle()
            && self.channel.read_window().available == 0
    }

    /// Relay data this connection holds for its target: queued in libssh2 (not yet read
    /// from the channel), in the stash, and given to the writer but not yet written.
    pub fn held_for_target(&self) -> u64 {
        let stashed: usize = self.stash.iter().map(Down::bytes).sum();
        u64::from(self.channel.read_window().available)
            + stashed as u64
            + self.link.unwritten_bytes()
    }

    /// True when the target side is full and this channel is not being read.
    pub fn is_back_pressured(&self) -> bool {
        !self.is_closing() && !self.stash.is_empty() && self.in_flight.is_none()
    }

    /// True when a write stopped on a shut window and another channel's call has since
    /// taken in the relay's window adjust (no I/O): worth another pass before sleeping.
    pub fn can_write(&self) -> bool {
        self.in_flight.is_none()
            && self.pending_up.is_some()
            && self.channel.write_window().remaining > 0
    }

    /// True when the pump should read the target: it is connected and still sending, and
    /// what it sent before is out, and the relay's window has room (otherwise a readable
    /// target would wake every poll for nothing; its kernel buffer holds the rest).
    fn wants_target_read(&self) -> bool {
        self.target.is_some()
            && !self.target_eof
            && !self.is_closing()
            && self.pending_up.is_none()
            && self.in_flight.is_none()
            && self.channel.write_window().remaining > 0
    }

    /// Adds the target socket to the pump's next poll when the connection wants to read
    /// it and does not already know it is readable.
    pub fn watch_target(&mut self, targets: &mut Targets) {
        self.poll_slot = None;
        if !self.target_readable
            && self.wants_target_read()
            && let Some(target) = &self.target
        {
            self.poll_slot = Some(targets.watch(target));
        }
    }

    /// True when data went to the target and its answer is still to come: what the pump
    /// waits for is then most likely the target (busy_poll.rs).
    pub fn awaiting_answer(&self) -> bool {
        self.awaiting_answer && !self.target_readable && self.wants_target_read()
    }

    /// Takes the poll's answer for the target socket.
    pub fn saw_poll(&mut self, targets: &Targets) {
        if let Some(slot) = self.poll_slot.take() {
            self.target_readable |= targets.readable(slot);
            self.target_hung_up |= targets.hung_up(slot);
        }
    }

    /// True when a target read is due (poll said readable): worth another pass.
    pub fn can_read_target(&self) -> bool {
        self.target_readable && self.wants_target_read()
    }

    /// Data or an EOF for this channel waits in libssh2's packet queue (no I/O).
    fn has_queued_input(&self) -> bool {
        self.channel.read_window().available > 0 || self.channel.eof()
    }

    /// Stops the connection: the target socket is shut (its threads end), and the channel
    /// is closed as soon as any half-sent packet is out.
    pub fn abort(&mut self, reason: impl Into<String>) {
        if self.reason.is_none() {
            self.reason = Some(reason.into());
        }
        if let Some(target) = &self.target {
            // An aborted connection is reset, not closed: with SO_LINGER 0 the last close
            // sends RST, so a target still writing learns at once. A plain close can leave
            // the target blocked on a zero window for the kernel's FIN-WAIT-2 minute.
            let _ = socket2::SockRef::from(target).set_linger(Some(Duration::ZERO));
            let _ = target.shutdown(Shutdown::Both);
        }
        self.stash.clear();
        if self.in_flight != Some(Op::Write) {
            self.pending_up = None;
        }
        if self.closing_since.is_none() {
            self.closing_since = Some(Instant::now());
        }
    }

    /// Moves whatever can move without blocking. `scratch` is the pump's read buffer.
    /// `drained`: this pass already read everything the socket had into libssh2's queue,
    /// so a channel with nothing queued need not call into libssh2 to read.
    pub fn step(&mut self, session: &ssh2::Session, scratch: &mut [u8], drained: bool) -> Step {
        let mut step = Step::default();
        if self.closed {
            return step;
        }
        // A half-sent packet first: no other call on this session can proceed until it is out.
        if let Some(op) = self.in_flight {
            match op {
                Op::Write => self.write_up(session, &mut step),
                Op::Read => self.read_down(session, scratch, &mut step),
                Op::Eof => self.send_eof(session, &mut step),
                Op::Close => self.close(session, &mut step),
            }
            if self.in_flight.is_some() || step.fatal.is_some() {
                return step;
            }
        }
        if self.is_closing() {
            self.discard_up();
            self.close(session, &mut step);
            return step;
        }
        // Target -> relay.
        loop {
            if self.pending_up.is_none() && !self.take_up(&mut step) && !self.read_target(&mut step)
            {
                break;
            }
            if self.pending_up.is_some() {
                self.write_up(session, &mut step);
                if self.pending_up.is_some() || step.fatal.is_some() || self.is_closing() {
                    break;
                }
            }
        }
        if step.fatal.is_some() || self.in_flight.is_some() {
            return step;
        }
        if self.target_eof && self.pending_up.is_none() && !self.eof_sent && !self.is_closing() {
            self.send_eof(session, &mut step);
            if step.fatal.is_some() || self.in_flight.is_some() {
                return step;
            }
        }
        // Relay -> target.
        self.flush_stash(&mut step);
        while !self.is_closing() && !self.remote_eof && self.stash.is_empty() {
            if drained && !self.has_queued_input() {
                break;
            }
            let before = step.progress;
            self.read_down(session, scratch, &mut step);
            if step.fatal.is_some() || self.in_flight.is_some() || step.progress == before {
                break;
            }
        }
        if step.fatal.is_some() || self.in_flight.is_some() {
            return step;
        }
        if self.remote_eof && !self.eof_sent && !self.is_closing() {
            self.check_remote_close(session, &mut step);
        } else if !self.stash.is_empty()
            && !self.is_closing()
            && self.last_close_check.elapsed() >= CLOSE_CHECK_EVERY
        {
            // Back-pressured: we are not reading, so the relay's EOF would never be seen.
            self.last_close_check = Instant::now();
            self.check_remote_close(session, &mut step);
        }
        // Both directions finished: close.
        if self.remote_eof && self.eof_sent && self.stash.is_empty() && !self.is_closing() {
            self.reason.get_or_insert_with(|| "completed".into());
            self.closing_since = Some(Instant::now());
            step.progress = true;
        }
        if self.is_closing() {
            self.close(session, &mut step);
        }
        step
    }

    /// After an abort: a target that answered while we were giving up is shut at once,
    /// so its worker ends; other messages are dropped.
    fn discard_up(&mut self) {
        while let Ok(message) = self.link.up.try_recv() {
            if let Up::Connected(stream, _) = message {
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Takes one message from the target side; false when there is none.
    fn take_up(&mut self, step: &mut Step) -> bool {
        if self.target_eof || self.is_closing() {
            return false;
        }
        match self.link.up.try_recv() {
            Ok(Up::Connected(stream, addr)) => {
                log::debug!("conn {}: target answered on {addr}", self.id);
                self.target = Some(stream);
                self.target_addr = Some(addr);
            }
            Ok(Up::Data(buf)) => self.pending_up = Some(Outgoing::all_of(buf)),
            Ok(Up::DialFailed(why)) => self.abort(format!("target unreachable: {why}")),
            Ok(Up::Refused(why)) => {
                // The reply is queued ahead of this: send it, then EOF, like a target
                // that answered and closed.
                self.reason.get_or_insert(why);
                self.target_eof = true;
            }
            Ok(Up::Failed(why)) => self.abort(why),
            Err(TryRecvError::Empty) => return false,
            // After the platform's EOF the writer's work is done and its thread ends; the
            // pump reads the target on its own until the target's EOF.
            Err(TryRecvError::Disconnected) if self.target.is_some() => return false,
            Err(TryRecvError::Disconnected) => self.abort("target worker ended"),
        }
        step.progress = true;
        true
    }

    /// Target -> relay: one non-blocking read of a target poll found readable, into the
    /// connection's own buffer, which becomes the pending write. True when something
    /// changed (bytes, EOF, failure).
    fn read_target(&mut self, step: &mut Step) -> bool {
        if !self.can_read_target() {
            return false;
        }
        let Some(target) = &self.target else {
            return false;
        };
        let mut buf = std::mem::take(&mut self.up_buf);
        if buf.is_empty() {
            buf.resize(FIRST_READ, 0);
        }
        let read = wake::recv_nowait(target, &mut buf);
        // Readable still after a read that filled the buffer, or until the EOF that poll
        // announced; otherwise most likely drained: let poll say when there is more.
        self.target_readable =
            matches!(read, Ok(n) if n == buf.len() || (n > 0 && self.target_hung_up));
        self.awaiting_answer &= read.is_err();
        match read {
            Ok(0) => match self.link.writer_error() {
                // EOF because the writer failed and shut the socket.
                Some(why) => self.abort(why),
                None => self.target_eof = true,
            },
            Ok(n) => {
                // A full buffer means bulk data: read in big chunks from the next read on.
                let grow = n == buf.len() && buf.len() < READ_CHUNK;
                self.pending_up = Some(Outgoing {
                    buf,
                    done: 0,
                    end: n,
                    grow,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.up_buf = buf;
                return false;
            }
            Err(e) => {
                let why = self
                    .link
                    .writer_error()
                    .unwrap_or_else(|| format!("read from target: {e}"));
                self.abort(why);
            }
        }
        step.progress = true;
        true
    }

    /// Keeps a written buffer for the next target read. Read buffers stay at their full
    /// length between reads, so nothing is zeroed per read; only growing zeroes, once.
    fn reuse_up_buf(&mut self, written: Outgoing) {
        let mut buf = written.buf;
        if written.grow {
            buf.resize((buf.len() * 4).min(READ_CHUNK), 0);
        }
        if buf.len() >= self.up_buf.len().max(FIRST_READ) {
            self.up_buf = buf;
        }
    }

    fn write_up(&mut self, session: &ssh2::Session, step: &mut Step) {
        let Some(out) = self.pending_up.as_mut() else {
            self.in_flight = None;
            return;
        };
        match self.channel.write(&out.buf[out.done..out.end]) {
            // Ok(0): the relay's window is shut; libssh2 waits for an inbound adjust.
            Ok(0) => self.in_flight = None,
            Ok(n) => {
                self.in_flight = None;
                out.done += n;
                let finished = out.done == out.end;
                self.bytes_up += n as u64;
                self.last_activity = Instant::now();
                step.progress = true;
                if finished && let Some(written) = self.pending_up.take() {
                    self.reuse_up_buf(written);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.note_would_block(session, Op::Write, step)
            }
            Err(e) => {
                self.in_flight = None;
                self.pending_up = None;
                self.channel_error(session, "write to relay channel", &e.to_string(), step);
            }
        }
    }

    fn read_down(&mut self, session: &ssh2::Session, scratch: &mut [u8], step: &mut Step) {
        // Fast path: when nothing is queued for the target and its writer thread has
        // written everything it was given, libssh2 sends the data from its packets to the
        // target socket with non-blocking sends (MSG_DONTWAIT: the socket's blocking mode,
        // shared with the writer thread, is untouched), no copy and no thread hand-off on
        // the latency-critical path; order is kept because the writer is idle. What the
        // socket does not take is copied into `scratch` and goes to the writer as usual.
        let direct = match &self.target {
            Some(target) if self.stash.is_empty() && !self.is_closing() => {
                self.link.writer_idle().then(|| target.as_raw_fd())
            }
            _ => None,
        };
        let read = match direct {
            Some(socket) => libssh2::read_sinking(session, &mut self.channel, socket, scratch),
            None => self.channel.read(scratch).map(|n| (n, 0)),
        };
        match read {
            Ok((0, _)) => {
                self.in_flight = None;
                step.inbound = true;
                self.remote_eof = true;
                self.stash.push_back(Down::Eof);
                self.flush_stash(step);
                step.progress = true;
            }
            Ok((n, sent)) => {
                self.in_flight = None;
                step.inbound = true;
                self.bytes_down += n as u64;
                self.last_activity = Instant::now();
                self.awaiting_answer |= sent > 0;
                // What the target did not take, copied into the read buffer: the writer's.
                let copied = n - sent;
                if copied > 0 && !self.is_closing() {
                    self.stash.push_back(Down::Data(scratch[..copied].to_vec()));
                    self.flush_stash(step);
                }
                step.progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.note_would_block(session, Op::Read, step)
            }
            Err(e) => {
                self.in_flight = None;
                self.channel_error(session, "read from relay channel", &e.to_string(), step);
            }
        }
    }

    /// After the relay's EOF, the relay may also close the channel: the platform client is
    /// gone for good (a reset, or a full close). OpenSSH sends CLOSE early only then; for a
    /// plain half-close it waits for our EOF. libssh2 has no call that just reports a
    /// remote CLOSE, but `wait_close` in non-blocking mode returns Ok only once it has
    /// arrived (it needs the remote EOF first, which we have) and EAGAIN otherwise.
    fn check_remote_close(&mut self, session: &ssh2::Session, step: &mut Step) {
        match self.channel.wait_close() {
            Ok(()) => {
                self.abort("the relay closed the channel: the platform side went away");
                step.progress = true;
            }
            // EAGAIN: not closed yet; INVAL: no EOF from the relay yet.
            Err(e)
                if libssh2::is(&e, libssh2::LIBSSH2_ERROR_EAGAIN)
                    || libssh2::is(&e, libssh2::LIBSSH2_ERROR_INVAL) => {}
            Err(e) => self.channel_error(session, "wait for channel close", e.message(), step),
        }
    }

    fn send_eof(&mut self, session: &ssh2::Session, step: &mut Step) {
        match self.channel.send_eof() {
            Ok(()) => {
                self.in_flight = None;
                self.eof_sent = true;
                step.progress = true;
            }
            Err(e) if libssh2::is(&e, libssh2::LIBSSH2_ERROR_EAGAIN) => {
                self.note_would_block(session, Op::Eof, step)
            }
            Err(e) => {
                self.in_flight = None;
                self.channel_error(session, "send EOF to relay", e.message(), step);
            }
        }
    }

    fn close(&mut self, session: &ssh2::Session, step: &mut Step) {
        match self.channel.close() {
            Ok(()) => {
                self.in_flight = None;
                self.closed = true;
                step.progress = true;
            }
            // Keep asking until close() returns Ok: only then is our CLOSE out and
            // `local.close` set, so dropping the channel frees it without I/O (§9). Dropping
            // earlier would leak the C channel (ssh2 ignores the EAGAIN of its free).
            Err(e) if libssh2::is(&e, libssh2::LIBSSH2_ERROR_EAGAIN) => {
                self.note_would_block(session, Op::Close, step)
            }
            Err(e) => {
                self.in_flight = None;
                self.closed = true;
                step.progress = true;
                if is_session_fatal(last_code(session)) {
                    step.fatal = Some(format!("close channel: {}", e.message()));
                }
            }
        }
    }

    /// EAGAIN: if libssh2 is waiting to send, our packet is half-out and this exact call
    /// must be repeated first (docs/libssh2.md §10, rules 1, 2, 4 and 5).
    fn note_would_block(&mut self, session: &ssh2::Session, op: Op, step: &mut Step) {
        let outbound = matches!(
            session.block_directions(),
            ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
        );
        if outbound {
            self.in_flight = Some(op);
            step.wants_write = true;
        } else {
            self.in_flight = None;
        }
    }

    fn channel_error(
        &mut self,
        session: &ssh2::Session,
        what: &str,
        message: &str,
        step: &mut Step,
    ) {
        let code = last_code(session);
        if is_session_fatal(code) {
            step.fatal = Some(format!("{what}: {message}"));
        } else {
            self.abort(format!("{what}: {message}"));
        }
        step.progress = true;
    }

    fn flush_stash(&mut self, step: &mut Step) {
        while let Some(message) = self.stash.pop_front() {
            match self.link.try_send_down(message) {
                Ok(()) => step.progress = true,
                Err(TrySendError::Full(message)) => {
                    self.stash.push_front(message);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    // The writer is gone before the end of the stream: the target failed or
                    // was never reached (the worker's own message, if first, named why).
                    self.stash.clear();
                    let why = self
                        .link
                        .writer_error()
                        .unwrap_or_else(|| "target stopped taking data".into());
                    self.abort(why);
                    step.progress = true;
                    return;
                }
            }
        }
    }
}

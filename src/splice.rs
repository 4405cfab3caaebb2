//! A forwarded connection whose target is reached through the relay (`via: relay`): the
//! platform's `forwarded-tcpip` channel spliced to a `direct-tcpip` channel over the same
//! session, entirely inside the pump. No socket, no copy threads: one buffer per direction,
//! and a direction reads only when its buffer is empty, so each side's SSH window carries
//! the back-pressure.
//!
//! The libssh2 rules are those of `conn.rs` (docs/libssh2.md §10): a call that returned
//! EAGAIN with its packet half-sent is repeated, with the same bytes, before anything else
//! on this connection.

use std::io::{self, Read, Write};
use std::time::Instant;

use crate::conn::{Step, is_session_fatal, last_code};
use crate::forward::Target;
use crate::libssh2::{self, LIBSSH2_ERROR_EAGAIN};

/// How much one read takes from a channel (two SSH packets).
const CHUNK: usize = 64 * 1024;

/// The two channels of a splice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The forwarded channel: the platform's client.
    Platform,
    /// The direct-tcpip channel: the target, reached by the relay.
    Target,
}

/// A call that returned EAGAIN with its packet half-sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Write,
    Eof,
    Close,
}

/// One direction: bytes read from `from`, waiting to be written to the other side.
#[derive(Default)]
struct Flow {
    pending: Option<(Vec<u8>, usize)>,
    /// `from` sent EOF.
    eof_seen: bool,
    /// We sent EOF onward.
    eof_sent: bool,
    bytes: u64,
}

/// One via-relay connection.
pub struct Splice {
    /// Connection number, for logs.
    pub id: u64,
    /// Index of the forward it came through.
    pub forward: usize,
    /// Where the relay is asked to connect.
    pub target: Target,
    platform: ssh2::Channel,
    remote: Option<ssh2::Channel>,
    /// Platform -> target.
    down: Flow,
    /// Target -> platform.
    up: Flow,
    in_flight: Option<(Side, Op)>,
    /// The direct-tcpip open returned EAGAIN: libssh2's one open state is ours until the
    /// same call completes, even if the connection is aborted meanwhile (§16).
    open_in_flight: bool,
    /// Bytes (down, up) already added to the metrics.
    reported: (u64, u64),
    closing: bool,
    platform_closed: bool,
    target_closed: bool,
    reason: Option<String>,
    /// When the connection arrived.
    pub started: Instant,
    /// When bytes last moved.
    pub last_activity: Instant,
}

impl Splice {
    /// A forwarded channel whose target channel is still to be opened.
    pub fn new(id: u64, forward: usize, target: Target, mut platform: ssh2::Channel) -> Splice {
        let now = Instant::now();
        let _ = platform.handle_extended_data(ssh2::ExtendedData::Merge);
        Splice {
            id,
            forward,
            target,
            platform,
            remote: None,
            down: Flow::default(),
            up: Flow::default(),
            in_flight: None,
            open_in_flight: false,
            reported: (0, 0),
            closing: false,
            platform_closed: false,
            target_closed: true,
            reason: None,
            started: now,
            last_activity: now,
        }
    }

    /// True while the direct-tcpip channel is still to be opened: not yet asked for (and
    /// not aborted), or asked for and not answered yet (aborted or not: the open must be
    /// completed, then the channel closed).
    pub fn is_opening(&self) -> bool {
        self.remote.is_none() && (!self.closing || self.open_in_flight)
    }

    /// The pump's open call for this connection returned EAGAIN (true) or finished (false).
    pub fn set_open_in_flight(&mut self, pending: bool) {
        self.open_in_flight = pending;
    }

    /// The relay opened the target channel.
    pub fn opened(&mut self, mut channel: ssh2::Channel) {
        let _ = channel.handle_extended_data(ssh2::ExtendedData::Merge);
        self.remote = Some(channel);
        self.target_closed = false;
    }

    /// Stops the connection; both channels are closed from the next step on.
    pub fn abort(&mut self, reason: impl Into<String>) {
        self.reason.get_or_insert_with(|| reason.into());
        self.closing = true;
        self.down.pending = None;
        self.up.pending = None;
    }

    /// True once the connection is shutting down.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// True once both channels are closed.
    pub fn is_closed(&self) -> bool {
        self.closing && self.platform_closed && self.target_closed && !self.open_in_flight
    }

    /// True while a call of this connection has a half-sent packet.
    pub fn has_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// True when nothing is buffered either way.
    pub fn is_quiet(&self) -> bool {
        self.in_flight.is_none() && self.down.pending.is_none() && self.up.pending.is_none()
    }

    /// Why it ended (or "open").
    pub fn reason(&self) -> &str {
        self.reason.as_deref().unwrap_or("open")
    }

    /// Bytes moved (to target, from target) since the last call, for live metrics.
    pub fn unreported_bytes(&mut self) -> (u64, u64) {
        let (down, up) = self.bytes();
        let delta = (down - self.reported.0, up - self.reported.1);
        self.reported = (down, up);
        delta
    }

    /// Bytes platform -> target and target -> platform.
    pub fn bytes(&self) -> (u64, u64) {
        (self.down.bytes, self.up.bytes)
    }

    /// Moves what can move without blocking.
    pub fn step(&mut self, session: &ssh2::Session) -> Step {
        let mut step = Step::default();
        if let Some((side, op)) = self.in_flight {
            self.run(session, side, op, &mut step);
            if self.in_flight.is_some() {
                return step;
            }
        }
        if self.closing {
            self.close_both(session, &mut step);
            return step;
        }
        if self.remote.is_none() {
            return step;
        }
        self.check_closes(&mut step);
        for side in [Side::Platform, Side::Target] {
            for op in [Op::Write, Op::Read, Op::Eof] {
                if self.in_flight.is_some() || self.closing {
                    return step;
                }
                if self.wants(side, op) {
                    self.run(session, side, op, &mut step);
                }
            }
        }
        if self.down.eof_sent && self.up.eof_sent && !self.closing {
            self.reason.get_or_insert_with(|| "completed".into());
            self.closing = true;
            step.progress = true;
        }
        step
    }

    /// A side that sent EOF may also have closed its channel for good (the platform client
    /// reset, or the target's connection on the relay closed): then nothing more can pass
    /// and the connection ends. `wait_close` returns Ok only once the CLOSE has arrived
    /// (EAGAIN before that), and needs the EOF first.
    fn check_closes(&mut self, step: &mut Step) {
        for side in [Side::Platform, Side::Target] {
            let (from, _) = self.flows(side);
            if !from.eof_seen || self.closing {
                continue;
            }
            let closed = self
                .channel(side)
                .map(|ch| ch.wait_close().is_ok())
                .unwrap_or(false);
            if closed {
                let who = match side {
                    Side::Platform => "the relay closed the channel: the platform side went away",
                    Side::Target => "the target closed its connection on the relay",
                };
                // Whatever the other side still has buffered cannot be delivered to a
                // closed channel; what this side sent before its EOF is already written.
                self.abort(who);
                step.progress = true;
            }
        }
    }

    /// True when libssh2 holds data for a channel of this connection that nothing has read
    /// yet (another channel's call drained it off the socket): worth a pass before sleeping.
    pub fn has_unread(&self) -> bool {
        if self.in_flight.is_some() || self.closing {
            return false;
        }
        let waiting = |ch: &ssh2::Channel, flow: &Flow| {
            flow.pending.is_none() && !flow.eof_seen && ch.read_window().available > 0
        };
        waiting(&self.platform, &self.down)
            || self.remote.as_ref().is_some_and(|ch| waiting(ch, &self.up))
    }

    /// Whether `op` on `side` has something to do now.
    fn wants(&self, side: Side, op: Op) -> bool {
        let (from, to) = self.flows(side);
        match op {
            // Writing to `side` what the other side sent.
            Op::Write => to.pending.is_some(),
            // Reading `side` only when its bytes have somewhere to go.
            Op::Read => from.pending.is_none() && !from.eof_seen,
            // Passing `side`'s EOF on once everything before it is written.
            Op::Eof => from.eof_seen && from.pending.is_none() && !from.eof_sent,
            Op::Close => false,
        }
    }

    /// (the flow that reads `side`, the flow that writes to `side`).
    fn flows(&self, side: Side) -> (&Flow, &Flow) {
        match side {
            Side::Platform => (&self.down, &self.up),
            Side::Target => (&self.up, &self.down),
        }
    }

    fn run(&mut self, session: &ssh2::Session, side: Side, op: Op, step: &mut Step) {
        let result = match op {
            Op::Read => self.read(side, step),
            Op::Write => self.write(side, step),
            Op::Eof => self.send_eof(side, step),
            Op::Close => self.close(side, step),
        };
        match result {
            Ok(()) => {
                if self.in_flight == Some((side, op)) {
                    self.in_flight = None;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let outbound = matches!(
                    session.block_directions(),
                    ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
                );
                self.in_flight = outbound.then_some((side, op));
                step.wants_write |= outbound;
            }
            Err(e) => {
                self.in_flight = None;
                let code = last_code(session);
                let what = match side {
                    Side::Platform => "platform channel",
                    Side::Target => "relay channel to the target",
                };
                if is_session_fatal(code) {
                    step.fatal = Some(format!("{what}: {e}"));
                } else if op == Op::Close {
                    self.mark_closed(side);
                } else {
                    self.abort(format!("{what}: {e}"));
                }
                step.progress = true;
            }
        }
    }

    fn channel(&mut self, side: Side) -> io::Result<&mut ssh2::Channel> {
        match side {
            Side::Platform => Ok(&mut self.platform),
            Side::Target => self
                .remote
                .as_mut()
                .ok_or_else(|| io::Error::other("the target channel is not open")),
        }
    }

    fn read(&mut self, side: Side, step: &mut Step) -> io::Result<()> {
        let mut buf = vec![0u8; CHUNK];
        let n = self.channel(side)?.read(&mut buf)?;
        step.inbound = true;
        step.progress = true;
        let flow = match side {
            Side::Platform => &mut self.down,
            Side::Target => &mut self.up,
        };
        if n == 0 {
            flow.eof_seen = true;
        } else {
            buf.truncate(n);
            flow.pending = Some((buf, 0));
            self.last_activity = Instant::now();
        }
        Ok(())
    }

    fn write(&mut self, side: Side, step: &mut Step) -> io::Result<()> {
        let mut flow = std::mem::take(match side {
            Side::Platform => &mut self.up,
            Side::Target => &mut self.down,
        });
        let result = match flow.pending.as_mut() {
            Some((buf, offset)) => self.channel(side).and_then(|ch| ch.write(&buf[*offset..])),
            None => Ok(0),
        };
        if let Ok(n) = result {
            if n > 0 {
                step.progress = true;
                self.last_activity = Instant::now();
            }
            flow.bytes += n as u64;
            if let Some((buf, offset)) = flow.pending.as_mut() {
                *offset += n;
                if *offset == buf.len() {
                    flow.pending = None;
                }
            }
        }
        *match side {
            Side::Platform => &mut self.up,
            Side::Target => &mut self.down,
        } = flow;
        result.map(|_| ())
    }

    fn send_eof(&mut self, side: Side, step: &mut Step) -> io::Result<()> {
        // `side`'s EOF goes to the other channel.
        let to = match side {
            Side::Platform => Side::Target,
            Side::Target => Side::Platform,
        };
        self.channel(to)?.send_eof().map_err(io::Error::from)?;
        match side {
            Side::Platform => self.down.eof_sent = true,
            Side::Target => self.up.eof_sent = true,
        }
        step.progress = true;
        Ok(())
    }

    fn close(&mut self, side: Side, step: &mut Step) -> io::Result<()> {
        self.channel(side)?.close().map_err(|e| {
            if libssh2::is(&e, LIBSSH2_ERROR_EAGAIN) {
                io::Error::from(io::ErrorKind::WouldBlock)
            } else {
                io::Error::from(e)
            }
        })?;
        self.mark_closed(side);
        step.progress = true;
        Ok(())
    }

    fn mark_closed(&mut self, side: Side) {
        match side {
            Side::Platform => self.platform_closed = true,
            Side::Target => self.target_closed = true,
        }
    }

    /// Closes both channels, each until the relay's CLOSE arrives (only then does dropping
    /// the channel free it without I/O; see `Conn::close`).
    fn close_both(&mut self, session: &ssh2::Session, step: &mut Step) {
        for side in [Side::Platform, Side::Target] {
            let closed = match side {
                Side::Platform => self.platform_closed,
                Side::Target => self.target_closed,
            };
            if !closed && self.in_flight.is_none() {
                self.run(session, side, Op::Close, step);
            }
        }
    }
}

//! The pump: the one thread that owns the non-blocking libssh2 session, its listeners
//! and every channel. It accepts forwarded connections, moves bytes between channels,
//! target sockets and their writer threads, re-requests refused forwards, probes a quiet
//! relay, and drains on stop.
//!
//! Why one owner: ssh2 puts one mutex around the session, so a blocking call on one
//! channel stalls every other one, and threads that poll the socket themselves lose
//! wake-ups because any libssh2 call drains packets for all channels (docs/libssh2.md §2).

use std::collections::{HashMap, HashSet};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::busy_poll;
use crate::conn::{Conn, is_session_fatal};
use crate::forward::ForwardSpec;
use crate::forward::{Via, join_host_port};
use crate::hold::{self, InputHold};
use crate::libssh2::{self, RecvGate};
use crate::notify::Notifier;
use crate::pool::Pool;
use crate::settings::{Reloader, Settings};
use crate::signals::ReloadHandle;
use crate::splice::Splice;
use crate::state::{ConnResult, ForwardState, State};
use crate::wake::{self, Interest, Targets, WakeReceiver, Waker};
use crate::watchdog::Liveness;
use crate::worker::{self, DynamicPlan, Link, TargetPlan};

/// Longest sleep when nothing is due: housekeeping (idle limits, drain, close grace) runs
/// at least this often.
const TICK: Duration = Duration::from_secs(1);
/// Sleep cap after EAGAIN with no block direction (docs/libssh2.md §10 rule 3, libssh2
/// #1672: a half-sent packet of another call; retried soon).
const RETRY_SOON: Duration = Duration::from_millis(50);
/// Limit on one blocking control request (forward request or cancel, disconnect) while the
/// session is otherwise non-blocking.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection without traffic for this long when a drain starts (or later during it)
/// counts as idle and is closed at once instead of holding the stop up.
const DRAIN_IDLE: Duration = Duration::from_millis(500);
/// How long closing channels get after the drain before the session is cut.
const FINAL_CLOSE: Duration = Duration::from_secs(2);
/// Size of the pump's channel read buffer: libssh2 fills it from several queued packets.
const SCRATCH: usize = 256 * 1024;
/// How long the ACK for a message the relay sent may wait for our own next packet to carry
/// it (a target's answer usually comes sooner) before it goes out alone (see `ack_now`).
const ACK_DEFER: Duration = Duration::from_micros(200);
/// Input beyond this since the ACK became owed is bulk, not a message: the kernel ACKed
/// most of it as it came, and the rest is ACKed before the pump sleeps, not after a timer
/// (which would wake the pump in every pause of a bulk transfer).
const ACK_DEFER_UP_TO: u64 = 16 * 1024;

/// Why the pump returned.
#[derive(Debug)]
pub enum PumpEnd {
    /// Stopped on request, after the drain.
    Stopped,
    /// The session broke; reconnect.
    Lost(String),
    /// Reloaded settings need a new session (relay, identity, host key or ciphers changed).
    Reload,
}

/// One configured forward on this session.
struct Slot {
    spec: ForwardSpec,
    state: Arc<ForwardState>,
    listener: Option<ssh2::Listener>,
    retry_at: Option<Instant>,
    backoff: Backoff,
    /// Removed by a reload: cancelled on the relay, kept only so that connections still
    /// open on it can finish and be logged.
    retired: bool,
    /// Refusals by the relay since the forward last served (a standby replica sees one
    /// per retry while the active one holds the port).
    refusals: u64,
}

impl Slot {
    fn new(spec: ForwardSpec, state: Arc<ForwardState>, settings: &Settings) -> Slot {
        Slot {
            spec,
            state,
            listener: None,
            retry_at: Some(Instant::now()),
            backoff: Backoff::new(settings.reconnect.initial, settings.reconnect.standby_retry),
            retired: false,
            refusals: 0,
        }
    }
}

/// The liveness probe: a "session" channel open. Whatever the answer (confirmation or
/// refusal), libssh2 consumes it itself, so unlike keepalive@ requests nothing piles up in
/// its packet queue or poisons later forward requests (docs/libssh2.md §4, §13).
enum Probe {
    Idle,
    Opening,
    Closing(ssh2::Channel),
}

/// Everything the pump owns for one session.
pub struct Pump<'a> {
    settings: Settings,
    reload: ReloadHandle,
    reloader: &'a Reloader,
    session: ssh2::Session,
    socket: TcpStream,
    slots: Vec<Slot>,
    conns: Vec<Conn>,
    /// Via-relay connections: two channels spliced inside the pump.
    splices: Vec<Splice>,
    /// The splice whose direct-tcpip open is in progress (one channel open at a time per
    /// session, shared with the probe; docs/libssh2.md §16).
    opening: Option<u64>,
    waker: Waker,
    wake_rx: &'a mut WakeReceiver,
    stop: Arc<AtomicBool>,
    stop_now: Arc<AtomicBool>,
    liveness: Arc<Liveness>,
    state: Arc<State>,
    notifier: Arc<Notifier>,
    pool: Pool,
    next_id: &'a mut u64,
    scratch: Vec<u8>,
    /// How long to poll without sleeping before each sleep, per kind of wait.
    busy_poll: busy_poll::Governor,
    /// Whether the relay's input is held for targets that do not keep up.
    hold: InputHold,
    /// Target sockets of the next poll.
    targets: Targets,
    /// Connections counted as active in the metrics, so each is counted out once.
    counted: HashSet<u64>,
    /// Who connected to the relay's port, per connection, for the audit trail.
    origins: HashMap<u64, String>,
    probe: Probe,
    probe_in_flight: bool,
    /// The relay sent something we have not acknowledged with a packet of our own since.
    ack_owed: Option<AckOwed>,
    last_probe: Instant,
    drain_started: Option<Instant>,
    refused: u64,
}

/// What the supervisor hands the pump.
pub struct PumpParts<'a> {
    /// Validated settings; the pump applies a reload to its copy and hands it back.
    pub settings: Settings,
    /// Set on SIGHUP.
    pub reload: ReloadHandle,
    /// Re-reads the settings.
    pub reloader: &'a Reloader,
    /// Authenticated session, blocking mode.
    pub session: ssh2::Session,
    /// Clone of the session socket (poll and shutdown only).
    pub socket: TcpStream,
    /// Rings the pump.
    pub waker: Waker,
    /// The pump's end of the wake line.
    pub wake_rx: &'a mut WakeReceiver,
    /// Set on SIGINT/SIGTERM.
    pub stop: Arc<AtomicBool>,
    /// Set on a second SIGINT/SIGTERM: end the drain now.
    pub stop_now: Arc<AtomicBool>,
    /// Shared with the watchdog.
    pub liveness: Arc<Liveness>,
    /// What operators see (metrics, readiness, status file).
    pub state: Arc<State>,
    /// systemd notification (watchdog pings from this loop).
    pub notifier: Arc<Notifier>,
    /// Worker threads, parked between connections.
    pub pool: Pool,
    /// Connection numbering, kept across sessions.
    pub next_id: &'a mut u64,
}

impl<'a> Pump<'a> {
    /// Prepares the pump for a fresh session.
    pub fn new(parts: PumpParts<'a>) -> Pump<'a> {
        let settings = parts.settings;
        let busy_poll =
            busy_poll::Governor::new(busy_poll::effective_limit(settings.limits.busy_poll));
        let hold = InputHold::new(settings.limits.max_queued);
        let states = parts.state.forwards();
        let slots = settings
            .forwards
            .iter()
            .zip(states)
            .map(|(spec, state)| Slot::new(spec.clone(), state, &settings))
            .collect();
        Pump {
            settings,
            reload: parts.reload,
            reloader: parts.reloader,
            session: parts.session,
            socket: parts.socket,
            slots,
            conns: Vec::new(),
            splices: Vec::new(),
            opening: None,
            waker: parts.waker,
            wake_rx: parts.wake_rx,
            stop: parts.stop,
            stop_now: parts.stop_now,
            liveness: parts.liveness,
            state: parts.state,
            notifier: parts.notifier,
            pool: parts.pool,
            next_id: parts.next_id,
            scratch: vec![0u8; SCRATCH],
            busy_poll,
            hold,
            targets: Targets::default(),
            counted: HashSet::new(),
            origins: HashMap::new(),
            probe: Probe::Idle,
            probe_in_flight: false,
            ack_owed: None,
            last_probe: Instant::now(),
            drain_started: None,
            refused: 0,
        }
    }

    /// Serves until stopped or until the session breaks. On return every channel has been
    /// closed or the socket shut down, so dropping the session does no blocking I/O.
    pub fn run(mut self) -> (PumpEnd, Settings) {
        self.liveness.touch();
        let mut end = self.serve();
        if self.liveness.tripped() {
            // Whatever call failed after the watchdog cut the socket, silence was the cause:
            // the relay's, or the targets' while the pump held the relay's input for them.
            let silent = format!(
                "{:.1}s (keepalive {}s x {})",
                self.liveness.tripped_after().as_secs_f64(),
                self.settings.keepalive.interval.as_secs(),
                self.settings.keepalive.count
            );
            end = PumpEnd::Lost(match self.hold.describe() {
                Some(held) => format!("{held}, and they took none of it for {silent}"),
                None => format!("no answer from the relay for {silent}"),
            });
        }
        match &end {
            PumpEnd::Lost(reason) => self.teardown(reason),
            PumpEnd::Reload => self.teardown("settings reloaded with a new relay or identity"),
            PumpEnd::Stopped => {}
        }
        self.liveness.end();
        self.state.set_input_held(false);
        libssh2::set_recv_gate(RecvGate::Off);
        libssh2::set_recv_allowance(u64::MAX);
        // Anything still buffered was for a socket that is shut down now.
        libssh2::discard_output();
        (end, self.settings)
    }

    fn serve(&mut self) -> PumpEnd {
        if let Err(reason) = self.request_due_forwards() {
            return PumpEnd::Lost(reason);
        }
        if self.slots.iter().all(|s| s.listener.is_none()) && !self.slots.is_empty() {
            log::warn!("no forward is serving yet; retrying the refused ones");
        }
        libssh2::discard_output();
        libssh2::install_socket_callbacks(&self.session);
        libssh2::set_recv_allowance(self.hold.headroom());
        self.set_blocking(false);
        let mut woken = false;
        loop {
            self.wake_rx.clear(woken);
            woken = false;
            if self.stop.load(Ordering::SeqCst)
                && self.drain_started.is_none()
                && let Err(reason) = self.begin_drain()
            {
                return PumpEnd::Lost(reason);
            }
            if self.drain_started.is_none() && self.reload.take() {
                match self.reload_settings() {
                    Ok(true) => return PumpEnd::Reload,
                    Ok(false) => {}
                    Err(reason) => return PumpEnd::Lost(reason),
                }
            }
            let mut pass = Pass::default();
            if let Err(reason) = self.one_pass(&mut pass) {
                return PumpEnd::Lost(reason);
            }
            self.hold_input_if_full();
            if pass.inbound {
                self.liveness.touch();
                self.state.touch_relay_input();
            }
            self.notifier.watchdog();
            if let Some(started) = self.drain_started
                && let Some(end) = self.drain_step(started, &mut pass)
            {
                return end;
            }
            // What the pass's packets left in the output buffer goes out as one write,
            // before any poll or sleep (libssh2.rs `counted_send`).
            match libssh2::flush_output() {
                Ok(true) => {}
                Ok(false) => pass.wants_write = true,
                Err(e) => return PumpEnd::Lost(format!("sending to the relay failed: {e}")),
            }
            if pass.progress || self.spin_again(&pass) {
                // No sleep, but targets that became readable meanwhile must not wait for
                // the pump to go idle, and a pass that cannot progress while libssh2 waits
                // for a packet (a rekey) needs the gate to learn when the socket has it.
                if let Err(e) = self.peek_ready() {
                    return PumpEnd::Lost(format!("poll failed: {e}"));
                }
                continue;
            }
            match self.sleep(&pass) {
                Ok(rang) => woken = rang,
                Err(e) => return PumpEnd::Lost(format!("poll failed: {e}")),
            }
            if self.liveness.tripped() {
                return PumpEnd::Lost("watchdog".into());
            }
        }
    }

    /// Keeps what the connections hold for their targets under `limits.max_queued_mib`
    /// (hold.rs). libssh2 may read from the relay only the room left under the bound at
    /// the last count (the receive allowance); once that is used up, the pump counts again,
    /// and when the count is near the bound it holds the relay's input: the allowance is
    /// zero and the receive gate shut, so libssh2's calls read nothing more from the
    /// socket, and `will_read` keeps the socket out of the poll until the count falls.
    fn hold_input_if_full(&mut self) {
        if !self.hold.count_due(libssh2::recv_allowance()) {
            return;
        }
        let bytes = self.conns.iter().map(Conn::held_for_target).sum();
        let held = self.hold.counted(bytes, Instant::now());
        self.state.set_input_held(held);
        libssh2::set_recv_allowance(self.hold.headroom());
        if held {
            libssh2::set_recv_gate(RecvGate::Drained);
        }
    }

    /// Data or a window adjust another channel's call drained off the socket sits in
    /// libssh2's queue and will not make the socket readable again: look before sleeping.
    /// Not while a packet waits to go out: that needs POLLOUT, not a spin.
    fn spin_again(&self, pass: &Pass) -> bool {
        !pass.wants_write
            && (self
                .conns
                .iter()
                .any(|c| c.has_unread() || c.can_write() || c.can_read_target())
                || self.splices.iter().any(Splice::has_unread))
    }

    /// Sleeps until the relay socket, a watched target or the wake line is ready, or the
    /// next timer is due. True when the wake line rang.
    fn sleep(&mut self, pass: &Pass) -> std::io::Result<bool> {
        let mut timeout = self.sleep_limit(pass);
        if self.hold.is_held() {
            timeout = timeout.min(hold::LONGEST_SLEEP_WHILE_HELD);
        }
        if let Some(ack_left) = self.settle_ack() {
            timeout = timeout.min(ack_left);
        }
        let interest = Interest {
            read: self.will_read() && !self.input_waits_for_output(pass),
            write: pass.wants_write,
        };
        self.watch_targets();
        let ready = match self.busy_poll.is_off() {
            true => self.wait(self.socket.as_raw_fd(), interest, timeout)?,
            false => self.poll_then_wait(interest, timeout)?,
        };
        if ready.socket_readable {
            self.liveness.touch();
            self.state.touch_relay_input();
        }
        Ok(ready.woken)
    }

    /// The wait of `sleep` with busy polling on: polls first when the governor says it
    /// pays, then sleeps if nothing came, and tells the governor how the wait went.
    fn poll_then_wait(
        &mut self,
        interest: Interest,
        timeout: Duration,
    ) -> std::io::Result<wake::Readiness> {
        let kind = if self.conns.iter().any(Conn::awaiting_answer) {
            busy_poll::Wait::Answer
        } else {
            busy_poll::Wait::Other
        };
        // Bulk traffic: no polling, and nothing learnt.
        let bulk = self.busy_poll.moved(libssh2::received() + libssh2::sent());
        let window = match bulk {
            true => Duration::ZERO,
            false => self.busy_poll.window(kind).min(timeout),
        };
        let idle_since = Instant::now();
        let polled = match window.is_zero() {
            true => None,
            false => self.busy_poll(interest, idle_since + window)?,
        };
        let caught = polled.is_some();
        let ready = match polled {
            Some(ready) => ready,
            None => self.wait(self.socket.as_raw_fd(), interest, timeout)?,
        };
        let idle = idle_since.elapsed();
        // A wait that a timer ended says nothing about the peers, unless it was long.
        if !bulk && (ready.any || self.busy_poll.telling(idle)) {
            self.busy_poll.record(kind, idle, caught);
        }
        Ok(ready)
    }

    /// Polls without sleeping until something is ready (returns what) or `until` passes
    /// (returns `None`, and the pump sleeps as usual). The targets to watch are in place.
    fn busy_poll(
        &mut self,
        interest: Interest,
        until: Instant,
    ) -> std::io::Result<Option<wake::Readiness>> {
        loop {
            let ready = self.wait(self.socket.as_raw_fd(), interest, Duration::ZERO)?;
            if ready.any {
                self.state.count_busy_poll(true);
                return Ok(Some(ready));
            }
            // The wait took each connection's poll slot: watch again, for the next poll
            // here or the sleeping one.
            self.watch_targets();
            if Instant::now() >= until {
                self.state.count_busy_poll(false);
                return Ok(None);
            }
            // A yield, not a bare spin: a peer our send just woke may be queued on this
            // CPU (busy_poll.rs).
            std::thread::yield_now();
        }
    }

    /// libssh2 has a packet half-sent and read nothing since the socket was last seen
    /// readable (the receive gate is still open): it must finish that send before it reads
    /// again (a reply it owes from its read path, for one). Waiting for input as well would
    /// return at once while the relay is not reading (a relay that stops reading while it
    /// goes on sending): a pump spinning at full CPU until it reads again. Wait for room.
    fn input_waits_for_output(&self, pass: &Pass) -> bool {
        pass.wants_write && libssh2::recv_gate() == RecvGate::Open
    }

    /// Before sleeping: the ACK owed to the relay went out with a packet of ours, or may
    /// wait a little longer for one (returns how long), or goes out alone now.
    fn settle_ack(&mut self) -> Option<Duration> {
        let owed = self.ack_owed?;
        // Only Linux has TCP_QUICKACK: elsewhere the timer would only wake the pump.
        let quickack = cfg!(any(target_os = "linux", target_os = "android"));
        // Carried by a send of ours, unless input was read after that send (it may have
        // arrived after it: keep it owed).
        let carried = libssh2::sends() != owed.sends
            && libssh2::received() == libssh2::received_at_last_send();
        if carried || !quickack {
            self.ack_owed = None;
            return None;
        }
        let left = ACK_DEFER.saturating_sub(owed.since.elapsed());
        if left.is_zero() || libssh2::received() - owed.received > ACK_DEFER_UP_TO {
            self.ack_now();
            self.ack_owed = None;
            return None;
        }
        Some(left)
    }

    /// Puts the target sockets the connections want to read into the next poll.
    fn watch_targets(&mut self) {
        self.targets.clear();
        for conn in &mut self.conns {
            conn.watch_target(&mut self.targets);
        }
    }

    /// Hands each connection the poll's answer for its target.
    fn saw_targets(&mut self) {
        for conn in &mut self.conns {
            conn.saw_poll(&self.targets);
        }
    }

    /// Between busy passes: a poll that does not sleep, for targets that became readable
    /// and, when the receive gate found the relay socket empty, for the relay socket.
    fn peek_ready(&mut self) -> std::io::Result<()> {
        self.watch_targets();
        let relay = libssh2::recv_gate() == RecvGate::Drained && self.will_read();
        if self.targets.is_empty() && !relay {
            return Ok(());
        }
        let interest = Interest {
            read: relay,
            write: false,
        };
        let socket = if relay { self.socket.as_raw_fd() } else { -1 };
        self.wait(socket, interest, Duration::ZERO).map(|_| ())
    }

    /// The one poll(2) of the pump: the relay socket (`socket`, -1 for none), the wake
    /// line and the targets `watch_targets` put in. Hands each connection its target's
    /// answer, and opens the receive gate when the relay socket is readable.
    fn wait(
        &mut self,
        socket: RawFd,
        interest: Interest,
        timeout: Duration,
    ) -> std::io::Result<wake::Readiness> {
        let waited = wake::wait(socket, interest, self.wake_rx, &mut self.targets, timeout);
        self.saw_targets();
        let ready = waited?;
        if ready.socket_readable {
            self.relay_readable();
            // Owed from now, unless already owed with no send of ours since.
            let sends = libssh2::sends();
            if !matches!(self.ack_owed, Some(owed) if owed.sends == sends) {
                self.ack_owed = Some(AckOwed {
                    sends,
                    received: libssh2::received(),
                    since: Instant::now(),
                });
            }
        }
        Ok(ready)
    }

    /// Poll saw the relay socket readable: libssh2's next recv() must reach it.
    fn relay_readable(&self) {
        if libssh2::recv_gate() == RecvGate::Drained {
            libssh2::set_recv_gate(RecvGate::Open);
        }
    }

    /// Switches the session between blocking mode (control requests) and non-blocking
    /// mode (serving), with the receive gate off in blocking mode, where libssh2 waits on
    /// the socket itself, and open on return, since the socket's state is unknown.
    fn set_blocking(&self, blocking: bool) {
        self.session.set_blocking(blocking);
        libssh2::set_recv_gate(if blocking {
            RecvGate::Off
        } else {
            RecvGate::Open
        });
    }

    /// One round over every listener, forward, connection and the probe.
    fn one_pass(&mut self, pass: &mut Pass) -> Result<(), String> {
        self.accept_all(pass)?;
        // accept() reads the socket up to one receive buffer's worth (libssh2 patch
        // 0013). When that found the socket empty (the receive gate closed), every
        // channel's input is in libssh2's queue and idle channels can be skipped cheaply.
        let drained = self.slots.iter().any(|s| s.listener.is_some())
            && libssh2::recv_gate() == RecvGate::Drained;
        if self.drain_started.is_none() && self.quiet() {
            self.request_due_forwards()?;
        }
        let mut index = 0;
        while index < self.conns.len() {
            let conn = &mut self.conns[index];
            let step = conn.step(&self.session, &mut self.scratch, drained);
            if let Some(fatal) = step.fatal {
                return Err(fatal);
            }
            if step.progress && self.counted.contains(&conn.id) {
                let (down, up) = conn.unreported_bytes();
                self.slots[conn.forward].state.add_bytes(down, up);
            }
            pass.progress |= step.progress;
            pass.inbound |= step.inbound;
            pass.wants_write |= step.wants_write;
            if let Some(idle) = self.settings.limits.idle_timeout
                && !conn.is_closing()
                && conn.last_activity.elapsed() > idle
            {
                conn.abort(format!("idle for {}s", idle.as_secs()));
                pass.progress = true;
            }
            if conn.is_closed() {
                let mut conn = self.conns.swap_remove(index);
                self.log_closed(&mut conn);
                continue;
            }
            index += 1;
        }
        self.open_targets(pass)?;
        self.step_splices(pass)?;
        self.step_probe(pass)?;
        Ok(())
    }

    /// Opens the direct-tcpip channels of via-relay connections, one at a time (libssh2
    /// keeps one channel-open state per session, shared with the liveness probe).
    fn open_targets(&mut self, pass: &mut Pass) -> Result<(), String> {
        if !matches!(self.probe, Probe::Idle) {
            return Ok(());
        }
        while let Some(index) = self.next_opening() {
            let splice = &mut self.splices[index];
            let target = splice.target.clone();
            match self
                .session
                .channel_direct_tcpip(&target.host, target.port, None)
            {
                Ok(channel) => {
                    self.opening = None;
                    splice.set_open_in_flight(false);
                    splice.opened(channel);
                    pass.progress = true;
                    pass.inbound = true;
                }
                Err(e) if libssh2::is(&e, libssh2::LIBSSH2_ERROR_EAGAIN) => {
                    self.opening = Some(splice.id);
                    splice.set_open_in_flight(true);
                    pass.wants_write |= self.outbound_blocked();
                    return Ok(());
                }
                Err(e) => {
                    self.opening = None;
                    splice.set_open_in_flight(false);
                    if libssh2::code(&e).is_some_and(is_session_fatal) {
                        return Err(format!("open a channel to {target}: {}", e.message()));
                    }
                    // The relay answered: the session is alive, this connection is not.
                    pass.inbound = true;
                    pass.progress = true;
                    splice.abort(format!(
                        "target unreachable: the relay refused to connect to {target}: {}",
                        e.message()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The splice whose open is in progress, else the first one waiting to open.
    fn next_opening(&self) -> Option<usize> {
        match self.opening {
            Some(id) => self
                .splices
                .iter()
                .position(|s| s.id == id && s.is_opening()),
            None => self.splices.iter().position(Splice::is_opening),
        }
    }

    /// One step of every via-relay connection.
    fn step_splices(&mut self, pass: &mut Pass) -> Result<(), String> {
        let mut index = 0;
        while index < self.splices.len() {
            let splice = &mut self.splices[index];
            let step = splice.step(&self.session);
            if let Some(fatal) = step.fatal {
                return Err(fatal);
            }
            if step.progress && self.counted.contains(&splice.id) {
                let (down, up) = splice.unreported_bytes();
                self.slots[splice.forward].state.add_bytes(down, up);
            }
            pass.progress |= step.progress;
            pass.inbound |= step.inbound;
            pass.wants_write |= step.wants_write;
            if let Some(idle) = self.settings.limits.idle_timeout
                && !splice.is_closing()
                && splice.last_activity.elapsed() > idle
            {
                splice.abort(format!("idle for {}s", idle.as_secs()));
                pass.progress = true;
            }
            if splice.is_closed() {
                let mut splice = self.splices.swap_remove(index);
                self.log_closed_splice(&mut splice);
                continue;
            }
            index += 1;
        }
        Ok(())
    }

    /// Takes every queued forwarded connection off every listener.
    fn accept_all(&mut self, pass: &mut Pass) -> Result<(), String> {
        for forward in 0..self.slots.len() {
            while let Some(listener) = self.slots[forward].listener.as_mut() {
                match listener.accept() {
                    Ok(channel) => {
                        pass.progress = true;
                        pass.inbound = true;
                        let origin = libssh2::accepted_originator(&self.session)
                            .map(|(host, port)| join_host_port(&host, port));
                        self.admit(forward, channel, origin);
                    }
                    Err(e) if libssh2::is(&e, libssh2::LIBSSH2_ERROR_EAGAIN) => {
                        // libssh2 answers some packets itself while reading (open
                        // confirmations, keepalive replies, rekeying); one of those may be
                        // half-sent and must be pushed out on POLLOUT.
                        pass.wants_write |= self.outbound_blocked();
                        break;
                    }
                    Err(e) => {
                        // "Channel not found" here means the transport failed, not that a
                        // channel is missing (docs/libssh2.md §3.2): say so.
                        let why = if libssh2::is(&e, libssh2_sys::LIBSSH2_ERROR_CHANNEL_UNKNOWN) {
                            "the connection to the relay broke (closed or reset while reading)"
                                .to_string()
                        } else {
                            format!(
                                "accept on forward {}: {}",
                                self.slots[forward].spec,
                                e.message()
                            )
                        };
                        return Err(why);
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts serving one accepted channel, or refuses it past the connection limit.
    fn admit(&mut self, forward: usize, channel: ssh2::Channel, origin: Option<String>) {
        *self.next_id += 1;
        let id = *self.next_id;
        if let Some(origin) = origin {
            self.origins.insert(id, origin);
        }
        let spec = &self.slots[forward].spec;
        let limit = self.settings.limits.max_connections;
        let live = self.conns.iter().filter(|c| !c.is_closing()).count()
            + self.splices.iter().filter(|s| !s.is_closing()).count();
        if live >= limit || self.drain_started.is_some() {
            self.refused += 1;
            let result = if self.drain_started.is_some() {
                ConnResult::Refused
            } else {
                ConnResult::Limit
            };
            self.slots[forward].state.count(result);
            let why = if self.drain_started.is_some() {
                "refused: flytube is stopping".to_string()
            } else {
                format!(
                    "refused: {limit} connections already open (limits.max_connections); {} refused so far",
                    self.refused
                )
            };
            let mut conn = Conn::new(id, forward, channel, Link::closed());
            conn.abort(why);
            self.conns.push(conn);
            return;
        }
        if let (Via::Relay, Some(target)) = (spec.via, spec.target.clone()) {
            log::debug!("conn {id}: new on {spec}");
            self.slots[forward].state.opened();
            self.counted.insert(id);
            self.splices.push(Splice::new(id, forward, target, channel));
            return;
        }
        let plan = TargetPlan {
            host: spec
                .target
                .as_ref()
                .map(|t| t.host.clone())
                .unwrap_or_default(),
            port: spec.target.as_ref().map_or(0, |t| t.port),
            dynamic: spec.is_dynamic().then(|| DynamicPlan {
                forward: spec.to_string(),
                policy: self.settings.policy.clone(),
                handshake_timeout: self.settings.limits.handshake_timeout,
            }),
            connect_timeout: self.settings.limits.target_connect_timeout,
        };
        log::debug!("conn {id}: new on {spec}");
        match worker::spawn(id, plan, self.waker.clone(), &self.pool) {
            Ok(link) => {
                self.slots[forward].state.opened();
                self.counted.insert(id);
                self.conns.push(Conn::new(id, forward, channel, link));
            }
            Err(e) => {
                self.slots[forward].state.count(ConnResult::Refused);
                let mut conn = Conn::new(id, forward, channel, Link::closed());
                conn.abort(format!("refused: cannot start a thread: {e}"));
                self.conns.push(conn);
            }
        }
    }

    fn log_closed(&mut self, conn: &mut Conn) {
        let slot = &self.slots[conn.forward];
        if self.counted.remove(&conn.id) {
            let (down, up) = conn.unreported_bytes();
            slot.state.add_bytes(down, up);
            slot.state.closed(result_of(conn.reason()));
        }
        let spec = &slot.spec;
        let target = conn
            .target_addr()
            .map_or_else(|| spec.target_display(), |a| a.to_string());
        let duration_s = conn.started.elapsed().as_secs_f64();
        let from = self
            .origins
            .remove(&conn.id)
            .unwrap_or_else(|| "unknown".into());
        log::info!(
            conn = conn.id,
            from = from.as_str(),
            forward:% = spec,
            target:% = target,
            bytes_to_target = conn.bytes_down,
            bytes_from_target = conn.bytes_up,
            duration_s = duration_s,
            reason = conn.reason();
            "conn {} from {from} closed: forward {} via {target}, to target {} B, from target {} B, {:.3}s, {}",
            conn.id,
            spec,
            conn.bytes_down,
            conn.bytes_up,
            duration_s,
            conn.reason()
        );
    }

    fn log_closed_splice(&mut self, splice: &mut Splice) {
        let slot = &self.slots[splice.forward];
        let (to_target, from_target) = splice.bytes();
        if self.counted.remove(&splice.id) {
            let (down, up) = splice.unreported_bytes();
            slot.state.add_bytes(down, up);
            slot.state.closed(result_of(splice.reason()));
        }
        let spec = &slot.spec;
        let target = format!("{} (via relay)", splice.target);
        let duration_s = splice.started.elapsed().as_secs_f64();
        let from = self
            .origins
            .remove(&splice.id)
            .unwrap_or_else(|| "unknown".into());
        log::info!(
            conn = splice.id,
            from = from.as_str(),
            forward:% = spec,
            target:% = target,
            bytes_to_target = to_target,
            bytes_from_target = from_target,
            duration_s = duration_s,
            reason = splice.reason();
            "conn {} from {from} closed: forward {} via {target}, to target {} B, from target {} B, {:.3}s, {}",
            splice.id,
            spec,
            to_target,
            from_target,
            duration_s,
            splice.reason()
        );
    }

    /// True when no call has a half-sent packet, so a blocking control request can go out
    /// without colliding with it (libssh2 allows one partial packet per session).
    fn quiet(&self) -> bool {
        !self.probe_in_flight
            && self.opening.is_none()
            && !self.outbound_blocked()
            && self.conns.iter().all(|c| !c.has_in_flight())
            && self.splices.iter().all(|s| !s.has_in_flight())
    }

    /// libssh2 is waiting to send: some packet, maybe one it queued itself, is half-out.
    fn outbound_blocked(&self) -> bool {
        matches!(
            self.session.block_directions(),
            ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
        )
    }

    /// Whether anything will read the relay socket when it becomes readable. During a
    /// drain (no listeners) with every connection back-pressured, nothing would, and a
    /// readable socket would make every wait return at once.
    fn will_read(&self) -> bool {
        if self.hold.is_held() {
            return false;
        }
        self.slots.iter().any(|s| s.listener.is_some())
            || !matches!(self.probe, Probe::Idle)
            || self.conns.iter().any(|c| !c.is_back_pressured())
            || !self.splices.is_empty()
    }

    /// Requests every forward that is not serving and whose retry time has come. Runs in
    /// blocking mode under a timeout: a rare control exchange, and the pump is the only
    /// user of the session.
    fn request_due_forwards(&mut self) -> Result<(), String> {
        let now = Instant::now();
        let due: Vec<usize> = (0..self.slots.len())
            .filter(|&i| {
                let slot = &self.slots[i];
                !slot.retired && slot.listener.is_none() && slot.retry_at.is_some_and(|t| t <= now)
            })
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        self.set_blocking(true);
        self.session
            .set_timeout(libssh2::duration_ms(CONTROL_TIMEOUT));
        let mut result = Ok(());
        for i in due {
            let slot = &mut self.slots[i];
            match self.session.channel_forward_listen(
                slot.spec.source_port,
                Some(slot.spec.bind_address()),
                None,
            ) {
                Ok((listener, _bound)) => {
                    log::info!("forward {} serving", slot.spec);
                    slot.refusals = 0;
                    slot.state.set_bound();
                    self.state.changed();
                    slot.listener = Some(listener);
                    slot.retry_at = None;
                    slot.backoff.reset();
                }
                Err(e) if libssh2::is(&e, libssh2::LIBSSH2_ERROR_REQUEST_DENIED) => {
                    let delay = slot.backoff.next_delay();
                    slot.retry_at = Some(Instant::now() + delay);
                    slot.refusals += 1;
                    slot.state.set_unbound(format!(
                        "refused by the relay (port in use or not permitted); retrying in {:.0}s",
                        delay.as_secs_f64()
                    ));
                    self.state.changed();
                    log_refusal(slot, delay);
                }
                Err(e) => {
                    result = Err(format!("request forward {}: {}", slot.spec, e.message()));
                    break;
                }
            }
        }
        self.set_blocking(false);
        result
    }

    /// Probes the relay when it has been quiet for a keepalive interval.
    fn step_probe(&mut self, pass: &mut Pass) -> Result<(), String> {
        let interval = self.settings.keepalive.interval;
        if let Probe::Idle = self.probe {
            if self.liveness.silence() < interval || self.last_probe.elapsed() < interval {
                return Ok(());
            }
            // One channel open at a time: a via-relay open in progress goes first (its
            // answer is evidence of life too).
            if self.opening.is_some() || self.splices.iter().any(Splice::is_opening) {
                return Ok(());
            }
            log::debug!(
                "relay quiet for {}s: probing",
                self.liveness.silence().as_secs()
            );
            self.last_probe = Instant::now();
            self.probe = Probe::Opening;
        }
        if let Probe::Opening = self.probe {
            match self.session.channel_session() {
                Ok(channel) => {
                    self.liveness.touch();
                    self.probe = Probe::Closing(channel);
                }
                Err(e) if libssh2::is(&e, libssh2::LIBSSH2_ERROR_EAGAIN) => {
                    self.note_probe_block(pass);
                    return Ok(());
                }
                Err(e) => {
                    self.probe_in_flight = false;
                    self.probe = Probe::Idle;
                    if let ssh2::ErrorCode::Session(code) = e.code()
                        && is_session_fatal(code)
                    {
                        return Err(format!("liveness probe: {}", e.message()));
                    }
                    // A refusal is an answer too: the relay is alive.
                    self.liveness.touch();
                    log::trace!("probe refused by relay: {}", e.message());
                    return Ok(());
                }
            }
        }
        if let Probe::Closing(channel) = &mut self.probe {
            match channel.close() {
                Err(e) if libssh2::is(&e, libssh2::LIBSSH2_ERROR_EAGAIN) => {
                    self.note_probe_block(pass)
                }
                _ => {
                    self.probe_in_flight = false;
                    self.probe = Probe::Idle;
                }
            }
        }
        Ok(())
    }

    fn note_probe_block(&mut self, pass: &mut Pass) {
        self.probe_in_flight = self.outbound_blocked();
        pass.wants_write |= self.probe_in_flight;
    }

    /// SIGINT/SIGTERM: stop taking connections and cancel the forwards, then let the
    /// connections in flight finish (up to the drain limit).
    fn begin_drain(&mut self) -> Result<(), String> {
        self.drain_started = Some(Instant::now());
        log::info!(
            "stopping: cancelling forwards, {} connection(s) ({} busy worker threads) get up to {}s to finish",
            self.conns.len(),
            self.pool.live() - self.pool.parked(),
            self.settings.limits.drain_timeout.as_secs()
        );
        self.settle_in_flight()?;
        self.set_blocking(true);
        self.session
            .set_timeout(libssh2::duration_ms(CONTROL_TIMEOUT));
        for slot in &mut self.slots {
            // Dropping a Listener sends cancel-tcpip-forward; blocking, so it is not cut short.
            drop(slot.listener.take());
            slot.retry_at = None;
        }
        self.set_blocking(false);
        Ok(())
    }

    /// SIGHUP: re-reads the settings. An invalid file changes nothing. Forwards added or
    /// removed are requested or cancelled on this session; a new relay, identity, host key
    /// or cipher list needs a new session (`Ok(true)`).
    fn reload_settings(&mut self) -> Result<bool, String> {
        let new = match (self.reloader)() {
            Ok(new) => new,
            Err(e) => {
                log::error!("reload refused, keeping the running settings: {e}");
                return Ok(false);
            }
        };
        let changes = self.settings.changes(&new);
        if changes.is_empty() {
            log::info!("reload: the settings did not change");
            return Ok(false);
        }
        for change in &changes {
            log::info!("reload: {change}");
        }
        if self.settings.needs_new_session(&new) {
            self.settings = new;
            return Ok(true);
        }
        let removed: Vec<usize> = (0..self.slots.len())
            .filter(|&i| !self.slots[i].retired && !new.forwards.contains(&self.slots[i].spec))
            .collect();
        if !removed.is_empty() {
            self.settle_in_flight()?;
            self.set_blocking(true);
            self.session
                .set_timeout(libssh2::duration_ms(CONTROL_TIMEOUT));
            for i in removed {
                let slot = &mut self.slots[i];
                // Dropping a Listener sends cancel-tcpip-forward; blocking, not cut short.
                drop(slot.listener.take());
                slot.retired = true;
                slot.retry_at = None;
                slot.state.set_unbound("removed by a reload");
            }
            self.set_blocking(false);
        }
        for spec in &new.forwards {
            if !self.slots.iter().any(|s| !s.retired && s.spec == *spec) {
                let label = crate::forward::join_host_port(spec.bind_display(), spec.source_port);
                let state = Arc::new(ForwardState::new(spec.to_string(), label));
                self.slots.push(Slot::new(spec.clone(), state, &new));
            }
        }
        let live = self.slots.iter().filter(|s| !s.retired);
        self.state
            .set_forwards(live.map(|s| s.state.clone()).collect());
        self.busy_poll = busy_poll::Governor::new(busy_poll::effective_limit(new.limits.busy_poll));
        self.hold.set_bound(new.limits.max_queued);
        // Count again under the new bound before reading more.
        libssh2::set_recv_allowance(0);
        self.settings = new;
        self.request_due_forwards()?;
        Ok(false)
    }

    /// One round of the drain: done when every connection has closed; cut at once on a
    /// second signal, or when the drain limit (plus the close grace) has passed.
    fn drain_step(&mut self, started: Instant, pass: &mut Pass) -> Option<PumpEnd> {
        let open = self.conns.len() + self.splices.len();
        if open == 0 {
            self.finish();
            return Some(PumpEnd::Stopped);
        }
        if self.stop_now.load(Ordering::SeqCst) {
            log::warn!("stopping now (second signal): cutting {open} connection(s)");
            self.teardown("flytube stopped by a second signal");
            return Some(PumpEnd::Stopped);
        }
        pass.progress |= self.close_idle_for_drain();
        let limit = self.settings.limits.drain_timeout;
        if started.elapsed() >= limit + FINAL_CLOSE {
            log::warn!("stopping: {open} connection(s) still closing; cutting the session");
            self.teardown("flytube stopped");
            return Some(PumpEnd::Stopped);
        }
        if started.elapsed() >= limit {
            let why = format!("drain limit {}s reached", limit.as_secs());
            for conn in self.conns.iter_mut().filter(|c| !c.is_closing()) {
                conn.abort(why.clone());
                pass.progress = true;
            }
            for splice in self.splices.iter_mut().filter(|s| !s.is_closing()) {
                splice.abort(why.clone());
                pass.progress = true;
            }
        }
        None
    }

    /// During a drain, a connection with nothing moving either way would only hold the
    /// stop up for the whole drain limit (an idle keep-alive client): close it now.
    fn close_idle_for_drain(&mut self) -> bool {
        let mut closed = false;
        for conn in self.conns.iter_mut().filter(|c| !c.is_closing()) {
            if conn.last_activity.elapsed() >= DRAIN_IDLE && conn.is_quiet() {
                conn.abort("idle when flytube stopped");
                closed = true;
            }
        }
        for splice in self.splices.iter_mut().filter(|s| !s.is_closing()) {
            if splice.last_activity.elapsed() >= DRAIN_IDLE && splice.is_quiet() {
                splice.abort("idle when flytube stopped");
                closed = true;
            }
        }
        closed
    }

    /// Pushes out any half-sent packet before a blocking control request.
    fn settle_in_flight(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + CONTROL_TIMEOUT;
        while !self.quiet() {
            if Instant::now() > deadline {
                return Err("a packet stayed half-sent for 10s".into());
            }
            let mut pass = Pass::default();
            self.one_pass(&mut pass)?;
            if !pass.progress {
                let interest = Interest {
                    read: true,
                    write: true,
                };
                // No targets: only the relay socket matters until the packet is out.
                self.targets.clear();
                self.wait(self.socket.as_raw_fd(), interest, RETRY_SOON)
                    .map_err(|e| format!("poll failed: {e}"))?;
            }
        }
        Ok(())
    }

    /// Clean end after the drain: say goodbye to the relay, then close the socket.
    fn finish(&mut self) {
        if self.settle_in_flight().is_ok() {
            self.set_blocking(true);
            self.session.set_timeout(2000);
            let _ = self.session.disconnect(
                Some(ssh2::DisconnectCode::ByApplication),
                "flytube stopping",
                None,
            );
        }
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        log::info!("stopped");
    }

    /// The session is gone: end every connection, then cut the socket so that dropping the
    /// libssh2 objects does no I/O.
    fn teardown(&mut self, reason: &str) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        for conn in &mut self.conns {
            conn.abort(format!("session lost: {reason}"));
        }
        for mut conn in std::mem::take(&mut self.conns) {
            self.log_closed(&mut conn);
        }
        for mut splice in std::mem::take(&mut self.splices) {
            splice.abort(format!("session lost: {reason}"));
            self.log_closed_splice(&mut splice);
        }
        self.opening = None;
        for slot in &mut self.slots {
            drop(slot.listener.take());
        }
        self.probe = Probe::Idle;
    }

    /// The relay's sshd keeps Nagle on for non-interactive sessions, so it holds a small
    /// packet back until its previous one is acknowledged; with our kernel delaying ACKs
    /// (up to 40 ms) every connection set-up and teardown would stall. TCP_QUICKACK (not
    /// sticky on Linux) sends the pending ACK at once. Not on every input, though: set
    /// before the read, it made the kernel send a bare ACK with every message the relay
    /// sent, just ahead of the answer that would have carried it (a packet and a wake-up of
    /// the relay per request). So it is set only when nothing of ours has gone out within
    /// `ACK_DEFER` of the input (`settle_ack`).
    fn ack_now(&self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let _ = socket2::SockRef::from(&self.socket).set_tcp_quickack(true);
        }
    }

    fn sleep_limit(&self, pass: &Pass) -> Duration {
        let now = Instant::now();
        let mut limit = TICK;
        let interval = self.settings.keepalive.interval;
        let probe_due = interval.saturating_sub(self.liveness.silence());
        limit = limit.min(probe_due.max(Duration::from_millis(10)));
        for slot in &self.slots {
            if let (None, Some(at)) = (&slot.listener, slot.retry_at) {
                limit = limit.min(at.saturating_duration_since(now));
            }
        }
        if pass.wants_write || !matches!(self.probe, Probe::Idle) {
            limit = limit.min(RETRY_SOON);
        }
        limit
    }
}

/// A refused forward request. The first refusal in a row is a warning; after that (a standby
/// replica waiting for the active one's port) one line at info with the count, so a standby
/// does not fill the log with warnings forever.
fn log_refusal(slot: &Slot, delay: Duration) {
    if slot.refusals == 1 {
        log::warn!(
            "relay refused forward {}: the port is in use or not permitted for this user; \
             retrying every {:.0}s or less (another flytube holding the port, e.g. the active \
             replica of a standby pair, or an earlier session the relay has not yet noticed is \
             gone: it frees the port after its ClientAliveInterval x ClientAliveCountMax)",
            slot.spec,
            slot.backoff.cap().as_secs_f64()
        );
    } else {
        log::info!(
            "relay refused forward {} again ({} times in a row); retrying in {:.1}s",
            slot.spec,
            slot.refusals,
            delay.as_secs_f64()
        );
    }
}

/// The metrics label of how a connection ended, from its close reason.
fn result_of(reason: &str) -> ConnResult {
    if reason == "completed" {
        ConnResult::Completed
    } else if reason.starts_with("target unreachable") || reason.starts_with("dynamic forward") {
        ConnResult::TargetFailed
    } else {
        ConnResult::Aborted
    }
}

/// An ACK the relay is owed: our send count and the bytes received when it became owed,
/// and when.
#[derive(Clone, Copy)]
struct AckOwed {
    sends: u64,
    received: u64,
    since: Instant,
}

/// What one pass saw.
#[derive(Default)]
struct Pass {
    /// Anything changed: run another pass before sleeping.
    progress: bool,
    /// The relay sent something a call consumed: it is alive.
    inbound: bool,
    /// Some call waits for the socket to take more data.
    wants_write: bool,
}

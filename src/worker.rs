//! The target side of one forwarded connection: a worker thread dials the target, then
//! writes to it (pump -> target) what the pump could not hand the socket directly. The
//! pump reads the target itself, without blocking, when poll says it is readable (as
//! `ssh -R` does): no thread hand-off on the way back. The worker never touches libssh2:
//! it trades buffers with the pump over bounded queues, which carry back-pressure.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError, bounded};

use crate::downstream::{Downstream, Woken};
use crate::dynamic::{self, Policy};
use crate::net;
use crate::pool::Pool;
use crate::wake::Waker;

/// Buffers queued relay -> target per connection: with the pump's 64 KiB reads this
/// bounds what flytube holds for one slow target to about 4 x 64 KiB.
pub const QUEUE_DEPTH: usize = 4;

/// From the target side to the pump.
#[derive(Debug)]
pub enum Up {
    /// The target answered; the stream is a clone the pump uses only to shut it down.
    Connected(TcpStream, SocketAddr),
    /// The target could not be reached.
    DialFailed(String),
    /// A dynamic-forward request was refused (not allowed, unreachable, malformed); the
    /// reply has been queued as `Data` before this. Ends the target side like an EOF.
    Refused(String),
    /// Bytes for the relay from the worker itself (a dynamic forward's reply).
    Data(Vec<u8>),
    /// Writing to the target failed.
    Failed(String),
}

/// From the pump to the target side.
#[derive(Debug)]
pub enum Down {
    /// Bytes for the target.
    Data(Vec<u8>),
    /// The platform side finished sending: half-close the target.
    Eof,
}

/// The pump's ends of one connection's queues.
pub struct Link {
    /// Messages from the target side.
    pub up: Receiver<Up>,
    /// Messages to the target side.
    pub down: Sender<Down>,
    /// The relay -> target protocol shared with the writer (docs in downstream.rs).
    downstream: Arc<Downstream>,
}

impl Link {
    /// A link with no worker behind it, for connections refused on arrival.
    pub fn closed() -> Link {
        let (_, up) = bounded(0);
        let (down, _) = bounded(0);
        Link {
            up,
            down,
            downstream: Arc::new(Downstream::default()),
        }
    }

    /// The writer's failure, if any.
    pub fn writer_error(&self) -> Option<String> {
        self.downstream.error()
    }

    /// Queues a message for the target, noting the stall first so the writer's next take
    /// wakes the pump. Returns the message back when the queue is full.
    pub fn try_send_down(&self, message: Down) -> Result<(), TrySendError<Down>> {
        // Counted before it is visible to the writer, which uncounts it after writing.
        self.downstream.queueing();
        let result = self.down.try_send(message);
        match &result {
            Ok(()) => self.downstream.queued(),
            Err(_) => self.downstream.not_queued(),
        }
        result
    }

    /// True when the writer has written everything it was given.
    pub fn writer_idle(&self) -> bool {
        self.downstream.idle()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // The writer may be asleep on the bell, not in the queue: tell it the pump is gone.
        self.downstream.close();
    }
}

/// The writer's receive: the next message for the target, sleeping on the pump's bell
/// (not in crossbeam's spinning, yielding receive) while the queue is empty. After the
/// pump has gone, what it queued is still delivered, then `Disconnected`.
fn take(
    down: &Receiver<Down>,
    shared: &Downstream,
    deadline: Option<Instant>,
) -> Result<Down, RecvTimeoutError> {
    loop {
        match down.try_recv() {
            Ok(message) => return Ok(message),
            Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
            Err(TryRecvError::Empty) => {}
        }
        match shared.wait(deadline) {
            Woken::Rung => {}
            Woken::Closed => {
                return down.try_recv().map_err(|_| RecvTimeoutError::Disconnected);
            }
            Woken::TimedOut => return Err(RecvTimeoutError::Timeout),
        }
    }
}

/// Where and how to dial.
#[derive(Clone)]
pub struct TargetPlan {
    /// Target host name or address (unused for a dynamic forward).
    pub host: String,
    /// Target port (unused for a dynamic forward).
    pub port: u16,
    /// Connect limit per address.
    pub connect_timeout: Duration,
    /// Set for a dynamic forward: the client's handshake names the destination.
    pub dynamic: Option<DynamicPlan>,
}

/// What a dynamic-forward connection needs before it can dial.
#[derive(Clone)]
pub struct DynamicPlan {
    /// The forward, for the log line.
    pub forward: String,
    /// The customer's allow/deny rules.
    pub policy: Arc<Policy>,
    /// How long the client has for its handshake.
    pub handshake_timeout: Duration,
}

/// Starts the worker of connection `id` on a pooled thread and returns the pump's ends
/// of its queues.
pub fn spawn(id: u64, plan: TargetPlan, waker: Waker, pool: &Pool) -> io::Result<Link> {
    let (up_tx, up_rx) = bounded(QUEUE_DEPTH);
    let (down_tx, down_rx) = bounded(QUEUE_DEPTH);
    let downstream = Arc::new(Downstream::default());
    let shared = downstream.clone();
    pool.run(move || run_worker(id, plan, waker, up_tx, down_rx, shared))?;
    Ok(Link {
        up: up_rx,
        down: down_tx,
        downstream,
    })
}

fn run_worker(
    id: u64,
    plan: TargetPlan,
    waker: Waker,
    up: Sender<Up>,
    down: Receiver<Down>,
    flags: Arc<Downstream>,
) {
    let send_up = |message: Up| {
        let delivered = up.send(message).is_ok();
        waker.wake();
        delivered
    };
    let dialed = match &plan.dynamic {
        None => dial_target(&plan),
        Some(dynamic) => {
            match serve_handshake(id, &plan, dynamic, &down, &flags, &waker, &send_up) {
                Ok(dialed) => Ok(dialed),
                Err(why) => {
                    send_up(Up::Refused(why));
                    // Keep the queues open until the pump has sent the reply and the
                    // client has gone (or the handshake limit passes): closing them now
                    // would make the pump cut the channel before the reply is out.
                    linger(&down, &flags, &waker, dynamic.handshake_timeout);
                    return;
                }
            }
        }
    };
    let (stream, addr) = match dialed {
        Ok(dialed) => dialed,
        Err(e) => {
            send_up(Up::DialFailed(e));
            return;
        }
    };
    let for_pump = match stream.try_clone() {
        Ok(clone) => clone,
        Err(e) => {
            send_up(Up::DialFailed(format!("cannot clone socket: {e}")));
            return;
        }
    };
    if !send_up(Up::Connected(for_pump, addr)) {
        // The pump gave up on this connection while we were dialing.
        return;
    }
    copy_to_target(stream, down, flags, waker, up);
}

/// A dynamic-forward connection up to the point where bytes can flow: the client's
/// handshake (read from the pump's queue, under the handshake limit), the allow-list
/// decision, one resolution, a dial of allowed addresses only, and the reply. Bytes the
/// client sent after its request go to the target first.
fn serve_handshake(
    id: u64,
    plan: &TargetPlan,
    dynamic: &DynamicPlan,
    down: &Receiver<Down>,
    flags: &Downstream,
    waker: &Waker,
    send_up: &impl Fn(Up) -> bool,
) -> Result<(TcpStream, SocketAddr), String> {
    let read = |wait: Duration| -> io::Result<Option<Vec<u8>>> {
        let message = take(down, flags, Some(Instant::now() + wait)).map_err(|e| match e {
            RecvTimeoutError::Timeout => io::Error::from(io::ErrorKind::TimedOut),
            RecvTimeoutError::Disconnected => io::Error::other("connection ended"),
        })?;
        took_message(flags, waker, &message);
        Ok(match message {
            Down::Data(bytes) => Some(bytes),
            Down::Eof => None,
        })
    };
    let send = |bytes: Vec<u8>| {
        send_up(Up::Data(bytes));
    };
    let dial = |addrs: &[SocketAddr]| {
        let dialed = net::connect_any(addrs, plan.connect_timeout)?;
        net::tune_target_socket(&dialed.stream);
        Ok(dialed)
    };
    let outcome = dynamic::negotiate(
        read,
        send,
        &dynamic.policy,
        dynamic.handshake_timeout,
        net::resolve,
        dial,
    );
    match outcome {
        Ok(negotiated) => {
            log_dynamic(id, &dynamic.forward, &negotiated.report);
            let mut stream = negotiated.dialed.stream;
            if !negotiated.leftover.is_empty() {
                stream
                    .write_all(&negotiated.leftover)
                    .map_err(|e| format!("write to target: {e}"))?;
            }
            Ok((stream, negotiated.dialed.addr))
        }
        Err(refusal) => {
            log_dynamic(id, &dynamic.forward, &refusal.report);
            Err(format!("dynamic forward: {}", refusal.report))
        }
    }
}

/// The per-connection decision line of a dynamic forward, with the same fields in JSON.
fn log_dynamic(id: u64, forward: &str, report: &dynamic::Report) {
    let requested = report.requested.as_ref().map(|t| t.to_string());
    let dialed = report.dialed.map(|a| a.to_string());
    log::info!(
        conn = id,
        forward = forward,
        protocol = report.protocol.map(|p| p.name()),
        requested = requested.as_deref(),
        dialed = dialed.as_deref(),
        allowed = report.allowed,
        rule = report.rule.as_deref();
        "conn {id}: forward {forward}: {report}"
    );
}

/// The bookkeeping the writer does for each message it takes, done by whoever takes it.
fn took_message(flags: &Downstream, waker: &Waker, message: &Down) {
    flags.took(waker);
    if matches!(message, Down::Data(_)) {
        flags.written();
    }
}

/// Drops what the client still sends until it leaves or `limit` passes.
fn linger(down: &Receiver<Down>, flags: &Downstream, waker: &Waker, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        match take(down, flags, Some(deadline)) {
            Ok(message) => {
                took_message(flags, waker, &message);
                if matches!(message, Down::Eof) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// Resolves the target afresh and tries each address under the connect timeout.
fn dial_target(plan: &TargetPlan) -> Result<(TcpStream, SocketAddr), String> {
    let dialed =
        net::dial(&plan.host, plan.port, plan.connect_timeout).map_err(|e| e.to_string())?;
    net::tune_target_socket(&dialed.stream);
    Ok((dialed.stream, dialed.addr))
}

/// Pump -> target. Ends on the platform's EOF (half-close) or when the pump hangs up.
fn copy_to_target(
    mut stream: TcpStream,
    down: Receiver<Down>,
    shared: Arc<Downstream>,
    waker: Waker,
    up: Sender<Up>,
) {
    while let Ok(message) = take(&down, &shared, None) {
        shared.took(&waker);
        match message {
            Down::Data(buf) => {
                let written = stream.write_all(&buf);
                shared.written();
                if let Err(e) = written {
                    // Tell the pump why; the shut socket ends its reads too.
                    let why = format!("write to target: {e}");
                    shared.failed(why.clone());
                    let _ = up.try_send(Up::Failed(why));
                    let _ = stream.shutdown(Shutdown::Both);
                    waker.wake();
                    return;
                }
            }
            Down::Eof => {
                let _ = stream.shutdown(Shutdown::Write);
                return;
            }
        }
    }
}

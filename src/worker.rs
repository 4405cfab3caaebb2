//! The target side of one forwarded connection: a worker thread dials the target, then
//! writes to it (pump -> target) what the pump could not hand the socket directly. The
//! pump reads the target itself, without blocking, when poll says it is readable (as
//! `ssh -R` does): no thread hand-off on the way back. The worker never touches libssh2:
//! it trades buffers with the pump over bounded queues, which carry back-pressure. A
//! writer with nothing left to write gives its thread back to the pool and parks its
//! tools with the connection; the pump starts a writer again when the target next falls
//! behind (see downstream.rs).

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

/// Buffers queued relay -> target per connection: with the pump's reads of up to 256 KiB
/// (`pump.rs` `SCRATCH`) this bounds what flytube holds for one slow target to about
/// 4 x 256 KiB.
pub const QUEUE_DEPTH: usize = 4;

/// How long a writer started for a stalled target waits for more before it gives its
/// thread back: a target that fell behind once usually does again at once (bulk data),
/// and a waiting writer is rung more cheaply than a new one is started. The worker that
/// dialed does not wait: most connections never stall.
pub const WRITER_LINGER: Duration = Duration::from_millis(50);

/// From the target side to the pump.
#[derive(Debug)]
pub enum Up {
    /// The target answered: the socket, shared by the pump (reads, direct sends, shutdown)
    /// and whichever writer runs.
    Connected(Arc<TcpStream>, SocketAddr),
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

impl Down {
    /// The bytes it carries for the target.
    pub fn bytes(&self) -> usize {
        match self {
            Down::Data(data) => data.len(),
            Down::Eof => 0,
        }
    }
}

/// What a writer needs; parked in the connection's `Downstream` while no thread writes.
pub struct WriterTools {
    target: Arc<TcpStream>,
    down: Receiver<Down>,
    up: Sender<Up>,
}

/// The relay -> target state shared by the pump and the writers (docs in downstream.rs).
type Shared = Downstream<WriterTools>;

/// Where the pump starts writers: the pool, and the waker they ring the pump with.
struct Spawner {
    pool: Pool,
    waker: Waker,
}

/// The pump's ends of one connection's queues.
pub struct Link {
    /// Messages from the target side.
    pub up: Receiver<Up>,
    /// Messages to the target side.
    pub down: Sender<Down>,
    downstream: Arc<Shared>,
    /// None for a link with no worker behind it.
    spawner: Option<Spawner>,
}

impl Link {
    /// A link with no worker behind it, for connections refused on arrival.
    pub fn closed() -> Link {
        let (_, up) = bounded(0);
        let (down, _) = bounded(0);
        Link {
            up,
            down,
            downstream: Arc::new(Shared::default()),
            spawner: None,
        }
    }

    /// The writer's failure, if any.
    pub fn writer_error(&self) -> Option<String> {
        self.downstream.error()
    }

    /// Queues a message for the target, noting the stall first so the writer's next take
    /// wakes the pump, and starts a writer if none runs. Returns the message back when the
    /// queue is full. The platform's EOF with no writer running (so nothing unwritten) is
    /// a half-close done here: no thread is woken for it.
    pub fn try_send_down(&self, message: Down) -> Result<(), TrySendError<Down>> {
        if matches!(message, Down::Eof)
            && let Some(tools) = self.downstream.take_parked()
        {
            let _ = tools.target.shutdown(Shutdown::Write);
            return Ok(());
        }
        // Counted before it is visible to the writer, which uncounts it after writing.
        let bytes = message.bytes();
        self.downstream.queueing(bytes);
        let result = self.down.try_send(message);
        match &result {
            Ok(()) => {
                if let Some(tools) = self.downstream.queued()
                    && !self.start_writer(tools)
                {
                    // The message went with the queue's receiving end; the error tells the
                    // caller to abort with the writer's failure (the EOF is a stand-in).
                    return Err(TrySendError::Disconnected(Down::Eof));
                }
            }
            Err(_) => self.downstream.not_queued(bytes),
        }
        result
    }

    /// Starts a writer with parked tools on a pooled thread; false if no thread can be
    /// had. The failure is then the writer's: recorded, the socket shut, the pump woken.
    fn start_writer(&self, tools: WriterTools) -> bool {
        let Some(spawner) = &self.spawner else {
            return false;
        };
        let target = tools.target.clone();
        let shared = self.downstream.clone();
        let waker = spawner.waker.clone();
        let started = spawner
            .pool
            .run(move || write_to_target(tools, shared, waker, WRITER_LINGER));
        if let Err(e) = started {
            self.downstream
                .failed(format!("cannot start a thread to write to the target: {e}"));
            let _ = target.shutdown(Shutdown::Both);
            spawner.waker.wake();
            return false;
        }
        true
    }

    /// True when the writer has written everything it was given.
    pub fn writer_idle(&self) -> bool {
        self.downstream.idle()
    }

    /// Bytes given to the writer and not yet written to the target.
    pub fn unwritten_bytes(&self) -> u64 {
        self.downstream.unwritten_bytes()
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
    shared: &Shared,
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
    let downstream = Arc::new(Shared::default());
    let shared = downstream.clone();
    let worker_waker = waker.clone();
    pool.run(move || run_worker(id, plan, worker_waker, up_tx, down_rx, shared))?;
    Ok(Link {
        up: up_rx,
        down: down_tx,
        downstream,
        spawner: Some(Spawner {
            pool: pool.clone(),
            waker,
        }),
    })
}

fn run_worker(
    id: u64,
    plan: TargetPlan,
    waker: Waker,
    up: Sender<Up>,
    down: Receiver<Down>,
    flags: Arc<Shared>,
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
    let target = Arc::new(stream);
    if !send_up(Up::Connected(target.clone(), addr)) {
        // The pump gave up on this connection while we were dialing.
        return;
    }
    // Writes what the pump queued while we dialed, then gives the thread back.
    let tools = WriterTools { target, down, up };
    write_to_target(tools, flags, waker, Duration::ZERO);
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
    flags: &Shared,
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
fn took_message(flags: &Shared, waker: &Waker, message: &Down) {
    flags.took(waker);
    flags.written(message.bytes());
}

/// Drops what the client still sends until it leaves or `limit` passes.
fn linger(down: &Receiver<Down>, flags: &Shared, waker: &Waker, limit: Duration) {
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

/// Pump -> target: writes what is queued, waiting up to `linger` for more once the queue
/// is empty, then parks the tools and returns (the thread goes back to the pool). Ends
/// for good on the platform's EOF (half-close), a failed write, or when the pump hangs up.
fn write_to_target(tools: WriterTools, shared: Arc<Shared>, waker: Waker, linger: Duration) {
    let mut tools = tools;
    loop {
        let message = match tools.down.try_recv() {
            Ok(message) => message,
            Err(TryRecvError::Disconnected) => return,
            Err(TryRecvError::Empty) => match shared.rest(tools, Instant::now() + linger) {
                Some(back) => {
                    tools = back;
                    continue;
                }
                None => return,
            },
        };
        shared.took(&waker);
        match message {
            Down::Data(buf) => {
                let written = (&*tools.target).write_all(&buf);
                shared.written(buf.len());
                if let Err(e) = written {
                    // Tell the pump why; the shut socket ends its reads too.
                    let why = format!("write to target: {e}");
                    shared.failed(why.clone());
                    let _ = tools.up.try_send(Up::Failed(why));
                    let _ = tools.target.shutdown(Shutdown::Both);
                    waker.wake();
                    return;
                }
            }
            Down::Eof => {
                let _ = tools.target.shutdown(Shutdown::Write);
                shared.written(0);
                return;
            }
        }
    }
}

//! Small facts about libssh2 that several parts rely on: its error codes by name, its
//! millisecond timeouts, what the linked library supports, and the calls ssh2 does not
//! wrap (the originator of an accepted forwarded channel, the pump's receive gate, send
//! counter and read sink). One of the three modules allowed `unsafe` (with wake.rs and
//! heap.rs): each FFI call commented. See docs/libssh2.md.

use std::cell::Cell;
use std::os::fd::RawFd;
use std::os::raw::{c_int, c_void};
use std::time::Duration;

pub use libssh2_sys::{
    LIBSSH2_ERROR_AUTHENTICATION_FAILED, LIBSSH2_ERROR_BANNER_RECV, LIBSSH2_ERROR_EAGAIN,
    LIBSSH2_ERROR_FILE, LIBSSH2_ERROR_INVAL, LIBSSH2_ERROR_KEX_FAILURE,
    LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED, LIBSSH2_ERROR_REQUEST_DENIED,
    LIBSSH2_ERROR_SOCKET_DISCONNECT, LIBSSH2_ERROR_SOCKET_RECV, LIBSSH2_ERROR_SOCKET_TIMEOUT,
    LIBSSH2_ERROR_TIMEOUT,
};

use crate::error::{Error, Result};

/// The libssh2 error number of a session-level error (`None` for SFTP errors).
pub fn code(error: &ssh2::Error) -> Option<i32> {
    match error.code() {
        ssh2::ErrorCode::Session(code) => Some(code),
        ssh2::ErrorCode::SFTP(_) => None,
    }
}

/// True when `error` is libssh2's `code`.
pub fn is(error: &ssh2::Error, code: i32) -> bool {
    self::code(error) == Some(code)
}

/// Who connected to the relay's port for the forwarded channel accepted last on `session`
/// (the originator address and port of RFC 4254 7.2, which the relay reports in every
/// `forwarded-tcpip` open). Vendored patch 0005 keeps it; stock libssh2 drops it.
pub fn accepted_originator(session: &ssh2::Session) -> Option<(String, u16)> {
    let mut raw = session.raw();
    let mut host: *const std::os::raw::c_char = std::ptr::null();
    let mut port: std::os::raw::c_uint = 0;
    // SAFETY: `raw` is the session's live LIBSSH2_SESSION, locked by ssh2 for this call;
    // the function only reads it and sets `host` to a NUL-terminated buffer inside it,
    // which is copied out below while the lock is still held.
    let rc = unsafe {
        libssh2_sys::libssh2_channel_forward_accepted_originator(&mut *raw, &mut host, &mut port)
    };
    if rc != 0 || host.is_null() {
        return None;
    }
    // SAFETY: on success `host` points to a NUL-terminated string of at most 255 bytes in
    // the session, unchanged while `raw` is held.
    let text = unsafe { std::ffi::CStr::from_ptr(host) }
        .to_string_lossy()
        .into_owned();
    Some((text, u16::try_from(port).unwrap_or(0)))
}

/// The pump's receive gate: whether libssh2's next recv() on the relay socket may be
/// answered "would block" without a system call.
///
/// Every libssh2 call (accept, channel read, channel write) first reads the socket until it
/// would block, so a pass over many channels costs one failing recv() per call, several per
/// message. A recv() that returned less than it asked for found the socket empty; from then
/// until poll(2) reports the socket readable again, another recv() can only fail, and the
/// gate answers EAGAIN itself. It is per thread (the pump's), off by default, and off
/// whenever the session is in blocking mode: libssh2 then waits on the socket itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvGate {
    /// Every recv() reaches the socket (blocking mode, other threads, other sessions).
    Off,
    /// recv() reaches the socket; a short read closes the gate.
    Open,
    /// The socket was found empty and poll has not said otherwise since.
    Drained,
}

thread_local! {
    static RECV_GATE: Cell<RecvGate> = const { Cell::new(RecvGate::Off) };
}

/// Sets this thread's receive gate (the pump: `Open` after poll saw the socket readable or
/// on leaving blocking mode, `Off` before blocking calls).
pub fn set_recv_gate(gate: RecvGate) {
    RECV_GATE.with(|g| g.set(gate));
}

/// This thread's receive gate.
pub fn recv_gate() -> RecvGate {
    RECV_GATE.with(Cell::get)
}

/// The errno of the system call that just failed.
fn last_errno() -> c_int {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// A failed recv()/send() as libssh2's socket callbacks report it (misc.c `ssh2_recv`,
/// `ssh2_send`): -EAGAIN for "try again" (EINTR, EAGAIN, EWOULDBLOCK), else -errno.
fn as_callback_error(errno: c_int) -> libc::ssize_t {
    if errno == libc::EINTR || errno == libc::EAGAIN || errno == libc::EWOULDBLOCK {
        -(libc::EAGAIN as libc::ssize_t)
    } else {
        -(errno as libc::ssize_t)
    }
}

/// libssh2's recv callback with the gate in front: otherwise the same as libssh2's own
/// (`ssh2_recv` in misc.c: -errno on failure, EINTR and EWOULDBLOCK as -EAGAIN).
extern "C" fn gated_recv(
    socket: c_int,
    buffer: *mut c_void,
    length: libc::size_t,
    flags: c_int,
    _abstract: *mut *mut c_void,
) -> libc::ssize_t {
    let gate = recv_gate();
    if gate == RecvGate::Drained {
        return -(libc::EAGAIN as libc::ssize_t);
    }
    // The allowance holds while the gate is on (the pump, non-blocking): in blocking mode
    // libssh2 would wait on a readable socket for a read that never comes.
    let allowance = match gate {
        RecvGate::Off => u64::MAX,
        _ => recv_allowance(),
    };
    if allowance == 0 {
        return -(libc::EAGAIN as libc::ssize_t);
    }
    let length = length.min(usize::try_from(allowance).unwrap_or(usize::MAX));
    // SAFETY: libssh2 passes its own receive buffer with its length (or less) and the
    // session's socket, exactly as it would to recv() in its default callback.
    let rc = unsafe { libc::recv(socket, buffer, length, flags) };
    if rc < 0 {
        let errno = last_errno();
        if gate == RecvGate::Open && (errno == libc::EAGAIN || errno == libc::EWOULDBLOCK) {
            set_recv_gate(RecvGate::Drained);
        }
        return as_callback_error(errno);
    }
    if gate == RecvGate::Open && rc > 0 && (rc as usize) < length {
        set_recv_gate(RecvGate::Drained);
    }
    if rc > 0 {
        RECEIVED.with(|n| n.set(n.get() + rc as u64));
        if allowance != u64::MAX {
            RECV_ALLOWANCE.with(|a| a.set(allowance - rc as u64));
        }
    }
    rc
}

thread_local! {
    static RECV_ALLOWANCE: Cell<u64> = const { Cell::new(u64::MAX) };
}

/// Sets how many more bytes this thread's gated reads may take from the socket before
/// the gate answers "would block" without a system call (the pump: its headroom under
/// `limits.max_queued_mib`, hold.rs); `u64::MAX`: no limit. It applies while the receive
/// gate is on, and the gate's state is left alone: the socket may still hold data.
pub fn set_recv_allowance(bytes: u64) {
    RECV_ALLOWANCE.with(|a| a.set(bytes));
}

/// What is left of this thread's receive allowance.
pub fn recv_allowance() -> u64 {
    RECV_ALLOWANCE.with(Cell::get)
}

thread_local! {
    static SENDS: Cell<u64> = const { Cell::new(0) };
    static SENT: Cell<u64> = const { Cell::new(0) };
    static RECEIVED: Cell<u64> = const { Cell::new(0) };
    static RECEIVED_AT_SEND: Cell<u64> = const { Cell::new(0) };
}

/// How many sends this thread's libssh2 sessions have made that put bytes on the socket
/// (the pump's: a pass that sent anything carried the ACK the relay is owed with it).
pub fn sends() -> u64 {
    SENDS.with(Cell::get)
}

/// Bytes this thread's libssh2 sessions have sent (the pump's).
pub fn sent() -> u64 {
    SENT.with(Cell::get)
}

/// Bytes this thread's libssh2 sessions have received (the pump's: small input is a
/// message that may wait for an answer to carry its ACK, bulk input was ACKed as it came).
pub fn received() -> u64 {
    RECEIVED.with(Cell::get)
}

/// `received()` as of this thread's last send: input read after it may not be covered by
/// the ACK that send carried.
pub fn received_at_last_send() -> u64 {
    RECEIVED_AT_SEND.with(Cell::get)
}

/// libssh2's send callback: the pump's pass-long output buffer in front of the socket,
/// and the counter of sends that put bytes on it; otherwise the same as libssh2's own
/// (`ssh2_send` in misc.c: -errno on failure, EINTR and EWOULDBLOCK as -EAGAIN).
///
/// libssh2 sends each packet as it makes it, one send(2) per packet. A pass of the pump
/// over many connections makes many small ones (channel-open confirmations, short
/// answers, EOFs, closes, window adjusts), and each send is a system call here and a
/// wake-up of the relay's sshd there. While the pump serves (receive gate on), a packet
/// under `OUTPUT_SMALL` is copied into a buffer instead, which `flush_output` sends as one
/// write at the end of the pass, before the pump polls or sleeps: what OpenSSH does with
/// its output buffer once per loop. A larger packet goes out at once, after what the
/// buffer holds, in one sendmsg(2) of both and without a copy. In blocking mode (gate
/// off) nothing is buffered: libssh2 then waits for answers to what it sends.
extern "C" fn counted_send(
    socket: c_int,
    buffer: *const c_void,
    length: libc::size_t,
    flags: c_int,
    _abstract: *mut *mut c_void,
) -> libc::ssize_t {
    // SAFETY: libssh2 passes its own send buffer with its length, valid for the call.
    let packet = unsafe { std::slice::from_raw_parts(buffer.cast::<u8>(), length) };
    OUTPUT.with(|output| {
        let mut output = output.borrow_mut();
        if output.socket != socket {
            // A buffer left from an earlier session's socket (the pump discards it when
            // it starts): never mix it into this one.
            output.bytes.clear();
            output.socket = socket;
        }
        let buffering = recv_gate() != RecvGate::Off;
        if buffering
            && packet.len() < OUTPUT_SMALL
            && output.bytes.len() + packet.len() <= OUTPUT_LIMIT
        {
            output.bytes.extend_from_slice(packet);
            return length as libc::ssize_t;
        }
        let pending = output.bytes.len();
        let rc = send_parts(socket, &[&output.bytes, packet], flags);
        if rc < 0 {
            return as_callback_error(last_errno());
        }
        let rc = rc as usize;
        output.bytes.drain(..rc.min(pending));
        match rc.checked_sub(pending) {
            // The buffer's bytes go first: until they are out, none of the packet is.
            None | Some(0) if length > 0 => -(libc::EAGAIN as libc::ssize_t),
            None | Some(0) => 0,
            Some(took) => took as libc::ssize_t,
        }
    })
}

/// Packets smaller than this wait in the output buffer for the end of the pass; larger
/// ones (bulk data) are full segments already and go out at once.
const OUTPUT_SMALL: usize = 16 * 1024;

/// The most the output buffer holds; a packet that would pass it sends the buffer first.
const OUTPUT_LIMIT: usize = 64 * 1024;

/// The pump's pass-long output buffer (see `counted_send`).
struct Output {
    socket: c_int,
    bytes: Vec<u8>,
}

thread_local! {
    static OUTPUT: std::cell::RefCell<Output> = const {
        std::cell::RefCell::new(Output { socket: -1, bytes: Vec::new() })
    };
}

/// One sendmsg(2) of `parts` (empty ones skipped) to `socket`, counted; the raw result.
fn send_parts(socket: c_int, parts: &[&[u8]; 2], flags: c_int) -> libc::ssize_t {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 2];
    let mut count = 0;
    for part in parts.iter().filter(|p| !p.is_empty()) {
        iov[count] = libc::iovec {
            iov_base: part.as_ptr().cast_mut().cast::<c_void>(),
            iov_len: part.len(),
        };
        count += 1;
    }
    if count == 0 {
        return 0;
    }
    // SAFETY: `socket` is the session's socket, as libssh2 would pass it to send(); the
    // entries point into `parts`, which outlive the call.
    let rc = unsafe { send_iov(socket, &mut iov[..count], flags) };
    if rc > 0 {
        SENDS.with(|n| n.set(n.get() + 1));
        SENT.with(|n| n.set(n.get() + rc as u64));
        RECEIVED_AT_SEND.with(|at| at.set(received()));
    }
    rc
}

/// Sends what this thread's output buffer holds (the pump, at the end of each pass).
/// Ok(true) when it is empty after, Ok(false) when the socket took only part of it (poll
/// for room, then call again), Err for a failed send.
pub fn flush_output() -> std::io::Result<bool> {
    OUTPUT.with(|output| {
        let mut output = output.borrow_mut();
        if output.bytes.is_empty() {
            return Ok(true);
        }
        let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
        let rc = send_parts(output.socket, &[&output.bytes, &[]], flags);
        if rc < 0 {
            let error = std::io::Error::last_os_error();
            return match error.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(false),
                _ => Err(error),
            };
        }
        output.bytes.drain(..rc as usize);
        Ok(output.bytes.is_empty())
    })
}

/// Drops what this thread's output buffer holds (a new session, or one that ended).
pub fn discard_output() {
    OUTPUT.with(|output| {
        let mut output = output.borrow_mut();
        output.bytes.clear();
        output.socket = -1;
    });
}

/// What `read_sinking` lends libssh2's read sink for one read: the socket, and what the
/// sink sent to it.
struct SinkTo {
    socket: RawFd,
    sent: usize,
}

/// Reads `channel` (of `session`) as `Read::read` does, except that the data goes from
/// libssh2's packets straight to `socket` (a non-blocking send) for as long as the socket
/// takes all of it; whatever it does not take is copied into `buf` as usual (vendored
/// patch 0015). Returns (bytes read in all, of which sent to `socket`); the copied ones are
/// `buf[..all - sent]`. A send error stops the sending like a full socket: the caller's
/// own write of the copied rest meets and reports it. The sink is set for this read only,
/// so other reads neither offer it data nor pay for the offer.
pub fn read_sinking(
    session: &ssh2::Session,
    channel: &mut ssh2::Channel,
    socket: RawFd,
    buf: &mut [u8],
) -> std::io::Result<(usize, usize)> {
    let mut to = SinkTo { socket, sent: 0 };
    let arg: *mut SinkTo = &mut to;
    set_read_sink(session, Some(sink_to_socket), arg.cast::<c_void>());
    let read = std::io::Read::read(channel, buf);
    set_read_sink(session, None, std::ptr::null_mut());
    // The sink, the only other user of `arg`, is unset: `to` is ours again.
    read.map(|all| (all, to.sent.min(all)))
}

/// Sets (or, with None, unsets) `session`'s read sink. The session lock is held only for
/// the call: the read that follows takes it itself.
fn set_read_sink(session: &ssh2::Session, sink: Option<SinkFn>, arg: *mut c_void) {
    let mut raw = session.raw();
    // SAFETY: `raw` is the live session, locked by ssh2 for the call, which only stores
    // the two pointers; `arg` stays valid until the sink is unset (`read_sinking`).
    unsafe { libssh2_session_channel_read_sink(&mut *raw, sink, arg) }
}

/// libssh2.h's `struct libssh2_read_chunk`: one piece of channel data in a queued packet.
#[repr(C)]
struct ReadChunk {
    data: *const std::os::raw::c_char,
    len: libc::size_t,
}

/// The most chunks libssh2 offers the read sink at once (READ_SINK_CHUNKS in channel.c).
const READ_SINK_CHUNKS: usize = 16;

/// libssh2's read sink (LIBSSH2_CHANNEL_READ_SINK), set by `read_sinking` with a
/// `SinkTo` as `arg`: one non-blocking `sendmsg` of the offered chunks to its socket.
extern "C" fn sink_to_socket(
    _session: *mut libssh2_sys::LIBSSH2_SESSION,
    chunks: *const ReadChunk,
    count: c_int,
    arg: *mut c_void,
) -> libc::size_t {
    let count = usize::try_from(count).unwrap_or(0).min(READ_SINK_CHUNKS);
    if arg.is_null() || count == 0 || chunks.is_null() {
        return 0;
    }
    // SAFETY: `arg` is the `SinkTo` that `read_sinking` set with this sink and keeps alive
    // and otherwise untouched until it unsets it after the read.
    let to = unsafe { &mut *arg.cast::<SinkTo>() };
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; READ_SINK_CHUNKS];
    for (i, slot) in iov.iter_mut().enumerate().take(count) {
        // SAFETY: libssh2 passes `count` chunks (at most READ_SINK_CHUNKS), each pointing
        // into a packet it keeps queued for the duration of this call.
        let chunk = unsafe { &*chunks.add(i) };
        slot.iov_base = chunk.data.cast_mut().cast::<c_void>();
        slot.iov_len = chunk.len;
    }
    // SAFETY: `to.socket` is the target socket the caller of `read_sinking` holds open
    // across the read; the entries point into packets libssh2 keeps queued for this call.
    let rc = unsafe {
        send_iov(
            to.socket,
            &mut iov[..count],
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    let took = usize::try_from(rc).unwrap_or(0);
    to.sent += took;
    took
}

/// One sendmsg(2) of the buffers `iov` points at to `socket`: the raw result.
///
/// # Safety
/// `socket` is an open socket, and each entry of `iov` points at that many readable bytes
/// for the duration of the call.
unsafe fn send_iov(socket: c_int, iov: &mut [libc::iovec], flags: c_int) -> libc::ssize_t {
    // SAFETY: a zeroed msghdr is valid (no address, no control data); it points at `iov`,
    // which outlives the call.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = iov.as_mut_ptr();
    message.msg_iovlen = iov.len() as _;
    // SAFETY: as the caller guarantees; sendmsg only reads the bytes the entries point at.
    unsafe { libc::sendmsg(socket, &message, flags) }
}

type SinkFn = extern "C" fn(
    *mut libssh2_sys::LIBSSH2_SESSION,
    *const ReadChunk,
    c_int,
    *mut c_void,
) -> libc::size_t;

unsafe extern "C" {
    fn libssh2_session_channel_read_sink(
        session: *mut libssh2_sys::LIBSSH2_SESSION,
        sink: Option<SinkFn>,
        arg: *mut c_void,
    );
    fn libssh2_session_callback_set2(
        session: *mut libssh2_sys::LIBSSH2_SESSION,
        cbtype: c_int,
        callback: Option<unsafe extern "C" fn()>,
    ) -> Option<unsafe extern "C" fn()>;
}

/// libssh2.h: LIBSSH2_CALLBACK_SEND and LIBSSH2_CALLBACK_RECV.
const LIBSSH2_CALLBACK_SEND: c_int = 5;
const LIBSSH2_CALLBACK_RECV: c_int = 6;

/// Puts the receive gate in front of `session`'s socket reads and the send counter in
/// front of its writes. The gate stays `Off` (plain recv) until the calling thread opens it.
pub fn install_socket_callbacks(session: &ssh2::Session) {
    type RecvFn =
        extern "C" fn(c_int, *mut c_void, libc::size_t, c_int, *mut *mut c_void) -> libc::ssize_t;
    type SendFn =
        extern "C" fn(c_int, *const c_void, libc::size_t, c_int, *mut *mut c_void) -> libc::ssize_t;
    let mut raw = session.raw();
    // SAFETY: function pointers cast to libssh2's generic callback type, as its API asks;
    // libssh2 calls them back with the LIBSSH2_RECV_FUNC and LIBSSH2_SEND_FUNC signatures
    // that `gated_recv` and `counted_send` have.
    let (recv, send) = unsafe {
        (
            std::mem::transmute::<RecvFn, unsafe extern "C" fn()>(gated_recv as RecvFn),
            std::mem::transmute::<SendFn, unsafe extern "C" fn()>(counted_send as SendFn),
        )
    };
    // SAFETY: `raw` is the live session, locked by ssh2 for the calls; setting a callback
    // only stores the pointer.
    unsafe {
        libssh2_session_callback_set2(&mut *raw, LIBSSH2_CALLBACK_RECV, Some(recv));
        libssh2_session_callback_set2(&mut *raw, LIBSSH2_CALLBACK_SEND, Some(send));
    }
}

/// A duration as libssh2's millisecond timeout, saturating instead of wrapping.
pub fn duration_ms(d: Duration) -> u32 {
    d.as_millis().min(u128::from(u32::MAX)) as u32
}

/// The MACs `ssh` offers by default (OpenSSH's client order, `ssh_config(5)` MACs):
/// encrypt-then-MAC first, UMAC before HMAC within each kind.
pub const OPENSSH_MACS: &[&str] = &[
    "umac-64-etm@openssh.com",
    "umac-128-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha1-etm@openssh.com",
    "umac-64@openssh.com",
    "umac-128@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
    "hmac-sha1",
];

/// The MACs flytube offers, in order: OpenSSH's client list limited to what `supported`
/// (the linked libssh2's `supported_algs(MacCs)`) can negotiate. The UMACs come from
/// vendored patch 0009; the SHA-1 ones are compiled out of this libssh2.
pub fn mac_preference(supported: &[&str]) -> Vec<&'static str> {
    OPENSSH_MACS
        .iter()
        .copied()
        .filter(|mac| supported.contains(mac))
        .collect()
}

/// The cipher names the linked libssh2 can negotiate.
pub fn supported_ciphers() -> Result<Vec<String>> {
    let session = ssh2::Session::new()
        .map_err(|e| Error::Local(format!("cannot create ssh session: {e}")))?;
    let supported = session
        .supported_algs(ssh2::MethodType::CryptCs)
        .map_err(|e| Error::Local(format!("cannot list ciphers: {e}")))?;
    Ok(supported.into_iter().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recv_gate_answers_for_an_empty_socket_until_opened() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let (mut peer, ours) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        let mut recv = |gate_after: RecvGate| {
            let n = gated_recv(
                ours.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                std::ptr::null_mut(),
            );
            assert_eq!(recv_gate(), gate_after);
            n
        };
        // Off (another thread, blocking mode): a plain recv, the gate never closes.
        peer.write_all(b"abc").unwrap();
        assert_eq!(recv(RecvGate::Off), 3);
        set_recv_gate(RecvGate::Open);
        peer.write_all(b"abcd").unwrap();
        // A short read found the socket empty: closed.
        assert_eq!(recv(RecvGate::Drained), 4);
        peer.write_all(b"late").unwrap();
        // Data arrived, but until poll says so the gate answers EAGAIN itself.
        assert_eq!(recv(RecvGate::Drained), -(libc::EAGAIN as libc::ssize_t));
        set_recv_gate(RecvGate::Open);
        assert_eq!(recv(RecvGate::Drained), 4);
        set_recv_gate(RecvGate::Open);
        // An empty socket closes it too.
        assert_eq!(recv(RecvGate::Drained), -(libc::EAGAIN as libc::ssize_t));
        set_recv_gate(RecvGate::Off);
    }

    /// Everything the peer end of a socket pair can read now.
    fn read_now(peer: &mut std::os::unix::net::UnixStream) -> Vec<u8> {
        use std::io::Read;
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match peer.read(&mut buf) {
                Ok(0) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return got,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// True when this thread's output buffer holds bytes not yet sent.
    fn output_pending() -> bool {
        OUTPUT.with(|output| !output.borrow().bytes.is_empty())
    }

    /// A socket pair for the output buffer's tests (non-blocking both ends), with this
    /// thread's buffer emptied.
    fn output_pair() -> (
        std::os::unix::net::UnixStream,
        std::os::unix::net::UnixStream,
    ) {
        let (peer, ours) = std::os::unix::net::UnixStream::pair().unwrap();
        peer.set_nonblocking(true).unwrap();
        ours.set_nonblocking(true).unwrap();
        discard_output();
        (peer, ours)
    }

    /// libssh2's send of `bytes` to `socket`, through the callback.
    fn send_to(socket: &std::os::unix::net::UnixStream, bytes: &[u8]) -> libc::ssize_t {
        use std::os::fd::AsRawFd;
        let (fd, ptr) = (socket.as_raw_fd(), bytes.as_ptr().cast());
        counted_send(
            fd,
            ptr,
            bytes.len(),
            libc::MSG_NOSIGNAL,
            std::ptr::null_mut(),
        )
    }

    /// A packet too large to wait in the buffer, with a recognisable pattern.
    fn large_packet() -> Vec<u8> {
        (0..OUTPUT_SMALL).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn the_output_buffer_sends_small_packets_at_the_end_of_the_pass_in_order() {
        let (mut peer, ours) = output_pair();
        let send = |bytes: &[u8]| send_to(&ours, bytes);

        // Blocking mode (gate off): straight to the socket.
        set_recv_gate(RecvGate::Off);
        assert_eq!(send(b"hello"), 5);
        assert_eq!(read_now(&mut peer), b"hello");

        // Serving: small packets wait for the flush, which sends them as one write.
        set_recv_gate(RecvGate::Open);
        let sends_before = sends();
        assert_eq!(send(b"one"), 3);
        assert_eq!(send(b"two"), 3);
        assert!(output_pending());
        assert!(read_now(&mut peer).is_empty());
        assert!(flush_output().unwrap());
        assert!(!output_pending());
        assert_eq!(sends() - sends_before, 1);
        assert_eq!(read_now(&mut peer), b"onetwo");

        // A large packet goes at once, behind what the buffer held, in one write.
        let large = large_packet();
        assert_eq!(send(b"three"), 5);
        assert_eq!(send(&large), large.len() as libc::ssize_t);
        assert!(!output_pending());
        assert_eq!(read_now(&mut peer), [&b"three"[..], &large].concat());

        // Small packets that would pass the limit send the buffer with them.
        let small = vec![b's'; OUTPUT_SMALL - 1];
        let fits = OUTPUT_LIMIT / small.len();
        for _ in 0..fits {
            assert_eq!(send(&small), small.len() as libc::ssize_t);
        }
        assert!(read_now(&mut peer).is_empty());
        assert_eq!(send(&small), small.len() as libc::ssize_t);
        assert!(!output_pending());
        assert_eq!(read_now(&mut peer), small.repeat(fits + 1));
        set_recv_gate(RecvGate::Off);
    }

    #[test]
    fn the_output_buffer_keeps_order_on_a_full_socket_and_reports_failure() {
        let (mut peer, ours) = output_pair();
        let send = |bytes: &[u8]| send_to(&ours, bytes);
        let eagain = -(libc::EAGAIN as libc::ssize_t);
        let large = large_packet();
        set_recv_gate(RecvGate::Open);

        // A full socket: a small packet waits in the buffer, the flush says "not yet", and
        // a large packet is refused (EAGAIN: libssh2 keeps it and sends it again) until the
        // buffer is out, so nothing overtakes it.
        let mut expected = Vec::new();
        loop {
            let rc = send(&large);
            if rc < 0 {
                assert_eq!(rc, eagain);
                break;
            }
            expected.extend_from_slice(&large[..rc as usize]);
        }
        assert_eq!(send(b"late"), 4);
        assert!(!flush_output().unwrap());
        assert_eq!(send(&large), eagain);
        assert!(output_pending());
        assert_eq!(read_now(&mut peer), expected);
        assert!(flush_output().unwrap());
        assert_eq!(send(&large), large.len() as libc::ssize_t);
        assert_eq!(read_now(&mut peer), [&b"late"[..], &large].concat());

        // A buffer left for another socket (an earlier session's) never reaches this one.
        let (mut other_peer, other) = output_pair();
        assert_eq!(send(b"stale"), 5);
        assert_eq!(send_to(&other, b"fresh"), 5);
        assert!(flush_output().unwrap());
        assert_eq!(read_now(&mut other_peer), b"fresh");
        assert!(read_now(&mut peer).is_empty());

        // A failed send is reported, not swallowed.
        drop(other_peer);
        assert_eq!(send_to(&other, b"gone"), 4);
        assert!(flush_output().is_err());
        discard_output();
        set_recv_gate(RecvGate::Off);
    }

    #[test]
    fn macs_follow_opensshs_order_within_what_libssh2_supports() {
        // libssh2's own order differs (HMAC first); OpenSSH's wins, unknown names drop out.
        let supported = [
            "hmac-sha2-256",
            "hmac-sha2-256-etm@openssh.com",
            "hmac-md5",
            "umac-128@openssh.com",
            "umac-64-etm@openssh.com",
        ];
        assert_eq!(
            mac_preference(&supported),
            [
                "umac-64-etm@openssh.com",
                "hmac-sha2-256-etm@openssh.com",
                "umac-128@openssh.com",
                "hmac-sha2-256",
            ]
        );
        assert!(mac_preference(&["hmac-md5"]).is_empty());
    }

    #[test]
    fn the_linked_libssh2_offers_every_umac_and_sha2_mac_of_opensshs_list() {
        let session = ssh2::Session::new().unwrap();
        let supported = session.supported_algs(ssh2::MethodType::MacCs).unwrap();
        assert_eq!(
            mac_preference(&supported),
            [
                "umac-64-etm@openssh.com",
                "umac-128-etm@openssh.com",
                "hmac-sha2-256-etm@openssh.com",
                "hmac-sha2-512-etm@openssh.com",
                "umac-64@openssh.com",
                "umac-128@openssh.com",
                "hmac-sha2-256",
                "hmac-sha2-512",
            ]
        );
    }

    #[test]
    fn timeouts_saturate() {
        assert_eq!(duration_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(duration_ms(Duration::from_secs(u64::MAX)), u32::MAX);
    }
}

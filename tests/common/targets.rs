//! Targets on 127.0.0.1 port 0 (an echo server, single-connection targets) and the client
//! side of a forwarded port.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// A port that was free a moment ago, and that no other test of this process was given:
/// the kernel may hand a just-released port out again for port 0, and two tests running
/// at once then race for it (seen in CI: a flytube met another test's relay and its host
/// key).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = flytube::sync::lock(&GIVEN);
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no port free that was not given out before");
}

/// How long a target's connection waits for a byte, or for room to write one, before the
/// target gives it up: longer than any test waits, and no target thread outlives it.
const STALL: Duration = Duration::from_secs(60);

/// A server on 127.0.0.1:0 that serves each connection on a thread of its own; it stops
/// accepting on drop.
pub struct Target {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Target {
    /// Echoes until EOF, then half-closes.
    pub fn echo() -> Target {
        Target::serve(echo)
    }

    /// Accepts, then resets each connection (SO_LINGER 0) a moment later.
    pub fn resetting() -> Target {
        Target::serve(|stream| {
            socket2::SockRef::from(&stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            thread::sleep(Duration::from_millis(100));
        })
    }

    pub fn serve(handle: fn(TcpStream)) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        bound(&stream);
                        thread::spawn(move || handle(stream));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Target { port, stop }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Blocking, with every read and write bounded by [`STALL`].
fn bound(stream: &TcpStream) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(STALL)).unwrap();
    stream.set_write_timeout(Some(STALL)).unwrap();
}

fn echo(mut stream: TcpStream) {
    let mut buf = vec![0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Connects to the relay's forwarded port (retrying briefly while it comes up). Reads and
/// writes give up after 20 s.
pub fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
                return s;
            }
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("connect to relay port {port}: {e}"),
        }
    }
}

/// Sends `data` through the tunnel to an echo target and returns what came back.
pub fn echo_round_trip(port: u16, data: &[u8]) -> Vec<u8> {
    let stream = connect(port);
    let mut writer = stream.try_clone().unwrap();
    let payload = data.to_vec();
    let sender = thread::spawn(move || {
        writer.write_all(&payload).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    let mut reader = stream;
    reader.read_to_end(&mut back).unwrap();
    sender.join().unwrap();
    back
}

/// Writes `data` on an open connection to an echo target and asserts that it comes back.
pub fn assert_echoes(stream: &mut TcpStream, data: &[u8]) {
    stream.write_all(data).unwrap();
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, data);
}

/// A target on 127.0.0.1:0 that serves its first connection with `serve` on a thread of its
/// own; the receiver gets what `serve` returns. It waits [`STALL`] at most for that
/// connection (the sender is then dropped), and its reads and writes are bounded likewise.
pub fn one_shot_target<T: Send + 'static>(
    serve: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (u16, std::sync::mpsc::Receiver<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let deadline = Instant::now() + STALL;
        while Instant::now() < deadline {
            if let Ok((stream, _)) = listener.accept() {
                bound(&stream);
                let _ = tx.send(serve(stream));
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
    });
    (port, rx)
}

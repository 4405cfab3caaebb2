//! Faults on the path to the relay: a proxy that black-holes or resets its connections, and
//! squatters holding a port.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A TCP proxy between flytube and sshd that can black-hole its connections (bytes
/// vanish, sockets stay open) or reset them. New connections after a freeze pass normally.
/// On drop it stops accepting and resets every connection, which ends its threads.
pub struct FaultyProxy {
    pub port: u16,
    state: Arc<Mutex<ProxyState>>,
}

#[derive(Default)]
struct ProxyState {
    /// Connections accepted so far; each is numbered in that order.
    accepted: usize,
    /// Connections numbered below this are black holes.
    frozen_before: usize,
    /// Both sockets of every connection not reset yet.
    open: Vec<TcpStream>,
    stopped: bool,
}

impl FaultyProxy {
    pub fn start(upstream: u16) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let shared = state.clone();
        let upstream = SocketAddr::from(([127, 0, 0, 1], upstream));
        thread::spawn(move || {
            loop {
                let Ok((client, _)) = listener.accept() else {
                    if shared.lock().unwrap().stopped {
                        return;
                    }
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5))
                else {
                    continue;
                };
                let mut state = shared.lock().unwrap();
                if state.stopped {
                    return;
                }
                state.open.push(client.try_clone().unwrap());
                state.open.push(server.try_clone().unwrap());
                let index = state.accepted;
                state.accepted += 1;
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let state = shared.clone();
                    thread::spawn(move || pipe(from, to, index, state));
                }
            }
        });
        FaultyProxy { port, state }
    }

    /// Every connection open now becomes a black hole.
    pub fn freeze_existing(&self) {
        let mut state = self.state.lock().unwrap();
        state.frozen_before = state.accepted;
    }

    /// Resets every connection open now.
    pub fn reset_all(&self) {
        for s in self.state.lock().unwrap().open.drain(..) {
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.state.lock().unwrap().stopped = true;
        self.reset_all();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, index: usize, state: Arc<Mutex<ProxyState>>) {
    let mut buf = vec![0u8; 65536];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if index < state.lock().unwrap().frozen_before {
                    continue; // the bytes vanish; the socket stays open
                }
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// A listener holding a port on 127.0.0.1 until dropped. Bound on port 0: a port that is
/// merely free now can be taken by any connection of a test running in parallel.
pub struct Squatter {
    pub port: u16,
    _listener: TcpListener,
}

impl Squatter {
    pub fn new() -> Squatter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Squatter {
            port: listener.local_addr().unwrap().port(),
            _listener: listener,
        }
    }
}

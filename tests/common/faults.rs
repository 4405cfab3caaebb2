//! Faults on the path to the relay: a proxy that black-holes or resets its connections.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A TCP proxy between flytube and sshd that can black-hole its connections (bytes
/// vanish, sockets stay open) or reset them. New connections after a freeze pass normally.
pub struct FaultyProxy {
    pub port: u16,
    frozen_before: Arc<Mutex<Option<usize>>>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl FaultyProxy {
    pub fn start(upstream: u16) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let frozen_before: Arc<Mutex<Option<usize>>> = Arc::new(Mutex::new(None));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, c, s) = (frozen_before.clone(), conns.clone(), stop.clone());
        thread::spawn(move || {
            let mut index = 0usize;
            while !s.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                c.lock().unwrap().push(client.try_clone().unwrap());
                c.lock().unwrap().push(server.try_clone().unwrap());
                let me = index;
                index += 1;
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let frozen = f.clone();
                    thread::spawn(move || pipe(from, to, me, frozen));
                }
            }
        });
        FaultyProxy {
            port,
            frozen_before,
            conns,
            stop,
        }
    }

    /// Every connection open now becomes a black hole.
    pub fn freeze_existing(&self) {
        let open = self.conns.lock().unwrap().len() / 2;
        *self.frozen_before.lock().unwrap() = Some(open);
    }

    /// Resets every connection open now.
    pub fn reset_all(&self) {
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.reset_all();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, index: usize, frozen: Arc<Mutex<Option<usize>>>) {
    let mut buf = vec![0u8; 65536];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                let is_frozen = frozen.lock().unwrap().is_some_and(|before| index < before);
                if is_frozen {
                    continue; // the bytes vanish; the socket stays open
                }
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

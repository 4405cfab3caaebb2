//! Dialing: resolve a name to every address, connect to each in turn under a timeout, and
//! tune the socket. The relay, the targets and `flytube check` all dial through here, so
//! they fail the same way and keep the `io::Error` for whoever needs its kind.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

/// A connected TCP stream and the address that answered.
#[derive(Debug)]
pub struct Dialed {
    /// The connection, with TCP_NODELAY set.
    pub stream: TcpStream,
    /// The address it reached.
    pub addr: SocketAddr,
}

/// Why a dial failed: the name, or every address tried with its own error.
#[derive(Debug)]
pub enum DialError {
    /// The name did not resolve.
    Resolve {
        /// The name asked for.
        host: String,
        /// The resolver's answer.
        source: io::Error,
    },
    /// The name resolved to nothing.
    NoAddress {
        /// The name asked for.
        host: String,
    },
    /// No address accepted the connection.
    Connect {
        /// Each address tried, with its error, in order.
        attempts: Vec<(SocketAddr, io::Error)>,
    },
}

impl DialError {
    /// The kind of the last failure: `TimedOut`, `ConnectionRefused`, ... (`NotFound` when
    /// the name did not resolve).
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            DialError::Resolve { .. } | DialError::NoAddress { .. } => io::ErrorKind::NotFound,
            DialError::Connect { attempts } => attempts
                .last()
                .map_or(io::ErrorKind::Other, |(_, e)| e.kind()),
        }
    }

    /// True when the name could not be turned into an address.
    pub fn is_resolve(&self) -> bool {
        matches!(
            self,
            DialError::Resolve { .. } | DialError::NoAddress { .. }
        )
    }
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialError::Resolve { host, source } => write!(f, "cannot resolve {host:?}: {source}"),
            DialError::NoAddress { host } => write!(f, "{host:?} resolved to no address"),
            DialError::Connect { attempts } => {
                for (i, (addr, error)) in attempts.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{addr}: {error}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for DialError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DialError::Resolve { source, .. } => Some(source),
            DialError::Connect { attempts } => attempts
                .last()
                .map(|(_, e)| e as &(dyn std::error::Error + 'static)),
            DialError::NoAddress { .. } => None,
        }
    }
}

/// Resolves `host` afresh (DNS may have changed since the last attempt) to every address.
pub fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, DialError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|source| DialError::Resolve {
            host: host.to_string(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(DialError::NoAddress {
            host: host.to_string(),
        });
    }
    Ok(addrs)
}

/// Tries every address in turn, each under `timeout`; the first that answers wins.
pub fn connect_any(addrs: &[SocketAddr], timeout: Duration) -> Result<Dialed, DialError> {
    let mut attempts = Vec::new();
    for &addr in addrs {
        match connect(addr, timeout) {
            Ok(stream) => return Ok(Dialed { stream, addr }),
            Err(e) => attempts.push((addr, e)),
        }
    }
    Err(DialError::Connect { attempts })
}

/// Resolves `host` and connects to the first address that answers.
pub fn dial(host: &str, port: u16, timeout: Duration) -> Result<Dialed, DialError> {
    connect_any(&resolve(host, port)?, timeout)
}

/// One TCP connection with a timeout and TCP_NODELAY: SSH sends whole packets and the
/// targets' protocols are request/response, so Nagle would only hold small writes back.
pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_tcp_nodelay(true)?;
    socket.connect_timeout(&addr.into(), timeout)?;
    Ok(socket.into())
}

/// Kernel-level liveness for the relay socket: TCP keepalive catches a vanished peer while
/// idle, TCP_USER_TIMEOUT a black hole while data is unacknowledged. Both match the
/// keepalive settings (`dead_after` = interval x count), so the kernel never waits out its
/// 15-minute default.
pub fn tune_relay_socket(stream: &TcpStream, interval: Duration, count: u32) {
    let socket = SockRef::from(stream);
    let keepalive = TcpKeepalive::new()
        .with_time(interval)
        .with_interval(interval)
        .with_retries(count);
    if let Err(e) = socket.set_tcp_keepalive(&keepalive) {
        log::debug!("cannot set TCP keepalive on the relay socket: {e}");
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = socket.set_tcp_user_timeout(Some(interval * count)) {
        log::debug!("cannot set TCP_USER_TIMEOUT on the relay socket: {e}");
    }
}

/// TCP keepalive on target sockets, so a target host that vanishes while a connection idles
/// is noticed in minutes, not the kernel's two hours.
pub fn tune_target_socket(stream: &TcpStream) {
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(6);
    if let Err(e) = SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        log::debug!("cannot set TCP keepalive on a target socket: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn refused_keeps_the_kind_and_every_address() {
        // A port that was just free: nothing listens there.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let err = dial("127.0.0.1", port, Duration::from_secs(2)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        assert!(
            err.to_string().starts_with(&format!("127.0.0.1:{port}: ")),
            "{err}"
        );
    }

    #[test]
    fn reaches_a_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let dialed = dial("127.0.0.1", addr.port(), Duration::from_secs(2)).unwrap();
        assert_eq!(dialed.addr, addr);
    }

    #[test]
    fn unresolvable_name_is_a_resolve_error() {
        let err = resolve("no-such-host.invalid", 22).unwrap_err();
        assert!(err.is_resolve(), "{err}");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}

//! Reaching the relay: resolve, TCP connect (socket2-tuned), SSH handshake with AES-256,
//! host key verification before anything else is sent, then key or certificate auth.
//! Each phase is its own function so `flytube check` can time and report them one by one.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

use crate::error::{Error, Result};
use crate::hostkey::{self, KnownEntries, PresentedKey};
use crate::settings::Settings;

/// A session that passed host key verification and authentication.
pub struct Connected {
    /// The libssh2 session, still in blocking mode.
    pub session: ssh2::Session,
    /// A clone of the session's socket, used only to shut it down and set options.
    pub control: TcpStream,
    /// The relay address the TCP connection reached.
    pub peer: SocketAddr,
}

/// What the handshake negotiated, for logs and `flytube check`.
#[derive(Debug, Clone)]
pub struct Negotiated {
    /// The relay's SSH identification string.
    pub banner: String,
    /// Key exchange method.
    pub kex: String,
    /// Cipher client to server.
    pub cipher: String,
    /// The relay's host key.
    pub host_key: PresentedKey,
}

/// Resolves the relay name afresh (DNS may have changed since the last attempt).
pub fn resolve(settings: &Settings) -> Result<Vec<SocketAddr>> {
    let relay = settings.relay();
    let addrs: Vec<SocketAddr> = (settings.relay_host.as_str(), settings.relay_port)
        .to_socket_addrs()
        .map_err(|e| Error::Connect {
            relay: relay.clone(),
            detail: format!("cannot resolve {:?}: {e}", settings.relay_host),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Error::Connect {
            relay,
            detail: format!("{:?} resolved to no address", settings.relay_host),
        });
    }
    Ok(addrs)
}

/// Tries every address in turn, each under the connect timeout.
pub fn connect_tcp(settings: &Settings, addrs: &[SocketAddr]) -> Result<TcpStream> {
    let mut failures = Vec::new();
    for addr in addrs {
        match dial(*addr, settings.connect_timeout) {
            Ok(stream) => {
                tune_relay_socket(&stream, settings);
                return Ok(stream);
            }
            Err(e) => failures.push(format!("{addr}: {e}")),
        }
    }
    Err(Error::Connect {
        relay: settings.relay(),
        detail: failures.join("; "),
    })
}

/// One TCP connection with a timeout and TCP_NODELAY (SSH packets are sent whole; Nagle
/// would only hold small interactive packets back).
pub fn dial(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_tcp_nodelay(true)?;
    socket.connect_timeout(&addr.into(), timeout)?;
    Ok(socket.into())
}

/// Kernel-level liveness for the relay socket: TCP keepalive catches a vanished peer while
/// idle, TCP_USER_TIMEOUT a black hole while data is unacknowledged. Both match the
/// configured interval x count, so the kernel never waits out its 15-minute default.
fn tune_relay_socket(stream: &TcpStream, settings: &Settings) {
    let socket = SockRef::from(stream);
    let interval = settings.keepalive_interval;
    let keepalive = TcpKeepalive::new()
        .with_time(interval)
        .with_interval(interval)
        .with_retries(settings.keepalive_count);
    if let Err(e) = socket.set_tcp_keepalive(&keepalive) {
        log::debug!("cannot set TCP keepalive on the relay socket: {e}");
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = socket.set_tcp_user_timeout(Some(interval * settings.keepalive_count)) {
        log::debug!("cannot set TCP_USER_TIMEOUT on the relay socket: {e}");
    }
}

/// The known_hosts entries for the relay, with skipped lines logged once.
pub fn known_entries(session: &ssh2::Session, settings: &Settings) -> Result<Option<KnownEntries>> {
    let Some(path) = &settings.host_key.known_hosts else {
        return Ok(None);
    };
    let entries =
        hostkey::read_known_hosts(session, path, &settings.relay_host, settings.relay_port)
            .map_err(Error::Config)?;
    for problem in &entries.skipped {
        log::warn!("known_hosts {}: skipped {problem}", path.display());
    }
    Ok(Some(entries))
}

/// SSH handshake under the handshake timeout, offering only the configured ciphers and
/// plain host key types. Returns the session and what was negotiated; the host key is
/// not yet trusted.
pub fn handshake(
    stream: TcpStream,
    settings: &Settings,
    known: Option<&KnownEntries>,
) -> Result<(ssh2::Session, Negotiated)> {
    let relay = settings.relay();
    let fail = |detail: String| Error::Handshake {
        relay: relay.clone(),
        detail,
    };
    let mut session =
        ssh2::Session::new().map_err(|e| fail(format!("cannot create session: {e}")))?;
    session.set_timeout(duration_ms(settings.handshake_timeout));
    let ciphers = settings.ciphers.join(",");
    for method in [ssh2::MethodType::CryptCs, ssh2::MethodType::CryptSc] {
        session
            .method_pref(method, &ciphers)
            .map_err(|e| fail(format!("cipher list {ciphers:?} refused by libssh2: {e}")))?;
    }
    let known_types = known.map(KnownEntries::key_types).unwrap_or_default();
    session
        .method_pref(
            ssh2::MethodType::HostKey,
            &hostkey::host_key_preference(&known_types),
        )
        .map_err(|e| fail(format!("host key algorithms refused by libssh2: {e}")))?;
    session.set_tcp_stream(stream);
    session.handshake().map_err(|e| {
        fail(match e.code() {
            ssh2::ErrorCode::Session(-9) | ssh2::ErrorCode::Session(-30) => format!(
                "no answer within {}s: is {relay} an SSH server?",
                settings.handshake_timeout.as_secs()
            ),
            ssh2::ErrorCode::Session(-5) => format!(
                "no common key exchange, cipher or host key algorithm (we offer ciphers {ciphers}): {}",
                e.message()
            ),
            _ => e.message().to_string(),
        })
    })?;
    // A key that cannot be read cannot be verified: refuse the relay, as for a mismatch.
    let host_key = PresentedKey::from_session(&session).map_err(|detail| Error::HostKey {
        relay: relay.clone(),
        detail,
    })?;
    let negotiated = Negotiated {
        banner: session.banner().unwrap_or("").to_string(),
        kex: session
            .methods(ssh2::MethodType::Kex)
            .unwrap_or("")
            .to_string(),
        cipher: session
            .methods(ssh2::MethodType::CryptCs)
            .unwrap_or("")
            .to_string(),
        host_key,
    };
    Ok((session, negotiated))
}

/// Public key or certificate authentication. The error says what was offered.
pub fn authenticate(session: &ssh2::Session, settings: &Settings) -> Result<()> {
    let target = format!("{}@{}", settings.user, settings.relay());
    let offered = match &settings.certificate {
        Some(cert) => format!(
            "key {} with certificate {}",
            settings.identity.display(),
            cert.display()
        ),
        None => format!("key {}", settings.identity.display()),
    };
    let result = session.userauth_pubkey_file(
        &settings.user,
        settings.certificate.as_deref(),
        Path::new(&settings.identity),
        settings.passphrase.as_ref().map(|p| p.expose()),
    );
    match result {
        Ok(()) if session.authenticated() => Ok(()),
        Ok(()) => Err(Error::Auth {
            relay: target,
            detail: format!("the relay did not accept {offered}"),
        }),
        Err(e) => Err(Error::Auth {
            relay: target,
            detail: match e.code() {
                ssh2::ErrorCode::Session(-16) => format!(
                    "cannot use {offered}: wrong passphrase or unsupported key format ({})",
                    e.message()
                ),
                ssh2::ErrorCode::Session(-18) | ssh2::ErrorCode::Session(-19) => format!(
                    "the relay rejected {offered}; check that the relay trusts this key (or the \
                     certificate's CA), that the certificate is valid now and lists the \
                     principal {:?}",
                    settings.user
                ),
                _ => format!("{offered}: {}", e.message()),
            },
        }),
    }
}

/// Every phase in order: the session a tunnel runs on.
pub fn connect(settings: &Settings) -> Result<(Connected, Negotiated)> {
    let addrs = resolve(settings)?;
    let stream = connect_tcp(settings, &addrs)?;
    let peer = stream.peer_addr().map_err(|e| Error::Connect {
        relay: settings.relay(),
        detail: e.to_string(),
    })?;
    let control = stream
        .try_clone()
        .map_err(|e| Error::Local(format!("clone socket: {e}")))?;
    let known = {
        // A throwaway session only to build the known_hosts matcher before the handshake.
        let scratch = ssh2::Session::new().map_err(|e| Error::Local(e.to_string()))?;
        known_entries(&scratch, settings)?
    };
    let (session, negotiated) = match handshake(stream, settings, known.as_ref()) {
        Ok(done) => done,
        Err(e) => {
            let _ = control.shutdown(std::net::Shutdown::Both);
            return Err(e);
        }
    };
    let verified = hostkey::verify(
        &negotiated.host_key,
        &settings.host_key,
        known.as_ref(),
        &settings.relay_host,
        settings.relay_port,
    );
    if let Err(detail) = verified {
        // Nothing more is sent to a relay we do not trust.
        let _ = control.shutdown(std::net::Shutdown::Both);
        return Err(Error::HostKey {
            relay: settings.relay(),
            detail,
        });
    }
    if let Err(e) = authenticate(&session, settings) {
        let _ = control.shutdown(std::net::Shutdown::Both);
        return Err(e);
    }
    Ok((
        Connected {
            session,
            control,
            peer,
        },
        negotiated,
    ))
}

/// A duration as libssh2's millisecond timeout, saturating instead of wrapping.
pub fn duration_ms(d: Duration) -> u32 {
    d.as_millis().min(u128::from(u32::MAX)) as u32
}

//! Reaching the relay: resolve, TCP connect (socket2-tuned; or through a proxy: resolve
//! and connect to it, then CONNECT or SOCKS5 to the relay), SSH handshake with AES-256,
//! host key verification before anything else is sent, then key or certificate auth.
//! Each phase is its own function so `flytube check` can time and report them one by one.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::diagnose;
use crate::error::{Error, Result};
use crate::hostkey::{self, KnownEntries, PresentedKey};
use crate::libssh2::{self as codes, duration_ms};
use crate::net::{self, Dialed};
use crate::proxy::{self, Destination, Opened, ProxyError, ProxyUrl};
use crate::settings::Settings;

/// A session that passed host key verification and authentication.
pub struct Connected {
    /// The libssh2 session, still in blocking mode.
    pub session: ssh2::Session,
    /// A clone of the session's socket, used only to shut it down and set options.
    pub control: TcpStream,
    /// The address the TCP connection reached: the relay's, or the proxy's.
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
    /// MAC client to server; for an AEAD cipher, libssh2's name for "inside the cipher".
    pub mac: String,
    /// The relay's host key.
    pub host_key: PresentedKey,
}

impl Negotiated {
    /// The cipher, and the MAC beside it unless the cipher authenticates itself (AEAD).
    pub fn cipher_and_mac(&self) -> String {
        let aead = self.cipher.contains("-gcm@") || self.cipher.starts_with("chacha20-poly1305");
        if aead || self.mac.is_empty() {
            self.cipher.clone()
        } else {
            format!("{} with {}", self.cipher, self.mac)
        }
    }
}

/// Resolves the relay name afresh (DNS may have changed since the last attempt).
pub fn resolve(settings: &Settings) -> Result<Vec<SocketAddr>> {
    let relay = &settings.relay;
    net::resolve(&relay.host, relay.port).map_err(|source| Error::Connect {
        relay: relay.address(),
        source,
    })
}

/// Tries every address in turn, each under the connect timeout, and tunes the socket that
/// answered for liveness.
pub fn connect_tcp(settings: &Settings, addrs: &[SocketAddr]) -> Result<Dialed> {
    let dialed = net::connect_any(addrs, settings.relay.connect_timeout).map_err(|source| {
        Error::Connect {
            relay: settings.relay.address(),
            source,
        }
    })?;
    let keepalive = settings.keepalive;
    net::tune_relay_socket(&dialed.stream, keepalive.interval, keepalive.count);
    Ok(dialed)
}

/// The byte stream the SSH session runs on: a TCP connection to the relay, or one to the
/// proxy with a tunnel to the relay opened on it. `addr` is the address TCP reached.
pub fn open_stream(settings: &Settings) -> Result<Dialed> {
    let Some(proxy) = settings.relay.proxy.proxy() else {
        let addrs = resolve(settings)?;
        return connect_tcp(settings, &addrs);
    };
    let destinations = proxy_destinations(settings, proxy)?;
    let fail = |source| Error::Proxy {
        proxy: proxy.to_string(),
        relay: settings.relay.address(),
        source: Box::new(source),
    };
    let addrs = net::resolve(&proxy.host, proxy.port).map_err(|e| fail(ProxyError::Dial(e)))?;
    let tunnel = open_tunnel(settings, proxy, &addrs, &destinations).map_err(fail)?;
    log::info!(
        "proxy {proxy} ({}) opened a tunnel to relay {} in {} ms: {}",
        tunnel.dialed.addr,
        tunnel.destination,
        (tunnel.connected + tunnel.opened.elapsed).as_millis(),
        tunnel.opened.answer
    );
    Ok(tunnel.dialed)
}

/// What the proxy may be asked to connect to: the relay's name and port, or with
/// `socks5://` each of its addresses, resolved here afresh.
pub fn proxy_destinations(settings: &Settings, proxy: &ProxyUrl) -> Result<Vec<Destination>> {
    let relay = &settings.relay;
    let resolved = if proxy.resolves_locally() && relay.host.parse::<IpAddr>().is_err() {
        resolve(settings)?
    } else {
        Vec::new()
    };
    Ok(Destination::for_relay(
        proxy,
        &relay.host,
        relay.port,
        &resolved,
    ))
}

/// A tunnel through the proxy, and what it took.
#[derive(Debug)]
pub struct Tunnel {
    /// The connection to the proxy, now carrying the relay's bytes.
    pub dialed: Dialed,
    /// The proxy's answer.
    pub opened: Opened,
    /// The destination the proxy connected to.
    pub destination: Destination,
    /// Time to connect to the proxy (the last attempt).
    pub connected: Duration,
}

/// Connects to the proxy (each of `addrs` in turn, under the connect timeout; the socket
/// tuned as the relay's would be, since it carries the session) and asks it for a tunnel,
/// answer within the connect timeout. With several destinations (the relay's addresses
/// under `socks5://`), an address the proxy cannot reach is followed by the next one, on
/// a new connection.
pub fn open_tunnel(
    settings: &Settings,
    proxy: &ProxyUrl,
    addrs: &[SocketAddr],
    destinations: &[Destination],
) -> std::result::Result<Tunnel, ProxyError> {
    let limit = settings.relay.connect_timeout;
    let keepalive = settings.keepalive;
    let mut left = destinations.len();
    for destination in destinations {
        left -= 1;
        let started = Instant::now();
        let mut dialed = net::connect_any(addrs, limit).map_err(ProxyError::Dial)?;
        let connected = started.elapsed();
        net::tune_relay_socket(&dialed.stream, keepalive.interval, keepalive.count);
        match proxy::open(&mut dialed.stream, proxy, destination, limit) {
            Ok(opened) => {
                return Ok(Tunnel {
                    dialed,
                    opened,
                    destination: destination.clone(),
                    connected,
                });
            }
            Err(e @ ProxyError::SocksReply { code: 3..=6, .. }) if left > 0 => {
                log::debug!("proxy {proxy}: {e}; trying the relay's next address");
            }
            Err(e) => return Err(e),
        }
    }
    Err(ProxyError::Malformed(
        "no destination to ask the proxy for".into(),
    ))
}

/// The known_hosts entries for the relay, read before the handshake so that only the key
/// types listed there are offered; skipped lines are logged.
pub fn load_known_hosts(settings: &Settings) -> Result<Option<KnownEntries>> {
    let Some(path) = &settings.host_key.known_hosts else {
        return Ok(None);
    };
    let entries = hostkey::read_known_hosts(path, &settings.relay.host, settings.relay.port)
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
    let relay = settings.relay.address();
    let fail = |detail: String| Error::Handshake {
        relay: relay.clone(),
        detail,
    };
    let mut session =
        ssh2::Session::new().map_err(|e| fail(format!("cannot create session: {e}")))?;
    session.set_timeout(duration_ms(settings.relay.handshake_timeout));
    let ciphers = settings.ciphers.join(",");
    for method in [ssh2::MethodType::CryptCs, ssh2::MethodType::CryptSc] {
        session
            .method_pref(method, &ciphers)
            .map_err(|e| fail(format!("cipher list {ciphers:?} refused by libssh2: {e}")))?;
    }
    // MACs as `ssh` offers them (umac-64-etm@openssh.com first), not libssh2's order, so a
    // CTR cipher gets the MAC `ssh -R` would get. Left to libssh2 if it has none of them.
    let supported = session
        .supported_algs(ssh2::MethodType::MacCs)
        .map_err(|e| fail(format!("cannot list libssh2's MACs: {e}")))?;
    let macs = codes::mac_preference(&supported).join(",");
    if !macs.is_empty() {
        for method in [ssh2::MethodType::MacCs, ssh2::MethodType::MacSc] {
            session
                .method_pref(method, &macs)
                .map_err(|e| fail(format!("MAC list {macs:?} refused by libssh2: {e}")))?;
        }
    }
    let known_types = known.map(KnownEntries::key_types).unwrap_or_default();
    let host_keys = hostkey::host_key_preference(&known_types);
    session
        .method_pref(ssh2::MethodType::HostKey, &host_keys)
        .map_err(|e| fail(format!("host key algorithms refused by libssh2: {e}")))?;
    let peer = stream.peer_addr().ok();
    session.set_tcp_stream(stream);
    session.handshake().map_err(|e| {
        let ours = diagnose::OurOffer {
            ciphers: &settings.ciphers,
            host_keys: &host_keys,
            macs: &macs,
        };
        fail(explain_handshake_error(&e, &relay, peer, &ours))
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
        mac: session
            .methods(ssh2::MethodType::MacCs)
            .unwrap_or("")
            .to_string(),
        host_key,
    };
    Ok((session, negotiated))
}

/// What a failed handshake means. The codes that hide several causes (no algorithm in
/// common or garbage; a silent port or another protocol; a closed connection) get a second,
/// short look at the server to say which.
fn explain_handshake_error(
    error: &ssh2::Error,
    relay: &str,
    peer: Option<SocketAddr>,
    ours: &diagnose::OurOffer,
) -> String {
    let ambiguous = matches!(
        codes::code(error),
        Some(
            codes::LIBSSH2_ERROR_TIMEOUT
                | codes::LIBSSH2_ERROR_SOCKET_TIMEOUT
                | codes::LIBSSH2_ERROR_KEX_FAILURE
                | codes::LIBSSH2_ERROR_BANNER_RECV
                | codes::LIBSSH2_ERROR_SOCKET_DISCONNECT
                | codes::LIBSSH2_ERROR_SOCKET_RECV
        )
    );
    match peer {
        Some(addr) if ambiguous => {
            let seen = diagnose::probe(addr);
            format!(
                "{} (libssh2: {})",
                diagnose::explain(relay, &seen, ours),
                error.message()
            )
        }
        _ => error.message().to_string(),
    }
}

/// Public key or certificate authentication. The error says what was offered.
pub fn authenticate(session: &ssh2::Session, settings: &Settings) -> Result<()> {
    let target = format!("{}@{}", settings.relay.user, settings.relay.address());
    let offered = match &settings.auth.certificate {
        Some(cert) => format!(
            "key {} with certificate {}",
            settings.auth.identity.display(),
            cert.display()
        ),
        None => format!("key {}", settings.auth.identity.display()),
    };
    let result = session.userauth_pubkey_file(
        &settings.relay.user,
        settings.auth.certificate.as_deref(),
        Path::new(&settings.auth.identity),
        settings.auth.passphrase.as_ref().map(|p| p.expose()),
    );
    match result {
        Ok(()) if session.authenticated() => Ok(()),
        Ok(()) => Err(Error::Auth {
            relay: target,
            detail: format!("the relay did not accept {offered}"),
        }),
        Err(e) => Err(Error::Auth {
            relay: target,
            detail: match codes::code(&e) {
                Some(codes::LIBSSH2_ERROR_FILE) => format!(
                    "cannot use {offered}: wrong passphrase or unsupported key format ({})",
                    e.message()
                ),
                Some(
                    codes::LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED
                    | codes::LIBSSH2_ERROR_AUTHENTICATION_FAILED,
                ) => format!(
                    "the relay rejected {offered}; check that the relay trusts this key (or the \
                     certificate's CA), that the certificate is valid now and lists the \
                     principal {:?}",
                    settings.relay.user
                ),
                _ => format!("{offered}: {}", e.message()),
            },
        }),
    }
}

/// Every phase in order: the session a tunnel runs on.
pub fn connect(settings: &Settings) -> Result<(Connected, Negotiated)> {
    let Dialed { stream, addr: peer } = open_stream(settings)?;
    let control = stream
        .try_clone()
        .map_err(|e| Error::Local(format!("clone socket: {e}")))?;
    let known = load_known_hosts(settings)?;
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
        &settings.relay.host,
        settings.relay.port,
    );
    if let Err(detail) = verified {
        // Nothing more is sent to a relay we do not trust.
        let _ = control.shutdown(std::net::Shutdown::Both);
        return Err(Error::HostKey {
            relay: settings.relay.address(),
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

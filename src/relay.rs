//! Reaching the relay: resolve, TCP connect (socket2-tuned), SSH handshake with AES-256,
//! host key verification before anything else is sent, then key or certificate auth.
//! Each phase is its own function so `flytube check` can time and report them one by one.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;

use crate::diagnose;
use crate::error::{Error, Result};
use crate::hostkey::{self, KnownEntries, PresentedKey};
use crate::libssh2::{self as codes, duration_ms};
use crate::net::{self, Dialed};
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
    let addrs = resolve(settings)?;
    let Dialed { stream, addr: peer } = connect_tcp(settings, &addrs)?;
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

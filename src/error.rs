//! The one error type of flytube: every message names the phase that failed and the peer.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::net::DialError;
use crate::proxy::ProxyError;

/// Exit code for a configuration error (sysexits `EX_CONFIG`).
pub const EXIT_CONFIG: i32 = 78;
/// Exit code for a security refusal: the relay's host key did not verify, or the relay
/// rejected our key on the first attempt (sysexits `EX_NOPERM`).
pub const EXIT_NOPERM: i32 = 77;
/// Exit code for `flytube check` when a step of the path is broken (sysexits `EX_UNAVAILABLE`).
pub const EXIT_UNAVAILABLE: i32 = 69;
/// Exit code for anything else that stopped flytube.
pub const EXIT_OTHER: i32 = 1;

/// Everything that can stop a phase of flytube.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The settings are invalid; nothing was started.
    Config(String),
    /// A file named in the settings could not be read.
    File {
        /// What the file is for ("identity", "known_hosts", ...).
        role: &'static str,
        /// The path as configured.
        path: PathBuf,
        /// Why it could not be read.
        source: io::Error,
    },
    /// The relay name did not resolve or no TCP connection could be made.
    Connect {
        /// `host:port` of the relay.
        relay: String,
        /// What went wrong, with the `io::Error` of each address tried.
        source: DialError,
    },
    /// The proxy could not be reached, or it did not open a tunnel to the relay. Retried
    /// like any connection failure: a proxy refusal is never fatal.
    Proxy {
        /// The proxy URL, password masked.
        proxy: String,
        /// `host:port` of the relay.
        relay: String,
        /// What went wrong, with the proxy's answer (boxed: it is large and rare).
        source: Box<ProxyError>,
    },
    /// The SSH handshake with the relay failed.
    Handshake {
        /// `host:port` of the relay.
        relay: String,
        /// What went wrong.
        detail: String,
    },
    /// The relay presented a host key that the settings do not trust.
    HostKey {
        /// `host:port` of the relay.
        relay: String,
        /// What was presented and what was expected.
        detail: String,
    },
    /// The relay rejected our key or certificate.
    Auth {
        /// `user@host:port`.
        relay: String,
        /// What was offered and what the relay said.
        detail: String,
    },
    /// The established session broke.
    Session {
        /// `host:port` of the relay.
        relay: String,
        /// What went wrong.
        detail: String,
    },
    /// A local resource (thread, socket pair) could not be created.
    Local(String),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::File { .. } => EXIT_CONFIG,
            Error::HostKey { .. } | Error::Auth { .. } => EXIT_NOPERM,
            _ => EXIT_OTHER,
        }
    }

    /// True for errors that another attempt cannot fix without a human
    /// (bad settings, an untrusted relay). A proxy's refusal is not one: proxies get
    /// reconfigured, and their upstreams come back.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Error::Config(_) | Error::File { .. } | Error::HostKey { .. }
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(msg) => write!(f, "configuration: {msg}"),
            Error::File { role, path, source } => {
                write!(
                    f,
                    "configuration: cannot read {role} file {}: {source}",
                    path.display()
                )
            }
            Error::Connect { relay, source } => write!(f, "connect to relay {relay}: {source}"),
            Error::Proxy {
                proxy,
                relay,
                source,
            } => write!(
                f,
                "connect to relay {relay} through proxy {proxy}: {source}"
            ),
            Error::Handshake { relay, detail } => {
                write!(f, "ssh handshake with relay {relay}: {detail}")
            }
            Error::HostKey { relay, detail } => {
                write!(f, "host key of relay {relay} is not trusted: {detail}")
            }
            Error::Auth { relay, detail } => {
                write!(f, "authentication failed as {relay}: {detail}")
            }
            Error::Session { relay, detail } => write!(f, "session with relay {relay}: {detail}"),
            Error::Local(msg) => write!(f, "local: {msg}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::File { source, .. } => Some(source),
            Error::Connect { source, .. } => Some(source),
            Error::Proxy { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_refusal_is_retried_and_names_both_ends() {
        let e = Error::Proxy {
            proxy: "http://bob:MASKED@proxy:3128".into(),
            relay: "relay:22".into(),
            source: Box::new(ProxyError::Http {
                status: 403,
                reason: "Forbidden".into(),
                target: "relay:22".into(),
                schemes: vec![],
                user: Some("bob".into()),
            }),
        };
        assert!(!e.is_permanent());
        assert_eq!(e.exit_code(), EXIT_OTHER);
        assert_eq!(
            e.to_string(),
            "connect to relay relay:22 through proxy http://bob:MASKED@proxy:3128: the proxy \
             forbids CONNECT to relay:22 (403 Forbidden)"
        );
    }
}

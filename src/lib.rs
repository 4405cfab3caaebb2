//! flytube: a private connector daemon. It opens one outbound SSH connection to a relay,
//! asks for remote port forwards, and serves every forwarded connection by dialing its
//! target from inside the network.
//!
//! Shape: `settings` validates everything first; the `supervisor` connects through `relay`
//! and runs the `pump`, the single owner of the libssh2 session, which hands each
//! connection to a `worker` (a thread that dials and writes the target; the pump reads it) and is guarded by the
//! `watchdog`.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod backoff;
pub mod busy_poll;
pub mod cert;
pub mod check;
pub mod cli;
pub mod config;
pub mod conn;
pub mod diagnose;
pub mod downstream;
pub mod dynamic;
pub mod error;
pub mod forward;
#[allow(unsafe_code)]
pub mod heap;
pub mod hold;
pub mod hostkey;
pub mod keyfile;
#[allow(unsafe_code)]
pub mod libssh2;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod pool;
pub mod proxy;
pub mod pump;
pub mod relay;
pub mod secret;
pub mod settings;
pub mod signals;
pub mod splice;
pub mod state;
pub mod supervisor;
pub mod sync;
pub mod text;
#[allow(unsafe_code)]
pub mod wake;
pub mod watchdog;
pub mod worker;

pub use error::{Error, Result};
pub use settings::Settings;

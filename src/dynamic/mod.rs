//! The dynamic forward (`ssh -R [BIND:]PORT` with no target): each connection opens with a
//! proxy handshake, and flytube dials the destination asked for only if the allow-list
//! permits it.
//!
//! The parts: `target` (what was asked for), `handshake` (bytes in, a request out, pure),
//! `reply` (the answer each protocol understands), `rule` (one allow/deny rule), `allow`
//! (the policy and its decision, pure) and `serve`, the blocking glue a worker thread runs
//! with its I/O behind closures.

pub mod allow;
pub mod handshake;
mod http;
pub mod reply;
pub mod rule;
pub mod serve;
pub mod target;

pub use allow::{Decision, Policy};
pub use handshake::{Handshake, Progress, Protocol, Request};
pub use reply::{Outcome, reply};
pub use rule::Rule;
pub use serve::{DEFAULT_HANDSHAKE_TIMEOUT, Negotiated, Refusal, Report, negotiate};
pub use target::{Host, Target};

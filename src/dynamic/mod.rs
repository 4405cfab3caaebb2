//! The dynamic forward (`ssh -R [BIND:]PORT` with no target): each connection opens with a
//! proxy handshake, and flytube dials the destination asked for only if the allow-list
//! permits it.
//!
//! The parts are pure and unit-tested on their own: `target` (what was asked for),
//! `handshake` (bytes in, a request out), `reply` (the answer each protocol
//! understands) and `allow` (the allow/deny rules and the decision).

pub mod allow;
pub mod handshake;
pub mod reply;
pub mod target;

pub use allow::{Decision, Policy, Rule};
pub use handshake::{Handshake, Progress, Protocol, Request};
pub use reply::{Outcome, reply};
pub use target::{Host, Target};

//! Test fixtures, one module each; test files `use common::*`.

// Each test file uses only some of the fixtures.
#![allow(dead_code, unused_imports)]

mod faults;
mod flytube;
mod process;
mod procfs;
mod relay;
mod scratch;
mod targets;

pub use faults::*;
pub use flytube::*;
pub use process::*;
pub use procfs::*;
pub use relay::*;
pub use scratch::*;
pub use targets::*;

#!/usr/bin/env bash
# Runs every check a change must pass: formatting, clippy, and the tests (unit tests and
# integration tests against a throwaway OpenSSH sshd on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked

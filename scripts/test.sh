#!/usr/bin/env bash
# The project's test command: installs what the tests need (idempotently), then runs format,
# lint and every test. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Rust toolchain comes with the machine; rustfmt and clippy are rustup components.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked

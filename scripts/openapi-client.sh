#!/usr/bin/env bash
# The OpenAPI document is fit for client generators: openapi-spec-validator (PyPI) validates
# the committed document and the one a node serves, openapi-python-client (PyPI, a mainstream
# generator) generates a Python client from the served one, and that client drives publish,
# update, deprecate (with and without a body), get, history, list, entries and verify against a
# real hub of the debug build (scripts/openapi_client_drive.py). Called by scripts/test.sh
# after `cargo test` built the binary.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v openapi-spec-validator >/dev/null 2>&1 || ! command -v openapi-python-client >/dev/null 2>&1; then
  python3 -m pip install --quiet 'openapi-spec-validator>=0.7,<1' 'openapi-python-client>=0.26,<1'
fi

bin=target/debug/sorcha-peer
token=openapi-client-admin-token-0123456789
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/hub" --admin-token "$token" \
  --role hub >"$work/hub.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=0.5)" 2>/dev/null; then
    break
  fi
  sleep 0.1
done
python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/openapi.json', timeout=5).read()" \
  || { echo "hub did not start:" >&2; cat "$work/hub.log" >&2; exit 1; }

python3 -c "import urllib.request; open('$work/served.json', 'wb').write(urllib.request.urlopen('http://127.0.0.1:$port/openapi.json', timeout=5).read())"
openapi-spec-validator openapi/openapi.json "$work/served.json"

# No post hooks: the generated code is used as generated (no formatter needed).
printf 'post_hooks: []\npackage_name_override: sorcha_client\n' >"$work/generator.yaml"
(cd "$work" && openapi-python-client generate --path served.json --config generator.yaml \
  --meta none --output-path client/sorcha_client)
PYTHONPATH="$work/client" timeout 120 python3 scripts/openapi_client_drive.py "http://127.0.0.1:$port" "$token"

#!/usr/bin/env bash
# Runs flytube end to end on this machine against a throwaway local relay:
# generates a host key, a user CA and a signed client certificate, starts OpenSSH sshd on
# 127.0.0.1, starts a small web server as the "private" target, runs flytube, and sends a
# request through the tunnel. Everything lives in a temporary directory and is removed
# at the end. DEMO_KEEP=1 keeps the tunnel up until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release --locked -q
bin=$PWD/target/release/flytube

. scripts/relay.sh
user=$(id -un)
echo "== relay: OpenSSH sshd on 127.0.0.1, with a fresh host key, user CA and a certificate for '$user'"
start_relay demo "ClientAliveInterval 15
ClientAliveCountMax 3"
echo "   listening on 127.0.0.1:$relay_port"
source_port=$(free_port); target_port=$(free_port)

echo "== private target: web server on 127.0.0.1:$target_port"
mkdir -p "$dir/www"
echo "hello from inside the network ($(hostname))" > "$dir/www/index.html"
python3 -m http.server --bind 127.0.0.1 --directory "$dir/www" "$target_port" >/dev/null 2>&1 & pids+=($!)

echo "== flytube: relay port $source_port -> 127.0.0.1:$target_port"
"$bin" run --relay "127.0.0.1:$relay_port" --user "$relay_user" \
  -i "$relay_identity" --known-hosts "$relay_known_hosts" \
  -R "127.0.0.1:$source_port:127.0.0.1:$target_port" 2> >(tee "$dir/flytube.log" >&2) &
flytube_pid=$!; pids+=($flytube_pid)

for _ in $(seq 100); do
  grep -q "serving" "$dir/flytube.log" 2>/dev/null && break
  sleep 0.1
done
grep -q "serving" "$dir/flytube.log" || { echo "flytube did not come up; sshd log:" >&2; cat "$dir/sshd.log" >&2; exit 1; }

echo "== request to the relay's port $source_port, answered from inside the network:"
python3 -c "import urllib.request,sys; print(urllib.request.urlopen('http://127.0.0.1:$source_port/', timeout=10).read().decode().strip())"

if [ "${DEMO_KEEP:-0}" = 1 ]; then
  echo "== tunnel up; try: curl http://127.0.0.1:$source_port/  (Ctrl-C stops)"
  wait "$flytube_pid"
else
  kill -TERM "$flytube_pid"
  wait "$flytube_pid" && echo "== flytube stopped cleanly (exit 0)"
fi

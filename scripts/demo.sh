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

dir=$(mktemp -d /tmp/flytube-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
user=$(id -un)
relay_port=$(free_port); source_port=$(free_port); target_port=$(free_port)

echo "== keys: relay host key, user CA, client key + certificate for '$user'"
ssh-keygen -q -t ed25519 -N '' -f "$dir/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -f "$dir/ca"
ssh-keygen -q -t ed25519 -N '' -f "$dir/id_ed25519"
ssh-keygen -q -s "$dir/ca" -I demo -n "$user" -V -5m:+1h "$dir/id_ed25519.pub"
echo "[127.0.0.1]:$relay_port $(cut -d' ' -f1,2 "$dir/host_ed25519.pub")" > "$dir/known_hosts"

echo "== relay: OpenSSH sshd on 127.0.0.1:$relay_port"
cat > "$dir/sshd_config" <<CONF
ListenAddress 127.0.0.1:$relay_port
HostKey $dir/host_ed25519
PidFile $dir/sshd.pid
TrustedUserCAKeys $dir/ca.pub
AuthorizedKeysFile none
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding remote
ClientAliveInterval 15
ClientAliveCountMax 3
CONF
/usr/sbin/sshd -D -f "$dir/sshd_config" -E "$dir/sshd.log" & pids+=($!)

echo "== private target: web server on 127.0.0.1:$target_port"
mkdir -p "$dir/www"
echo "hello from inside the network ($(hostname))" > "$dir/www/index.html"
python3 -m http.server --bind 127.0.0.1 --directory "$dir/www" "$target_port" >/dev/null 2>&1 & pids+=($!)

echo "== flytube: relay port $source_port -> 127.0.0.1:$target_port"
"$bin" run --relay "127.0.0.1:$relay_port" --user "$user" \
  -i "$dir/id_ed25519" --known-hosts "$dir/known_hosts" \
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

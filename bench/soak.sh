#!/usr/bin/env bash
# Keepalive soak: runs flytube idle against a throwaway local sshd with a 1 s keepalive
# interval (so it probes the relay once a second, 15x the default rate) and samples its
# resident memory and CPU time. Memory and CPU must stay flat: nothing may pile up per probe.
#   bench/soak.sh [SECONDS]   (default 600; 600 s at 1 s = 2.5 h of probes at the default 15 s)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-600}
scripts/deps.sh
cargo build --release --locked -q
bin=$PWD/target/release/flytube
dir=$(mktemp -d /tmp/flytube-soak.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT INT TERM
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
relay_port=$(port); source_port=$(port)
ssh-keygen -q -t ed25519 -N '' -f "$dir/host"; ssh-keygen -q -t ed25519 -N '' -f "$dir/ca"
ssh-keygen -q -t ed25519 -N '' -f "$dir/id"; ssh-keygen -q -s "$dir/ca" -I soak -n "$(id -un)" -V -5m:+1d "$dir/id.pub"
echo "[127.0.0.1]:$relay_port $(cut -d' ' -f1,2 "$dir/host.pub")" > "$dir/kh"
cat > "$dir/sshd_config" <<CONF
ListenAddress 127.0.0.1:$relay_port
HostKey $dir/host
PidFile $dir/sshd.pid
TrustedUserCAKeys $dir/ca.pub
AuthorizedKeysFile none
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
AllowTcpForwarding remote
CONF
/usr/sbin/sshd -D -f "$dir/sshd_config" -E "$dir/sshd.log" & pids+=($!)
sleep 0.5
"$bin" run --relay "127.0.0.1:$relay_port" --user "$(id -un)" -i "$dir/id" --known-hosts "$dir/kh" \
  -R "$source_port:127.0.0.1:9" --keepalive-interval 1 --keepalive-count 3 -v 2>"$dir/flytube.log" &
fly=$!; pids+=($fly)
sleep 2
hz=$(getconf CLK_TCK)
sample() { # prints: rss_kib cpu_seconds
  local rss cpu
  rss=$(awk '/^VmRSS/{print $2}' "/proc/$fly/status")
  cpu=$(awk -v hz="$hz" '{printf "%.2f", ($14+$15)/hz}' "/proc/$fly/stat")
  echo "$rss $cpu"
}
echo "seconds  rss_kib  cpu_s  probes"
start=$(date +%s); first=""; last=""
while :; do
  now=$(( $(date +%s) - start ))
  s=$(sample); probes=$(grep -c "probing" "$dir/flytube.log" || true)
  printf "%7d  %7s  %5s  %6s\n" "$now" ${s} "$probes"
  [ -n "$first" ] || first=$s
  last=$s
  [ "$now" -ge "$duration" ] && break
  sleep 10
done
read -r rss0 cpu0 <<<"$first"; read -r rss1 cpu1 <<<"$last"
probes=$(grep -c "probing" "$dir/flytube.log" || true)
downs=$(grep -c "tunnel down" "$dir/flytube.log" || true)
echo "probes: $probes, sessions lost: $downs"
echo "rss: $rss0 KiB -> $rss1 KiB ($(( rss1 - rss0 )) KiB)"
python3 - "$cpu0" "$cpu1" "$duration" <<'PY'
import sys
c0, c1, d = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"cpu: {c1 - c0:.2f} s over {d:.0f} s = {100 * (c1 - c0) / d:.3f}% of one core")
PY

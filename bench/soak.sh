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
. scripts/relay.sh
start_relay soak
source_port=$(free_port)
"$bin" run --relay "127.0.0.1:$relay_port" --user "$relay_user" -i "$relay_identity" --known-hosts "$relay_known_hosts" \
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

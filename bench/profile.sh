#!/usr/bin/env bash
# Where flytube's time goes under bulk load: runs flytube against a throwaway local sshd,
# pushes iperf3 traffic through it in the given direction, and records a perf profile of
# the flytube process. Prints per-thread CPU and the top symbols.
#   bench/profile.sh [CIPHER] [fwd|rev]     e.g. bench/profile.sh aes256-gcm@openssh.com fwd
# fwd = relay -> target (the platform uploads), rev = target -> relay (iperf3 -R).
set -euo pipefail
cd "$(dirname "$0")/.."
cipher=${1:-aes256-gcm@openssh.com}
direction=${2:-fwd}
command -v perf >/dev/null || { echo "perf is missing: apt-get install -y linux-perf" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "iperf3 is missing: apt-get install -y iperf3" >&2; exit 1; }
cargo build --release --locked -q
bin=$PWD/target/release/flytube
. scripts/relay.sh
start_relay profile "Ciphers $cipher"
source_port=$(free_port); iperf_port=$(free_port)
iperf3 -s -B 127.0.0.1 -p "$iperf_port" >/dev/null 2>&1 & pids+=($!)
sleep 0.5
"$bin" run --relay "127.0.0.1:$relay_port" --user "$relay_user" -i "$relay_identity" --known-hosts "$relay_known_hosts" \
  --ciphers "$cipher" -R "$source_port:127.0.0.1:$iperf_port" 2>"$dir/flytube.log" &
fly=$!; pids+=($fly)
for _ in $(seq 50); do grep -q serving "$dir/flytube.log" && break; sleep 0.1; done
flag=""; [ "$direction" = rev ] && flag="-R"
perf record -q -g -p "$fly" -o "$dir/perf.data" -- sleep 6 >/dev/null 2>&1 &
rec=$!
sleep 0.3
iperf3 -c 127.0.0.1 -p "$source_port" -t 5 $flag -f M | grep -E "sender|receiver"
wait "$rec" || true
echo "== CPU by thread (utime+stime, s)"
hz=$(getconf CLK_TCK)
for t in /proc/$fly/task/*; do awk -v hz="$hz" -v n="$(cat "$t/comm")" '{printf "%-12s %.2f\n", n, ($14+$15)/hz}' "$t/stat"; done | sort -k2 -rn | head -5 || true
echo "== top symbols (self time)"
perf report -i "$dir/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null | grep -E "^ +[0-9]" | head -20 || true
echo "== callers of memmove (libssh2 moves each 16-byte block through a stack buffer)"
perf report -i "$dir/perf.data" --no-children -S __memmove_avx_unaligned_erms -g caller,2,callee,function,percent --stdio 2>/dev/null | grep -E "[0-9]+\.[0-9]+%.*[a-z_]" | head -12 || true
cp "$dir/perf.data" /tmp/flytube-perf.data 2>/dev/null && echo "(perf data kept in /tmp/flytube-perf.data)"

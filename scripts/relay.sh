# Sourced by demo.sh, bench/soak.sh and bench/profile.sh: a throwaway OpenSSH relay on
# 127.0.0.1 in a temporary directory, with a generated host key, a user CA and a client key
# certified for the current user. Everything is removed, and every process in `pids`
# stopped, when the calling script exits.
#
#   start_relay TAG [extra sshd_config lines]
# sets: dir, relay_port, relay_user, relay_identity (cert beside it), relay_known_hosts

pids=()
dir=""
cleanup_relay() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "$dir" ] && rm -rf "$dir"
}
trap cleanup_relay EXIT INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_relay() {
  local tag=$1 extra=${2:-}
  dir=$(mktemp -d "/tmp/flytube-$tag.XXXXXX")
  relay_port=$(free_port)
  relay_user=$(id -un)
  relay_identity=$dir/id_ed25519
  relay_known_hosts=$dir/known_hosts
  ssh-keygen -q -t ed25519 -N '' -f "$dir/host_ed25519"
  ssh-keygen -q -t ed25519 -N '' -f "$dir/ca"
  ssh-keygen -q -t ed25519 -N '' -f "$relay_identity"
  ssh-keygen -q -s "$dir/ca" -I "$tag" -n "$relay_user" -V -5m:+1d "$relay_identity.pub"
  echo "[127.0.0.1]:$relay_port $(cut -d' ' -f1,2 "$dir/host_ed25519.pub")" > "$relay_known_hosts"
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
$extra
CONF
  /usr/sbin/sshd -D -f "$dir/sshd_config" -E "$dir/sshd.log" & pids+=($!)
  local _
  for _ in $(seq 50); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $relay_port), 1).close()" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "sshd did not start:" >&2; cat "$dir/sshd.log" >&2; return 1
}

#!/usr/bin/env bash
# Builds the .deb and the .rpm and checks them as an operator meets them, on this Debian
# machine, as root. Called by .ci/run after the tests. Packages the release build
# (`cargo build --release`, a no-op when it is current).
#
#   1. versions agree: Cargo.toml, packaging/debian/changelog, packaging/rpm/flytube.spec
#   2. .deb: cargo deb (release build reused) + md5sums; lintian --fail-on error,warning;
#      stripped binary; md5sums, conffiles and maintainer scripts present
#   3. .rpm: rpmbuild from the spec; rpm -qlp file list with modes, owners and %config/%doc
#      flags against the expected list; Requires(pre); the scriptlets (rpm -qp --scripts)
#      parse and do what the %systemd_* macros would; a real %description; stripped binary
#   4. both man pages: mandoc -Tlint and man --warnings (the command lintian runs)
#   5. the unit: systemd-analyze security --offline=true, exposure <= 2.0
#   6. installs the .deb: flytube user, /etc/flytube root:flytube 0750, dpkg --verify (the
#      md5sums), unit enabled and clean under systemd-analyze verify, man pages found by man;
#      runs the installed /usr/bin/flytube as the flytube user (runuser) with its key in
#      /etc/flytube against a throwaway OpenSSH relay with one forward, sends a request
#      through it, and stops it with SIGTERM (exit 0); another user cannot read the key;
#      reinstalls it (the upgrade path keeps the admin's files)
#   7. purges it: files, /etc/flytube and the unit's enablement gone (the system user stays)
#   8. packaging/kubernetes/*.yaml against the Kubernetes API schemas (kubernetes-validate
#      --strict, 1.30 and 1.37)
#
# It installs and purges the package: it refuses to run where flytube is already installed.
# Needs (installed by .ci/run): lintian, rpm, mandoc, man-db, file, systemd, openssh-server,
# python3, python3-venv; cargo-deb is installed with cargo if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

CARGO_DEB_VERSION=3.8.0
K8S_VALIDATE_VERSION=1.37.0
K8S_VERSIONS=(1.30.0 1.37.0)

start=$SECONDS
step_start=$SECONDS
step() {
  echo "== [$((SECONDS - step_start)) s] done"
  step_start=$SECONDS
  echo
  echo "== $*"
}
fail() { echo "FAIL: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root: the check installs and purges the .deb"
# (No `cmd | grep -q` with pipefail: grep stops reading, cmd dies of SIGPIPE.)
installed_status() { dpkg-query -W -f='${Status}' flytube 2>/dev/null || true; }
if [[ $(installed_status) == *" installed" ]]; then
  fail "flytube is installed on this machine; the check installs and purges it, so run it elsewhere"
fi
[ ! -e /etc/flytube ] || fail "/etc/flytube exists; the check would purge it"
for tool in lintian rpmbuild rpm rpm2archive mandoc man file systemd-analyze runuser pgrep \
  dpkg-deb /usr/sbin/sshd ssh-keygen python3; do
  command -v "$tool" >/dev/null || fail "$tool is missing (see the header for what to install)"
done

work=$(mktemp -d /tmp/flytube-pkgcheck.XXXXXX)
installed=0
# The throwaway relay (start_relay, free_port, cleanup_relay, pids, dir).
# shellcheck source=scripts/relay.sh
. scripts/relay.sh
cleanup() {
  if [ "$installed" = 1 ]; then
    echo "cleanup: purging flytube" >&2
    rm -f /etc/flytube/check.yaml
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq flytube >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  cleanup_relay || true
}
# Replaces relay.sh's trap, and calls it.
trap cleanup EXIT INT TERM
is_stripped() {
  local out
  out=$(file "$1")
  echo "$out"
  [[ $out == *", stripped" ]]
}

# ---------------------------------------------------------------------------------------
echo "== tools"
if [ "$(cargo deb --version 2>/dev/null || true)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  echo "installing cargo-deb $CARGO_DEB_VERSION (a few minutes, once per machine)"
  t=$SECONDS
  cargo install --locked --quiet "cargo-deb@$CARGO_DEB_VERSION"
  echo "cargo-deb installed in $((SECONDS - t)) s"
fi
cargo deb --version

target_dir=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
echo "target directory: $target_dir"

step "1. versions"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
deb_version=$(sed -n '1s/^flytube (\([^)]*\)).*/\1/p' packaging/debian/changelog)
rpm_version=$(sed -n 's/^Version: *//p' packaging/rpm/flytube.spec)
echo "Cargo.toml $version, debian/changelog $deb_version, flytube.spec $rpm_version"
[ "${deb_version%-*}" = "$version" ] || fail "packaging/debian/changelog is at $deb_version, Cargo.toml at $version"
[ "$rpm_version" = "$version" ] || fail "packaging/rpm/flytube.spec is at $rpm_version, Cargo.toml at $version"

step "2. .deb"
cargo build --release --locked --quiet
rm -rf "$target_dir/debian"
cargo deb --locked --no-build --quiet
deb=$target_dir/debian/flytube_${deb_version}_$(dpkg --print-architecture).deb
[ -f "$deb" ] || fail "cargo deb did not write $deb"
packaging/debian/add-md5sums.sh "$deb"
ls -l "$target_dir/debian/"
dpkg-deb --info "$deb"
for control in md5sums conffiles postinst prerm postrm; do
  dpkg-deb --info "$deb" "$control" >/dev/null 2>&1 || fail "$deb has no $control control file"
done
dpkg-deb -x "$deb" "$work/deb"
is_stripped "$work/deb/usr/bin/flytube" || fail "/usr/bin/flytube in the .deb is not stripped"
echo "-- lintian --fail-on error,warning --display-info"
lintian_rc=0
lintian --fail-on error,warning --display-info "$deb" > "$work/lintian" 2>&1 || lintian_rc=$?
grep -v '^running with root privileges is not recommended!$' "$work/lintian" || true
[ "$lintian_rc" -eq 0 ] || fail "lintian reports errors or warnings for $deb (exit $lintian_rc)"
echo "lintian: no errors, no warnings"

step "3. .rpm"
rm -rf "$target_dir/rpmbuild"
rpmbuild -bb --quiet packaging/rpm/flytube.spec --define "_topdir $target_dir/rpmbuild" \
  --define "_sourcedir $repo" --define "flytube_bin $target_dir/release/flytube"
rpm_arch=$(rpm --eval '%{_target_cpu}')
rpm=$target_dir/rpmbuild/RPMS/$rpm_arch/flytube-${version}-1.$rpm_arch.rpm
[ -f "$rpm" ] || fail "rpmbuild did not write $rpm"
rpm -qip "$rpm"
echo "-- rpm -qlp (modes, owners, %config/%doc flags; build-id links left out)"
rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" \
  | awk '$3 != "a"' | tee "$work/rpm-files"
cat > "$work/rpm-files.expected" <<'LIST'
drwxr-x--- root:flytube  /etc/flytube
-rw-r--r-- root:root cn /etc/flytube/flytube.yaml.example
-rwxr-xr-x root:root  /usr/bin/flytube
-rw-r--r-- root:root  /usr/lib/systemd/system/flytube.service
-rw-r--r-- root:root  /usr/lib/sysusers.d/flytube-sysusers.conf
drwxr-xr-x root:root  /usr/share/doc/flytube
-rw-r--r-- root:root d /usr/share/doc/flytube/flytube.yaml.example
-rw-r--r-- root:root d /usr/share/man/man5/flytube.yaml.5.gz
-rw-r--r-- root:root d /usr/share/man/man8/flytube.8.gz
LIST
diff -u "$work/rpm-files.expected" "$work/rpm-files" || fail "the .rpm's file list differs from the expected one"
rpm -qlp "$rpm" > "$work/rpm-list"
grep -q '^/usr/lib/.build-id/' "$work/rpm-list" || fail "no build-id link in the .rpm"
echo "-- Requires(pre)"
rpm -qp --qf '[%{REQUIREFLAGS:deptype} %{REQUIRENAME}\n]' "$rpm" | grep '^pre ' | tee "$work/rpm-pre"
for tool in /usr/bin/getent /usr/sbin/groupadd /usr/sbin/useradd; do
  grep -qx "pre $tool" "$work/rpm-pre" || fail "no Requires(pre): $tool"
done
rpm -qp --requires "$rpm" > "$work/rpm-requires"
grep -q '^libssl.so.3()(64bit)' "$work/rpm-requires" || fail "no automatic libssl requirement"
[ "$(rpm -qp --qf '%{DESCRIPTION}' "$rpm" | wc -l)" -ge 5 ] || fail "the %description is not a real one"
echo "-- rpm -qp --scripts"
rpm -qp --scripts "$rpm"
for tag in PREIN POSTIN PREUN POSTUN; do
  rpm -qp --qf "%{$tag}" "$rpm" > "$work/$tag.sh"
  [ "$(rpm -qp --qf "%{${tag}PROG}" "$rpm")" = /bin/sh ] || fail "%$tag does not run under /bin/sh"
  sh -n "$work/$tag.sh" || fail "the $tag scriptlet does not parse"
done
grep -q 'groupadd -r flytube' "$work/PREIN.sh" && grep -q 'useradd -r -g flytube' "$work/PREIN.sh" \
  || fail "%pre does not create the flytube user and group"
grep -q 'systemctl --no-reload preset flytube.service' "$work/POSTIN.sh" || fail "%post does not apply the preset"
grep -q 'disable --now flytube.service' "$work/PREUN.sh" || fail "%preun does not stop and disable the unit on erase"
grep -q 'try-restart flytube.service' "$work/POSTUN.sh" || fail "%postun does not restart on upgrade"
if grep -q 'systemctl start\|enable --now' "$work/POSTIN.sh"; then fail "%post starts the unit"; fi
mkdir "$work/rpm"
rpm2archive - < "$rpm" | tar -xz -C "$work/rpm"
is_stripped "$work/rpm/usr/bin/flytube" || fail "/usr/bin/flytube in the .rpm is not stripped"

step "4. man pages"
for page in man/flytube.8 man/flytube.yaml.5; do
  mandoc -Tlint "$page" || fail "mandoc -Tlint: $page"
  LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$page" 2>&1 >/dev/null \
    | tee "$work/man-warnings"
  [ ! -s "$work/man-warnings" ] || fail "man --warnings: $page"
  echo "$page: mandoc -Tlint and man --warnings clean"
done

step "5. systemd unit exposure"
systemd-analyze security --offline=true --threshold=20 packaging/systemd/flytube.service \
  | tail -n 1 || fail "systemd-analyze security: exposure above 2.0"

step "6. install the .deb and run it as the flytube user"
installed=1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >/dev/null
dpkg-query -W -f='${Package} ${Version} ${Status}\n' flytube
getent passwd flytube || fail "no flytube user"
[ "$(stat -c '%U:%G %a' /etc/flytube)" = "root:flytube 750" ] \
  || fail "/etc/flytube is $(stat -c '%U:%G %a' /etc/flytube), not root:flytube 750"
dpkg --verify flytube || fail "dpkg --verify flytube: installed files differ from the md5sums"
[ -n "$(dpkg-query --control-show flytube md5sums)" ] || fail "dpkg has no md5sums for flytube"
[ -L /etc/systemd/system/multi-user.target.wants/flytube.service ] || fail "the unit is not enabled"
# Slim container images tell dpkg not to install man pages.
check_man=yes
grep -rqs '^path-exclude=/usr/share/man' /etc/dpkg/dpkg.cfg.d/ && check_man=no
systemd-analyze verify --man="$check_man" /usr/lib/systemd/system/flytube.service \
  || fail "systemd-analyze verify (installed unit)"
if [ "$check_man" = yes ]; then
  man -w flytube && man -w 5 flytube.yaml || fail "man does not find the installed pages"
fi

start_relay pkgcheck "ClientAliveInterval 15"
target_port=$(free_port)
source_port=$(free_port)
mkdir -p "$dir/www"
echo "hello through the packaged flytube" > "$dir/www/index.html"
python3 -m http.server --bind 127.0.0.1 --directory "$dir/www" "$target_port" >/dev/null 2>&1 &
pids+=($!)
# The production layout: key root:flytube 0640 in /etc/flytube. Not flytube.yaml: every
# flytube on this machine, other checkouts' tests included, would read that one.
install -m 0640 -g flytube "$relay_identity" /etc/flytube/id_ed25519
install -m 0644 "$relay_identity-cert.pub" /etc/flytube/id_ed25519-cert.pub
install -m 0644 "$relay_known_hosts" /etc/flytube/known_hosts
cat > /etc/flytube/check.yaml <<YAML
relay:
  host: 127.0.0.1
  port: $relay_port
  user: $relay_user
auth:
  identity: /etc/flytube/id_ed25519
host_key:
  known_hosts: /etc/flytube/known_hosts
forwards:
  - bind: 127.0.0.1
    source_port: $source_port
    target_host: 127.0.0.1
    target_port: $target_port
YAML
runuser -u flytube -- /usr/bin/flytube config --config /etc/flytube/check.yaml
if runuser -u nobody -- /usr/bin/flytube config --config /etc/flytube/check.yaml >/dev/null 2>&1; then
  fail "another user can read flytube's settings and key"
fi
runuser -u flytube -- /usr/bin/flytube run --config /etc/flytube/check.yaml 2> "$dir/flytube.log" &
runuser_pid=$!
pids+=("$runuser_pid")
for _ in $(seq 100); do
  grep -q "serving" "$dir/flytube.log" && break
  sleep 0.1
done
cat "$dir/flytube.log"
grep -q "serving" "$dir/flytube.log" || { cat "$dir/sshd.log" >&2; fail "flytube did not come up"; }
# runuser forks for the PAM session; the daemon is its child.
flytube_pid=$(pgrep -P "$runuser_pid" -x flytube) || flytube_pid=$runuser_pid
[ "$(ps -o comm= -p "$flytube_pid")" = flytube ] || fail "no flytube process under runuser"
[ "$(ps -o user= -p "$flytube_pid")" = flytube ] || fail "flytube does not run as the flytube user"
reply=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$source_port/', timeout=10).read().decode().strip())")
echo "reply through the relay's port $source_port: $reply"
[ "$reply" = "hello through the packaged flytube" ] || fail "unexpected reply through the tunnel"
kill -TERM "$flytube_pid"
wait "$runuser_pid" || fail "flytube did not exit 0 on SIGTERM"
echo "flytube (pid $flytube_pid, user flytube) served the request and stopped cleanly"

echo "-- reinstall (the upgrade path)"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall "$deb" >/dev/null
[ -f /etc/flytube/id_ed25519 ] && [ -f /etc/flytube/check.yaml ] || fail "the reinstall lost the admin's files"
[ "$(stat -c '%U:%G %a' /etc/flytube)" = "root:flytube 750" ] || fail "the reinstall changed /etc/flytube"

step "7. purge"
rm -f /etc/flytube/check.yaml
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq flytube >/dev/null
installed=0
[[ $(installed_status) != *" installed" ]] || fail "flytube is still installed"
for path in /usr/bin/flytube /usr/lib/systemd/system/flytube.service /etc/flytube \
  /etc/systemd/system/flytube.service /etc/systemd/system/multi-user.target.wants/flytube.service; do
  [ ! -e "$path" ] && [ ! -L "$path" ] || fail "$path is left after the purge"
done
echo "purged: no files left; the flytube system user stays (its uid may own files)"

step "8. Kubernetes manifests"
validator=$(command -v kubernetes-validate || true)
if [ -z "$validator" ]; then
  venv=$target_dir/pkgcheck-venv
  if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$K8S_VALIDATE_VERSION"
  fi
  validator=$venv/bin/kubernetes-validate
fi
for k8s in "${K8S_VERSIONS[@]}"; do
  "$validator" --strict --kubernetes-version "$k8s" packaging/kubernetes/*.yaml \
    || fail "packaging/kubernetes does not validate against Kubernetes $k8s"
done

step "all packaging checks passed in $((SECONDS - start)) s"

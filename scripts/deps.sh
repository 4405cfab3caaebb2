#!/usr/bin/env bash
# Installs what building and testing flytube needs on Debian/Ubuntu, if it is missing:
# a C toolchain and OpenSSL/zlib headers for libssh2-sys, OpenSSH (sshd is the test relay,
# ssh-keygen makes keys and certificates), python3 (demo target, scripted test servers),
# curl (the tests' HTTP client), tinyproxy and microsocks (the proxies the proxy tests go
# through), python3-paramiko for the system python (tests/hostile.rs: a hostile relay).
set -euo pipefail
missing=()
command -v cc >/dev/null || missing+=(build-essential)
command -v pkg-config >/dev/null || missing+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
dpkg -s zlib1g-dev >/dev/null 2>&1 || missing+=(zlib1g-dev)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
command -v python3 >/dev/null || missing+=(python3)
/usr/bin/python3 -c 'import paramiko' >/dev/null 2>&1 || missing+=(python3-paramiko)
command -v pkill >/dev/null || missing+=(procps)
command -v curl >/dev/null || missing+=(curl)
# Real proxies for tests/proxy.rs: HTTP CONNECT and SOCKS5.
[ -x /usr/bin/tinyproxy ] || missing+=(tinyproxy)
[ -x /usr/bin/microsocks ] || missing+=(microsocks)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# sshd wants its privilege separation directory.
[ -d /run/sshd ] || { [ "$(id -u)" -eq 0 ] && mkdir -p /run/sshd; } || true
command -v cargo >/dev/null || { echo "cargo is missing: install Rust from rustup.rs" >&2; exit 1; }

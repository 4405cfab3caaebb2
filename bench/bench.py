#!/usr/bin/env python3
"""flytube vs OpenSSH `ssh -R`: throughput, latency, connection setup, memory, CPU, scaling.

Starts one throwaway OpenSSH sshd relay on 127.0.0.1 (temporary directory, generated host
key, user CA, signed ed25519 client certificate), an iperf3 server and an epoll echo server
as targets, then for each cipher runs flytube and `ssh -N -R` in turn against that relay
and measures both the same way. Prints one row per figure (flytube, OpenSSH, ratio, goal)
and optionally writes the table as markdown. Python 3 standard library only.

All traffic stays on 127.0.0.1, every loop is bounded by a count or a deadline, and every
process and temporary file is removed at the end (also on Ctrl-C, SIGTERM or an error).
See bench/README.md.
"""

import argparse
import datetime
import errno
import json
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SCALE_BUDGET = 4 * 1024 * 1024  # bytes outstanding across all connections in the scaling runs
DEFAULT_CIPHERS = "aes256-gcm@openssh.com,chacha20-poly1305@openssh.com"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Goals on the ratio flytube / OpenSSH, by kind of figure.
#   ("min", x): met when ratio >= x (higher is better); ("max", x): met when ratio <= x.
GOALS = {
    "throughput": ("min", 1.0),
    "rtt_p50": ("max", 1.0),
    "setup": ("max", 0.1),
    "churn": ("max", 0.1),
    "idle_mem": ("max", 1.5),
    "cpu": ("max", 1.0),     # CPU seconds per GB, per direction
    "redis": ("min", 1.0),   # redis-benchmark requests/s
    "ab": ("min", 1.0),      # ApacheBench requests/s
}

# Real clients through each connector's forward (rows skipped when the tools are absent).
#   (key, label, redis-benchmark arguments, goal kind, requests quick, requests full);
#   each run does SET and GET (-t set,get) and gives one row per command.
REDIS_RUNS = [
    ("redis_serial", "redis-benchmark 1 client (-c 1)", ["-c", "1"], "redis", 2000, 10000),
    ("redis_c50", "redis-benchmark 50 clients (-c 50)", ["-c", "50"], "redis", 20000, 50000),
    ("redis_pipe", "redis-benchmark pipelined (-P 16 -c 20)", ["-P", "16", "-c", "20"], "redis",
     100000, 200000),
    ("redis_4k", "redis-benchmark 4 KiB values (-d 4096 -c 50)", ["-d", "4096", "-c", "50"],
     None, 10000, 30000),
]
#   (key, label, keep-alive, requests, concurrency, goal kind)
AB_RUNS = [
    ("ab_new", "ab new connections (-n 2000 -c 10)", False, 2000, 10, "ab"),
    ("ab_ka", "ab keep-alive (-k -n 20000 -c 10)", True, 20000, 10, "ab"),
]
IDLE_AFTER_BULK = 100  # idle connections for the RSS rows before/after the bulk runs


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Echo server (runs as a separate process: bench.py --echo-server)
# --------------------------------------------------------------------------------------

def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def echo_server_main():
    """Single-threaded epoll echo server. Prints its port, serves until stdin closes or
    SIGTERM. Back-pressure: a connection whose echo cannot be written is not read."""
    raise_nofile()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((HOST, 0))
    lsock.listen(4096)
    lsock.setblocking(False)
    print(lsock.getsockname()[1], flush=True)
    sel = selectors.DefaultSelector()  # epoll on Linux
    sel.register(lsock, selectors.EVENT_READ, None)
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    pending = {}  # sock -> unsent bytes
    buf = bytearray(256 * 1024)
    view = memoryview(buf)

    def drop(s):
        pending.pop(s, None)
        try:
            sel.unregister(s)
        except (KeyError, ValueError):
            pass
        s.close()

    while True:
        for key, events in sel.select(timeout=1.0):
            s = key.fileobj
            if key.data == "stdin":
                if not os.read(sys.stdin.fileno(), 4096):
                    return
                continue
            if s is lsock:
                for _ in range(256):
                    try:
                        c, _addr = lsock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:  # EMFILE and friends: keep serving the others
                        if e.errno in (errno.EMFILE, errno.ENFILE):
                            break
                        raise
                    c.setblocking(False)
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sel.register(c, selectors.EVENT_READ, "c")
                continue
            if events & selectors.EVENT_WRITE:
                data = pending.get(s)
                try:
                    n = s.send(data)
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError:
                    drop(s)
                    continue
                if n == len(data):
                    del pending[s]
                    sel.modify(s, selectors.EVENT_READ, "c")
                else:
                    pending[s] = data[n:]
                continue
            if events & selectors.EVENT_READ:
                try:
                    n = s.recv_into(buf)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    drop(s)
                    continue
                if n == 0:
                    drop(s)
                    continue
                try:
                    sent = s.send(view[:n])
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    drop(s)
                    continue
                if sent < n:
                    pending[s] = bytes(view[sent:n])
                    sel.modify(s, selectors.EVENT_WRITE, "c")


# --------------------------------------------------------------------------------------
# Process bookkeeping
# --------------------------------------------------------------------------------------

class Procs:
    """Every process the benchmark starts, so that all of them are stopped at the end."""

    def __init__(self):
        self.procs = []

    def start(self, name, argv, group=False, **kw):
        """group=True: the process may fork helpers (nginx workers); after it has been
        stopped, whatever is left of its process group is killed too."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        # Own process group: a Ctrl-C in the terminal reaches only us; we stop the rest
        # in order (connectors before the relay).
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        p.bench_name = name
        p.bench_group = group
        self.procs.append(p)
        return p

    def stop(self, p, grace=15.0):
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log(f"{p.bench_name} (pid {p.pid}) ignored SIGTERM for {grace:.0f}s; killing it")
                p.kill()
                p.wait(timeout=10)
        if p.bench_group:
            # Its own session (start_new_session), so the group id is its pid; the kernel
            # does not hand out that pid again while any member of the group lives.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for f in (p.stdin, p.stdout, p.stderr):
            if f:
                f.close()
        if p in self.procs:
            self.procs.remove(p)
        return p.returncode

    def stop_all(self):
        for p in reversed(list(self.procs)):
            try:
                self.stop(p, grace=5.0)
            except Exception as e:  # keep stopping the others
                log(f"stopping {p.bench_name}: {e}")


def children_of(pid):
    """PIDs whose parent is pid (sshd session processes, which run in their own session)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(d))
    return out


def tree_cpu_s(pid):
    """CPU seconds of pid and its descendants alive now (the relay's sshd: its listener,
    each session's monitor and the session processes that move the bytes)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += proc_cpu_s(p)
        except OSError:
            continue
        todo += children_of(p)
    return total


def proc_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rfind(")") + 2:].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def listening(port):
    """True when something listens on 127.0.0.1:port (from /proc/net/tcp)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[1] == want and parts[3] == "0A":
                return True
    return False


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    k = min(len(xs) - 1, max(0, int(round(q / 100.0 * (len(xs) - 1)))))
    return xs[k]


# --------------------------------------------------------------------------------------
# Relay and targets
# --------------------------------------------------------------------------------------

def run_quiet(argv):
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=60)


def make_keys(d, user, relay_port):
    for name in ("host_ed25519", "ca", "id_ed25519"):
        run_quiet(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"bench-{name}",
                   "-f", os.path.join(d, name)])
    run_quiet(["ssh-keygen", "-q", "-s", os.path.join(d, "ca"), "-I", "flytube-bench",
               "-n", user, "-V", "-5m:+30d", os.path.join(d, "id_ed25519.pub")])
    with open(os.path.join(d, "host_ed25519.pub")) as f:
        host_pub = " ".join(f.read().split()[:2])
    with open(os.path.join(d, "known_hosts"), "w") as f:
        f.write(f"[{HOST}]:{relay_port} {host_pub}\n")


def start_relay(procs, d, port, ciphers):
    conf = os.path.join(d, "sshd_config")
    with open(conf, "w") as f:
        f.write(f"""ListenAddress {HOST}:{port}
HostKey {d}/host_ed25519
PidFile {d}/sshd.pid
TrustedUserCAKeys {d}/ca.pub
AuthorizedKeysFile none
StrictModes no
UsePAM no
UseDNS no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
GatewayPorts no
Ciphers {",".join(ciphers)}
MaxStartups 1000:30:1000
MaxSessions 100
ClientAliveInterval 15
ClientAliveCountMax 3
LogLevel INFO
""")
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    run_quiet([sshd, "-t", "-f", conf])
    p = procs.start("sshd", [sshd, "-D", "-f", conf, "-E", os.path.join(d, "sshd.log")])
    deadline = time.monotonic() + 15
    while not listening(port):
        if p.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("sshd did not start:\n" + tail(os.path.join(d, "sshd.log")))
        time.sleep(0.05)
    return p


def start_iperf3(procs, d):
    port = free_port()
    p = procs.start("iperf3 server", ["iperf3", "-s", "-B", HOST, "-p", str(port)],
                    stdout=open(os.path.join(d, "iperf3-server.log"), "ab"),
                    stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while not listening(port):
        if p.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("iperf3 server did not start")
        time.sleep(0.05)
    return p, port


def start_echo(procs):
    p = procs.start("echo server", [sys.executable, os.path.abspath(__file__), "--echo-server"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    line = p.stdout.readline()
    if not line:
        raise RuntimeError("echo server did not start")
    return p, int(line)


def start_tinyproxy(procs, d, relay_port):
    """tinyproxy in the foreground on a free port, CONNECT allowed to the relay's port only,
    for the "through a proxy" rows."""
    port = free_port()
    conf = os.path.join(d, "tinyproxy.conf")
    with open(conf, "w") as f:
        f.write(f"""Port {port}
Listen {HOST}
Timeout 600
LogFile "{d}/tinyproxy.log"
LogLevel Connect
PidFile "{d}/tinyproxy.pid"
MaxClients 100
Allow {HOST}
DisableViaHeader Yes
ConnectPort {relay_port}
""")
    p = procs.start("tinyproxy", ["tinyproxy", "-d", "-c", conf],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not listening(port):
        if p.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("tinyproxy did not start:\n"
                               + tail(os.path.join(d, "tinyproxy.log")))
        time.sleep(0.05)
    return p, port


def start_redis(procs, d):
    """redis-server on 127.0.0.1 (no persistence) as a target for redis-benchmark. redis
    cannot listen on port 0, so pick a free port (and try again if someone took it)."""
    logpath = os.path.join(d, "redis.log")
    for _attempt in range(3):
        port = free_port()
        p = procs.start("redis-server",
                        ["redis-server", "--port", str(port), "--bind", HOST, "--save", "",
                         "--appendonly", "no", "--daemonize", "no", "--dir", d,
                         "--logfile", logpath, "--databases", "1"])
        deadline = time.monotonic() + 10
        while not listening(port) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if listening(port) and p.poll() is None:
            return p, port
        procs.stop(p, grace=5.0)
    raise RuntimeError("redis-server did not start:\n" + tail(logpath))


def nginx_binary():
    return shutil.which("nginx") or next(
        (b for b in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(b, os.X_OK)), None)


def start_nginx(procs, d):
    """nginx on 127.0.0.1 with its own minimal config in the temp dir, serving one small
    file to ab: 1 worker, no access log, in the foreground (daemon off), pid and temp files
    in the temp dir."""
    ndir = os.path.join(d, "nginx")
    www = os.path.join(ndir, "www")
    os.makedirs(www)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(ndir, sub))
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("<!DOCTYPE html><html><body><p>" + "flytube bench " * 70 + "</p></body></html>\n")
    logpath = os.path.join(d, "nginx-error.log")
    conf = os.path.join(ndir, "nginx.conf")
    for _attempt in range(3):
        port = free_port()
        with open(conf, "w") as f:
            # As root, nginx would drop its worker to "nobody", which cannot enter the 0700
            # temp dir: keep the worker as root (it only serves 127.0.0.1).
            f.write(("user root;\n" if os.geteuid() == 0 else "") + f"""daemon off;
worker_processes 1;
pid {ndir}/nginx.pid;
error_log {logpath} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {ndir}/body;
    proxy_temp_path {ndir}/proxy;
    fastcgi_temp_path {ndir}/fastcgi;
    uwsgi_temp_path {ndir}/uwsgi;
    scgi_temp_path {ndir}/scgi;
    server {{
        listen {HOST}:{port};
        root {www};
        location / {{ }}
    }}
}}
""")
        nginx = nginx_binary()
        argv = [nginx, "-p", ndir + "/", "-e", logpath, "-c", conf]
        run_quiet(argv + ["-t"])
        p = procs.start("nginx", argv, group=True)
        deadline = time.monotonic() + 10
        while not listening(port) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if listening(port) and p.poll() is None:
            return p, port
        procs.stop(p, grace=5.0)
    raise RuntimeError("nginx did not start:\n" + tail(logpath))


def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# --------------------------------------------------------------------------------------
# Connectors
# --------------------------------------------------------------------------------------

class Connector:
    def __init__(self, kind, proc, logpath, fwd_iperf, fwd_echo, fwd_extra=None):
        self.kind = kind
        self.fwd_extra = fwd_extra or {}  # target name ("redis", "nginx") -> relay port
        self.proc = proc
        self.pid = proc.pid
        self.logpath = logpath
        self.fwd_iperf = fwd_iperf
        self.fwd_echo = fwd_echo

    def alive(self):
        return self.proc.poll() is None

    def check(self):
        if not self.alive():
            raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}:\n"
                               + tail(self.logpath))


def start_connector(procs, kind, args, d, relay_port, user, cipher, iperf_port, echo_port,
                    proxy_port=None, extra_targets=None, via_relay=False, ssh_options=()):
    """extra_targets: {name: target port} forwarded as well (redis-server, nginx).
    ssh_options: extra `-o` settings for `ssh -R` (e.g. MACs=... to match flytube's MAC)."""
    src_iperf, src_echo = free_port(), free_port()
    while src_echo == src_iperf:
        src_echo = free_port()
    extra = {}
    for name, tport in (extra_targets or {}).items():
        sp = free_port()
        while sp in (src_iperf, src_echo) or sp in extra.values():
            sp = free_port()
        extra[name] = sp
    tag = f"{kind}-{cipher.split('@')[0]}"
    logpath = os.path.join(d, f"{tag}.log")
    ident = os.path.join(d, "id_ed25519")
    kh = os.path.join(d, "known_hosts")
    fwds = [f"{HOST}:{src_iperf}:{HOST}:{iperf_port}", f"{HOST}:{src_echo}:{HOST}:{echo_port}"]
    fwds += [f"{HOST}:{extra[name]}:{HOST}:{tport}" for name, tport in (extra_targets or {}).items()]
    if kind.startswith("flytube"):
        # An empty settings file of its own: a host's /etc/flytube/flytube.yaml must not
        # change what is measured.
        empty = os.path.join(d, "empty.yaml")
        open(empty, "w").close()
        argv = [args.flytube, "run", "-c", empty, "--relay", f"{HOST}:{relay_port}",
                "--user", user, "-i", ident, "--known-hosts", kh, "--ciphers", cipher]
        if via_relay:
            argv += ["--target-via", "relay"]
        if proxy_port:
            argv += ["--proxy", f"http://{HOST}:{proxy_port}"]
        for f in fwds:
            argv += ["-R", f]
        # Metrics on loopback, to read the busy-poll counters after a run.
        metrics_port = free_port()
        while metrics_port in (src_iperf, src_echo) or metrics_port in extra.values():
            metrics_port = free_port()
        argv += ["--metrics-listen", f"{HOST}:{metrics_port}"]
    else:
        metrics_port = None
        argv = ["ssh", "-N", "-F", "/dev/null", "-o", "ExitOnForwardFailure=yes",
                "-o", f"Ciphers={cipher}", "-o", f"UserKnownHostsFile={kh}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                "-o", "IdentitiesOnly=yes", "-o", "Compression=no", "-o", "LogLevel=ERROR",
                "-i", ident, "-o", f"CertificateFile={ident}-cert.pub", "-p", str(relay_port)]
        for option in ssh_options:
            argv += ["-o", option]
        for f in fwds:
            argv += ["-R", f]
        argv.append(f"{user}@{HOST}")
    logf = open(logpath, "ab")
    env = dict(os.environ)
    env.pop("RUST_LOG", None)
    started = time.monotonic()
    p = procs.start(tag, argv, stderr=logf, stdout=logf, env=env)
    logf.close()
    c = Connector(kind, p, logpath, src_iperf, src_echo, extra)
    c.metrics_port = metrics_port
    # Wait until each forward port accepts connections; the echo one must echo.
    deadline = time.monotonic() + 30
    while True:
        c.check()
        if listening(src_iperf) and listening(src_echo) and all(map(listening, extra.values())):
            try:
                s = socket.create_connection((HOST, src_echo), timeout=5)
                try:
                    s.sendall(b"ping")
                    if recv_exact(s, 4) == b"ping":
                        break
                finally:
                    s.close()
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{kind}: forwards not up after 30s:\n" + tail(logpath))
        time.sleep(0.02)
    c.up_s = time.monotonic() - started
    # The iperf3 forward: a plain connect proves the relay listens and the channel opens.
    s = socket.create_connection((HOST, src_iperf), timeout=5)
    s.close()
    time.sleep(0.3)
    log(f"{kind} ({cipher}) up, pid {c.pid}: {HOST}:{src_iperf} -> iperf3, "
        f"{HOST}:{src_echo} -> echo"
        + "".join(f", {HOST}:{sp} -> {name}" for name, sp in extra.items()))
    return c


# --------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------

def busy_polls(c):
    """flytube's busy-poll counters by outcome, from its metrics ({} for `ssh -R`)."""
    if not getattr(c, "metrics_port", None):
        return {}
    try:
        with urllib.request.urlopen(f"http://{HOST}:{c.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    got = {}
    for line in text.splitlines():
        m = re.match(r'flytube_busy_polls_total\{outcome="(\w+)"\} (\d+)', line)
        if m:
            got[m.group(1)] = int(m.group(2))
    return got


def recv_exact(s, n):
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError(f"closed after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


def iperf(ctx, port, seconds, streams, reverse, attempts=2):
    """One iperf3 run (retried once after restarting the server); returns (MB/s, bytes
    moved) or (None, 0) on failure."""
    for attempt in range(attempts):
        # iperf3 closes its listening socket during a test and reopens it afterwards:
        # start only once it listens again, or the connector's dial is refused.
        deadline = time.monotonic() + 10
        while not listening(ctx.iperf_port) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        mbps, nbytes = iperf_once(ctx, port, seconds, streams, reverse)
        if mbps is not None:
            return mbps, nbytes
    return None, 0


def iperf_with_cpu(ctx, c, seconds, streams, reverse):
    """One `iperf` run through connector `c`, with the CPU seconds the connector and the
    relay's sshd (all its processes) spent over it: (MB/s, bytes, connector s, relay s)."""
    cpu0, relay0 = proc_cpu_s(c.pid), tree_cpu_s(ctx.relay_pid)
    mbps, nbytes = iperf(ctx, c.fwd_iperf, seconds, streams, reverse)
    return (mbps, nbytes, proc_cpu_s(c.pid) - cpu0, tree_cpu_s(ctx.relay_pid) - relay0)


def iperf_once(procs_ctx, port, seconds, streams, reverse):
    argv = ["iperf3", "-c", HOST, "-p", str(port), "-t", str(seconds), "--json",
            "--connect-timeout", "5000"]
    if streams > 1:
        argv += ["-P", str(streams)]
    if reverse:
        argv.append("-R")
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        log(f"iperf3 {' '.join(argv[5:])} timed out")
        procs_ctx.restart_iperf()
        return None, 0
    try:
        res = json.loads(r.stdout)
    except ValueError:
        res = {}
    if r.returncode != 0 or "error" in res:
        log(f"iperf3 failed (rc {r.returncode}): {res.get('error') or r.stderr.decode()[-300:]}")
        procs_ctx.restart_iperf()
        return None, 0
    recv = res["end"]["sum_received"]
    return recv["bits_per_second"] / 8 / 1e6, recv["bytes"]


def rtt(port, count, warmup=200):
    s = socket.create_connection((HOST, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = os.urandom(64)
    samples = []
    try:
        for i in range(warmup + count):
            t0 = time.perf_counter_ns()
            s.sendall(msg)
            if recv_exact(s, 64) != msg:
                raise RuntimeError("echo returned different bytes")
            if i >= warmup:
                samples.append((time.perf_counter_ns() - t0) / 1e6)
    finally:
        s.close()
    return percentile(samples, 50), percentile(samples, 99)


def one_setup(port):
    t0 = time.perf_counter_ns()
    s = socket.create_connection((HOST, port), timeout=10)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"abcd")
        if recv_exact(s, 4) != b"abcd":
            raise RuntimeError("echo returned different bytes")
    finally:
        s.close()
    return (time.perf_counter_ns() - t0) / 1e6


def setup_latency(port, count, spacing):
    samples, failures = [], 0
    for _ in range(count):
        try:
            samples.append(one_setup(port))
        except (OSError, RuntimeError):
            failures += 1
        if spacing:
            time.sleep(spacing)
    return samples, failures


def open_idle(port, n):
    """n connections through the tunnel, each after one 4-byte echo; returns (socks, failed)."""
    socks, failed = [], 0
    for _ in range(n):
        try:
            s = socket.create_connection((HOST, port), timeout=10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(b"idle")
            if recv_exact(s, 4) != b"idle":
                raise RuntimeError("bad echo")
            socks.append(s)
        except (OSError, RuntimeError):
            failed += 1
    return socks, failed


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def push_echo(socks, seconds, pid, warmup=0.5):
    """Every socket pushes data through the echo target: `warmup` seconds not counted,
    then `seconds` counted. Each connection keeps at most `cap` bytes outstanding, and all
    together at most SCALE_BUDGET (OpenSSH sshd spends seconds in memmove when megabytes
    queue up in it across hundreds of channels, which would measure the relay, not the
    connector). Returns (echoed MB/s, peak RSS kB, peak threads, broken connections)."""
    cap = max(4096, min(64 * 1024, SCALE_BUDGET // max(1, len(socks))))
    chunk = min(16 * 1024, cap)
    sel = selectors.DefaultSelector()
    payload = memoryview(os.urandom(chunk))
    state = {}
    for s in socks:
        s.setblocking(False)
        state[s] = [0, True]  # outstanding bytes, registered for write
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    buf = bytearray(256 * 1024)
    received = 0
    broken = 0
    peak_rss, peak_thr = 0, 0
    t0 = time.monotonic()
    start = t0 + warmup
    deadline = start + seconds
    next_sample = start
    counting = False
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if not counting and now >= start:
                counting = True
                received = 0
                start = now
            if counting and now >= next_sample:
                try:
                    peak_rss = max(peak_rss, proc_rss_kb(pid))
                    peak_thr = max(peak_thr, proc_threads(pid))
                except OSError:
                    pass
                next_sample = now + 0.25
            for key, events in sel.select(timeout=min(0.25, deadline - now)):
                s = key.fileobj
                st = state[s]
                if events & selectors.EVENT_READ:
                    try:
                        n = s.recv_into(buf)
                    except (BlockingIOError, InterruptedError):
                        n = -1
                    except OSError:
                        n = 0
                    if n == 0:
                        broken += 1
                        sel.unregister(s)
                        continue
                    if n > 0:
                        received += n
                        st[0] -= n
                        if not st[1] and st[0] < cap:
                            sel.modify(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
                            st[1] = True
                if events & selectors.EVENT_WRITE and st[1]:
                    try:
                        n = s.send(payload[: min(chunk, cap - st[0])])
                    except (BlockingIOError, InterruptedError):
                        n = 0
                    except OSError:
                        broken += 1
                        sel.unregister(s)
                        continue
                    st[0] += n
                    if st[0] >= cap:
                        sel.modify(s, selectors.EVENT_READ)
                        st[1] = False
    finally:
        elapsed = max(1e-3, time.monotonic() - start)
        sel.close()
    return received / elapsed / 1e6, peak_rss, peak_thr, broken


def redis_benchmark(port, extra, n, timeout=180):
    """redis-benchmark SET and GET through `port`; returns {"SET": rps, "GET": rps} or None.
    (It retries forever when it cannot connect, hence the timeout.)"""
    argv = ["redis-benchmark", "-h", HOST, "-p", str(port), "-t", "set,get", "-n", str(n),
            "--csv"] + extra
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"redis-benchmark {' '.join(extra)} timed out after {timeout}s")
        return None
    got = {}
    for line in r.stdout.splitlines():
        m = re.match(r'^"(SET|GET)","([0-9.]+)"', line)
        if m:
            got[m.group(1)] = float(m.group(2))
    if r.returncode != 0 or len(got) != 2:
        log(f"redis-benchmark {' '.join(extra)} failed (rc {r.returncode}): "
            f"{(r.stderr or r.stdout)[-300:]}")
        return None
    return got


def apache_bench(port, n, conc, keepalive, timeout=180):
    """ab against nginx through `port`; returns requests/s, or None when ab failed or any
    request failed."""
    argv = ["ab", "-q", "-n", str(n), "-c", str(conc), "-s", "30"]
    if keepalive:
        argv.append("-k")
    argv.append(f"http://{HOST}:{port}/index.html")
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"ab {' '.join(argv[1:])} timed out after {timeout}s")
        return None
    out = r.stdout
    rps = re.search(r"Requests per second:\s+([0-9.]+)", out)
    done = re.search(r"Complete requests:\s+(\d+)", out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    if (r.returncode != 0 or not rps or not done or int(done.group(1)) != n
            or not failed or int(failed.group(1)) != 0 or non2xx):
        log(f"ab {' '.join(argv[1:])} failed (rc {r.returncode}): "
            f"{(r.stderr + out)[-300:]}")
        return None
    return float(rps.group(1))


def idle_rss(ctx, c, n):
    """RSS (MB) of the connector with n idle connections through the echo forward."""
    socks, failed = open_idle(c.fwd_echo, n)
    try:
        time.sleep(1.0)
        rss = proc_rss_kb(c.pid) / 1024
        c.check()
    finally:
        close_all(socks)
    wait_settled(ctx, c)
    return rss, failed


def measure(ctx, c, cipher, out):
    """Every figure for one connector into `out` ({figure_key: value}); raw samples in
    ctx.raw. Filled as it goes, so a failure keeps what was measured before it. A
    generator: it yields after each repetition of each figure, so that the caller can
    take turns between connectors (see `interleave`)."""
    a = ctx.args
    reps = a.reps
    raw = ctx.raw.setdefault(f"{cipher}/{c.kind}", {})

    def rec(key, val):
        raw.setdefault(key, []).append(val)

    # Memory and threads at rest (informational).
    out["rest_rss"] = proc_rss_kb(c.pid) / 1024
    out["rest_threads"] = proc_threads(c.pid)
    # RSS with a few idle connections before any bulk transfer, to set against the same
    # right after the bulk runs (what the bulk runs leave behind).
    out["idle100_before_rss"], failed = idle_rss(ctx, c, IDLE_AFTER_BULK)
    out["idle_failed"] = failed
    yield

    # Throughput, both directions, 1 and 4 streams; CPU over the 1-stream runs, per
    # direction and both together.
    for rep in range(reps):
        cpu_all, moved = 0.0, 0
        for reverse in (False, True):
            d = "rev" if reverse else "fwd"
            mbps, nbytes, cpu, relay = iperf_with_cpu(ctx, c, a.iperf_seconds, 1, reverse)
            rec(f"tput_{d}_1", mbps)
            rec(f"cpu_per_gb_{d}", cpu / (nbytes / 1e9) if nbytes else None)
            # The relay's side of the same run: where its sshd sets the pace (a CPU busy),
            # what it spends per GB serving this connector decides the row.
            rec(f"relay_cpu_per_gb_{d}", relay / (nbytes / 1e9) if nbytes else None)
            # Busy over the transfer itself (iperf3's bytes at its rate), not the start-up.
            rec(f"relay_cpus_{d}", relay / (nbytes / (mbps * 1e6)) if nbytes else None)
            cpu_all += cpu
            moved += nbytes
            c.check()
        rec("cpu_per_gb", cpu_all / (moved / 1e9) if moved else None)
        for reverse in (False, True):
            mbps, _ = iperf(ctx, c.fwd_iperf, a.iperf_seconds, 4, reverse)
            rec(f"tput_{'rev' if reverse else 'fwd'}_4", mbps)
            c.check()
        log(f"  {c.kind} throughput rep {rep + 1}/{reps}: "
            + ", ".join(f"{k}={raw[k][-1]:.0f}" if raw[k][-1] is not None else f"{k}=FAILED"
                        for k in ("tput_fwd_1", "tput_rev_1", "tput_fwd_4", "tput_rev_4")))
        yield

    # Right after the bulk runs: RSS with idle connections (allocator residue or ours?).
    wait_settled(ctx, c)
    out["idle100_after_rss"], failed = idle_rss(ctx, c, IDLE_AFTER_BULK)
    out["idle_failed"] += failed
    log(f"  {c.kind} {IDLE_AFTER_BULK} idle: RSS {out['idle100_before_rss']:.1f} MB before the "
        f"bulk runs, {out['idle100_after_rss']:.1f} MB right after")
    yield

    # RTT, setup (spaced), churn (back to back).
    for rep in range(reps):
        p50, p99 = rtt(c.fwd_echo, a.rtt_count)
        rec("rtt_p50", p50)
        rec("rtt_p99", p99)
        samples, fail = setup_latency(c.fwd_echo, a.setup_count, 0.020)
        rec("setup_p50", percentile(samples, 50))
        rec("setup_p99", percentile(samples, 99))
        rec("setup_failed", fail)
        samples, fail = setup_latency(c.fwd_echo, a.churn_count, 0)
        rec("churn_median", percentile(samples, 50))
        rec("churn_failed", fail)
        c.check()
        log(f"  {c.kind} latency rep {rep + 1}/{reps}: rtt p50 {p50:.3f} p99 {p99:.3f} ms, "
            f"setup p50 {raw['setup_p50'][-1]:.3f} ms, churn {raw['churn_median'][-1]:.3f} ms")
        yield

    for k in ("tput_fwd_1", "tput_rev_1", "tput_fwd_4", "tput_rev_4", "cpu_per_gb",
              "cpu_per_gb_fwd", "cpu_per_gb_rev", "relay_cpu_per_gb_fwd", "relay_cpu_per_gb_rev",
              "relay_cpus_fwd", "relay_cpus_rev", "rtt_p50", "rtt_p99", "setup_p50", "setup_p99", "churn_median"):
        out[k] = median(raw[k])
    out["failed_conns"] = sum(raw["setup_failed"]) + sum(raw["churn_failed"])

    # Real clients: redis-benchmark against redis-server, ab against nginx.
    yield from measure_clients(ctx, c, cipher, out)

    # 500 idle connections.
    socks, failed = open_idle(c.fwd_echo, a.idle_count)
    try:
        time.sleep(1.0)
        out["idle_rss"] = proc_rss_kb(c.pid) / 1024
        out["idle_threads"] = proc_threads(c.pid)
        out["idle_failed"] += failed
        c.check()
    finally:
        close_all(socks)
    log(f"  {c.kind} {a.idle_count} idle: RSS {out['idle_rss']:.1f} MB, "
        f"{out['idle_threads']} threads, {failed} failed")
    wait_settled(ctx, c)
    yield

    # Scaling.
    for n in a.scale:
        for rep in range(reps):
            socks, failed = open_idle(c.fwd_echo, n)
            try:
                mbps, rss, thr, broken = push_echo(socks, a.scale_seconds, c.pid)
            finally:
                close_all(socks)
            rec(f"scale_{n}_mbps", mbps)
            rec(f"scale_{n}_rss", rss / 1024)
            rec(f"scale_{n}_threads", thr)
            rec(f"scale_{n}_failed", failed + broken)
            c.check()
            log(f"  {c.kind} scale {n} rep {rep + 1}/{reps}: {mbps:.1f} MB/s, "
                f"RSS {rss / 1024:.1f} MB, {thr} threads, {failed} failed, {broken} broken")
            wait_settled(ctx, c)
            yield
        out[f"scale_{n}_mbps"] = median(raw[f"scale_{n}_mbps"])
        out[f"scale_{n}_rss"] = median(raw[f"scale_{n}_rss"])
        out[f"scale_{n}_failed"] = sum(raw[f"scale_{n}_failed"])


def measure_clients(ctx, c, cipher, out):
    """redis-benchmark and ab through the connector's forwards to redis-server and nginx,
    --reps times each; medians into `out`. Skipped for a target that is not running. A
    generator like `measure`: yields after each repetition."""
    a = ctx.args
    raw = ctx.raw.setdefault(f"{cipher}/{c.kind}", {})
    redis_fwd, nginx_fwd = c.fwd_extra.get("redis"), c.fwd_extra.get("nginx")
    for rep in range(a.reps):
        if redis_fwd:
            for key, label, extra, _kind, nq, nf in REDIS_RUNS:
                got = redis_benchmark(redis_fwd, extra, nq if a.quick else nf)
                for cmd in ("SET", "GET"):
                    raw.setdefault(f"{key}_{cmd.lower()}", []).append(
                        got[cmd] if got else None)
                c.check()
                wait_settled(ctx, c)
            log(f"  {c.kind} redis rep {rep + 1}/{a.reps}: " + ", ".join(
                f"{key} SET/GET {fmt(raw[key + '_set'][-1], 0)}/{fmt(raw[key + '_get'][-1], 0)}"
                for key, *_ in REDIS_RUNS) + " req/s")
        if nginx_fwd:
            for key, label, keepalive, n, conc, _kind in AB_RUNS:
                raw.setdefault(key, []).append(apache_bench(nginx_fwd, n, conc, keepalive))
                c.check()
                wait_settled(ctx, c)
            log(f"  {c.kind} ab rep {rep + 1}/{a.reps}: " + ", ".join(
                f"{key} {fmt(raw[key][-1], 0)}" for key, *_ in AB_RUNS) + " req/s")
        yield
    keys = []
    if redis_fwd:
        keys += [f"{k}_{cmd}" for k, *_ in REDIS_RUNS for cmd in ("set", "get")]
    if nginx_fwd:
        keys += [k for k, *_ in AB_RUNS]
    for k in keys:
        out[k] = median(raw[k])
        out[k + "_failed"] = sum(1 for v in raw[k] if v is None)


def measure_proxy_path(ctx, c, out):
    """The figures the proxy can change, for flytube through tinyproxy: throughput each way
    (1 stream), RTT, setup; the session's start-up and the proxy's CONNECT answer (from
    flytube's log line "opened a tunnel ... in N ms")."""
    a = ctx.args
    raw = ctx.raw.setdefault(f"proxy/{c.kind}", {})
    for rep in range(a.reps):
        for reverse in (False, True):
            mbps, _ = iperf(ctx, c.fwd_iperf, a.iperf_seconds, 1, reverse)
            raw.setdefault(f"tput_{'rev' if reverse else 'fwd'}_1", []).append(mbps)
            c.check()
        p50, _ = rtt(c.fwd_echo, a.rtt_count)
        raw.setdefault("rtt_p50", []).append(p50)
        samples, fail = setup_latency(c.fwd_echo, a.setup_count, 0.020)
        raw.setdefault("setup_p50", []).append(percentile(samples, 50))
        raw.setdefault("setup_failed", []).append(fail)
        c.check()
        log(f"  {c.kind} rep {rep + 1}/{a.reps}: "
            + ", ".join(f"{k}={raw[k][-1]:.3f}" if raw[k][-1] is not None else f"{k}=FAILED"
                        for k in ("tput_fwd_1", "tput_rev_1", "rtt_p50", "setup_p50")))
    for k in ("tput_fwd_1", "tput_rev_1", "rtt_p50", "setup_p50"):
        out[k] = median(raw[k])
    out["failed_conns"] = sum(raw["setup_failed"])
    out["up_s"] = c.up_s
    try:
        with open(c.logpath, errors="replace") as f:
            m = re.search(r"opened a tunnel to relay \S+ in (\d+) ms", f.read())
        out["proxy_ms"] = float(m.group(1)) if m else None
    except OSError:
        out["proxy_ms"] = None


PROXY_FIGURES = [
    # (key, label, unit, decimals)
    ("tput_fwd_1", "throughput relay->target, 1 stream", "MB/s", 0),
    ("tput_rev_1", "throughput target->relay, 1 stream", "MB/s", 0),
    ("rtt_p50", "RTT 64 B, p50", "ms", 3),
    ("setup_p50", "setup connect+echo+close, p50", "ms", 3),
    ("up_s", "session: start to forwards up", "s", 3),
    ("proxy_ms", "session: proxy CONNECT answered", "ms", 0),
]


def build_proxy_table(via, direct):
    """Rows: [figure, through tinyproxy, direct, ratio]."""
    rows = []
    for key, label, unit, dec in PROXY_FIGURES:
        pv, dv = via.get(key), direct.get(key)
        ratio = pv / dv if (pv is not None and dv) else None
        rows.append([f"{label} ({unit})", fmt(pv, dec), fmt(dv, dec) if dv is not None else "-",
                     f"{ratio:.2f}" if ratio is not None else "-"])
    return rows


def established_to(port):
    """ESTABLISHED TCP sockets on 127.0.0.1 whose peer port is `port` (the connector's
    side of its connections to a target)."""
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] == "01" and int(parts[2].rsplit(":", 1)[1], 16) == port:
                n += 1
    return n


def wait_settled(ctx, c, seconds=20.0):
    """After closing connections, give the connector (bounded) time to close its side
    towards the targets, so the next figure does not pay for this one's teardown."""
    deadline = time.monotonic() + seconds
    left = 0
    while time.monotonic() < deadline:
        left = sum(established_to(p) for p in ctx.target_ports())
        if left == 0:
            break
        time.sleep(0.1)
    if left:
        log(f"  {c.kind}: {left} target connection(s) still open {seconds:.0f}s after "
            "the clients closed")
        ctx.lingering.append(left)
    time.sleep(0.2)


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

def figures(scale, clients=True):
    # (key, label, unit, goal kind or None, decimals)
    rows = [
        ("tput_fwd_1", "throughput relay->target, 1 stream", "MB/s", "throughput", 0),
        ("tput_rev_1", "throughput target->relay, 1 stream", "MB/s", "throughput", 0),
        ("tput_fwd_4", "throughput relay->target, 4 streams", "MB/s", "throughput", 0),
        ("tput_rev_4", "throughput target->relay, 4 streams", "MB/s", "throughput", 0),
        ("rtt_p50", "RTT 64 B, p50", "ms", "rtt_p50", 3),
        ("rtt_p99", "RTT 64 B, p99", "ms", None, 3),
        ("setup_p50", "setup connect+echo+close, p50", "ms", "setup", 3),
        ("setup_p99", "setup connect+echo+close, p99", "ms", "setup", 3),
        ("churn_median", "churn back to back, median/conn", "ms", "churn", 3),
        ("rest_rss", "RSS at rest (forwards up)", "MB", None, 1),
        ("idle_rss", "RSS with {idle} idle conns", "MB", "idle_mem", 1),
        ("idle_threads", "threads with {idle} idle conns", "", None, 0),
        ("cpu_per_gb", "CPU per GB (1-stream runs)", "s/GB", None, 2),
        ("cpu_per_gb_fwd", "CPU per GB relay->target (1 stream)", "s/GB", "cpu", 2),
        ("cpu_per_gb_rev", "CPU per GB target->relay (1 stream)", "s/GB", "cpu", 2),
        ("relay_cpu_per_gb_fwd", "relay sshd CPU per GB relay->target (1 stream)", "s/GB",
         None, 2),
        ("relay_cpu_per_gb_rev", "relay sshd CPU per GB target->relay (1 stream)", "s/GB",
         None, 2),
        ("relay_cpus_fwd", "relay sshd CPUs busy, relay->target (1 stream)", "", None, 2),
        ("relay_cpus_rev", "relay sshd CPUs busy, target->relay (1 stream)", "", None, 2),
        ("idle100_before_rss", f"RSS with {IDLE_AFTER_BULK} idle conns before the bulk runs",
         "MB", None, 1),
        ("idle100_after_rss", f"RSS with {IDLE_AFTER_BULK} idle conns right after the bulk runs",
         "MB", None, 1),
    ]
    if clients:
        for key, label, _extra, kind, _nq, _nf in REDIS_RUNS:
            for cmd in ("SET", "GET"):
                rows.append((f"{key}_{cmd.lower()}", f"{label} {cmd}", "req/s", kind, 0))
        for key, label, _ka, _n, _c, kind in AB_RUNS:
            rows.append((key, label, "req/s", kind, 0))
    for n in scale:
        rows.append((f"scale_{n}_mbps", f"scale {n} conns: echo throughput", "MB/s",
                     "throughput", 1))
        rows.append((f"scale_{n}_rss", f"scale {n} conns: peak RSS", "MB", None, 1))
    return rows


def fmt(v, dec):
    if v is None:
        return "FAILED"
    return f"{v:.{dec}f}"


def goal_text(kind):
    if kind is None:
        return "-", None
    how, x = GOALS[kind]
    return (">= " if how == "min" else "<= ") + f"{x:g}", (how, x)


def build_table(results, ciphers, scale, idle_count):
    """Rows: [figure, flytube, openssh, ratio, goal, met]."""
    rows = []
    for cipher in ciphers:
        f, o = results.get((cipher, "flytube")), results.get((cipher, "openssh"))
        for key, label, unit, kind, dec in figures(scale):
            label = label.replace("{idle}", str(idle_count))
            name = f"{cipher.split('@')[0]}: {label}" + (f" ({unit})" if unit else "")
            if (key.startswith(("redis_", "ab_")) and key not in (f or {})
                    and key not in (o or {})):
                continue  # real client not run (not installed, or --no-clients)
            fv = f.get(key) if f else None
            ov = o.get(key) if o else None
            ratio = fv / ov if (fv is not None and ov) else None
            gtxt, goal = goal_text(kind)
            if goal is None:
                met = ""
            elif ratio is None:
                met = "NO (no data)"
            else:
                ok = ratio >= goal[1] if goal[0] == "min" else ratio <= goal[1]
                met = "yes" if ok else "NO"
            rows.append([name, fmt(fv, dec), fmt(ov, dec),
                         f"{ratio:.2f}" if ratio is not None else "-", gtxt, met])
    return rows


def print_table(rows, head=("figure", "flytube", "OpenSSH", "ratio", "goal", "met")):
    head = list(head)
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    line = "  ".join(h.ljust(widths[i]) if i == 0 else h.rjust(widths[i])
                     for i, h in enumerate(head))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i])
                        for i, c in enumerate(r)))


def markdown(rows, meta, notes, proxy_rows=None, via_rows=None):
    md = ["# flytube performance vs OpenSSH `ssh -R`", ""]
    md += [f"- {k}: {v}" for k, v in meta]
    md += ["", "| figure | flytube | OpenSSH | flytube/OpenSSH | goal | met |",
           "|---|---:|---:|---:|---|---|"]
    for r in rows:
        md.append("| " + " | ".join(str(c) for c in r) + " |")
    md += ["", "Medians of the repetitions; ratio = flytube / OpenSSH. Throughput in MB/s "
           "(10^6 bytes/s) as iperf3 receives it; the scaling rows count bytes echoed back "
           "to the clients per second (each byte crossed the tunnel twice). Goals are on the "
           "ratio; rows with goal '-' are informational. See bench/README.md for the method."]
    def section(title, intro, columns, table):
        md.extend(["", f"## {title}", "", intro, "",
                   "| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)])
        md.extend("| " + " | ".join(str(c) for c in r) + " |" for r in table)

    if via_rows:
        section("Targets via the relay (`--target-via relay`)",
                "flytube reaching its targets through the relay (direct-tcpip), against the "
                "same targets dialed directly (first cipher).",
                ("figure", "via relay", "direct", "ratio"), via_rows)
    if proxy_rows:
        section("Through an HTTP proxy (tinyproxy)",
                "flytube with `--proxy http://...` through tinyproxy on 127.0.0.1, against the "
                "same flytube reaching the relay directly (first cipher).",
                ("figure", "through tinyproxy", "direct", "ratio"), proxy_rows)
    if notes:
        md += ["", "## Notes from the run", ""] + [f"- {n}" for n in notes]
    return "\n".join(md) + "\n"


def log_findings(c):
    """Warnings/errors and abnormal connection closes from a connector's log."""
    notes = []
    try:
        with open(c.logpath, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return notes
    bad = [l for l in lines if re.search(r"\b(WARN|ERROR)\b", l)]
    if c.kind == "openssh":
        bad = [l for l in lines if l.strip()]
    for l in bad[:5]:
        notes.append(f"{c.kind} log: {l.strip()}")
    if len(bad) > 5:
        notes.append(f"{c.kind} log: ... {len(bad) - 5} more warning/error lines")
    # The benchmark has closed every client connection before it stops the connector.
    for l in lines:
        m = re.search(r"stopping: cancelling forwards, (\d+) connection", l)
        if m and int(m.group(1)) > 0:
            notes.append(f"{c.kind}: still held {m.group(1)} connection(s) at SIGTERM although "
                         f"every client had closed: `{l.strip()}`")
    reasons, example = {}, {}
    for l in lines:
        m = re.search(r" closed: .* (\d+\.\d+)s, (.*)$", l)
        if m and m.group(2) != "completed":
            r = re.sub(r"\d+", "N", m.group(2))
            reasons[r] = reasons.get(r, 0) + 1
            example.setdefault(r, l.strip())
    for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:6]:
        notes.append(f"{c.kind}: {n} connection(s) closed with reason '{r}', e.g. `{example[r]}`")
    return notes


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------

def interleave(running, cipher, notes):
    """Drives the connectors' `measure` generators in turns, reversing the order every
    round; a connector whose measurement fails is noted and dropped, the other goes on."""
    left = list(running)
    turn = 0
    while left:
        order = left if turn % 2 == 0 else list(reversed(left))
        for item in order:
            kind, _c, gen = item
            try:
                next(gen)
            except StopIteration:
                left.remove(item)
            except Exception as e:  # record and go on with the other connector
                log(f"{kind} ({cipher}) measurement failed: {e!r}")
                notes.append(f"{kind} ({cipher}): measurement failed: {e!r}")
                left.remove(item)
        turn += 1


def failure_notes(a, kind, cipher, r):
    """Notes for the client runs and connections that failed for one connector."""
    notes = []
    for key, what in (("failed_conns", "setup/churn"),
                      ("idle_failed", "idle (100 before/after bulk, or the big idle set)")):
        if r.get(key):
            notes.append(f"{kind} ({cipher}): {r[key]} {what} connection(s) failed")
    for key, *_ in REDIS_RUNS:
        for cmd in ("set", "get"):
            if r.get(f"{key}_{cmd}_failed"):
                notes.append(f"{kind} ({cipher}): {key} {cmd.upper()}: "
                             f"{r[f'{key}_{cmd}_failed']} run(s) failed")
    for key, *_ in AB_RUNS:
        if r.get(f"{key}_failed"):
            notes.append(f"{kind} ({cipher}): {key}: {r[f'{key}_failed']} "
                         "run(s) failed or had failed requests")
    for n in a.scale:
        if r.get(f"scale_{n}_failed"):
            notes.append(f"{kind} ({cipher}): scale {n}: "
                         f"{r[f'scale_{n}_failed']} connection(s) failed or broke")
    return notes


class Ctx:
    def __init__(self, args, procs, d):
        self.args = args
        self.procs = procs
        self.dir = d
        self.raw = {}
        self.iperf_proc = None
        self.iperf_port = None
        self.echo_port = None
        self.lingering = []
        self.extra_targets = {}  # name -> port of the real-client targets that run
        self.relay_pid = None  # the relay's sshd (its CPU is read beside the connector's)

    def target_ports(self):
        return [self.echo_port, self.iperf_port] + list(self.extra_targets.values())

    def restart_iperf(self):
        """A failed or killed iperf3 client can leave the server busy: start a fresh one
        on the same port."""
        if self.iperf_proc:
            self.procs.stop(self.iperf_proc)
        p = self.procs.start("iperf3 server",
                             ["iperf3", "-s", "-B", HOST, "-p", str(self.iperf_port)],
                             stdout=open(os.path.join(self.dir, "iperf3-server.log"), "ab"),
                             stderr=subprocess.STDOUT)
        self.iperf_proc = p
        deadline = time.monotonic() + 10
        while not listening(self.iperf_port) and time.monotonic() < deadline:
            time.sleep(0.05)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="1 repetition, shorter runs, smaller counts (a smoke run, ~2 min)")
    default_bin = os.path.join(REPO, "target", "release", "flytube")
    ap.add_argument("--flytube", default=default_bin, help=f"flytube binary [{default_bin}]")
    ap.add_argument("--ciphers", default=DEFAULT_CIPHERS,
                    help=f"comma-separated ciphers to compare [{DEFAULT_CIPHERS}]")
    ap.add_argument("--markdown", metavar="FILE", help="also write the table as markdown")
    ap.add_argument("--json", metavar="FILE", help="also write every raw sample as JSON")
    ap.add_argument("--keep-logs", metavar="DIR",
                    help="copy the connector, sshd and iperf3 logs here before cleanup")
    ap.add_argument("--reps", type=int, help="repetitions per figure [3; 1 with --quick]")
    ap.add_argument("--no-proxy", action="store_true",
                    help="skip the rows through tinyproxy (run when tinyproxy is installed)")
    ap.add_argument("--no-via-relay", action="store_true",
                   help="skip the rows for targets reached via the relay (--target-via relay)")
    ap.add_argument("--no-clients", action="store_true",
                    help="skip the real-client rows (redis-benchmark, ab)")
    ap.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.echo_server:
        return a
    q = a.quick
    a.reps = a.reps or (1 if q else 3)
    a.iperf_seconds = 2 if q else 5
    a.rtt_count = 500 if q else 2000
    a.setup_count = 50 if q else 200
    a.churn_count = 100 if q else 200
    a.idle_count = 200 if q else 500
    a.scale = [1, 10, 100, 1000] if not q else [1, 10, 100, 500]
    a.scale_seconds = 1.5 if q else 3.0
    a.cipher_list = [c.strip() for c in a.ciphers.split(",") if c.strip()]
    if not a.cipher_list:
        ap.error("--ciphers is empty")
    if not os.access(a.flytube, os.X_OK):
        ap.error(f"flytube binary {a.flytube} not found; build it with "
                 "cargo build --release --locked")
    a.with_proxy = not a.no_proxy and shutil.which("tinyproxy") is not None
    # Real clients: each pair is optional; say which package brings what is missing.
    a.skipped_clients = []
    a.with_redis = a.with_nginx = not a.no_clients
    if not a.no_clients:
        missing = [(t, pkg) for t, pkg in (("redis-server", "redis-server"),
                                           ("redis-benchmark", "redis-tools"))
                   if not shutil.which(t)]
        if missing:
            a.with_redis = False
            a.skipped_clients.append(
                "redis-benchmark rows skipped: " + ", ".join(t for t, _ in missing)
                + " not found; install with: apt-get install -y "
                + " ".join(sorted({pkg for _, pkg in missing})))
        missing = [(t, pkg) for t, pkg, found in (("nginx", "nginx", nginx_binary()),
                                                  ("ab", "apache2-utils", shutil.which("ab")))
                   if not found]
        if missing:
            a.with_nginx = False
            a.skipped_clients.append(
                "ab rows skipped: " + ", ".join(t for t, _ in missing)
                + " not found; install with: apt-get install -y "
                + " ".join(sorted({pkg for _, pkg in missing})))
    for tool in ("iperf3", "ssh", "ssh-keygen"):
        if not shutil.which(tool):
            ap.error(f"{tool} is not installed (apt-get install -y iperf3 openssh-client)")
    return a


def version_of(argv):
    try:
        r = subprocess.run(argv, capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
        return (r.stdout + r.stderr).decode(errors="replace").strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "?"


def main(argv):
    a = parse_args(argv)
    if a.echo_server:
        echo_server_main()
        return 0
    nofile = raise_nofile()
    if nofile < 4 * max(a.scale) + 200:
        log(f"warning: RLIMIT_NOFILE is {nofile}; the {max(a.scale)}-connection run may fail")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    t_start = time.monotonic()
    procs = Procs()
    d = tempfile.mkdtemp(prefix="flytube-bench.")
    ctx = Ctx(a, procs, d)
    results = {}
    notes = []
    sshd = None
    connectors = []
    try:
        user = subprocess.run(["id", "-un"], capture_output=True, text=True,
                              check=True).stdout.strip()
        relay_port = free_port()
        make_keys(d, user, relay_port)
        sshd = start_relay(procs, d, relay_port, a.cipher_list)
        ctx.relay_pid = sshd.pid
        ctx.iperf_proc, ctx.iperf_port = start_iperf3(procs, d)
        echo, echo_port = start_echo(procs)
        ctx.echo_port = echo_port
        for msg in a.skipped_clients:
            log(msg)
            notes.append(msg)
        for name, enabled, starter in (("redis", a.with_redis, start_redis),
                                       ("nginx", a.with_nginx, start_nginx)):
            if not enabled:
                continue
            try:
                _p, port = starter(procs, d)
                ctx.extra_targets[name] = port
            except Exception as e:  # skip these rows, keep the rest of the run
                log(f"{name} target did not start, its rows are skipped: {e!r}")
                notes.append(f"{name} target did not start, its rows are skipped: {e!r}")
        log(f"relay sshd on {HOST}:{relay_port}, iperf3 on {ctx.iperf_port}, "
            f"echo on {echo_port}"
            + "".join(f", {n} on {p}" for n, p in ctx.extra_targets.items())
            + f"; temp dir {d}")
        for cipher in a.cipher_list:
            # Both connectors up at once, measured in turns (flytube, OpenSSH, OpenSSH,
            # flytube, ...): a load swing on a shared machine then hits both alike.
            ctx.lingering = []
            running = []
            for kind in ("flytube", "openssh"):
                log(f"== {kind}, cipher {cipher}")
                c = start_connector(procs, kind, a, d, relay_port, user, cipher,
                                    ctx.iperf_port, echo_port,
                                    extra_targets=ctx.extra_targets)
                connectors.append(c)
                results[(cipher, kind)] = {"up_s": c.up_s}
                running.append((kind, c, measure(ctx, c, cipher, results[(cipher, kind)])))
            interleave(running, cipher, notes)
            for kind, c, _ in running:
                polls = busy_polls(c)
                if polls:
                    notes.append(f"flytube ({cipher}): busy polls "
                                 + ", ".join(f"{k} {v}" for k, v in polls.items()))
                t_stop = time.monotonic()
                rc = procs.stop(c.proc)
                t_stop = time.monotonic() - t_stop
                if t_stop > 3:
                    notes.append(f"{kind} ({cipher}): took {t_stop:.1f}s to exit on SIGTERM "
                                 "(no client connections were open)")
                if kind == "flytube" and rc not in (0, None):
                    notes.append(f"flytube ({cipher}) exited {rc} on SIGTERM (expected 0)")
                for n in log_findings(c):
                    notes.append(f"({cipher}) {n}")
                notes.extend(failure_notes(a, kind, cipher, results.get((cipher, kind), {})))
            if ctx.lingering:
                notes.append(f"({cipher}): target connections still open 20s after their "
                             f"clients closed, {len(ctx.lingering)} time(s), up to "
                             f"{max(ctx.lingering)}")
        via_rows = None
        if not a.no_via_relay:
            cipher = a.cipher_list[0]
            log(f"== flytube with targets via the relay (direct-tcpip), cipher {cipher}")
            via = {}
            try:
                c = start_connector(procs, "flytube-via-relay", a, d, relay_port, user, cipher,
                                    ctx.iperf_port, echo_port, via_relay=True)
                connectors.append(c)
                try:
                    measure_proxy_path(ctx, c, via)
                finally:
                    procs.stop(c.proc)
                    for n in log_findings(c):
                        notes.append(f"({cipher}) {n}")
            except Exception as e:
                log(f"flytube via relay failed: {e!r}")
                notes.append(f"flytube via relay: measurement failed: {e!r}")
            via_rows = build_proxy_table(via, results.get((cipher, "flytube"), {}))[:4]
        proxy_rows = None
        if a.with_proxy:
            cipher = a.cipher_list[0]
            log(f"== flytube through tinyproxy, cipher {cipher}")
            via = {}
            try:
                _tp, tp_port = start_tinyproxy(procs, d, relay_port)
                c = start_connector(procs, "flytube-proxy", a, d, relay_port, user, cipher,
                                    ctx.iperf_port, echo_port, proxy_port=tp_port)
                connectors.append(c)
                try:
                    measure_proxy_path(ctx, c, via)
                finally:
                    procs.stop(c.proc)
                    for n in log_findings(c):
                        notes.append(f"({cipher}) {n}")
                if via.get("failed_conns"):
                    notes.append(f"flytube-proxy: {via['failed_conns']} setup connection(s) "
                                 "failed")
            except Exception as e:
                log(f"flytube through tinyproxy failed: {e!r}")
                notes.append(f"flytube through tinyproxy: measurement failed: {e!r}")
            proxy_rows = build_proxy_table(via, results.get((cipher, "flytube"), {}))
        wall = time.monotonic() - t_start
        rows = build_table(results, a.cipher_list, a.scale, a.idle_count)
        print()
        print_table(rows)
        print()
        if via_rows:
            print(f"flytube with targets via the relay vs dialed directly ({a.cipher_list[0]}):")
            print_table(via_rows, ("figure", "via relay", "direct", "ratio"))
            print()
        if proxy_rows:
            print(f"flytube through tinyproxy vs direct ({a.cipher_list[0]}):")
            print_table(proxy_rows, ("figure", "via tinyproxy", "direct", "ratio"))
            print()
        for n in notes:
            print("note:", n)
        print(f"wall time {wall:.0f}s")
        if a.markdown:
            meta = [
                ("date", datetime.datetime.now().strftime("%Y-%m-%d %H:%M")),
                ("machine", f"{os.cpu_count()} CPUs, Linux {platform.release()} "
                            "(shared; quote medians and ratios, not absolutes)"),
                ("flytube", f"{a.flytube} ({version_of([a.flytube, '--version'])}, "
                            f"built {time.strftime('%Y-%m-%d %H:%M', time.localtime(os.path.getmtime(a.flytube)))}; "
                            f"tree at git {version_of(['git', '-C', REPO, 'rev-parse', '--short', 'HEAD'])}"
                            + (" + uncommitted changes" if subprocess.run(
                                ["git", "-C", REPO, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
                                capture_output=True, text=True).stdout.strip() else "") + ")"),
                ("OpenSSH", version_of(["ssh", "-V"])),
                ("iperf3", version_of(["iperf3", "--version"])),
                ("real clients", ", ".join(
                    [version_of(["redis-server", "--version"]) + "; redis-benchmark -t set,get "
                     + ("(quick sizes)" if a.quick else "(full sizes)")]
                    if "redis" in ctx.extra_targets else ["redis rows skipped"])
                    + ", " + (f"{version_of([nginx_binary(), '-v'])} + "
                              f"{version_of(['ab', '-V'])}"
                              if "nginx" in ctx.extra_targets else "ab rows skipped")),
                ("settings", f"{a.reps} repetition(s); iperf3 -t {a.iperf_seconds}; "
                             f"RTT {a.rtt_count} round trips; setup {a.setup_count} x 20 ms; "
                             f"churn {a.churn_count}; {a.idle_count} idle; scaling "
                             f"{'/'.join(map(str, a.scale))} conns x {a.scale_seconds:g}s"
                             + (" (--quick)" if a.quick else "")),
                ("wall time", f"{wall:.0f} s"),
            ]
            os.makedirs(os.path.dirname(os.path.abspath(a.markdown)), exist_ok=True)
            with open(a.markdown, "w") as f:
                f.write(markdown(rows, meta, notes, proxy_rows, via_rows))
            log(f"markdown written to {a.markdown}")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"results": {f"{k[0]}/{k[1]}": v for k, v in results.items()},
                           "proxy_rows": proxy_rows, "raw": ctx.raw, "notes": notes}, f,
                      indent=1)
        return 0
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); cleaning up")
        return 130
    finally:
        # Connectors first (they hold sessions on the relay), then targets, then the relay.
        for c in connectors:
            if c.alive():
                procs.stop(c.proc)
        sshd_pid = sshd.pid if sshd else None
        for p in [p for p in procs.procs if p is not sshd]:
            procs.stop(p, grace=5.0)
        if sshd_pid:
            stragglers = children_of(sshd_pid)
            procs.stop(sshd, grace=5.0)
            for pid in stragglers:  # session processes left behind
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        procs.stop_all()
        if a.keep_logs:
            os.makedirs(a.keep_logs, exist_ok=True)
            for name in os.listdir(d):
                if name.endswith(".log"):
                    shutil.copy(os.path.join(d, name), a.keep_logs)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

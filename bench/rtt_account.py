#!/usr/bin/env python3
"""Where a round trip's time goes: bench/interleave.py with each RTT turn accounted per
round trip, for flytube and `ssh -R` alike: CPU per thread name (user, system), voluntary
and involuntary context switches (/proc/PID/task/*), system calls, context switches and
CPU migrations (`perf stat`, needs linux-perf), and TCP segments on the connector's
sockets (`ss -ti`). Takes interleave.py's arguments; prints interleave.py's table, then
the medians of these figures per connector.

    python3 bench/rtt_account.py --rounds 5 --what rtt --flytube target/release/flytube
"""
import collections
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import interleave  # noqa: E402
orig = bench.rtt
PID = {}
ACC = collections.defaultdict(lambda: collections.defaultdict(list))

def threads(pid):
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            st = open(f"/proc/{pid}/task/{t}/stat").read()
            comm = st[st.index("(")+1:st.rindex(")")]
            f = st[st.rindex(")")+2:].split()
            ut, stt = int(f[11]), int(f[12])
            s = open(f"/proc/{pid}/task/{t}/status").read()
            v = int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", s, re.M).group(1))
            nv = int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", s, re.M).group(1))
            out[t] = (comm, ut, stt, v, nv)
        except Exception:
            pass
    return out

def segs(pid):
    r = subprocess.run(["ss", "-tinpH"], capture_output=True, text=True).stdout
    lines = r.splitlines()
    tot = collections.Counter()
    for i, l in enumerate(lines):
        if f"pid={pid}," in l and i + 1 < len(lines):
            info = lines[i+1]
            for k in ("segs_out", "segs_in", "data_segs_out", "data_segs_in"):
                m = re.search(rf"\b{k}:(\d+)", info)
                if m: tot[k] += int(m.group(1))
    return tot

def rtt(port, count, warmup=100):
    pid = PID[port]
    name = open(f"/proc/{pid}/comm").read().strip()
    t0, s0 = threads(pid), segs(pid)
    perf = subprocess.Popen(["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter,context-switches,cpu-migrations,page-faults", "-p", str(pid)],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(0.2)
    r = orig(port, count, warmup)
    perf.send_signal(2); err = perf.communicate()[1]
    t1, s1 = threads(pid), segs(pid)
    n = count + warmup
    a = ACC[name]
    a["p50 us"].append(r[0]*1000)
    for k in s1:
        a[k + "/rt"].append((s1[k] - s0.get(k, 0)) / n)
    for line in err.splitlines():
        p = line.split(",")
        if len(p) > 3 and p[0].strip().isdigit():
            a[p[2] + "/rt"].append(int(p[0]) / n)
    bycomm = collections.defaultdict(lambda: [0, 0, 0, 0])
    for t, (comm, ut, stt, v, nv) in t1.items():
        b = t0.get(t, (comm, 0, 0, 0, 0))
        x = bycomm[comm]
        x[0] += ut - b[1]; x[1] += stt - b[2]; x[2] += v - b[3]; x[3] += nv - b[4]
    tick = os.sysconf("SC_CLK_TCK")
    for comm, (ut, stt, v, nv) in bycomm.items():
        if ut + stt + v + nv == 0: continue
        a[f"[{comm}] user us/rt"].append(ut / tick / n * 1e6)
        a[f"[{comm}] sys us/rt"].append(stt / tick / n * 1e6)
        a[f"[{comm}] vcs/rt"].append(v / n)
        a[f"[{comm}] ivcs/rt"].append(nv / n)
    return r
bench.rtt = rtt
orig_start = bench.start_connector
def start_connector(procs, name, *a, **kw):
    c = orig_start(procs, name, *a, **kw)
    PID[c.fwd_echo] = c.pid
    return c
bench.start_connector = start_connector
try:
    interleave.main(sys.argv[1:])
finally:
    import statistics
    keys = sorted({k for a in ACC.values() for k in a})
    names = list(ACC)
    print("figure | " + " | ".join(names))
    for k in keys:
        print(k + " | " + " | ".join(f"{statistics.median(ACC[n][k]):.3f}" if ACC[n].get(k) else "-" for n in names))

#!/usr/bin/env python3
"""Interleaved A/B: flytube binaries and OpenSSH `ssh -R` up at the same time against one
relay, measured in turns (A, B, A, B, ...) so that the machine's load swings hit every
connector alike. For the figures that a shared machine makes noisy: throughput and CPU per GB
(iperf3, 1 stream; tput4: 4 streams), RTT, redis-benchmark, ab. Prints the median of each figure per connector and the ratio to the first one.

    python3 bench/interleave.py [--rounds 9] [--cipher C] [--flytube BIN ...] [--what tput,tput4,rtt,redis,ab,scale1000]
                                [--ssh-option NAME=VALUE ...]

With no --flytube, target/release/flytube is compared with OpenSSH; with several, each is
measured beside OpenSSH (e.g. the tree before and after a change).
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the same relay, targets and clients as bench.py)


def measure(ctx, c, what, quick):
    """One turn of every figure in `what` through connector `c`'s forwards."""
    ports, extra = {"echo": c.fwd_echo}, c.fwd_extra
    out = {}
    for streams in (1, 4):
        if ("tput" if streams == 1 else "tput4") not in what:
            continue
        tag = "" if streams == 1 else ", 4 streams"
        for label, reverse in (("relay->target", False), ("target->relay", True)):
            mbps, nbytes, cpu, relay = bench.iperf_with_cpu(ctx, c, 2 if quick else 4,
                                                            streams, reverse)
            if mbps:
                out[f"throughput {label}{tag} (MB/s)"] = mbps
                out[f"CPU per GB {label}{tag} (s/GB)"] = cpu / (nbytes / 1e9)
                out[f"relay sshd CPU per GB {label}{tag} (s/GB)"] = relay / (nbytes / 1e9)
    if "rtt" in what:
        count = 500 if quick else 5000
        cpu0 = bench.proc_cpu_s(c.pid)
        p50, p99 = bench.rtt(ports["echo"], count, warmup=100)
        cpu = bench.proc_cpu_s(c.pid) - cpu0
        out["RTT p50 (ms)"] = p50
        out["RTT p99 (ms)"] = p99
        out["CPU per round trip (us)"] = cpu / (count + 100) * 1e6
    if "redis" in what and "redis" in extra:
        for label, args, n in (("redis -c 1", ["-c", "1"], 3000),
                               ("redis -c 50", ["-c", "50"], 20000),
                               ("redis -P 16 -c 20", ["-P", "16", "-c", "20"], 100000)):
            got = bench.redis_benchmark(extra["redis"], args, n)
            for cmd, value in (got or {}).items():
                out[f"{label} {cmd} (req/s)"] = value
    for n in sorted(int(w[len("scale"):]) for w in what if w.startswith("scale")):
        socks, failed = bench.open_idle(ports["echo"], n)
        seconds = 2 if quick else 3
        try:
            cpu0 = bench.proc_cpu_s(c.pid)
            mbps, _, _, broken = bench.push_echo(socks, seconds, c.pid)
            cpu = bench.proc_cpu_s(c.pid) - cpu0
        finally:
            bench.close_all(socks)
        if failed or broken:
            bench.log(f"scale {n}: {failed} failed, {broken} broken")
        out[f"scale {n} conns: echo (MB/s)"] = mbps
        # Warm-up included: CPU over the whole push, per MB echoed in the counted part.
        out[f"scale {n} conns: CPU per MB echoed (ms)"] = cpu * 1e3 / max(mbps * seconds, 1e-9)
        bench.wait_settled(ctx, c)
    if "ab" in what and "nginx" in extra:
        cpu0 = bench.proc_cpu_s(c.pid)
        out["ab new -c 10 (req/s)"] = bench.apache_bench(extra["nginx"], 2000, 10, False)
        out["CPU per new connection (us)"] = (bench.proc_cpu_s(c.pid) - cpu0) / 2000 * 1e6
        out["ab keep-alive -c 10 (req/s)"] = bench.apache_bench(extra["nginx"], 20000, 10, True)
    return out


def paired_ratio(values, base_values):
    """Median of value / base value round by round, with the spread of those ratios
    (their interquartile range), or "-" when the rounds do not line up."""
    if len(values) != len(base_values):
        return "-"
    pairs = [v / b for v, b in zip(values, base_values) if b]
    if not pairs:
        return "-"
    # quantiles() needs two points; one round's ratio is its own median and range.
    q1, median, q3 = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else pairs * 3
    return f"{median:.2f} ({q1:.2f}-{q3:.2f})"


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--cipher", default="aes256-gcm@openssh.com")
    ap.add_argument("--flytube", action="append", help="flytube binary (repeatable)")
    ap.add_argument("--what", default="tput,rtt,redis,ab")
    ap.add_argument("--quick", action="store_true", help="fewer round trips per turn")
    ap.add_argument("--ssh-option", action="append", default=[], metavar="NAME=VALUE",
                    help="extra -o for ssh -R (repeatable), e.g. MACs=hmac-sha2-256 to pin its "
                         "MAC (with aes256-ctr both sides otherwise negotiate umac-64-etm)")
    args = ap.parse_args(argv)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binaries = args.flytube or [os.path.join(root, "target/release/flytube")]
    what = set(args.what.split(","))
    bench.raise_nofile()
    procs = bench.Procs()
    d = tempfile.mkdtemp(prefix="flytube-interleave.")
    try:
        user = os.environ.get("USER") or "root"
        relay_port = bench.free_port()
        bench.make_keys(d, user, relay_port)
        relay = bench.start_relay(procs, d, relay_port, [args.cipher])
        _, echo_port = bench.start_echo(procs)
        ctx = bench.Ctx(args, procs, d)
        ctx.relay_pid = relay.pid
        ctx.iperf_proc, ctx.iperf_port = bench.start_iperf3(procs, d)
        iperf_port = ctx.iperf_port
        extra_targets = {}
        if "redis" in what and shutil.which("redis-server"):
            extra_targets["redis"] = bench.start_redis(procs, d)[1]
        if "ab" in what and bench.nginx_binary():
            extra_targets["nginx"] = bench.start_nginx(procs, d)[1]
        connectors = []
        for i, binary in enumerate(binaries):
            ns = argparse.Namespace(flytube=binary)
            c = bench.start_connector(procs, f"flytube{i}", ns, d, relay_port, user,
                                      args.cipher, iperf_port, echo_port,
                                      extra_targets=extra_targets)
            connectors.append((f"flytube {os.path.basename(binary)}", c))
        c = bench.start_connector(procs, "openssh", None, d, relay_port, user, args.cipher,
                                  iperf_port, echo_port, extra_targets=extra_targets,
                                  ssh_options=args.ssh_option)
        connectors.append(("ssh -R", c))
        samples = {name: {} for name, _ in connectors}
        for r in range(args.rounds):
            order = connectors if r % 2 == 0 else list(reversed(connectors))
            for name, c in order:
                got = measure(ctx, c, what, args.quick)
                for key, value in got.items():
                    samples[name].setdefault(key, []).append(value)
            bench.log(f"round {r + 1}/{args.rounds} done")
        names = [name for name, _ in connectors]
        base = names[-1]
        keys = list(samples[base].keys())
        print(f"\ncipher {args.cipher}, {args.rounds} interleaved rounds, medians; "
              f"ratio = connector / {base}; paired = median of the rounds' own ratios "
              f"(each round's turns ran back to back, so a load swing between rounds "
              f"cancels out)")
        head = (["figure"] + [f"{n}" for n in names] + [f"{n} / {base}" for n in names[:-1]]
                + [f"paired {n} / {base}" for n in names[:-1]])
        print(" | ".join(head))
        for key in keys:
            meds = [bench.median(samples[n].get(key, [0])) for n in names]
            ratios = [f"{m / meds[-1]:.2f}" if meds[-1] else "-" for m in meds[:-1]]
            paired = [paired_ratio(samples[n].get(key, []), samples[base].get(key, []))
                      for n in names[:-1]]
            print(" | ".join([key] + [f"{m:.3f}" if m < 10 else f"{m:.0f}" for m in meds]
                             + ratios + paired))
        for name, c in connectors:
            polls = bench.busy_polls(c)
            if polls:
                print(f"{name}: busy polls " + ", ".join(f"{k} {v}" for k, v in polls.items()))
    finally:
        procs.stop_all()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])

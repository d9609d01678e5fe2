#!/usr/bin/env python3
"""Writes BENCHMARKS.md: one page of current results, a table per component, from the suites' JSON.

    python3 Tools/bench_report.py                 # regenerate BENCHMARKS.md from Benchmarks/Results/*.json
    python3 Tools/bench_report.py --run quick     # first run the quick suites, saving their JSON there
    python3 Tools/bench_report.py --run itch      # or one suite: itch, router, ring, e2e, journal, recovery, submit,
                                                  # store, nats, replicated, alloc (package-benchmark)

The inputs, all in Benchmarks/Results/:
- `<suite>.json`: the output of `tickwire-bench <suite> ...` (the command is saved beside it, in `commands.json`);
- `package-benchmark/*.p90.json`: package-benchmark's p90 per metric of the gated benchmarks (the allocation gate's
  Ring.*, Router.* and Codec.*), exported with `--format metricP90AbsoluteThresholds`;
- `environment.json`: the machine the fresh JSON came from (CPU, kernel, Swift, libzmq, nats-server), written
  by --run; `runs.json`: when each suite last ran, on what CPU and the load average then (its rows' date);
- `carried.json`: dated rows carried from earlier runs for the suites not re-run (the slow ones). A fresh suite's
  row replaces the carried row with the same id.

A quick run (itch, router, alloc) takes about 5 minutes on the 2-core VM after `swift build -c release`.
"""
import argparse
import datetime
import glob
import json
import os
import platform
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "Benchmarks", "Results")

# Each suite's command; quick suites are run by `--run quick`.
SUITES = {
    "itch": ["itch", "--runs", "3"],
    "router": ["router", "--events", "5000000", "--runs", "3"],
    "ring": ["ring", "--events", "10000000", "--runs", "5"],
    "e2e": ["e2e", "--runs", "5", "--events", "1000000"],
    "journal": ["journal", "--runs", "3"],
    "recovery": ["recovery", "--runs", "3"],
    "store": ["store", "--runs", "3"],
    "nats": ["nats", "--runs", "3"],
    "replicated": ["replicated", "--events", "20000", "--runs", "3"],
    "submit": ["submit", "--runs", "9"],
    # Narrow runs of two suites whose full runs are long, for the rows that carry goals.
    "e2e_latency": ["e2e", "--runs", "7", "--param", "only=latency"],
    "ring_spsc": ["ring", "--events", "10000000", "--runs", "9", "--param", "only=spsc"],
    "store_csv": ["store", "--runs", "7", "--param", "n=5500000", "--param", "symbols=500", "--param", "only=csv_import"],
    "submit_latency": ["submit", "--param", "only=latency"],
    "index_growth": ["recovery", "--runs", "5", "--param", "only=index_growth"],
}
# The component a suite's rows belong to, where it is not the suite's own name.
COMPONENT_OF = {"e2e_latency": "e2e", "ring_spsc": "ring", "submit": "journal", "submit_latency": "journal", "store_csv": "store",
                "index_growth": "journal"}
QUICK = ["itch", "router", "alloc"]
GATED = r"^(Ring|Router|Codec|Risk|Alerts)\..*"

COMPONENTS = [
    ("ring", "Ring", "The broadcast ring (TickwireRing): two threads pinned to the two vCPUs unless noted."),
    ("router", "Router", "Subject routing: 2,000 trader subscriptions of literal and wildcard patterns over 8,000 subjects."),
    ("allocations", "Allocations per event (the CI gate)",
     "package-benchmark's `mallocCountTotal` over a whole run of the benchmark (Ring.* and Codec.*: 1M events a run; "
     "Router.*: 1,000 matches a run, so the uncached router's ~1,000 is one allocation per miss, the answer it caches); "
     "the gated rows are checked by `Tools/alloc_gate.sh` against Benchmarks/Thresholds/ in every CI run (Tools/test.sh)."),
    ("e2e", "Daemon end to end", "ZeroMQ in → ring → ZeroMQ out, with the store writer, alerts/risk and the hub running, "
     "against a raw libzmq forwarder on the same 72-byte messages over the same loopback TCP, and a relay that "
     "re-sequences in place (BENCH-HISTORY E12)."),
    ("itch", "Feeds: ITCH 5.0", "The real 1,000-message NASDAQ slice repeated to 10M messages, references renumbered "
     "as through a real day; one core."),
    ("journal", "Journal and trades", "128-byte records; acknowledged means durable (fdatasync)."),
    ("store", "Store and as-of joins", "10M trades × 10M quotes × 1,000 symbols of the synthetic market "
     "(Sources/TickwireBenchSupport/SyntheticMarket.swift, mirrored in Tools/asof_peers.py)."),
    ("risk", "Risk and alerts", "Single-threaded per-event costs, beside a bare loop over the same events."),
    ("nats", "NATS output", "One local nats-server, one subscriber on MD.>, 300,000 messages a run."),
    ("replicated", "Replicated trades (active/active)", "A three-server nats-server cluster, two daemons and the "
     "clients, all on this VM's two vCPUs."),
]


def sh(cmd, **kw):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw).stdout.strip()
    except OSError:
        return ""


def environment():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    swift = sh(["swift", "--version"]).splitlines()
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else []
    zmq = sh(["pkg-config", "--modversion", "libzmq"]) or sh(["dpkg-query", "-W", "-f=${Version}", "libzmq5"])
    nats = sh(["nats-server", "--version"])
    libnats = sh(["sh", "-c", "dpkg-query -W -f='${Version}' 'libnats3*' 2>/dev/null | head -c 40"])
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "cpu": f"{cpu} × {os.cpu_count()} vCPUs",
        "kernel": platform.release(),
        "swift": swift[0] if swift else "?",
        "libzmq": zmq or "?",
        "nats_server": nats or "?",
        "libnats": libnats or "?",
        "load_average": " ".join(load),
    }


def stamp(suite):
    """Records when `suite` ran, on what CPU and the load then, for its rows' date column."""
    path = os.path.join(RESULTS, "runs.json")
    runs = json.load(open(path)) if os.path.exists(path) else {}
    env = environment()
    runs[suite] = {"date_utc": env["date_utc"], "load_average": env["load_average"], "cpu": env["cpu"]}
    with open(path, "w") as f:
        json.dump(runs, f, indent=2, sort_keys=True)
        f.write("\n")


def run(which, bench):
    os.makedirs(RESULTS, exist_ok=True)
    commands_path = os.path.join(RESULTS, "commands.json")
    commands = json.load(open(commands_path)) if os.path.exists(commands_path) else {}
    names = QUICK if which == "quick" else [which]
    for name in names:
        if name == "alloc":
            out = os.path.join(RESULTS, "package-benchmark")
            os.makedirs(out, exist_ok=True)
            for old in glob.glob(os.path.join(out, "*.json")):
                os.remove(old)
            cmd = ["swift", "package", "--disable-sandbox", "--allow-writing-to-directory", out, "benchmark",
                   "--target", "CoreBenchmarks", "--target", "RingBenchmarks", "--target", "RiskBenchmarks", "--filter", GATED,
                   "--format", "metricP90AbsoluteThresholds", "--path", out, "--no-progress"]
            print("running:", " ".join(cmd), file=sys.stderr)
            subprocess.run(cmd, cwd=os.path.join(ROOT, "Benchmarks"), check=True, stdout=sys.stderr)
            commands["alloc"] = "cd Benchmarks && swift package benchmark --target CoreBenchmarks --target RingBenchmarks --target RiskBenchmarks"
            stamp(name)
            continue
        cmd = [bench] + SUITES[name]
        print("running:", " ".join(cmd), file=sys.stderr)
        text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        json.loads(text)
        with open(os.path.join(RESULTS, name + ".json"), "w") as f:
            f.write(text)
        commands[name] = "tickwire-bench " + " ".join(SUITES[name])
        stamp(name)
    env = environment()
    with open(os.path.join(RESULTS, "environment.json"), "w") as f:
        json.dump(env, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(commands_path, "w") as f:
        json.dump(commands, f, indent=2, sort_keys=True)
        f.write("\n")


# ---- Rows from fresh JSON ------------------------------------------------------------------------------------

def m(x):
    """A rate as millions (or thousands) with the unit's letter."""
    if x >= 1e6:
        return f"{x / 1e6:.1f}M" if x < 1e8 else f"{x / 1e6:.0f}M"
    if x >= 1e3:
        return f"{x / 1e3:.0f}k"
    return f"{x:.0f}"


def dur(ns):
    """Nanoseconds as ns, µs or ms."""
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns / 1e6:.1f} ms"


def status(met):
    return "met" if met else "not met"


def rows_itch(d, cmd, date):
    base = d["baseline_copying_decoder"]["msgs_per_s_median"]
    ceil = d["ceiling_byte_sum"]["msgs_per_s_best"]
    dec, bod, books = d["decode_in_place"], d["decode_typed_bodies"], d["decode_and_books"]
    goals = d.get("goals", {})
    return [
        dict(id="itch.decode", measure="ITCH 5.0 decode in place (frame, validate, read fields), one core",
             value=f"{m(dec['msgs_per_s_median'])} msgs/s median ({m(dec['msgs_per_s_best'])} best)",
             baseline=f"copying decoder: {m(base)}",
             ratio=f"{dec['msgs_per_s_median'] / base:.1f}× ({dec['fraction_of_memory_ceiling']:.2f} of the byte-sum ceiling, {m(ceil)})",
             goal=f"≥ {goals.get('decode_msgs_per_s', 50e6) / 1e6:g}M/s", status=status(dec["msgs_per_s_median"] >= goals.get("decode_msgs_per_s", 50e6)),
             date=date, command=cmd),
        dict(id="itch.bodies", measure="decode into the typed ITCHBody of all 23 types",
             value=f"{m(bod['msgs_per_s_median'])} msgs/s median", baseline=f"copying decoder: {m(base)}",
             ratio=f"{bod['msgs_per_s_median'] / base:.1f}×", goal="—", status="—", date=date, command=cmd),
        dict(id="itch.books", measure="decode + order books + QUOTE/TRADE/STATUS events",
             value=f"{m(books['msgs_per_s_median'])} msgs/s median", baseline=f"copying decoder alone: {m(base)}",
             ratio=f"{books['msgs_per_s_median'] / base:.2f}×",
             goal=f"≥ {goals.get('books_msgs_per_s', 10e6) / 1e6:g}M/s", status=status(books["msgs_per_s_median"] >= goals.get("books_msgs_per_s", 10e6)),
             date=date, command=cmd),
    ]


def rows_router(d, cmd, date):
    c, u, b = d["cached_match"], d["uncached_match"], d["brute_force_match"]
    routed = d.get("ring_to_2000_subscriptions", {})
    rows = [
        dict(id="router.cached", measure=f"cached match, {d['subscriptions']:,} subscriptions ({d['patterns']:,} patterns), {d['hot_subjects']:,} hot subjects",
             value=f"{m(c['median_per_s'])} matches/s ({c['ns_per_match']} ns)", baseline=f"brute force over every pattern: {b['median_per_s']:,.0f}/s",
             ratio=f"{d['ratio_cached_vs_brute_force']:,.0f}×", goal="≥ 30M/s", status=status(c["median_per_s"] >= 30e6), date=date, command=cmd),
        dict(id="router.uncached", measure=f"uncached match (walk, build and cache the answer; mean fan-out {d['mean_fanout_hot']:.0f})",
             value=f"{m(u['median_per_s'])} matches/s ({u['ns_per_match']} ns)", baseline=f"brute force: {b['median_per_s']:,.0f}/s",
             ratio=f"{d['ratio_uncached_vs_brute_force']:,.0f}×", goal="≤ 500 ns", status=status(u["ns_per_match"] <= 500), date=date, command=cmd),
        dict(id="router.trie_build", measure=f"trie rebuild, all {d['subscriptions']:,} subscriptions", value=f"{d['trie_build_ms']:.0f} ms",
             baseline="—", ratio="—", goal="—", status="—", date=date, command=cmd),
    ]
    if "events_per_s" in routed:
        rows.append(dict(id="router.ring_to_subscriptions", measure=f"1 producer → ring → routing consumer → {d['subscriptions']:,} subscriptions",
                         value=f"{m(routed['events_per_s'])} events/s = {routed['deliveries_per_s'] / 1e9:.2f}G deliveries/s",
                         baseline="—", ratio="—", goal="—", status="—", date=date, command=cmd))
    lat = d.get("ring_to_2000_subscriptions_paced_latency", {}).get("latency")
    if lat:
        rows.append(dict(id="router.paced_latency", measure="ring → router → subscriptions, parked, an event every 50 µs: p50 / p99",
                         value=f"{dur(lat['p50_ns'])} / {dur(lat['p99_ns'])}", baseline="—", ratio="—", goal="—",
                         status="—", date=date, command=cmd))
    return rows


def rows_alloc(directory, cmd, date):
    """The gated benchmarks' p90 allocation counts beside the committed thresholds."""
    rows = []
    for path in sorted(glob.glob(os.path.join(directory, "*.p90.json"))):
        name = os.path.basename(path)[:-len(".p90.json")]
        bench = name.split(".", 1)[1]
        data = json.load(open(path))
        threshold_path = os.path.join(ROOT, "Benchmarks", "Thresholds", os.path.basename(path))
        threshold = json.load(open(threshold_path)).get("mallocCountTotal") if os.path.exists(threshold_path) else None
        count = data.get("mallocCountTotal")
        rows.append(dict(
            id=f"alloc.{bench}", measure=f"`{bench}`: mallocs per run (p90)",
            value=f"{count}",
            baseline="—", ratio="—",
            goal=f"≤ {threshold} (Benchmarks/Thresholds)" if threshold is not None else "—",
            status=("gated: " + status(count is not None and count <= threshold)) if threshold is not None else "not gated",
            date=date, command=cmd))
    return rows


def rows_e2e(d, cmd, date):
    """Throughput, CPU and the alert rules' cost from a full e2e run (its latency is one round: see e2e_latency)."""
    dm, pm = d["daemon_msgs_per_s"], d["zmq_proxy_msgs_per_s"]
    ratio = d["daemon_over_proxy_median"]
    return [
        dict(id="e2e.throughput", measure="daemon throughput (ZeroMQ in → ring → ZeroMQ out, store, alerts, hub)",
             value=f"{m(dm['median'])} msgs/s (median of {d['runs']}; best {m(dm['best'])})",
             baseline=f"zmq_proxy, same messages, interleaved: {m(pm['median'])} (best {m(pm['best'])})",
             ratio=f"{ratio:.2f} (best rounds {d['daemon_over_proxy_best']:.2f})",
             goal="≥ 1.0× (issue 17)", status=status(ratio >= 1.0), date=date, command=cmd),
        *([dict(id="e2e.relay", measure="a relay that re-sequences in place: one libzmq thread (SUB → PUB) decodes each "
                "event, numbers it, encodes it into the frame it came in and sends the frames on uncopied",
                value=f"{m(d['relay_msgs_per_s']['median'])} msgs/s; CPU {d['relay_cpu_ns_per_msg']:,.0f} ns a message",
                baseline=f"zmq_proxy, same rounds: {m(pm['median'])}; CPU {d['zmq_proxy_cpu_ns_per_msg']:,.0f} ns",
                ratio=f"{statistics.median(d['relay_over_proxy_by_round']):.2f}× zmq_proxy (rounds "
                + ", ".join(f"{x:.2f}" for x in d["relay_over_proxy_by_round"]) + f"); the daemon "
                f"{statistics.median(d['daemon_over_relay_by_round']):.2f}× the relay (medians of per-round ratios)",
                goal="—", status="diagnostic", date=date, command=cmd)] if "relay_over_proxy_by_round" in d else []),
        *([rows_e2e_threads(d["cpu_by_thread"], cmd, date)] if "cpu_by_thread" in d else []),
        dict(id="e2e.cpu", measure="CPU per delivered message, proxy ÷ daemon",
             value=f"{d['daemon_cpu_ns_per_msg']:,.0f} ns (daemon)", baseline=f"zmq_proxy {d['zmq_proxy_cpu_ns_per_msg']:,.0f} ns",
             ratio=f"{d['proxy_over_daemon_cpu_per_msg_median']:.2f}", goal="—", status="—", date=date, command=cmd),
        dict(id="e2e.rules", measure="daemon with every alert rule on ÷ no rules",
             value=f"{m(dm['median'])} / {m(d['daemon_without_alert_rules_msgs_per_s']['median'])} msgs/s",
             baseline="the daemon with alerts = []", ratio=f"{d['alert_rules_on_over_off_median']:.2f}×",
             goal="≤ 10% loss (issue 7)", status=status(d["alert_rules_on_over_off_median"] >= 0.9), date=date, command=cmd),
    ]


def rows_e2e_threads(shares, cmd, date):
    """Where each path's CPU a message goes, thread by thread: the ends and libzmq's I/O threads are in every path,
    so the daemon's own threads against the one forwarder thread of zmq_proxy and of the relay are the difference."""
    by = {}
    for x in shares:
        by.setdefault(x["path"], {})[x["thread"]] = x["cpu_ns_per_msg"]
    ends = ("bench sender", "bench subscriber", "libzmq I/O threads")

    def own(path):
        return sum(v for k, v in by.get(path, {}).items() if k not in ends)

    def listing(path, threads):
        t = by.get(path, {})
        return "; ".join(f"{k} {t.get(k, 0):,.0f}" for k in threads if t.get(k, 0) >= 1)

    daemon_threads = sorted((k for k in by.get("daemon", {}) if k not in ends), key=lambda k: -by["daemon"][k])
    return dict(id="e2e.threads", measure="CPU a delivered message by thread (ns, medians of rounds; from each thread's time "
                "on CPU, /proc/self/task/*/schedstat, over the throughput window)",
                value="daemon: " + listing("daemon", daemon_threads + list(ends)),
                baseline="zmq_proxy: " + listing("zmq_proxy", ["forwarder", *ends])
                + (" · relay: " + listing("relay", ["forwarder", *ends]) if "relay" in by else ""),
                ratio=f"the daemon's own threads {own('daemon'):,.0f} ns against zmq_proxy's forwarder {own('zmq_proxy'):,.0f}"
                + (f" and the relay's {own('relay'):,.0f}" if "relay" in by else ""),
                goal="—", status="diagnostic (BENCH-HISTORY E15)", date=date, command=cmd)


def rows_e2e_latency(d, cmd, date):
    """Paced latency of both paths, round by round; the ratio is the median of per-round ratios."""
    dp50, pp50, dp99, pp99 = d["daemon_p50_ns"], d["zmq_proxy_p50_ns"], d["daemon_p99_ns"], d["zmq_proxy_p99_ns"]
    r50, r99 = d["daemon_over_proxy_p50_median"], d["daemon_over_proxy_p99_median"]
    rounds = ", ".join(f"{a / b:.2f}" for a, b in zip(dp50, pp50))
    hand = d["daemon_hand_off_p50_at_most_ns"]
    return [
        dict(id="e2e.latency", measure=f"publish → receive at {d['latency_rate_msgs_per_s'] // 1000}k msgs/s, p50 / p99",
             value=f"{dur(statistics.median(dp50))}; p99 {dur(statistics.median(dp99))} (medians of {len(dp50)} rounds)",
             baseline=f"zmq_proxy, rounds taking turns: {dur(statistics.median(pp50))}; p99 {dur(statistics.median(pp99))}",
             ratio=f"p50 {r50:.2f}× (rounds {rounds}); p99 {r99:.2f}×",
             goal="p50 ≤ 1.2× (issue 17)", status=status(r50 <= 1.2), date=date, command=cmd),
        dict(id="e2e.handoff", measure="bench send → the daemon's hand-off to ZeroMQ, p50 (power-of-two bucket)",
             value="≤ " + (dur(min(hand)) if min(hand) == max(hand) else f"{dur(min(hand))}–{dur(max(hand))}"), baseline=f"the whole zmq_proxy path's p50, same rounds: {dur(min(pp50))}–{dur(max(pp50))}",
             ratio="—", goal="—", status="diagnostic", date=date, command=cmd),
    ]


def rows_ring_spsc(d, cmd, date):
    def rng(xs):
        return f"{m(min(xs))}–{m(max(xs))}"
    single, multi = d["ratio_ring_batch64_vs_plain_spsc_ring_batch64"], d["ratio_ring_multi_batch64_vs_plain_spsc_ring_batch64"]
    per_round = [a / b for a, b in zip(d["ring_batch64"], d["plain_spsc_ring_batch64"])]
    return [
        dict(id="ring.spsc.batch64.vs_plain", measure="SPSC, batches of 64, pinned",
             value=f"{rng(d['ring_batch64'])} ev/s (one producer); {rng(d['ring_multi_batch64'])} (multi-producer path)",
             baseline=f"plain in-place SPSC ring, same pinning, rounds taking turns: {rng(d['plain_spsc_ring_batch64'])}",
             ratio=f"{single:.2f}× single (rounds {min(per_round):.2f}–{max(per_round):.2f}), {multi:.2f}× multi (medians of per-round ratios, {d['runs']} rounds)",
             goal="≥ 0.95× the plain ring (issue 17)", status=f"single: {status(single >= 0.95)}; multi: {status(multi >= 0.95)}",
             date=date, command=cmd),
    ]


def rows_submit(d, cmd, date):
    med, ratios = d["per_second_median"], d["ratios_median_of_rounds"]
    by_round = d["ratios_by_round"].get("command_vs_service_in_process", [])
    spread = f" ({min(by_round):.2f}–{max(by_round):.2f})" if by_round else ""
    cpu = d["command_cpu_micros_per_trade_rounds"]["command"]
    vs_service, vs_sqlite = ratios["command_vs_service_in_process"], ratios["command_vs_sqlite"]
    return [
        dict(id="journal.trade_submit",
             measure=f"tickwire trade submit --file, {d['trades']:,} trades, end to end (a real `tickwire run`, fresh each round)",
             value=f"median {m(med['command'])}/s ({d['runs']} rounds); the command's CPU {min(cpu):.1f}–{max(cpu):.1f} µs a trade",
             baseline=f"same rounds: the trade service in process {m(med['service_in_process'])}/s; one in-process client with "
                      f"pre-encoded frames {m(med['daemon_pre_encoded'])}/s; SQLite {m(med['sqlite'])}/s",
             ratio=f"{vs_service:.2f}× the service{spread}; {ratios['command_vs_daemon_pre_encoded']:.2f}× the pre-encoded client; "
                   f"{vs_sqlite:,.0f}× SQLite",
             goal="≥ 0.8× the service; ≥ 20× SQLite (issue 17)",
             status=f"service: {status(vs_service >= 0.8)}; SQLite: {status(vs_sqlite >= 20)}", date=date, command=cmd),
    ] + rows_resubmit(d, cmd, date) + rows_submit_cpu(d, cmd, date) + rows_service_zmq(d, cmd, date)


def rows_resubmit(d, cmd, date):
    """The same file submitted again to the same daemon: every trade a duplicate, answered from the journal."""
    again, first = d.get("resubmitted_per_second_rounds"), d["per_second_rounds"]["command"]
    if not again:
        return []
    ratio = d["resubmitted_vs_first_median_of_rounds"]
    by_round = [a / f for a, f in zip(again, first)]
    return [
        dict(id="journal.trade_resubmit",
             measure=f"the same {d['trades']:,} trades submitted again to the same daemon (every one a duplicate, as a client's "
                     "resend after a failover: found through the retry index, read back from the journal, answered with its first seq)",
             value=f"median {m(sorted(again)[len(again) // 2])}/s ({d['runs']} rounds)",
             baseline=f"the first submission of the same trades, same rounds: {m(d['per_second_median']['command'])}/s",
             ratio=f"{ratio:.2f}× (rounds {min(by_round):.2f}–{max(by_round):.2f})",
             goal="≥ 0.8× the first (chosen here: a retry storm must not be the slow path)", status=status(ratio >= 0.8),
             date=date, command=cmd),
    ]


def rows_service_zmq(d, cmd, date):
    """The trade service alone over ZeroMQ + CURVE (the submit suite's in-process baseline), beside SQLite."""
    r, med = d["per_second_rounds"], d["per_second_median"]
    svc, lite = r["service_in_process"], r["sqlite"]
    if not svc or not lite:
        return []
    return [
        dict(id="journal.zmq",
             measure="trades acknowledged over ZeroMQ + CURVE, 4 clients, 32 a message (packed in one frame), 2,048 in flight each",
             value=f"median {m(med['service_in_process'])}/s ({min(svc) / 1e3:.0f}k–{max(svc) / 1e3:.0f}k, {d['runs']} rounds)",
             baseline=f"SQLite (WAL, synchronous=FULL, a transaction a trade), same rounds: {m(med['sqlite'])}/s",
             ratio=f"{med['service_in_process'] / med['sqlite']:,.0f}×", goal="≥ 200k/s", status=status(med["service_in_process"] >= 200e3),
             date=date, command=cmd),
    ]


def rows_submit_cpu(d, cmd, date):
    """Each path's CPU a trade, every process of it: steadier than rates on a shared machine."""
    paths = d.get("path_cpu_micros_per_trade_rounds")
    if not paths or "service_in_process" not in paths:
        return []
    med = {k: sorted(v)[len(v) // 2] for k, v in paths.items()}
    per_round = [s / c for s, c in zip(paths["service_in_process"], paths["command"])]
    return [
        dict(id="journal.trade_submit_cpu",
             measure="CPU a trade of the whole path (every process: the command and the daemon; the service and its clients)",
             value=f"command path {med['command']:.2f} µs (the command {sorted(d['command_cpu_micros_per_trade_rounds']['command'])[len(per_round) // 2]:.2f})",
             baseline=f"same rounds: the service in process {med['service_in_process']:.2f} µs; the daemon with the pre-encoded client "
                      f"{med['daemon_pre_encoded']:.2f} µs",
             ratio=f"service ÷ command path {sorted(per_round)[len(per_round) // 2]:.2f}× (rounds {min(per_round):.2f}–{max(per_round):.2f})",
             goal="—", status="diagnostic", date=date, command=cmd),
    ]


def rows_submit_latency(d, cmd, date):
    """Acknowledgement latency through a real daemon at a steady pace, beside the device's own fsync."""
    a, f = d["acknowledgement_ns"], d["device_fsync_ns"]
    return [
        dict(id="journal.trade_ack_latency",
             measure=f"trade acknowledgement through a real `tickwire run`, {d['rate_per_s'] // 1000}k trades/s in packed batches of "
                     f"{d['batch']}, {d['seconds']} s (several of the service's 5 s checkpoints): p50 / p99 / p99.9 / max",
             value=f"{dur(a['p50'])} / {dur(a['p99'])} / {dur(a['p99_9'])} / {dur(a['max'])}; {d['acknowledgements_over50ms']:,} over 50 ms",
             baseline=f"the device's fdatasync, same run and file system: {dur(f['p50'])} / p99 {dur(f['p99'])}",
             ratio=f"p99 {d['p99_over_fsync_p99']:.0f}×, p99.9 {d['p99_9_over_fsync_p99']:.0f}× the fsync p99",
             goal="—", status="diagnostic (BENCH-HISTORY J6, J7)", date=date, command=cmd),
    ]


def rows_index_growth(d, cmd, date):
    """The retry index's doubling under paced inserts: in place against in the background, round by round."""
    inplace, bg, take = d["in_place_longest_insert_ms"], d["background_longest_insert_ms"], d["background_take_over_ms"]
    ratios = [a / b for a, b in zip(inplace, bg)]
    def ms(xs):
        return f"{statistics.median(xs):.1f} ms (rounds {min(xs):.1f}–{max(xs):.1f})"
    return [
        dict(id="journal.index_growth",
             measure=f"retry index doubling at {d['slots'] >> 20}M slots (the trade service's table) under {d['inserts_per_s'] // 1000}k "
                     "inserts/s: the longest insert",
             value=f"in the background: {ms(bg)}, of which the take-over {statistics.median(take):.1f} ms (the rest: the "
                   "table's dirty pages written as a checkpoint writes them, all 64 MiB here)",
             baseline=f"the doubling in place, same rounds: {ms(inplace)}",
             ratio=f"{statistics.median(ratios):.0f}× shorter (median of per-round ratios)",
             goal="—", status="diagnostic", date=date, command=cmd),
    ]


def rows_store_csv(d, cmd, date):
    c, runs = d["csv_import"], d["runs"]
    parse_r, import_r = c["rounds_parse_seconds"], c["rounds_ratio_import_vs_polars"]
    mb = c["bytes"] / 1e6
    return [
        dict(id="store.csv_parse",
             measure=f"tardis trades CSV parse alone (counting sink), both cores, from the mapped file; "
                     f"{c['rows'] / 1e6:.1f}M trades, {mb:.0f} MB",
             value=f"{c['parse_seconds']:.3f} s median ({runs} rounds: {min(parse_r):.3f}–{max(parse_r):.3f})",
             baseline=f"polars read_csv (2 threads), same rounds: median {c['polars_seconds']:.3f} s",
             ratio=f"{c['ratio_parse_vs_polars']:.2f}×", goal="—", status="—", date=date, command=cmd),
        dict(id="store.csv_import",
             measure=f"whole tardis import (the file's identity beside the parse, parse, subjects encoded as their rows "
                     f"arrive, seal, publish); {c['rows'] / 1e6:.1f}M trades, {mb:.0f} MB",
             value=f"{c['import_seconds']:.3f} s median ({runs} rounds after one not counted)",
             baseline=f"polars read_csv, same rounds: median {c['polars_seconds']:.3f} s",
             ratio=f"{c['ratio_import_vs_polars']:.2f}× (rounds {min(import_r):.2f}–{max(import_r):.2f})",
             goal="≥ 1× polars read_csv (issue 16)", status=status(c["ratio_import_vs_polars"] >= 1), date=date, command=cmd),
    ]


FRESH = {"itch": rows_itch, "router": rows_router, "e2e": rows_e2e, "e2e_latency": rows_e2e_latency,
         "ring_spsc": rows_ring_spsc, "submit": rows_submit, "submit_latency": rows_submit_latency, "store_csv": rows_store_csv,
         "index_growth": rows_index_growth}


def load_rows():
    carried = json.load(open(os.path.join(RESULTS, "carried.json")))
    commands_path = os.path.join(RESULTS, "commands.json")
    commands = json.load(open(commands_path)) if os.path.exists(commands_path) else {}
    env_path = os.path.join(RESULTS, "environment.json")
    env = json.load(open(env_path)) if os.path.exists(env_path) else {}
    fresh_date = env.get("date_utc", "?")
    runs_path = os.path.join(RESULTS, "runs.json")
    runs = json.load(open(runs_path)) if os.path.exists(runs_path) else {}

    def date_of(suite):
        r = runs.get(suite)
        if not r:
            return fresh_date
        # The host too: this shared machine's VM moves between hosts, and a page can hold rows from several.
        host = re.sub(r"\(R\)|\(TM\)| Processor| CPU|\s*×.*$|\s+\d+-Core.*$", "", r.get("cpu", "")).strip()
        return f"{r['date_utc']} ({host + '; ' if host else ''}load {r['load_average']})"
    by_component = {k: list(v) for k, v in carried.items() if not k.startswith("_")}
    fresh_suites = []
    for suite, fn in FRESH.items():
        path = os.path.join(RESULTS, suite + ".json")
        if not os.path.exists(path):
            continue
        fresh_suites.append(suite)
        rows = fn(json.load(open(path)), commands.get(suite, "tickwire-bench " + " ".join(SUITES[suite])), date_of(suite))
        replace(by_component.setdefault(COMPONENT_OF.get(suite, suite), []), rows)
    alloc_dir = os.path.join(RESULTS, "package-benchmark")
    if glob.glob(os.path.join(alloc_dir, "*.p90.json")):
        fresh_suites.append("alloc")
        rows = rows_alloc(alloc_dir, commands.get("alloc", "Tools/alloc_gate.sh"), date_of("alloc"))
        by_component["allocations"] = rows + by_component.get("allocations", [])
    return by_component, env, fresh_suites, carried.get("_note", "")


def replace(rows, fresh):
    ids = {r["id"]: i for i, r in enumerate(rows)}
    for r in fresh:
        if r["id"] in ids:
            rows[ids[r["id"]]] = r
        else:
            rows.append(r)


def cell(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


def render(by_component, env, fresh_suites, note):
    out = []
    w = out.append
    w("# Tickwire benchmarks")
    w("")
    w("<!-- Generated by Tools/bench_report.py from Benchmarks/Results/*.json: edit those (or run the suites), not this page. -->")
    w("")
    w("Current results, one table per component. Every figure is compared with a baseline measured **in the same run**")
    w("on the same machine; the ratio is the claim, the absolute value is context (it moves 13–17% between runs on")
    w("this shared VM). How the figures are taken is under [Method](#method); how they got here, what was tried and")
    w("kept or dropped, is in [docs/BENCH-HISTORY.md](docs/BENCH-HISTORY.md).")
    w("")
    w("Run a suite: `swift build -c release`, then `.build/release/tickwire-bench SUITE` (suites: ring, router, e2e,")
    w("itch, journal, recovery, store, replicated, nats; `--param KEY=VALUE` per suite, listed at the top of its file")
    w("in Sources/TickwireBench/). The single-threaded per-event benchmarks and their allocation counts:")
    w("`cd Benchmarks && swift package benchmark`. Regenerate this page: `python3 Tools/bench_report.py --run quick`.")
    w("")
    w("## Environment")
    w("")
    w(f"Fresh in this page ({', '.join(fresh_suites) or 'none'}), each row dated by its suite's last run and, since 2026-12-05 20:30, the CPU it ran on (this VM moves between "
      f"hosts; a row with none ran earlier, perhaps on another); the machine as of {env.get('date_utc', '?')} UTC:")
    w("")
    w("| | |")
    w("| --- | --- |")
    for key, label in [("cpu", "CPU"), ("kernel", "kernel"), ("swift", "Swift"), ("libzmq", "libzmq"),
                       ("nats_server", "nats-server"), ("libnats", "libnats"), ("load_average", "load average (1, 5, 15 min) at the end")]:
        w(f"| {label} | {cell(env.get(key, '?'))} |")
    w("")
    w(f"Every other row is carried from an earlier run on the same VM, dated in its own column. {note}")
    w("")
    for key, title, intro in COMPONENTS:
        rows = by_component.get(key)
        if not rows:
            continue
        w(f"## {title}")
        w("")
        w(intro)
        w("")
        w("| measure | value | baseline (same run) | ratio | goal | status | measured (UTC) | command |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            w("| " + " | ".join(cell(r.get(c, "—")) for c in
                                ["measure", "value", "baseline", "ratio", "goal", "status", "date"])
              + f" | `{cell(r.get('command', ''))}` |")
        w("")
    w(METHOD)
    return "\n".join(out)


METHOD = """## Method

Written once; every suite follows it.

- **Baselines in the same run.** Each suite measures its component beside a baseline doing the same work in the
  same process (a lock-guarded `Deque`, a plain SPSC ring, `zmq_proxy`, SQLite, raw `write` + `fdatasync`, raw
  libnats and JetStream publishers, polars/DuckDB/pandas). On this shared VM the speed of everything drifts with
  the host over minutes, so only the ratio is comparable between runs.
- **Interleaving.** A suite runs the component and its baselines in turn, round after round (`--runs N` rounds),
  so both see the same conditions; the ratio quoted is the median of the per-round ratios. Changes smaller than
  the noise are measured as A/B pairs of builds taking turns (`Tools/ab_e2e.sh OLD NEW PAIRS`); calibrated with the
  same build on both sides, single pairs range 0.72–1.41, so one step's few percent needs 8–16 pairs.
- **Warm-up.** Latency measures publish untimed events for at least 300 ms and a full lap of the ring first, and
  every path compared goes through the same pacing loop with the same warm-up (a fresh process's first tens of
  milliseconds see interruptions on a quarter of the samples).
- **Pinning.** Two-thread measures pin the producer to CPU 0 and the consumer to CPU 1: unpinned, runs on these
  two vCPUs were bimodal (25–35M or 100–170M events/s by where the scheduler put the threads). Pinning does not
  remove the tail: a vCPU taken by the host for milliseconds stalls a pinned thread too.
- **The floor.** Beside the ring runs the least a hand-off between the two vCPUs can cost (one thread writes a
  stamp and publishes its index in one atomic word; the other spins on it), and beside the batched ring the
  plainest correct SPSC ring: what these two vCPUs can move between them at all. A p99 that the floor also misses
  is the machine's, not the code's; a rate above the floor is not reachable by any design here.
- **The device probe.** Journal latency runs carry a thread that writes and `fdatasync`s its own file every 10 ms;
  a run in which a probe sync took 5 ms or more is counted as stalled (the disk stopped), and p99 is reported over
  all runs and over stall-free runs.
- **Allocations are counted, not guessed**: package-benchmark's malloc interposer over whole runs
  (`mallocCountTotal`), gated in CI (Tools/alloc_gate.sh, a step of Tools/test.sh) against Benchmarks/Thresholds/.
  Wall-clock figures are never gated: they move 13–17% between runs here.
- **Release builds only** (`swift build -c release`); the benchmark executable `tickwire-bench` is built by the
  same command as `tickwire`, links the same allocator (jemalloc) and the same libraries.
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="run suites first: quick, alloc, or a suite name")
    ap.add_argument("--bench", default=os.path.join(ROOT, ".build", "release", "tickwire-bench"))
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    args = ap.parse_args()
    if args.run:
        if args.run not in SUITES and args.run not in ("quick", "alloc"):
            ap.error(f"--run: unknown suite '{args.run}'; one of quick, alloc, {', '.join(SUITES)}")
        run(args.run, args.bench)
    by_component, env, fresh, note = load_rows()
    text = render(by_component, env, fresh, note)
    with open(args.out, "w") as f:
        f.write(text)
    print(f"wrote {args.out} ({len(text.splitlines())} lines; fresh: {', '.join(fresh) or 'none'})", file=sys.stderr)


if __name__ == "__main__":
    main()

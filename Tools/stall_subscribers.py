#!/usr/bin/env python3
"""Connects N subscribers that take the whole feed and never read, and prints the daemon's resident memory.

    python3 Tools/stall_subscribers.py --pid $(pgrep -n -x tickwire) --connect tcp://127.0.0.1:5556 -n 100 --seconds 20

Each stalled subscriber keeps tiny receive buffers (ZMQ_RCVHWM 10, SO_RCVBUF 4 KB) so that the publisher, not
this process, ends up holding what it cannot deliver: this measures what N stalled clients cost the daemon
(docs/PROTOCOL.md, "Slow subscribers"). Prints one line a second: elapsed seconds, VmRSS in MB.
"""
import argparse
import time

import zmq


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pid", type=int, required=True, help="the daemon's process id")
    p.add_argument("--connect", default="tcp://127.0.0.1:5556")
    p.add_argument("-n", type=int, default=100, help="stalled subscribers")
    p.add_argument("--seconds", type=float, default=20)
    a = p.parse_args()
    ctx = zmq.Context()
    print(f"0 {rss_mb(a.pid):.1f} (before)", flush=True)
    socks = []
    for _ in range(a.n):
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.RCVHWM, 10)
        s.setsockopt(zmq.RCVBUF, 4096)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(a.connect)
        socks.append(s)
    start = time.time()
    peak = 0.0
    while time.time() - start < a.seconds:
        time.sleep(1)
        r = rss_mb(a.pid)
        peak = max(peak, r)
        print(f"{time.time() - start:.0f} {r:.1f}", flush=True)
    print(f"peak {peak:.1f} MB with {a.n} stalled subscribers", flush=True)
    for s in socks:
        s.close()
    ctx.term()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A Tickwire subscriber on a NATS cluster, written from docs/PROTOCOL.md ("NATS") alone, with nats-py.

    pip install nats-py
    python3 Tools/subscribe_nats.py 'MD.XNAS.*.TRADE' 'MD.>' --servers nats://127.0.0.1:4222 --count 10

Prints one JSON object a line with the same fields as `tickwire tail --format jsonl`; reports on stderr the loss
it sees per subject from subject_seq, the daemon's GAP notices (SYS.NATS.GAP.<STREAM>) and slow-consumer drops.
The servers filter token-exactly; overlapping patterns are deduplicated by taking each subject from the first
pattern that matches it.
"""
import argparse
import asyncio
import json
import struct
import sys

import nats
from nats.errors import SlowConsumerError

HEADER = struct.Struct("<BBBBHHQQqq")      # 40 bytes
BODY = struct.Struct("<qqqq")              # 32 bytes
KINDS = {1: "TRADE", 2: "QUOTE", 3: "STATUS", 4: "BUST", 5: "GAP", 6: "BOOK", 7: "ALERT", 8: "RISK"}
SIDES = {0: "unknown", 1: "buy", 2: "sell"}
CATEGORIES = {1: "system", 2: "trading", 3: "shortSale", 4: "circuitBreaker", 5: "ipo", 6: "luld", 255: "other"}
NOTICE = "SYS.NATS.GAP."


class Fixed:
    """An exact decimal from an integer scaled by 1e8; printed as a bare JSON number."""

    def __init__(self, e8):
        self.e8 = e8

    def __str__(self):
        sign = "-" if self.e8 < 0 else ""
        whole, frac = divmod(abs(self.e8), 10**8)
        return sign + str(whole) + (("." + f"{frac:08d}".rstrip("0")) if frac else "")


def matches(pattern, subject):
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(s) == len(p)


def notice_subjects(patterns):
    roots = []
    for p in patterns:
        root = p.split(".")[0]
        root = "*" if root in ("*", ">") else root
        if root not in roots:
            roots.append(root)
    return [NOTICE + "*"] if "*" in roots else [NOTICE + r for r in roots]


def decode(subject, payload):
    if len(payload) < HEADER.size:
        raise ValueError(f"payload is {len(payload)} bytes; a header needs {HEADER.size}")
    version, kind, flags, _, source, body_len, seq, subject_seq, event_time, known_time = HEADER.unpack_from(payload)
    if version != 1:
        raise ValueError(f"payload version {version} is not supported")
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind} at byte 1")
    if body_len < BODY.size or len(payload) < HEADER.size + BODY.size:
        raise ValueError(f"{KINDS[kind]} body is too short")
    if body_len > len(payload) - HEADER.size:
        raise ValueError(f"{KINDS[kind]} body_length {body_len} is more than the message holds: a cut message")
    w0, w1, w2, w3 = BODY.unpack_from(payload, HEADER.size)
    ev = {"subject": subject, "kind": KINDS[kind], "seq": seq, "subject_seq": subject_seq,
          "event_time": event_time, "known_time": known_time}
    if kind == 1:
        ev.update(price=Fixed(w0), size=Fixed(w1), side=SIDES.get(flags, "unknown"), trade_id=w2 & (2**64 - 1))
    elif kind == 2:
        ev.update(bid=Fixed(w0), bid_size=Fixed(w1), ask=Fixed(w2), ask_size=Fixed(w3))
    elif kind == 3:
        reason = (w1 & (2**64 - 1)).to_bytes(8, "little").rstrip(b"\0").decode("ascii", "replace").strip()
        ev.update(category=CATEGORIES.get(flags, "other"), state=chr(w0 & 0xFF), reason=reason)
    elif kind == 4:
        ev.update(trade_id=w2 & (2**64 - 1), price=Fixed(w0), size=Fixed(w1), side=SIDES.get(flags, "unknown"))
    elif kind == 5:
        ev.update(first=w0 & (2**64 - 1), last=w1 & (2**64 - 1), scope="publisher" if flags == 0 else "source")
    elif kind == 6:
        ev.update(side="bid" if flags == 1 else "ask", level=w2, price=Fixed(w0), size=Fixed(w1), levels=w3)
    elif kind == 7:
        # STALE_QUOTE (5): the reference is the last quote's time in nanoseconds, not a x1e8 value.
        ev.update(rule=w0, value=Fixed(w1), threshold=Fixed(w2), reference=w3 if w0 == 5 else Fixed(w3))
    elif kind == 8:
        ev.update(position=Fixed(w0), notional=Fixed(w1), pnl=Fixed(w2), used_bp=w3)
    return ev


def to_json(ev):
    parts = []
    for k, v in ev.items():
        parts.append(json.dumps(k) + ":" + (str(v) if isinstance(v, Fixed) else json.dumps(v)))
    return "{" + ",".join(parts) + "}"


def warn(text):
    print(f"subscribe_nats.py: {text}", file=sys.stderr, flush=True)


async def run(args):
    done = asyncio.Event()
    state = {"printed": 0, "last": {}}
    patterns = list(args.patterns)
    subscribed = patterns + [n for n in notice_subjects(patterns) if n not in patterns]

    async def on_error(e):
        if isinstance(e, SlowConsumerError):
            warn(f"slow consumer: the client dropped a message of {e.subject}; its subject_seq will show the gap")
        else:
            warn(f"error: {e}")

    nc = await nats.connect(servers=args.servers.split(","), error_cb=on_error, max_reconnect_attempts=-1,
                            reconnect_time_wait=0.25, name="subscribe_nats.py")

    def handler(index):
        async def on_msg(msg):
            subject = msg.subject
            # Overlapping patterns each get a copy: take a subject from the first pattern that matches it only.
            first = next((i for i, p in enumerate(subscribed) if matches(p, subject)), index)
            if first != index or done.is_set():
                return
            try:
                ev = decode(subject, msg.data)
            except ValueError as e:
                warn(f"{subject}: {e}")
                return
            if subject.startswith(NOTICE) and ev["kind"] == "GAP":
                warn(f"gap notice: the publisher could not send seq {ev['first']}...{ev['last']} of stream "
                     f"{subject[len(NOTICE):]}")
            last = state["last"].get(subject)
            if last is not None and ev["subject_seq"] > last + 1:
                warn(f"gap: {subject} lost subject_seq {last + 1}...{ev['subject_seq'] - 1}")
            state["last"][subject] = ev["subject_seq"]
            sys.stdout.write(to_json(ev) + "\n")
            state["printed"] += 1
            if args.count and state["printed"] >= args.count:
                done.set()
        return on_msg

    for i, subject in enumerate(subscribed):
        await nc.subscribe(subject, cb=handler(i), pending_msgs_limit=args.pending)
    await nc.flush()
    print("subscribed", file=sys.stderr, flush=True)

    status = 0
    while not done.is_set():
        before = state["printed"]
        try:
            await asyncio.wait_for(done.wait(), timeout=args.timeout or None)
        except asyncio.TimeoutError:
            if state["printed"] == before:
                warn(f"nothing arrived within {args.timeout} s")
                status = 1
                break
    sys.stdout.flush()
    await nc.close()
    return status


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("patterns", nargs="+")
    ap.add_argument("--servers", default="nats://127.0.0.1:4222", help="comma-separated NATS URLs of one cluster")
    ap.add_argument("--count", type=int, default=0, help="exit after this many events (0: forever)")
    ap.add_argument("--timeout", type=float, default=0, help="exit 1 if nothing arrives for this many seconds")
    ap.add_argument("--pending", type=int, default=1_000_000, help="messages the client may hold per subscription")
    return asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())

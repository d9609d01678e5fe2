#!/usr/bin/env python3
"""A Tickwire subscriber written from docs/PROTOCOL.md alone, with pyzmq.

    pip install pyzmq
    python3 Tools/subscribe.py 'MD.XNAS.*.TRADE' 'MD.>' --connect tcp://127.0.0.1:5556 --count 10

Prints one JSON object a line with the same fields as `tickwire tail --format jsonl`, and reports loss per
subject from subject_seq on stderr.
"""
import argparse
import json
import struct
import sys

import zmq

HEADER = struct.Struct("<BBBBHHQQqq")      # 40 bytes
BODY = struct.Struct("<qqqq")              # 32 bytes
KINDS = {1: "TRADE", 2: "QUOTE", 3: "STATUS", 4: "BUST", 5: "GAP", 6: "BOOK", 7: "ALERT", 8: "RISK"}
SIDES = {0: "unknown", 1: "buy", 2: "sell"}
CATEGORIES = {1: "system", 2: "trading", 3: "shortSale", 4: "circuitBreaker", 5: "ipo", 6: "luld", 255: "other"}


class Fixed:
    """An exact decimal from an integer scaled by 1e8; json.dumps prints it as a bare number."""

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


def zmq_prefix(pattern):
    out = []
    for tok in pattern.split("."):
        if tok in ("*", ">"):
            return ".".join(out) + "." if out else ""
        out.append(tok)
    return ".".join(out)


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
        raise ValueError(f"{KINDS[kind]} body_length {body_len} is more than the frame holds: a cut message")
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
        ev.update(first=w0, last=w1, scope="publisher" if flags == 0 else "source")
    elif kind == 6:
        ev.update(side="bid" if flags == 1 else "ask", level=w2, price=Fixed(w0), size=Fixed(w1), levels=w3)
    elif kind == 7:
        # STALE_QUOTE (5): the reference is the last quote's time in nanoseconds, not a x1e8 value.
        ev.update(rule=w0, value=Fixed(w1), threshold=Fixed(w2), reference=w3 if w0 == 5 else Fixed(w3))
    elif kind == 8:
        ev.update(position=Fixed(w0), notional=Fixed(w1), pnl=Fixed(w2), used_bp=w3)
    return ev


def to_json(ev):
    # Fixed values print as exact JSON numbers, not strings and not floats.
    parts = []
    for k, v in ev.items():
        parts.append(json.dumps(k) + ":" + (str(v) if isinstance(v, Fixed) else json.dumps(v)))
    return "{" + ",".join(parts) + "}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("patterns", nargs="+")
    ap.add_argument("--connect", default="tcp://127.0.0.1:5556")
    ap.add_argument("--count", type=int, default=0, help="exit after this many events (0: forever)")
    ap.add_argument("--timeout", type=float, default=0, help="exit 1 if nothing arrives for this many seconds")
    args = ap.parse_args()

    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.SNDHWM, 0)   # subscriptions go upstream through the send queue: never drop one
    for prefix in sorted({zmq_prefix(p) for p in args.patterns}):
        sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())
    sock.connect(args.connect)
    if args.timeout:
        sock.setsockopt(zmq.RCVTIMEO, int(args.timeout * 1000))

    last_subject_seq = {}
    printed = 0
    while not args.count or printed < args.count:
        try:
            frames = sock.recv_multipart()
        except zmq.Again:
            print(f"subscribe.py: nothing arrived within {args.timeout} s", file=sys.stderr)
            return 1
        if len(frames) != 2:
            print(f"subscribe.py: skipped a message of {len(frames)} frames", file=sys.stderr)
            continue
        subject = frames[0].decode("ascii", "replace")
        if not any(matches(p, subject) for p in args.patterns):
            continue
        try:
            ev = decode(subject, frames[1])
        except ValueError as e:
            print(f"subscribe.py: {subject}: {e}", file=sys.stderr)
            continue
        last = last_subject_seq.get(subject)
        if last is not None and ev["subject_seq"] > last + 1:
            print(f"subscribe.py: gap: {subject} lost subject_seq {last + 1}...{ev['subject_seq'] - 1}", file=sys.stderr)
        last_subject_seq[subject] = ev["subject_seq"]
        print(to_json(ev), flush=False)
        printed += 1
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

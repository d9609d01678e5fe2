#!/usr/bin/env python3
"""Submit trades to a Tickwire daemon, written from docs/PROTOCOL.md ("Trade submission") alone, with pyzmq.

    pip install pyzmq
    python3 Tools/submit_trades.py trades.jsonl --data ./tickwire-data --connect tcp://127.0.0.1:5557

Reads one JSON object a line ({"desk","symbol","side","qty","price","id"}; '-' reads stdin), sends them over a
CURVE-authenticated DEALER, up to --batch trades a message (packed in one frame) and --window in flight, and prints one
JSON acknowledgement a line as replies arrive: {"id":..., "seq":...} or {"id":..., "error":...}. Exits 1 if any
trade was rejected or unanswered. Keys come from the data directory, as for `tickwire trade submit`.
"""
import argparse
import json
import os
import struct
import sys
from decimal import Decimal

import zmq

SUBMIT, ACK, REJECT, SUBMIT_PACKED, REPLIES_PACKED, VERSION = 0x01, 0x02, 0x03, 0x04, 0x05, 1
SIDES = {"buy": 1, "sell": 2}
MAX_PER_MESSAGE = 1024


def read_key(path):
    """A key file: lines `name = "..."`, `public = "..."`, `secret = "..."` (docs/STORAGE.md, "Keys")."""
    fields = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                fields[k.strip()] = v.strip().strip('"')
    return fields


def short(text):
    b = text.encode()
    if len(b) > 255:
        raise ValueError(f"'{text[:20]}…' is longer than 255 bytes")
    return bytes([len(b)]) + b


def e8(value):
    return int((Decimal(str(value)) * 100_000_000).to_integral_exact())


def encode_submit(t):
    side = SIDES.get(str(t["side"]).lower())
    if side is None:
        raise ValueError(f"side must be buy or sell, not {t['side']!r}")
    return (struct.pack("<BBBBqq", SUBMIT, VERSION, side, 0, e8(t["qty"]), e8(t["price"]))
            + short(str(t["desk"])) + short(str(t["symbol"])) + short(str(t["id"])))


def pack(kind, frames):
    """One frame holding several: type, version, u16 count, then each as a u16 length and its bytes."""
    out = bytearray(struct.pack("<BBH", kind, VERSION, len(frames)))
    for f in frames:
        out += struct.pack("<H", len(f)) + f
    return bytes(out)


def unpack(frame):
    """The frames of a packed reply (PROTOCOL.md, "Packed batches")."""
    kind, version, count = struct.unpack_from("<BBH", frame, 0)
    if kind != REPLIES_PACKED or version != VERSION:
        raise ValueError(f"not a packed reply: type 0x{kind:02x}, version {version}")
    at, frames = 4, []
    for _ in range(count):
        (n,) = struct.unpack_from("<H", frame, at)
        frames.append(frame[at + 2:at + 2 + n])
        at += 2 + n
    return frames


def decode_reply(frame):
    kind, version, flags = frame[0], frame[1], frame[2]
    if version != VERSION:
        raise ValueError(f"reply of version {version}")
    if kind == ACK:
        (seq,) = struct.unpack_from("<Q", frame, 4)
        n = frame[12]
        return {"id": frame[13:13 + n].decode(), "seq": seq}
    if kind == REJECT:
        n = frame[4]
        cid = frame[5:5 + n].decode()
        (tlen,) = struct.unpack_from("<H", frame, 5 + n)
        text = frame[7 + n:7 + n + tlen].decode()
        return {"id": cid, "error": text, "code": flags}
    raise ValueError(f"unknown reply type 0x{kind:02x}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", help="JSONL trades, or - for stdin")
    ap.add_argument("--data", default="./tickwire-data", help="data directory holding keys/")
    ap.add_argument("--trader", help="trader key keys/traders/NAME.key (default: the first)")
    ap.add_argument("--connect", default="tcp://127.0.0.1:5557")
    ap.add_argument("--batch", type=int, default=64, help=f"trades a message (packed in one frame), 1..{MAX_PER_MESSAGE}")
    ap.add_argument("--window", type=int, default=8192, help="most trades in flight")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a reply")
    args = ap.parse_args()
    if not 1 <= args.batch <= MAX_PER_MESSAGE:
        ap.error(f"--batch must be 1..{MAX_PER_MESSAGE}")

    server = read_key(os.path.join(args.data, "keys", "server.key"))
    traders = os.path.join(args.data, "keys", "traders")
    name = args.trader or sorted(f[:-4] for f in os.listdir(traders) if f.endswith(".key"))[0]
    me = read_key(os.path.join(traders, name + ".key"))

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.curve_serverkey = server["public"].encode()
    sock.curve_publickey = me["public"].encode()
    sock.curve_secretkey = me["secret"].encode()
    sock.linger = 0
    sock.connect(args.connect)

    failed = False
    outstanding = 0

    def receive_one():
        nonlocal outstanding, failed
        if not sock.poll(int(args.timeout * 1000)):
            print(json.dumps({"error": f"no reply within {args.timeout} s for {outstanding} trades"}))
            failed = True
            return False
        frames = sock.recv_multipart()
        if len(frames) == 1 and frames[0][0] == REPLIES_PACKED:
            frames = unpack(frames[0])
        for frame in frames:
            reply = decode_reply(frame)
            failed |= "error" in reply
            outstanding -= 1
            print(json.dumps(reply), flush=True)
        return True

    source = sys.stdin if args.file == "-" else open(args.file)
    batch = []

    def flush():
        nonlocal outstanding
        while batch and outstanding + len(batch) > args.window:
            if not receive_one():
                return
        if batch:
            # A batch in one packed frame: one CURVE box, not one a trade.
            sock.send(pack(SUBMIT_PACKED, batch) if len(batch) > 1 else batch[0])
            outstanding += len(batch)
            batch.clear()

    for number, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            batch.append(encode_submit(json.loads(line)))
        except (ValueError, KeyError, TypeError) as e:
            print(json.dumps({"line": number, "error": f"{args.file}:{number}: {e}"}))
            failed = True
            continue
        if len(batch) >= args.batch:
            flush()
    flush()
    while outstanding > 0 and receive_one():
        pass
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

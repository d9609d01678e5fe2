#!/usr/bin/env python3
"""A synthetic full ITCH 5.0 day built from the real 1,000-message capture in Tests/Fixtures (NASDAQ, 2019-12-30,
09:30; Tests/Fixtures/PROVENANCE.md): copies of it back to back, each copy's order references renumbered past the
previous copy's, its timestamps moved into its own slot of 04:00-20:00 Eastern (order kept), the messages about
orders the capture never adds dropped, and a Delete for every order a copy leaves resting, so the books stay the
size of one copy's as a real day's do. ~0.68 events per message: 443M messages make ~300M events (13.4 GB).

    python3 Tools/itch_day.py OUT.itch50 [MESSAGES]      # default 443,000,000
    tickwire import --source itch:OUT.itch50 --date 2019-12-30 --data DIR
"""
import os, struct, sys
import numpy as np
src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "nasdaq_itch50_20191230_0930_1000msgs.itch50")
out = sys.argv[1]
target = int(sys.argv[2]) if len(sys.argv) > 2 else 443_000_000
b = open(src, 'rb').read()
msgs = []; o = 0
while o + 2 <= len(b):
    n = struct.unpack('>H', b[o:o+2])[0]; msgs.append(bytearray(b[o+2:o+2+n])); o += 2 + n
# Keep only messages about orders the capture itself adds (the window starts mid-day: the rest name unknown orders).
known, kept = set(), []
for m in msgs:
    if m[0] in b'AF': known.add(int.from_bytes(m[11:19], 'big'))
    if m[0] in b'ECXDU' and int.from_bytes(m[11:19], 'big') not in known: continue
    if m[0] == ord('U'): known.add(int.from_bytes(m[19:27], 'big'))
    kept.append(m)
msgs = kept
refs = set()
for m in msgs:
    if m[0] in b'AFECXDU': refs.add(int.from_bytes(m[11:19], 'big'))
    if m[0] == ord('U'): refs.add(int.from_bytes(m[19:27], 'big'))
rank = {r: i + 1 for i, r in enumerate(sorted(refs))}
live = {}
for m in msgs:
    t = m[0]
    if t in b'AF': live[int.from_bytes(m[11:19], 'big')] = m[1:3]
    elif t == ord('D'): live.pop(int.from_bytes(m[11:19], 'big'), None)
    elif t == ord('U'):
        old = int.from_bytes(m[11:19], 'big'); loc = live.pop(old, m[1:3]); live[int.from_bytes(m[19:27], 'big')] = loc
t0 = int.from_bytes(msgs[0][5:11], 'big'); tend = int.from_bytes(msgs[-1][5:11], 'big')
for r, loc in sorted(live.items()):
    msgs.append(bytearray(b'D' + bytes(loc) + b'\0\0' + tend.to_bytes(6, 'big') + r.to_bytes(8, 'big')))
# Renumber references densely; flatten into one copy with the byte offsets to patch.
ts_at, ref_at, blob = [], [], bytearray()
for m in msgs:
    base = len(blob) + 2
    if m[0] in b'AFECXDU': m[11:19] = rank[int.from_bytes(m[11:19], 'big')].to_bytes(8, 'big'); ref_at.append(base + 11)
    if m[0] == ord('U'): m[19:27] = rank[int.from_bytes(m[19:27], 'big')].to_bytes(8, 'big'); ref_at.append(base + 19)
    ts_at.append(base + 5)
    blob += struct.pack('>H', len(m)) + m
per = len(msgs); copies = max(1, target // per)
day0, day1 = 4 * 3600 * 10**9, 20 * 3600 * 10**9      # 04:00 to 20:00, the feed's day
slot = (day1 - day0) // copies
span = max(1, tend - t0)
arr = np.frombuffer(bytes(blob), dtype=np.uint8)
ts = np.array([int.from_bytes(blob[a:a+6], 'big') for a in ts_at], dtype=np.int64)
rel = (ts - t0) * (slot - 1) // span                   # within the copy's slot, order kept
ts_at = np.array(ts_at); ref_at = np.array(ref_at)
refs0 = np.array([int.from_bytes(blob[a:a+8], 'big') for a in ref_at], dtype=np.int64)
nref = len(rank)
tsb = np.arange(6)[None, :]; rfb = np.arange(8)[None, :]
with open(out, 'wb') as f:
    for k in range(copies):
        c = arr.copy()
        t = day0 + k * slot + rel
        c[(ts_at[:, None] + tsb).ravel()] = ((t[:, None] >> (8 * (5 - tsb))) & 0xFF).astype(np.uint8).ravel()
        r = refs0 + k * nref
        c[(ref_at[:, None] + rfb).ravel()] = ((r[:, None] >> (8 * (7 - rfb))) & 0xFF).astype(np.uint8).ravel()
        f.write(c.tobytes())
print(f"{copies} copies of {per} messages: {copies * per} messages, {copies * len(blob)} bytes")

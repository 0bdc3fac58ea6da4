#!/usr/bin/env python3
"""Independent DBC codec for the host's cross-check test, using cantools.

  cantools_xcheck.py encode DBC SEED N   -> JSON frames with the values cantools encoded
  cantools_xcheck.py decode DBC          <- JSON frames on stdin, -> decoded values

Values are chosen as random raw integers within each signal's bit width, so
every bit pattern class (sign bit, all ones, zero) is exercised, then scaled.
"""
import json
import random
import sys

import cantools


def load(path):
    # Vendor DBCs are often Latin-1; cantools needs to be told.
    return cantools.database.load_file(path, encoding="latin-1", strict=False)


def random_raw(sig, rng):
    bits = sig.length
    if sig.is_signed:
        return rng.randint(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    return rng.randint(0, (1 << bits) - 1)


def physical(sig, raw):
    return raw * sig.scale + sig.offset


def encode(path, seed, n):
    db = load(path)
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        for msg in db.messages:
            values = {}
            mux = next((s for s in msg.signals if s.is_multiplexer), None)
            chosen = None
            if mux is not None:
                ids = sorted({i for s in msg.signals for i in (s.multiplexer_ids or [])})
                chosen = rng.choice(ids)
                values[mux.name] = physical(mux, chosen)
            for sig in msg.signals:
                if sig.is_multiplexer:
                    continue
                if sig.multiplexer_ids is not None and chosen not in sig.multiplexer_ids:
                    continue
                values[sig.name] = physical(sig, random_raw(sig, rng))
            data = msg.encode(values, scaling=True, strict=False)
            out.append({
                "message": msg.name,
                "id": msg.frame_id,
                "extended": msg.is_extended_frame,
                "data": data.hex(),
                "values": values,
            })
    json.dump(out, sys.stdout)


def decode(path):
    db = load(path)
    frames = json.load(sys.stdin)
    out = []
    for f in frames:
        msg = db.get_message_by_frame_id(f["id"])
        values = msg.decode(bytes.fromhex(f["data"]), decode_choices=False, scaling=True, allow_truncated=False)
        out.append({"message": msg.name, "values": {k: float(v) for k, v in values.items()}})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    if sys.argv[1] == "encode":
        encode(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "decode":
        decode(sys.argv[2])
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")

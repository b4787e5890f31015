#!/usr/bin/env python3
"""Writes the BGP fuzzer's seed corpus (agent/fuzz/bgp_corpus): OPENs and
UPDATEs of the kinds BIRD, FRR and GoBGP send, with the leading byte that
picks the fuzzer's path (0 OPEN, 1/2 UPDATE 4-/2-octet AS, 3 framed
messages, 4 bytes into a session). Run from the repository root."""
import os
import struct

OUT = os.path.join(os.path.dirname(__file__), "bgp_corpus")


def msg(t, body):
    return b"\xff" * 16 + struct.pack("!HB", 19 + len(body), t) + body


def cap(code, value=b""):
    return bytes([code, len(value)]) + value


def open_body(asn=65000, hold=90, caps=b""):
    params = bytes([2, len(caps)]) + caps if caps else b""
    return struct.pack("!BHHIB", 4, asn if asn < 65536 else 23456, hold, 0x0A1E0101,
                       len(params)) + params


def attr(flags, t, v):
    if len(v) > 255:
        return struct.pack("!BBH", flags | 0x10, t, len(v)) + v
    return struct.pack("!BBB", flags, t, len(v)) + v


def prefix(length, addr):
    return bytes([length]) + addr[:(length + 7) // 8]


def update(withdrawn=b"", attrs=b"", nlri=b""):
    return struct.pack("!H", len(withdrawn)) + withdrawn + struct.pack("!H", len(attrs)) + attrs + nlri


def main():
    os.makedirs(OUT, exist_ok=True)
    mp4 = cap(1, b"\x00\x01\x00\x01")
    mp6 = cap(1, b"\x00\x02\x00\x01")
    gr = cap(64, b"\x80\x78\x00\x01\x01\x80\x00\x02\x01\x80")
    as4 = cap(65, struct.pack("!I", 4200000001))
    base = (attr(0x40, 1, b"\x00") + attr(0x40, 2, b"\x02\x01" + struct.pack("!I", 65001)))
    nh = attr(0x40, 3, bytes([10, 30, 1, 11]))
    comm = attr(0xC0, 8, struct.pack("!II", 0xFDE80064, 0xFFFFFF01))
    large = attr(0xC0, 32, struct.pack("!III", 65001, 1, 2))
    mp_reach = attr(0x80, 14, struct.pack("!HBB", 2, 1, 16) + bytes(16) + b"\x00"
                    + prefix(128, bytes(range(16))))
    mp_unreach = attr(0x80, 15, struct.pack("!HB", 2, 1) + prefix(64, bytes(range(8))))
    seeds = {
        "open_bird": b"\x00" + open_body(65000, 90, mp4 + mp6 + cap(2) + gr + as4 + cap(70) + cap(71, b"\x00\x01\x01\x00")),
        "open_frr": b"\x00" + open_body(65000, 9, mp4 + cap(2) + cap(128) + as4 + cap(69, b"\x00\x01\x01\x01") + cap(73, b"\x02rt\x00") + gr),
        "open_plain": b"\x00" + open_body(65000, 180),
        "open_ext_params": b"\x00" + struct.pack("!BHHIBBH", 4, 65000, 90, 1, 255, 255, 8) + b"\x02\x00\x06" + as4,
        "update_v4": b"\x01" + update(attrs=base + nh + attr(0x80, 4, b"\x00\x00\x00\x05") + comm + large,
                                      nlri=prefix(32, bytes([10, 30, 100, 20])) + prefix(24, bytes([198, 51, 100]))),
        "update_v6": b"\x01" + update(attrs=base + mp_reach + large),
        "update_withdraw": b"\x01" + update(withdrawn=prefix(32, bytes([10, 30, 100, 20])), attrs=mp_unreach),
        "update_eor": b"\x01" + update(),
        "update_2octet": b"\x02" + update(attrs=attr(0x40, 1, b"\x00") + attr(0x40, 2, b"\x02\x01\x5b\xa0")
                                          + nh + attr(0xC0, 17, b"\x02\x01" + struct.pack("!I", 4200000001)),
                                          nlri=prefix(32, bytes([10, 30, 100, 21]))),
        "framed": b"\x03" + msg(1, open_body(65000, 90, mp4)) + msg(4, b"") + msg(3, b"\x06\x02\x03bye"),
        "session_stream": b"\x04" + msg(4, b"") + msg(2, update(attrs=base + nh, nlri=prefix(24, bytes([203, 0, 113]))))
                          + msg(5, b"\x00\x01\x00\x01"),
    }
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the fuzzer's seed corpus: a few valid frames of each kind the
forwarder handles. Run from the repository root; the output is checked in."""
import os
import struct

OUT = os.path.join(os.path.dirname(__file__), "corpus")


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def eth(t, vlan=None):
    h = bytes.fromhex("020000000001020000000002")
    if vlan is not None:
        h += struct.pack("!HH", 0x8100, vlan)
    return h + struct.pack("!H", t)


def v4(src, dst, proto, payload, frag=0, ident=1):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, frag, 64, proto, 0,
                    bytes(src), bytes(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload


def v6(src, dst, nh, payload):
    return struct.pack("!IHBB16s16s", 0x60000000, len(payload), nh, 64, bytes(src), bytes(dst)) + payload


def tcp(sp, dp, flags):
    return struct.pack("!HHIIBBHHH", sp, dp, 1, 0, 0x50, flags, 65535, 0, 0)


def udp(sp, dp, data=b"hello"):
    return struct.pack("!HHHH", sp, dp, 8 + len(data), 0) + data


C4, VIP4, SNAT4, B4 = [203, 0, 113, 5], [192, 0, 2, 10], [10, 0, 0, 1], [10, 1, 0, 1]
C6 = bytes.fromhex("20010db8ffff00000000000000000005")
VIP6 = bytes.fromhex("20010db8000000000000000000000010")

def mapped(a):
    return bytes(10) + b"\xff\xff" + bytes(a)


# A batch of one flow record (common/flow_record.h) for the VIP-sourced
# forwarder's sync table: client C4:40001 -> VIP4:80 via B4:80, SNAT port 61000.
RECORD = (bytes([1, 6, 0, 0]) + struct.pack("!I", 0) + mapped(C4) + mapped(VIP4) + mapped(B4)
          + struct.pack("!HHHH", 40001, 80, 80, 61000))

seeds = {
    "tcp_syn_v4": eth(0x0800) + v4(C4, VIP4, 6, tcp(40001, 80, 0x02)),
    "tcp_ack_vlan": eth(0x0800, 100) + v4(C4, VIP4, 6, tcp(40001, 80, 0x10)),
    "udp_v4": eth(0x0800) + v4(C4, VIP4, 17, udp(5000, 53)),
    "nat_reply_v4": eth(0x0800) + v4(B4, SNAT4, 6, tcp(80, 40000, 0x12)),
    "tcp_syn_v6": eth(0x86DD) + v6(C6, VIP6, 6, tcp(40001, 80, 0x02)),
    "udp_v6_ext": eth(0x86DD) + v6(C6, VIP6, 60, bytes([17, 0, 1, 4, 0, 0, 0, 0]) + udp(5000, 53)),
    "frag_first": eth(0x0800) + v4(C4, VIP4, 17, udp(5000, 53, b"x" * 16), frag=0x2000, ident=7),
    "frag_second": eth(0x0800) + v4(C4, VIP4, 17, b"y" * 16, frag=3, ident=7),
    "icmp_frag_needed": eth(0x0800) + v4([198, 18, 0, 1], VIP4, 1, bytes([3, 4, 0, 0, 0, 0, 5, 120]) + v4(VIP4, C4, 6, tcp(80, 40001, 0x10))[:28]),
    "icmp6_too_big": eth(0x86DD) + v6(C6, VIP6, 58, bytes([2, 0, 0, 0, 0, 0, 5, 120]) + v6(VIP6, C6, 6, tcp(80, 40001, 0x10))[:48]),
    "arp": eth(0x0806) + bytes(28),
    "flow_record_batch": RECORD,
    # That flow's backend answering the VIP, and its client mid-flow: adopted.
    "vip_nat_reply_v4": eth(0x0800) + v4(B4, VIP4, 6, tcp(80, 61000, 0x10)),
}

os.makedirs(OUT, exist_ok=True)
for name, frame in seeds.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(frame)
print("wrote %d seeds to %s" % (len(seeds), OUT))

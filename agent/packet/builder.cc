#include "agent/packet/builder.h"

#include <algorithm>

#include "agent/packet/checksum.h"
#include "agent/packet/parser.h"

namespace flowlb::agent {
namespace {

void put16(std::vector<uint8_t>& f, size_t at, uint16_t v) {
  storeBe16(&f[at], v);
}

void ethernet(std::vector<uint8_t>& f, uint16_t vlan, uint16_t type) {
  const uint8_t dst[6] = {0x02, 0, 0, 0, 0, 0x01};
  const uint8_t src[6] = {0x02, 0, 0, 0, 0, 0x02};
  f.insert(f.end(), dst, dst + 6);
  f.insert(f.end(), src, src + 6);
  if (vlan != 0) {
    f.resize(f.size() + 4);
    put16(f, 12, kEthP_8021Q);
    put16(f, 14, vlan);
  }
  f.resize(f.size() + 2);
  put16(f, f.size() - 2, type);
}

// Appends an IP header for `l4_len` bytes of protocol `proto`; returns the
// offset of the first transport byte.
size_t ipHeader(std::vector<uint8_t>& f, const IpAddr& src, const IpAddr& dst, uint8_t proto,
                size_t l4_len, size_t options, bool ext, uint16_t id = 0x1234) {
  const size_t l3 = f.size();
  if (src.isV4()) {
    const size_t ihl = 20 + options;
    f.resize(l3 + ihl, 0);
    f[l3] = static_cast<uint8_t>(0x40 | ihl / 4);
    put16(f, l3 + 2, static_cast<uint16_t>(ihl + l4_len));
    put16(f, l3 + 4, id);
    f[l3 + 8] = 64;
    f[l3 + 9] = proto;
    std::memcpy(&f[l3 + 12], src.v4(), 4);
    std::memcpy(&f[l3 + 16], dst.v4(), 4);
    for (size_t i = 20; i < ihl; ++i) f[l3 + i] = 1;  // NOP options
    L3L4 l;
    l.l3 = l3;
    put16(f, l3 + 10, ipv4HeaderChecksum(f.data(), l));
    return l3 + ihl;
  }
  const size_t ext_len = ext ? 8 : 0;
  f.resize(l3 + 40 + ext_len, 0);
  f[l3] = 0x60;
  put16(f, l3 + 4, static_cast<uint16_t>(l4_len + ext_len));
  f[l3 + 6] = ext ? 60 : proto;
  f[l3 + 7] = 64;
  std::memcpy(&f[l3 + 8], src.bytes.data(), 16);
  std::memcpy(&f[l3 + 24], dst.bytes.data(), 16);
  if (ext) {
    f[l3 + 40] = proto;  // destination options, 8 bytes, PadN
    f[l3 + 42] = 1;
    f[l3 + 43] = 4;
  }
  return l3 + 40 + ext_len;
}

void fillL4Checksum(std::vector<uint8_t>& f, bool udp_zero) {
  ParsedPacket p;
  parsePacket(f.data(), f.size(), p);
  const size_t off = l4ChecksumOffset(p.tuple.proto, p.outer.v4);
  if (off == 0) return;
  if (udp_zero && p.tuple.proto == kProtoUDP && p.outer.v4) return;
  put16(f, p.outer.l4 + off, l4Checksum(f.data(), p.outer, p.tuple));
}

}  // namespace

std::vector<uint8_t> buildFrame(const FrameSpec& s) {
  std::vector<uint8_t> f;
  const bool v4 = s.tuple.src.isV4();
  ethernet(f, s.vlan, v4 ? kEthP_IPv4 : kEthP_IPv6);
  std::vector<uint8_t> opts = s.tcp_options;
  while (opts.size() % 4 != 0) opts.push_back(1);  // NOP
  const size_t l4_hdr = s.tuple.proto == kProtoTCP ? 20 + opts.size() : 8;
  const size_t l4 = ipHeader(f, s.tuple.src, s.tuple.dst, s.tuple.proto, l4_hdr + s.payload,
                             v4 ? s.ipv4_options : 0, !v4 && s.ipv6_ext_header, s.ipv4_id);
  f.resize(l4 + l4_hdr + s.payload, 0);
  for (size_t i = 0; i < s.payload; ++i) f[l4 + l4_hdr + i] = static_cast<uint8_t>(i * 7 + 3);
  put16(f, l4, s.tuple.sport);
  put16(f, l4 + 2, s.tuple.dport);
  if (s.tuple.proto == kProtoTCP) {
    put16(f, l4 + 4, static_cast<uint16_t>(s.seq >> 16));
    put16(f, l4 + 6, static_cast<uint16_t>(s.seq));
    put16(f, l4 + 8, static_cast<uint16_t>(s.ack >> 16));
    put16(f, l4 + 10, static_cast<uint16_t>(s.ack));
    f[l4 + 12] = static_cast<uint8_t>(l4_hdr / 4 << 4);
    f[l4 + 13] = s.tcp_flags;
    put16(f, l4 + 14, 65535);
    std::copy(opts.begin(), opts.end(), f.begin() + static_cast<long>(l4 + 20));
  } else {
    put16(f, l4 + 4, static_cast<uint16_t>(8 + s.payload));
  }
  fillL4Checksum(f, s.udp_zero_checksum);
  return f;
}

std::vector<uint8_t> buildIcmpError(const IpAddr& from, const IpAddr& to, uint8_t type,
                                    uint8_t code, const std::vector<uint8_t>& quoted,
                                    size_t quote_bytes) {
  ParsedPacket q;
  parsePacket(quoted.data(), quoted.size(), q);
  const size_t avail = quoted.size() - q.outer.l3;
  const size_t n = quote_bytes < avail ? quote_bytes : avail;
  std::vector<uint8_t> f;
  const bool v4 = from.isV4();
  ethernet(f, 0, v4 ? kEthP_IPv4 : kEthP_IPv6);
  const size_t l4 = ipHeader(f, from, to, v4 ? kProtoICMP : kProtoICMPv6, 8 + n, 0, false);
  f.resize(l4 + 8, 0);
  f[l4] = type;
  f[l4 + 1] = code;
  if (type == (v4 ? 3 : 2) && code == (v4 ? 4 : 0)) put16(f, l4 + 6, 1400);  // next-hop MTU
  f.insert(f.end(), quoted.begin() + static_cast<long>(q.outer.l3),
           quoted.begin() + static_cast<long>(q.outer.l3 + n));
  fillL4Checksum(f, false);
  return f;
}

std::vector<std::vector<uint8_t>> fragmentIpv4(const std::vector<uint8_t>& frame,
                                               size_t first_payload) {
  ParsedPacket p;
  parsePacket(frame.data(), frame.size(), p);
  const size_t l3 = p.outer.l3;
  const size_t ihl = p.outer.l4 - l3;
  const size_t total = p.outer.l4_len;
  std::vector<uint8_t> a(frame.begin(),
                         frame.begin() + static_cast<long>(p.outer.l4 + first_payload));
  std::vector<uint8_t> b(frame.begin(), frame.begin() + static_cast<long>(p.outer.l4));
  b.insert(b.end(), frame.begin() + static_cast<long>(p.outer.l4 + first_payload),
           frame.begin() + static_cast<long>(p.outer.l4 + total));
  put16(a, l3 + 2, static_cast<uint16_t>(ihl + first_payload));
  put16(a, l3 + 6, 0x2000);  // MF, offset 0
  put16(b, l3 + 2, static_cast<uint16_t>(ihl + total - first_payload));
  put16(b, l3 + 6, static_cast<uint16_t>(first_payload / 8));
  for (auto* f : {&a, &b}) {
    L3L4 l;
    l.l3 = l3;
    put16(*f, l3 + 10, 0);
    put16(*f, l3 + 10, ipv4HeaderChecksum(f->data(), l));
  }
  return {a, b};
}

}  // namespace flowlb::agent

#include "agent/packet/rewrite.h"

#include "agent/packet/checksum.h"

namespace flowlb::agent {
namespace {

// Pointer to the transport checksum when it lies inside the buffer and is in
// use (an IPv4 UDP checksum of 0 means "not computed" and stays 0).
uint8_t* transportChecksum(uint8_t* data, const L3L4& l, uint8_t proto) {
  if (!l.has_l4) return nullptr;
  const size_t off = l4ChecksumOffset(proto, l.v4);
  if (off == 0 || proto == kProtoICMP) return nullptr;  // ICMPv4 has no pseudo-header
  if (l.l4_len < off + 2) return nullptr;               // quoted header cut short
  uint8_t* c = data + l.l4 + off;
  if (proto == kProtoUDP && l.v4 && c[0] == 0 && c[1] == 0) return nullptr;
  return c;
}

void fixUdpZero(uint8_t* c, uint8_t proto) {
  if (proto == kProtoUDP && c[0] == 0 && c[1] == 0) c[0] = c[1] = 0xff;
}

// Where an address of the header at `l` lies.
uint8_t* addressField(uint8_t* data, const L3L4& l, Endpoint which) {
  uint8_t* ip = data + l.l3;
  if (l.v4) return ip + (which == Endpoint::kSource ? 12 : 16);
  return ip + (which == Endpoint::kSource ? 8 : 24);
}

const uint8_t* addressBytes(const IpAddr& a, bool v4) {
  return v4 ? a.v4() : a.bytes.data();
}

}  // namespace

void rewriteAddress(uint8_t* data, const L3L4& l, FlowTuple& t, Endpoint which,
                    const IpAddr& addr) {
  uint8_t* where = addressField(data, l, which);
  const uint8_t* bytes = addressBytes(addr, l.v4);
  const size_t len = l.v4 ? 4 : 16;
  CsumDelta d;
  d.replace(where, bytes, len);
  if (l.v4) d.apply(data + l.l3 + 10);
  if (uint8_t* c = transportChecksum(data, l, t.proto)) {
    d.apply(c);
    fixUdpZero(c, t.proto);
  }
  std::memcpy(where, bytes, len);
  (which == Endpoint::kSource ? t.src : t.dst) = addr;
}

void rewritePort(uint8_t* data, const L3L4& l, FlowTuple& t, Endpoint which, uint16_t port) {
  uint8_t* where = data + l.l4 + (which == Endpoint::kSource ? 0 : 2);
  if (uint8_t* c = transportChecksum(data, l, t.proto)) {
    CsumDelta d;
    d.replace16(where, port);
    d.apply(c);
    fixUdpZero(c, t.proto);
  }
  storeBe16(where, port);
  (which == Endpoint::kSource ? t.sport : t.dport) = port;
}

namespace {

// The NAT fast path for one family: addresses and ports in one pass.
template <size_t kLen>
void rewriteFlowFixed(uint8_t* data, const L3L4& l, FlowTuple& t, const uint8_t* src,
                      uint16_t sport, const uint8_t* dst, uint16_t dport) {
  uint8_t* src_field = addressField(data, l, Endpoint::kSource);
  uint8_t* dst_field = addressField(data, l, Endpoint::kDestination);
  CsumDelta addrs;
  addrs.replace(src_field, src, kLen);
  addrs.replace(dst_field, dst, kLen);
  if (kLen == 4) addrs.apply(data + l.l3 + 10);
  uint8_t* ports = data + l.l4;
  if (uint8_t* c = transportChecksum(data, l, t.proto)) {
    addrs.replace16(ports, sport);
    addrs.replace16(ports + 2, dport);
    addrs.apply(c);
    fixUdpZero(c, t.proto);
  }
  std::memcpy(src_field, src, kLen);
  std::memcpy(dst_field, dst, kLen);
  if (l.has_l4) {
    storeBe16(ports, sport);
    storeBe16(ports + 2, dport);
    t.sport = sport;
    t.dport = dport;
  }
}

}  // namespace

void rewriteFlow(uint8_t* data, const L3L4& l, FlowTuple& t, const IpAddr& src, uint16_t sport,
                 const IpAddr& dst, uint16_t dport) {
  if (l.v4) {
    rewriteFlowFixed<4>(data, l, t, src.v4(), sport, dst.v4(), dport);
  } else {
    rewriteFlowFixed<16>(data, l, t, src.bytes.data(), sport, dst.bytes.data(), dport);
  }
  t.src = src;
  t.dst = dst;
}

void rewriteMacs(uint8_t* data, const uint8_t dst[6], const uint8_t src[6]) {
  std::memcpy(data, dst, 6);
  std::memcpy(data + 6, src, 6);
}

void refreshIcmpChecksum(uint8_t* data, const ParsedPacket& p) {
  uint8_t* c = data + p.outer.l4 + 2;
  c[0] = c[1] = 0;
  storeBe16(c, l4Checksum(data, p.outer, p.tuple));
}

}  // namespace flowlb::agent

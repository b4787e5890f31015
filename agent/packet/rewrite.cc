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

}  // namespace

void rewriteAddress(uint8_t* data, const L3L4& l, FlowTuple& t, Endpoint which,
                    const IpAddr& addr) {
  IpAddr& field = which == Endpoint::kSource ? t.src : t.dst;
  uint8_t* ip = data + l.l3;
  uint8_t* l4c = transportChecksum(data, l, t.proto);
  if (l.v4) {
    uint8_t* where = ip + (which == Endpoint::kSource ? 12 : 16);
    csumReplace(ip + 10, where, addr.v4(), 4);
    if (l4c) {
      csumReplace(l4c, where, addr.v4(), 4);
      fixUdpZero(l4c, t.proto);
    }
    std::memcpy(where, addr.v4(), 4);
  } else {
    uint8_t* where = ip + (which == Endpoint::kSource ? 8 : 24);
    if (l4c) {
      csumReplace(l4c, where, addr.bytes.data(), 16);
      fixUdpZero(l4c, t.proto);
    }
    std::memcpy(where, addr.bytes.data(), 16);
  }
  field = addr;
}

void rewritePort(uint8_t* data, const L3L4& l, FlowTuple& t, Endpoint which, uint16_t port) {
  uint16_t& field = which == Endpoint::kSource ? t.sport : t.dport;
  uint8_t* where = data + l.l4 + (which == Endpoint::kSource ? 0 : 2);
  if (uint8_t* c = transportChecksum(data, l, t.proto)) {
    csumReplace16(c, field, port);
    fixUdpZero(c, t.proto);
  }
  storeBe16(where, port);
  field = port;
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

#include "agent/packet/checksum.h"

namespace flowlb::agent {

uint32_t csumAdd(const uint8_t* p, size_t len, uint32_t sum) {
  uint64_t s = sum;
  size_t i = 0;
  for (; i + 1 < len; i += 2) s += uint32_t{p[i]} << 8 | p[i + 1];
  if (i < len) s += uint32_t{p[i]} << 8;
  while (s >> 32) s = (s & 0xffffffff) + (s >> 32);
  return static_cast<uint32_t>(s);
}

uint16_t csumFold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

uint16_t ipv4HeaderChecksum(const uint8_t* data, const L3L4& l) {
  const uint8_t* ip = data + l.l3;
  const size_t ihl = size_t{ip[0] & 0x0fu} * 4;
  uint32_t sum = csumAdd(ip, 10, 0);
  sum = csumAdd(ip + 12, ihl - 12, sum);
  return static_cast<uint16_t>(~csumFold(sum));
}

size_t l4ChecksumOffset(uint8_t proto, bool v4) {
  switch (proto) {
    case kProtoTCP: return 16;
    case kProtoUDP: return 6;
    case kProtoICMP: return v4 ? 2 : 0;
    case kProtoICMPv6: return v4 ? 0 : 2;
    default: return 0;
  }
}

uint16_t l4Checksum(const uint8_t* data, const L3L4& l, const FlowTuple& t) {
  const size_t field = l4ChecksumOffset(t.proto, l.v4);
  const uint8_t* p = data + l.l4;
  uint32_t sum = 0;
  if (t.proto != kProtoICMP) {  // pseudo-header
    if (l.v4) {
      sum = csumAdd(t.src.v4(), 4, sum);
      sum = csumAdd(t.dst.v4(), 4, sum);
    } else {
      sum = csumAdd(t.src.bytes.data(), 16, sum);
      sum = csumAdd(t.dst.bytes.data(), 16, sum);
    }
    sum += t.proto;
    sum += static_cast<uint32_t>(l.l4_len & 0xffff) + static_cast<uint32_t>(l.l4_len >> 16);
  }
  sum = csumAdd(p, field, sum);
  if (l.l4_len > field + 2) sum = csumAdd(p + field + 2, l.l4_len - field - 2, sum);
  uint16_t c = static_cast<uint16_t>(~csumFold(sum));
  if (t.proto == kProtoUDP && c == 0) c = 0xffff;  // RFC 768: 0 means "none"
  return c;
}

}  // namespace flowlb::agent

// Internet checksums: incremental updates (RFC 1624, eqn. 3) used on the
// packet path, and full computations used for ICMP errors and by tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "agent/packet/packet.h"

namespace flowlb::agent {

// One's-complement sum of big-endian 16-bit words, added to `sum`.
uint32_t csumAdd(const uint8_t* p, size_t len, uint32_t sum);
uint16_t csumFold(uint32_t sum);

// An incremental change to one or more checksums (RFC 1624, eqn. 3),
// accumulated over native-order words: the one's-complement sum does not
// depend on byte order (RFC 1071 §2(B)), so fields are added as they lie in
// memory, 32 bits at a time, and the result is stored the same way.
class CsumDelta {
 public:
  void replace32(const uint8_t* old_bytes, const uint8_t* new_bytes) {
    uint32_t o, n;
    std::memcpy(&o, old_bytes, 4);
    std::memcpy(&n, new_bytes, 4);
    sum_ += static_cast<uint32_t>(~o);
    sum_ += n;
  }
  void replace(const uint8_t* old_bytes, const uint8_t* new_bytes, size_t len4) {
    for (size_t i = 0; i < len4; i += 4) replace32(old_bytes + i, new_bytes + i);
  }
  // `old_field` points at the 2 bytes in the packet; `new_value` host order.
  void replace16(const uint8_t* old_field, uint16_t new_value) {
    uint16_t o, n;
    std::memcpy(&o, old_field, 2);
    uint8_t nb[2];
    storeBe16(nb, new_value);
    std::memcpy(&n, nb, 2);
    sum_ += static_cast<uint16_t>(~o);
    sum_ += n;
  }
  void add(const CsumDelta& other) { sum_ += other.sum_; }
  // Applies the change to the checksum at `csum`.
  void apply(uint8_t* csum) const {
    uint16_t hc;
    std::memcpy(&hc, csum, 2);
    uint64_t s = sum_ + static_cast<uint16_t>(~hc);
    s = (s & 0xffffffff) + (s >> 32);
    s = (s & 0xffffffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    const uint16_t out = static_cast<uint16_t>(~s);
    std::memcpy(csum, &out, 2);
  }

 private:
  uint64_t sum_ = 0;
};

// Full computations over the packet as it is now (the checksum field itself
// is skipped). They return the value the field must hold.
uint16_t ipv4HeaderChecksum(const uint8_t* data, const L3L4& l);
// TCP, UDP, ICMP (v4: no pseudo-header) and ICMPv6 over l.l4 .. l.l4+l.l4_len.
uint16_t l4Checksum(const uint8_t* data, const L3L4& l, const FlowTuple& t);

// Offset of the transport checksum field from l.l4, or 0 when it has none.
size_t l4ChecksumOffset(uint8_t proto, bool v4);

}  // namespace flowlb::agent

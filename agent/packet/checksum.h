// Internet checksums: incremental updates (RFC 1624, eqn. 3) used on the
// packet path, and full computations used for ICMP errors and by tests.
#pragma once

#include <cstddef>
#include <cstdint>

#include "agent/packet/packet.h"

namespace flowlb::agent {

// One's-complement sum of big-endian 16-bit words, added to `sum`.
uint32_t csumAdd(const uint8_t* p, size_t len, uint32_t sum);
uint16_t csumFold(uint32_t sum);

// HC' = ~(~HC + ~m + m') for a field of `len` bytes (even) changing from
// `old_bytes` to `new_bytes`; `csum` points at the checksum in the packet.
void csumReplace(uint8_t* csum, const uint8_t* old_bytes, const uint8_t* new_bytes, size_t len);
void csumReplace16(uint8_t* csum, uint16_t old_value, uint16_t new_value);

// Full computations over the packet as it is now (the checksum field itself
// is skipped). They return the value the field must hold.
uint16_t ipv4HeaderChecksum(const uint8_t* data, const L3L4& l);
// TCP, UDP, ICMP (v4: no pseudo-header) and ICMPv6 over l.l4 .. l.l4+l.l4_len.
uint16_t l4Checksum(const uint8_t* data, const L3L4& l, const FlowTuple& t);

// Offset of the transport checksum field from l.l4, or 0 when it has none.
size_t l4ChecksumOffset(uint8_t proto, bool v4);

}  // namespace flowlb::agent

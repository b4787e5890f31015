// In-place packet rewrites with incremental checksum updates (RFC 1624).
// Callers pass the offsets the parser found; the family never changes.
#pragma once

#include <cstdint>

#include "agent/packet/packet.h"

namespace flowlb::agent {

enum class Endpoint : uint8_t { kSource, kDestination };

// Rewrites an IP address of the header at `l` and fixes the IPv4 header
// checksum and, when present in the buffer, the TCP/UDP/ICMPv6 checksum
// (their pseudo-header covers the addresses). Updates `t` to match.
void rewriteAddress(uint8_t* data, const L3L4& l, FlowTuple& t, Endpoint which, const IpAddr& addr);

// Rewrites a TCP/UDP port (host order) and fixes the transport checksum.
void rewritePort(uint8_t* data, const L3L4& l, FlowTuple& t, Endpoint which, uint16_t port);

// Rewrites both addresses and, when the transport header is present, both
// ports in one pass with one update per checksum: the NAT fast path.
void rewriteFlow(uint8_t* data, const L3L4& l, FlowTuple& t, const IpAddr& src, uint16_t sport,
                 const IpAddr& dst, uint16_t dport);

// Sets the Ethernet destination and source MAC addresses.
void rewriteMacs(uint8_t* data, const uint8_t dst[6], const uint8_t src[6]);

// Recomputes the checksum of an ICMP/ICMPv6 error after its quoted packet
// was rewritten (rare path: a full pass over at most a few hundred bytes).
void refreshIcmpChecksum(uint8_t* data, const ParsedPacket& p);

}  // namespace flowlb::agent

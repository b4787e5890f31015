// Builds well-formed frames (Ethernet, optional 802.1Q, IPv4/IPv6, TCP/UDP,
// ICMP errors quoting another packet) with correct checksums. Used by the
// agent's dry run, the tests, the fuzzer's seeds and the benchmarks.
#pragma once

#include <cstdint>
#include <vector>

#include "agent/packet/packet.h"

namespace flowlb::agent {

struct FrameSpec {
  FlowTuple tuple;                   // src/dst must be of one family
  uint8_t tcp_flags = kTcpAck;       // TCP only
  size_t payload = 0;                // bytes of payload after the L4 header
  uint16_t vlan = 0;                 // 802.1Q VLAN id, 0 for none
  size_t ipv4_options = 0;           // bytes of IPv4 options (multiple of 4)
  bool ipv6_ext_header = false;      // add a destination-options header
  bool udp_zero_checksum = false;    // IPv4 only
  uint16_t ipv4_id = 0x1234;         // IPv4 identification
  uint32_t seq = 0x01020000;         // TCP sequence number
  uint32_t ack = 0;                  // TCP acknowledgement number
  std::vector<uint8_t> tcp_options;  // raw TCP options (padded to 4 bytes with NOPs)
};

std::vector<uint8_t> buildFrame(const FrameSpec& spec);

// An ICMP (IPv4) or ICMPv6 error from `from` to `to` quoting the IP packet of
// `quoted` (a frame from buildFrame), cut to `quote_bytes` of it.
std::vector<uint8_t> buildIcmpError(const IpAddr& from, const IpAddr& to, uint8_t type,
                                    uint8_t code, const std::vector<uint8_t>& quoted,
                                    size_t quote_bytes);

// Turns an IPv4 frame from buildFrame into its two fragments: the first with
// the transport header and `first_payload` bytes (multiple of 8), the second
// with the rest.
std::vector<std::vector<uint8_t>> fragmentIpv4(const std::vector<uint8_t>& frame,
                                               size_t first_payload);

}  // namespace flowlb::agent

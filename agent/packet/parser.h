// Frame parser: Ethernet, 802.1Q/802.1ad, IPv4 (with options), IPv6 (with the
// common extension headers), TCP, UDP, and ICMP/ICMPv6 errors with the header
// they quote. Reads only inside [data, data+len); never writes.
#pragma once

#include "agent/packet/packet.h"

namespace flowlb::agent {

enum class ParseStatus : uint8_t {
  kOk,         // an IP packet; ParsedPacket filled in
  kNotIp,      // ARP, LLDP, ...: the kernel's business
  kMalformed,  // drop; the reason says why
};

struct ParseOutcome {
  ParseStatus status = ParseStatus::kOk;
  DropReason reason = DropReason::kNone;
};

ParseOutcome parsePacket(const uint8_t* data, size_t len, ParsedPacket& out);

}  // namespace flowlb::agent

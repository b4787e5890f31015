// While an agent restarts under BGP graceful restart, the routers keep
// sending the node its VIPs' traffic. Without the datapath, the kernel would
// route that traffic back towards them, and the loop ends in ICMP time
// exceeded, which aborts the clients' new connections. Blackhole routes for
// the announced prefixes make the kernel drop it silently instead, so TCP
// retransmits until the restarted agent takes over. The next agent removes
// them at start. They live in the main table with their own protocol
// number, so nothing else matches or removes them. While an agent runs, XDP
// takes VIP traffic before routing, and a VIP that is a local address wins
// over them in the local table.
#pragma once

#include <cstdint>
#include <vector>

#include "common/ip_addr.h"
#include "common/status.h"

namespace flowlb::agent::net {

inline constexpr uint8_t kVipHoldProtocol = 199;  // rtm_protocol of the hold routes

Status holdPrefixes(const std::vector<IpPrefix>& prefixes);
// Removes every hold route; returns how many there were.
Result<size_t> releaseHeldPrefixes();

}  // namespace flowlb::agent::net

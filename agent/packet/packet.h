// What the parser learns about a frame: offsets into the caller's buffer and
// the flow tuple. Parsing never copies the frame and never allocates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/ip_addr.h"

namespace flowlb::agent {

inline constexpr uint16_t kEthP_IPv4 = 0x0800;
inline constexpr uint16_t kEthP_IPv6 = 0x86dd;
inline constexpr uint16_t kEthP_ARP = 0x0806;
inline constexpr uint16_t kEthP_8021Q = 0x8100;
inline constexpr uint16_t kEthP_8021AD = 0x88a8;
inline constexpr uint8_t kProtoICMP = 1;
inline constexpr uint8_t kProtoTCP = 6;
inline constexpr uint8_t kProtoUDP = 17;
inline constexpr uint8_t kProtoICMPv6 = 58;

inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpAck = 0x10;

inline uint16_t loadBe16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}
inline void storeBe16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline uint32_t loadBe32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

// Why a frame was dropped (or not handled). Each has a metric label; keep
// kReasonNames in parser.cc in the same order.
enum class DropReason : uint8_t {
  kNone = 0,
  kTruncatedL2,
  kTruncatedL3,
  kTruncatedL4,
  kBadIpVersion,
  kBadIpHeaderLength,
  kBadIpTotalLength,
  kTooManyExtHeaders,
  kUnsupportedProtocol,
  kFragmentUnknownFlow,
  kIcmpMalformed,
  kIcmpNoFlow,
  kNoService,
  kNoBackend,
  kSourceRangeDenied,
  kSnatPortsExhausted,
  kNeighborUnresolved,
  kNatReplyNoFlow,
  kNoRoute,
  kDsrBackendNotOnLink,
  kKernelReplyNoFlow,   // came back out of the kernel, but no flow of ours knows it
  kKernelPathDisabled,  // the destination is behind the kernel and --kernel-path is off
  kPathChanged,         // a source-NATed flow whose backend moved behind the kernel
  kKernelTupleInUse,    // client address:port already talks to that backend:port via another VIP
  kProxyFlowUnknown,    // a PROXY protocol TCP flow picked up mid-stream: its offset is unknown
  kProxyNoRoom,         // no room in the frame for the PROXY protocol header
  kCount,
};
const char* dropReasonName(DropReason r);

// The transport ports and addresses of a flow, as seen in a packet (or, for
// an ICMP error, as seen in the packet it quotes).
struct FlowTuple {
  IpAddr src;
  IpAddr dst;
  uint16_t sport = 0;  // host order
  uint16_t dport = 0;  // host order
  uint8_t proto = 0;
};

// Offsets of one IP header and its transport header inside the frame.
struct L3L4 {
  size_t l3 = 0;      // start of the IPv4/IPv6 header
  size_t l4 = 0;      // start of TCP/UDP/ICMP (valid when has_l4)
  size_t l4_len = 0;  // bytes available from l4 to the end of this IP packet
  bool v4 = true;
  bool has_l4 = false;  // false for non-first fragments
  bool is_fragment = false;
  bool first_fragment = false;
  bool more_fragments = false;
  uint32_t frag_id = 0;  // IPv4 identification or IPv6 fragment id
};

struct ParsedPacket {
  size_t len = 0;         // frame length
  uint16_t vlan_tci = 0;  // outermost 802.1Q tag, 0 when untagged
  bool vlan = false;
  L3L4 outer;
  FlowTuple tuple;  // outer tuple; ports 0 when !outer.has_l4
  uint8_t tcp_flags = 0;
  // ICMP / ICMPv6 error carrying a quoted packet of some flow; inner and
  // inner_tuple are meaningful only when icmp_error is set.
  bool icmp_error = false;
  uint8_t icmp_type = 0;
  uint8_t icmp_code = 0;
  L3L4 inner;             // the quoted header (inner.has_l4: ports present)
  FlowTuple inner_tuple;  // tuple of the quoted packet, as the sender saw it
};

}  // namespace flowlb::agent

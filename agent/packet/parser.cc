#include "agent/packet/parser.h"

namespace flowlb::agent {
namespace {

constexpr size_t kEthHeader = 14;
constexpr size_t kVlanHeader = 4;
constexpr int kMaxVlanTags = 2;
constexpr int kMaxIpv6ExtHeaders = 8;

constexpr const char* kReasonNames[] = {
    "none",
    "truncated_l2",
    "truncated_l3",
    "truncated_l4",
    "bad_ip_version",
    "bad_ip_header_length",
    "bad_ip_total_length",
    "too_many_ext_headers",
    "unsupported_protocol",
    "fragment_unknown_flow",
    "icmp_malformed",
    "icmp_no_flow",
    "no_service",
    "no_backend",
    "source_range_denied",
    "snat_ports_exhausted",
    "neighbor_unresolved",
    "nat_reply_no_flow",
    "no_route",
    "dsr_backend_not_on_link",
    "kernel_reply_no_flow",
    "kernel_path_disabled",
    "path_changed",
    "kernel_tuple_in_use",
    "proxy_flow_unknown",
    "proxy_no_room",
};
static_assert(std::size(kReasonNames) == static_cast<size_t>(DropReason::kCount));

ParseOutcome malformed(DropReason r) {
  return {ParseStatus::kMalformed, r};
}

bool isIcmpError(bool v4, uint8_t type) {
  if (v4) return type == 3 || type == 11 || type == 12;  // unreach, time exceeded, param
  return type >= 1 && type <= 4;  // unreach, packet too big, time exceeded, param
}

// Parses one IP header at `off`. `quoted` relaxes the length checks for the
// header an ICMP error quotes: its total length may exceed what was quoted.
DropReason parseIp(const uint8_t* data, size_t end, size_t off, bool quoted, L3L4& l,
                   FlowTuple& t) {
  if (end - off < 1) return DropReason::kTruncatedL3;
  const uint8_t version = data[off] >> 4;
  l.l3 = off;
  if (version == 4) {
    if (end - off < 20) return DropReason::kTruncatedL3;
    const uint8_t* ip = data + off;
    const size_t ihl = size_t{ip[0] & 0x0fu} * 4;
    if (ihl < 20) return DropReason::kBadIpHeaderLength;
    if (ihl > end - off) return DropReason::kTruncatedL3;
    size_t total = loadBe16(ip + 2);
    if (total < ihl) return DropReason::kBadIpTotalLength;
    if (total > end - off) {
      if (!quoted) return DropReason::kBadIpTotalLength;
      total = end - off;
    }
    l.v4 = true;
    const uint16_t frag = loadBe16(ip + 6);
    const uint16_t frag_off = frag & 0x1fff;
    l.more_fragments = (frag & 0x2000) != 0;
    l.is_fragment = l.more_fragments || frag_off != 0;
    l.first_fragment = l.is_fragment && frag_off == 0;
    l.frag_id = loadBe16(ip + 4);
    l.has_l4 = frag_off == 0;
    l.l4 = off + ihl;
    l.l4_len = total - ihl;
    t.proto = ip[9];
    t.src = IpAddr::fromV4(ip + 12);
    t.dst = IpAddr::fromV4(ip + 16);
    return DropReason::kNone;
  }
  if (version != 6) return DropReason::kBadIpVersion;
  if (end - off < 40) return DropReason::kTruncatedL3;
  const uint8_t* ip = data + off;
  size_t payload = loadBe16(ip + 4);
  if (payload > end - off - 40) {
    if (!quoted) return DropReason::kBadIpTotalLength;
    payload = end - off - 40;
  }
  l.v4 = false;
  t.src = IpAddr::fromV6(ip + 8);
  t.dst = IpAddr::fromV6(ip + 24);
  const size_t ip_end = off + 40 + payload;
  uint8_t next = ip[6];
  size_t pos = off + 40;
  l.has_l4 = true;
  for (int n = 0;; ++n) {
    if (next != 0 && next != 43 && next != 44 && next != 51 && next != 60) break;
    if (n == kMaxIpv6ExtHeaders) return DropReason::kTooManyExtHeaders;
    if (ip_end - pos < 8) return DropReason::kTruncatedL3;
    const uint8_t* h = data + pos;
    size_t hlen;
    if (next == 44) {  // fragment header
      const uint16_t fo = loadBe16(h + 2);
      l.is_fragment = true;
      l.more_fragments = (fo & 1) != 0;
      l.first_fragment = (fo >> 3) == 0;
      l.has_l4 = l.first_fragment;
      l.frag_id = loadBe32(h + 4);
      hlen = 8;
    } else if (next == 51) {  // authentication header
      hlen = (size_t{h[1]} + 2) * 4;
    } else {  // hop-by-hop, routing, destination options
      hlen = (size_t{h[1]} + 1) * 8;
    }
    if (hlen > ip_end - pos) return DropReason::kTruncatedL3;
    next = h[0];
    pos += hlen;
    if (!l.has_l4) break;  // a non-first fragment: what follows is payload
  }
  t.proto = next;
  l.l4 = pos;
  l.l4_len = ip_end - pos;
  return DropReason::kNone;
}

// Reads the ports of the transport header at l.l4. `quoted`: only the first
// 8 bytes are guaranteed (RFC 792), so TCP is not length-checked beyond them.
DropReason parsePorts(const uint8_t* data, const L3L4& l, bool quoted, FlowTuple& t,
                      uint8_t* tcp_flags) {
  const uint8_t* p = data + l.l4;
  switch (t.proto) {
    case kProtoTCP: {
      if (quoted) {
        if (l.l4_len < 8) return DropReason::kIcmpMalformed;
      } else {
        if (l.l4_len < 20) return DropReason::kTruncatedL4;
        const size_t doff = static_cast<size_t>(p[12] >> 4) * 4;
        if (doff < 20 || doff > l.l4_len) return DropReason::kTruncatedL4;
        *tcp_flags = p[13];
      }
      break;
    }
    case kProtoUDP:
      if (l.l4_len < 8) return quoted ? DropReason::kIcmpMalformed : DropReason::kTruncatedL4;
      break;
    default: return DropReason::kUnsupportedProtocol;
  }
  t.sport = loadBe16(p);
  t.dport = loadBe16(p + 2);
  return DropReason::kNone;
}

}  // namespace

const char* dropReasonName(DropReason r) {
  const auto i = static_cast<size_t>(r);
  return i < std::size(kReasonNames) ? kReasonNames[i] : "unknown";
}

ParseOutcome parsePacket(const uint8_t* data, size_t len, ParsedPacket& out) {
  // Reset only what every path reads; addresses are written when an IP
  // header is found, and the quoted fields only for ICMP errors.
  out.len = len;
  out.vlan_tci = 0;
  out.vlan = false;
  out.outer = L3L4{};
  out.tuple.sport = out.tuple.dport = 0;
  out.tuple.proto = 0;
  out.tcp_flags = 0;
  out.icmp_error = false;
  out.icmp_type = out.icmp_code = 0;
  if (len < kEthHeader) return malformed(DropReason::kTruncatedL2);
  size_t off = 12;
  uint16_t ethertype = loadBe16(data + off);
  for (int tags = 0; ethertype == kEthP_8021Q || ethertype == kEthP_8021AD; ++tags) {
    if (tags == kMaxVlanTags) return {ParseStatus::kNotIp, DropReason::kNone};
    if (len - off < 2 + kVlanHeader) return malformed(DropReason::kTruncatedL2);
    if (!out.vlan) out.vlan_tci = loadBe16(data + off + 2);
    out.vlan = true;
    off += kVlanHeader;
    ethertype = loadBe16(data + off);
  }
  off += 2;
  if (ethertype != kEthP_IPv4 && ethertype != kEthP_IPv6) {
    return {ParseStatus::kNotIp, DropReason::kNone};
  }
  if (DropReason r = parseIp(data, len, off, false, out.outer, out.tuple); r != DropReason::kNone) {
    return malformed(r);
  }
  if ((ethertype == kEthP_IPv4) != out.outer.v4) return malformed(DropReason::kBadIpVersion);
  if (!out.outer.has_l4) return {};  // non-first fragment: ports come from the fragment table

  const uint8_t proto = out.tuple.proto;
  if (proto == kProtoTCP || proto == kProtoUDP) {
    DropReason r = parsePorts(data, out.outer, false, out.tuple, &out.tcp_flags);
    return r == DropReason::kNone ? ParseOutcome{} : malformed(r);
  }
  const bool icmp = out.outer.v4 ? proto == kProtoICMP : proto == kProtoICMPv6;
  if (!icmp) return malformed(DropReason::kUnsupportedProtocol);
  if (out.outer.l4_len < 8) return malformed(DropReason::kTruncatedL4);
  out.icmp_type = data[out.outer.l4];
  out.icmp_code = data[out.outer.l4 + 1];
  if (!isIcmpError(out.outer.v4, out.icmp_type)) return {};  // echo etc.: no flow tuple
  if (out.outer.is_fragment) return malformed(DropReason::kIcmpMalformed);

  // The quoted packet: an IP header of the same family plus >= 8 bytes of L4.
  const size_t quote = out.outer.l4 + 8;
  const size_t quote_end = out.outer.l4 + out.outer.l4_len;
  out.inner = L3L4{};
  out.inner_tuple = FlowTuple{};
  if (DropReason r = parseIp(data, quote_end, quote, true, out.inner, out.inner_tuple);
      r != DropReason::kNone || out.inner.v4 != out.outer.v4 || !out.inner.has_l4) {
    return malformed(DropReason::kIcmpMalformed);
  }
  uint8_t ignored_flags = 0;
  if (parsePorts(data, out.inner, true, out.inner_tuple, &ignored_flags) != DropReason::kNone) {
    return malformed(DropReason::kIcmpMalformed);
  }
  out.icmp_error = true;
  return {};
}

}  // namespace flowlb::agent

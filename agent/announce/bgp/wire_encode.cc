// Encoders for the BGP messages this speaker sends (see wire.h).
#include <algorithm>

#include "agent/announce/bgp/wire.h"
#include "agent/announce/wire_util.h"

namespace flowlb::agent::bgp {

using wire::Reader;
using wire::Writer;
namespace {

// Path attribute type codes (RFC 4271 §5, RFC 4760, RFC 6793, RFC 8092).
constexpr uint8_t kAttrOrigin = 1, kAttrAsPath = 2, kAttrNextHop = 3, kAttrMed = 4,
                  kAttrLocalPref = 5, kAttrCommunities = 8, kAttrMpReach = 14, kAttrMpUnreach = 15,
                  kAttrAs4Path = 17, kAttrLargeCommunity = 32;
constexpr uint8_t kFlagOptional = 0x80, kFlagTransitive = 0x40, kFlagExtended = 0x10;
constexpr uint8_t kSegmentSequence = 2;

std::vector<uint8_t> finish(MessageType type, Writer&& body) {
  Writer w;
  for (int i = 0; i < 16; ++i) w.u8(0xff);
  w.u16(static_cast<uint16_t>(kHeaderSize + body.bytes.size()));
  w.u8(static_cast<uint8_t>(type));
  w.bytes.insert(w.bytes.end(), body.bytes.begin(), body.bytes.end());
  return std::move(w.bytes);
}

void attribute(Writer& w, uint8_t flags, uint8_t type, const Writer& value) {
  const size_t n = value.bytes.size();
  if (n > 255) flags |= kFlagExtended;
  w.u8(flags);
  w.u8(type);
  if (flags & kFlagExtended) {
    w.u16(static_cast<uint16_t>(n));
  } else {
    w.u8(static_cast<uint8_t>(n));
  }
  w.bytes.insert(w.bytes.end(), value.bytes.begin(), value.bytes.end());
}

// One prefix of an NLRI field of family `v6` or not. The family comes from
// the field, not from the address: an IPv6 prefix may start with ::ffff:
// (IpAddr's IPv4 form), and reading its bytes as IPv4 ran past the address
// (bgp_fuzz found it). A length beyond the family's is cut to it.
void prefix(Writer& w, const IpPrefix& p, bool v6) {
  const uint8_t len = std::min<uint8_t>(p.length, v6 ? 128 : 32);
  w.u8(len);
  const uint8_t* a = v6 ? p.addr.bytes.data() : p.addr.v4();
  for (size_t i = 0; i < (len + 7u) / 8u; ++i) w.u8(a[i]);
}

void address(Writer& w, const IpAddr& a) {
  if (a.isV4()) {
    for (int i = 0; i < 4; ++i) w.u8(a.v4()[i]);
  } else {
    for (uint8_t b : a.bytes) w.u8(b);
  }
}

// One AS_SEQUENCE segment per 255 ASes, in `width` octets each.
Writer asPath(const std::vector<uint32_t>& path, int width) {
  Writer w;
  for (size_t at = 0; at < path.size(); at += 255) {
    const size_t n = std::min<size_t>(255, path.size() - at);
    w.u8(kSegmentSequence);
    w.u8(static_cast<uint8_t>(n));
    for (size_t i = at; i < at + n; ++i) {
      if (width == 4) {
        w.u32(path[i]);
      } else {
        w.u16(path[i] > 0xffff ? kAsTrans : static_cast<uint16_t>(path[i]));
      }
    }
  }
  return w;
}

}  // namespace

std::vector<uint8_t> encodeOpen(const OpenMessage& o) {
  Writer caps;
  auto capability = [&caps](uint8_t code, const Writer& value) {
    caps.u8(code);
    caps.u8(static_cast<uint8_t>(value.bytes.size()));
    caps.bytes.insert(caps.bytes.end(), value.bytes.begin(), value.bytes.end());
  };
  for (const Family& f : o.multiprotocol) {
    Writer v;
    v.u16(f.afi);
    v.u8(0);
    v.u8(f.safi);
    capability(1, v);
  }
  if (o.route_refresh) capability(2, Writer{});
  if (o.graceful_restart) {
    const GracefulRestart& gr = *o.graceful_restart;
    Writer v;
    v.u16(static_cast<uint16_t>((gr.restart_state ? 0x8000 : 0) | (gr.notification ? 0x4000 : 0) |
                                (gr.restart_time_s & 0x0fff)));
    for (const auto& f : gr.families) {
      v.u16(f.family.afi);
      v.u8(f.family.safi);
      v.u8(f.forwarding_preserved ? 0x80 : 0);
    }
    capability(64, v);
  }
  if (o.four_octet_as) {
    Writer v;
    v.u32(o.asn);
    capability(65, v);
  }
  Writer w;
  w.u8(o.version);
  w.u16(o.asn > 0xffff ? kAsTrans : static_cast<uint16_t>(o.asn));
  w.u16(o.hold_time_s);
  w.u32(o.router_id);
  // All capabilities in one Capabilities parameter (type 2).
  w.u8(static_cast<uint8_t>(caps.bytes.empty() ? 0 : caps.bytes.size() + 2));
  if (!caps.bytes.empty()) {
    w.u8(2);
    w.u8(static_cast<uint8_t>(caps.bytes.size()));
    w.bytes.insert(w.bytes.end(), caps.bytes.begin(), caps.bytes.end());
  }
  return finish(MessageType::kOpen, std::move(w));
}

std::vector<uint8_t> encodeKeepalive() {
  return finish(MessageType::kKeepalive, Writer{});
}

std::vector<uint8_t> encodeNotification(const Notification& n) {
  Writer w;
  w.u8(n.code);
  w.u8(n.subcode);
  w.bytes.insert(w.bytes.end(), n.data.begin(), n.data.end());
  return finish(MessageType::kNotification, std::move(w));
}

std::vector<uint8_t> encodeUpdate(const UpdateMessage& u, bool four_octet_as) {
  Writer withdrawn;
  for (const IpPrefix& p : u.withdrawn) prefix(withdrawn, p, false);
  Writer attrs;
  if (u.mp_unreach) {
    Writer v;
    v.u16(u.mp_unreach->family.afi);
    v.u8(u.mp_unreach->family.safi);
    for (const IpPrefix& p : u.mp_unreach->withdrawn) {
      prefix(v, p, u.mp_unreach->family.afi == kIpv6Unicast.afi);
    }
    attribute(attrs, kFlagOptional, kAttrMpUnreach, v);
  }
  if (u.has_attributes) {
    const PathAttributes& a = u.attributes;
    Writer origin;
    origin.u8(static_cast<uint8_t>(a.origin));
    attribute(attrs, kFlagTransitive, kAttrOrigin, origin);
    attribute(attrs, kFlagTransitive, kAttrAsPath, asPath(a.as_path, four_octet_as ? 4 : 2));
    if (a.next_hop) {
      Writer v;
      address(v, *a.next_hop);
      attribute(attrs, kFlagTransitive, kAttrNextHop, v);
    }
    if (a.med) {
      Writer v;
      v.u32(*a.med);
      attribute(attrs, kFlagOptional, kAttrMed, v);
    }
    if (a.local_pref) {
      Writer v;
      v.u32(*a.local_pref);
      attribute(attrs, kFlagTransitive, kAttrLocalPref, v);
    }
    if (!a.communities.empty()) {
      Writer v;
      for (uint32_t c : a.communities) v.u32(c);
      attribute(attrs, kFlagOptional | kFlagTransitive, kAttrCommunities, v);
    }
    if (u.mp_reach) {
      Writer v;
      v.u16(u.mp_reach->family.afi);
      v.u8(u.mp_reach->family.safi);
      const bool v4 = u.mp_reach->next_hop.isV4();
      v.u8(static_cast<uint8_t>(v4 ? 4 : (u.mp_reach->link_local_hop ? 32 : 16)));
      address(v, u.mp_reach->next_hop);
      if (!v4 && u.mp_reach->link_local_hop) address(v, *u.mp_reach->link_local_hop);
      v.u8(0);  // reserved
      for (const IpPrefix& p : u.mp_reach->nlri) {
        prefix(v, p, u.mp_reach->family.afi == kIpv6Unicast.afi);
      }
      attribute(attrs, kFlagOptional, kAttrMpReach, v);
    }
    const bool needs_as4 = !four_octet_as && std::any_of(a.as_path.begin(), a.as_path.end(),
                                                         [](uint32_t as) { return as > 0xffff; });
    if (needs_as4)
      attribute(attrs, kFlagOptional | kFlagTransitive, kAttrAs4Path, asPath(a.as_path, 4));
    if (!a.large_communities.empty()) {
      Writer v;
      for (const LargeCommunity& c : a.large_communities) {
        v.u32(c.global);
        v.u32(c.local1);
        v.u32(c.local2);
      }
      attribute(attrs, kFlagOptional | kFlagTransitive, kAttrLargeCommunity, v);
    }
  }
  Writer w;
  w.u16(static_cast<uint16_t>(withdrawn.bytes.size()));
  w.bytes.insert(w.bytes.end(), withdrawn.bytes.begin(), withdrawn.bytes.end());
  w.u16(static_cast<uint16_t>(attrs.bytes.size()));
  w.bytes.insert(w.bytes.end(), attrs.bytes.begin(), attrs.bytes.end());
  for (const IpPrefix& p : u.nlri) prefix(w, p, false);
  return finish(MessageType::kUpdate, std::move(w));
}

std::vector<uint8_t> encodeEndOfRib(Family f) {
  UpdateMessage u;
  if (f != kIpv4Unicast) u.mp_unreach = MpUnreach{f, {}};
  return encodeUpdate(u, true);
}

}  // namespace flowlb::agent::bgp

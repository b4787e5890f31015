// Decoders for BGP messages (see wire.h). Every length is checked against
// what encloses it before it is used; errors name the RFC 4271 §6 code and
// subcode and say whether RFC 7606 lets the session live on.
#include <algorithm>
#include <set>

#include "agent/announce/bgp/wire.h"
#include "agent/announce/wire_util.h"

namespace flowlb::agent::bgp {

using wire::Reader;
using wire::Writer;
namespace {

constexpr uint8_t kFlagOptional = 0x80, kFlagTransitive = 0x40, kFlagExtended = 0x10;

WireError error(ErrorCode code, uint8_t subcode, std::string reason,
                std::vector<uint8_t> data = {}) {
  WireError e;
  e.notification = {static_cast<uint8_t>(code), subcode, std::move(data)};
  e.reason = std::move(reason);
  return e;
}

template <typename T>
Decoded<T> fail(WireError e) {
  Decoded<T> d;
  d.error = std::move(e);
  return d;
}

// One prefix of an NLRI or withdrawn-routes field; false if malformed.
bool readPrefix(Reader& r, bool v6, IpPrefix* out) {
  const uint8_t len = r.u8();
  if (r.failed() || len > (v6 ? 128 : 32)) return false;
  const auto bytes = r.take((len + 7u) / 8u);
  if (r.failed()) return false;
  uint8_t addr[16] = {};
  std::copy(bytes.begin(), bytes.end(), addr);
  if (len % 8 != 0) addr[len / 8] &= static_cast<uint8_t>(0xff << (8 - len % 8));  // host bits
  out->addr = v6 ? IpAddr::fromV6(addr) : IpAddr::fromV4(addr);
  out->length = len;
  return true;
}

bool readPrefixes(std::span<const uint8_t> field, bool v6, std::vector<IpPrefix>* out) {
  Reader r(field);
  while (!r.done()) {
    IpPrefix p;
    if (!readPrefix(r, v6, &p)) return false;
    out->push_back(p);
  }
  return true;
}

// AS_PATH / AS4_PATH: segments of 2- or 4-octet ASes; false if malformed.
bool readAsPath(std::span<const uint8_t> value, int width, std::vector<uint32_t>* out) {
  Reader r(value);
  while (!r.done()) {
    const uint8_t type = r.u8();
    const uint8_t count = r.u8();
    if (r.failed() || type < 1 || type > 4 || count == 0) return false;
    for (int i = 0; i < count; ++i) out->push_back(width == 4 ? r.u32() : r.u16());
    if (r.failed()) return false;
  }
  return true;
}

std::vector<uint8_t> u16Data(uint16_t v) {
  return {static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)};
}

// Parses the Capabilities optional parameter's value into `o`.
bool readCapabilities(std::span<const uint8_t> value, OpenMessage* o, WireError* err) {
  Reader r(value);
  while (!r.done()) {
    const uint8_t code = r.u8();
    const uint8_t len = r.u8();
    const auto v = r.take(len);
    if (r.failed()) {
      *err = error(ErrorCode::kOpen, 0, "capability overruns its parameter");
      return false;
    }
    Reader c(v);
    switch (code) {
      case 1:  // Multiprotocol
        if (len != 4) {
          *err = error(ErrorCode::kOpen, 0,
                       "multiprotocol capability of length " + std::to_string(len));
          return false;
        }
        {
          Family f;
          f.afi = c.u16();
          c.u8();
          f.safi = c.u8();
          o->multiprotocol.push_back(f);
        }
        break;
      case 2:  // Route refresh
        o->route_refresh = true;
        break;
      case 64: {  // Graceful restart
        if (len < 2 || (len - 2) % 4 != 0) {
          *err = error(ErrorCode::kOpen, 0,
                       "graceful restart capability of length " + std::to_string(len));
          return false;
        }
        GracefulRestart gr;
        const uint16_t head = c.u16();
        gr.restart_state = head & 0x8000;
        gr.notification = head & 0x4000;
        gr.restart_time_s = head & 0x0fff;
        while (!c.done()) {
          GracefulRestart::PerFamily f;
          f.family.afi = c.u16();
          f.family.safi = c.u8();
          f.forwarding_preserved = c.u8() & 0x80;
          gr.families.push_back(f);
        }
        o->graceful_restart = gr;
        break;
      }
      case 65:  // 4-octet AS
        if (len != 4) {
          *err =
              error(ErrorCode::kOpen, 0, "4-octet AS capability of length " + std::to_string(len));
          return false;
        }
        o->four_octet_as = true;
        o->asn = c.u32();
        break;
      default: o->other_capabilities.push_back(code);
    }
  }
  return true;
}

}  // namespace

std::string familyName(Family f) {
  if (f == kIpv4Unicast) return "ipv4-unicast";
  if (f == kIpv6Unicast) return "ipv6-unicast";
  return "afi" + std::to_string(f.afi) + "-safi" + std::to_string(f.safi);
}

std::string describe(const Notification& n) {
  static const char* const kCodes[] = {"",
                                       "Message Header Error",
                                       "OPEN Message Error",
                                       "UPDATE Message Error",
                                       "Hold Timer Expired",
                                       "Finite State Machine Error",
                                       "Cease"};
  std::string s = n.code >= 1 && n.code <= 6 ? kCodes[n.code] : "code " + std::to_string(n.code);
  static const char* const kOpen[] = {"",
                                      "Unsupported Version Number",
                                      "Bad Peer AS",
                                      "Bad BGP Identifier",
                                      "Unsupported Optional Parameter",
                                      "",
                                      "Unacceptable Hold Time",
                                      "Unsupported Capability"};
  static const char* const kCease[] = {"",
                                       "Maximum Number of Prefixes Reached",
                                       "Administrative Shutdown",
                                       "Peer De-configured",
                                       "Administrative Reset",
                                       "Connection Rejected",
                                       "Other Configuration Change",
                                       "Connection Collision Resolution",
                                       "Out of Resources",
                                       "Hard Reset",
                                       "BFD Down"};
  static const char* const kHeader[] = {"", "Connection Not Synchronized", "Bad Message Length",
                                        "Bad Message Type"};
  static const char* const kUpdate[] = {"",
                                        "Malformed Attribute List",
                                        "Unrecognized Well-known Attribute",
                                        "Missing Well-known Attribute",
                                        "Attribute Flags Error",
                                        "Attribute Length Error",
                                        "Invalid ORIGIN Attribute",
                                        "",
                                        "Invalid NEXT_HOP Attribute",
                                        "Optional Attribute Error",
                                        "Invalid Network Field",
                                        "Malformed AS_PATH"};
  const char* sub = nullptr;
  if (n.code == 1 && n.subcode <= 3) sub = kHeader[n.subcode];
  if (n.code == 2 && n.subcode <= 7) sub = kOpen[n.subcode];
  if (n.code == 3 && n.subcode <= 11) sub = kUpdate[n.subcode];
  if (n.code == 6 && n.subcode <= 10) sub = kCease[n.subcode];
  if (sub && *sub) return s + " / " + sub;
  return n.subcode ? s + " / subcode " + std::to_string(n.subcode) : s;
}

std::optional<Family> UpdateMessage::endOfRib() const {
  if (has_attributes || !withdrawn.empty() || !nlri.empty() || mp_reach) return std::nullopt;
  if (!mp_unreach) return kIpv4Unicast;
  if (mp_unreach->withdrawn.empty()) return mp_unreach->family;
  return std::nullopt;
}

size_t UpdateMessage::routeCount() const {
  return nlri.size() + (mp_reach ? mp_reach->nlri.size() : 0);
}

Decoded<size_t> frameLength(std::span<const uint8_t> buf) {
  Decoded<size_t> d;
  if (buf.size() < kHeaderSize) {
    d.value = 0;
    return d;
  }
  for (size_t i = 0; i < 16; ++i) {
    if (buf[i] != 0xff) {
      return fail<size_t>(error(ErrorCode::kMessageHeader, 1, "marker is not all ones"));
    }
  }
  Reader r(buf.subspan(16));
  const uint16_t len = r.u16();
  const uint8_t type = r.u8();
  if (type < 1 || type > 5) {
    return fail<size_t>(
        error(ErrorCode::kMessageHeader, 3, "message type " + std::to_string(type), {type}));
  }
  static constexpr size_t kMin[] = {0, 29, 23, 21, 19, 23};
  const bool exact = type == 4 || type == 5;
  if (len < kMin[type] || len > kMaxMessageSize || (exact && len != kMin[type])) {
    return fail<size_t>(
        error(ErrorCode::kMessageHeader, 2,
              "length " + std::to_string(len) + " for message type " + std::to_string(type),
              u16Data(len)));
  }
  d.value = len;
  return d;
}

Decoded<OpenMessage> decodeOpen(std::span<const uint8_t> body) {
  Reader r(body);
  OpenMessage o;
  o.version = r.u8();
  const uint16_t my_as = r.u16();
  o.hold_time_s = r.u16();
  o.router_id = r.u32();
  uint16_t opt_len = r.u8();
  if (r.failed()) return fail<OpenMessage>(error(ErrorCode::kMessageHeader, 2, "short OPEN"));
  if (o.version != 4) {
    return fail<OpenMessage>(
        error(ErrorCode::kOpen, 1, "BGP version " + std::to_string(o.version), u16Data(4)));
  }
  // RFC 9072: a non-extended length of 255 followed by type 255 announces
  // 2-octet lengths.
  bool extended = false;
  if (opt_len == 255 && r.left() >= 3 && body[10] == 255) {
    r.u8();
    opt_len = r.u16();
    extended = true;
  }
  if (opt_len != r.left()) {
    return fail<OpenMessage>(error(ErrorCode::kOpen, 0,
                                   "optional parameters length " + std::to_string(opt_len) +
                                       " but " + std::to_string(r.left()) + " bytes follow"));
  }
  o.asn = my_as;
  while (!r.done()) {
    const uint8_t type = r.u8();
    const uint16_t len = extended ? r.u16() : r.u8();
    const auto value = r.take(len);
    if (r.failed()) {
      return fail<OpenMessage>(error(ErrorCode::kOpen, 0, "optional parameter overruns the OPEN"));
    }
    if (type != 2) {
      return fail<OpenMessage>(
          error(ErrorCode::kOpen, 4, "optional parameter type " + std::to_string(type)));
    }
    WireError err;
    if (!readCapabilities(value, &o, &err)) return fail<OpenMessage>(err);
  }
  if (o.hold_time_s == 1 || o.hold_time_s == 2) {
    return fail<OpenMessage>(
        error(ErrorCode::kOpen, 6, "hold time " + std::to_string(o.hold_time_s) + " s"));
  }
  if (o.router_id == 0) return fail<OpenMessage>(error(ErrorCode::kOpen, 3, "BGP identifier 0"));
  if (o.four_octet_as && o.asn == 0) {
    return fail<OpenMessage>(error(ErrorCode::kOpen, 2, "4-octet AS capability carries AS 0"));
  }
  Decoded<OpenMessage> d;
  d.value = std::move(o);
  return d;
}

Decoded<UpdateMessage> decodeUpdate(std::span<const uint8_t> body, const DecodeContext& ctx) {
  Reader r(body);
  UpdateMessage u;
  const uint16_t withdrawn_len = r.u16();
  const auto withdrawn = r.take(withdrawn_len);
  const uint16_t attrs_len = r.u16();
  const auto attrs = r.take(attrs_len);
  if (r.failed()) {
    return fail<UpdateMessage>(error(ErrorCode::kUpdate, 1, "field lengths overrun the UPDATE"));
  }
  const auto nlri = body.subspan(body.size() - r.left());
  if (!readPrefixes(withdrawn, false, &u.withdrawn) || !readPrefixes(nlri, false, &u.nlri)) {
    return fail<UpdateMessage>(error(ErrorCode::kUpdate, 10, "malformed IPv4 prefix"));
  }
  // RFC 7606: attribute errors drop the UPDATE's routes ("treat as
  // withdraw"); structural ones still reset the session, so keep looking.
  std::optional<WireError> withdraw;
  auto soft = [&withdraw](WireError e) {
    e.treat_as_withdraw = true;
    if (!withdraw) withdraw = std::move(e);
  };
  std::set<uint8_t> seen;
  Reader a(attrs);
  while (!a.done()) {
    const uint8_t flags = a.u8();
    const uint8_t type = a.u8();
    const uint16_t len = (flags & kFlagExtended) ? a.u16() : a.u8();
    const auto value = a.take(len);
    if (a.failed()) {
      soft(error(ErrorCode::kUpdate, 1, "path attribute overruns the attribute field"));
      break;
    }
    if (!seen.insert(type).second) {
      if (type == 14 || type == 15) {
        return fail<UpdateMessage>(
            error(ErrorCode::kUpdate, 1, "MP_REACH/MP_UNREACH attribute repeated"));
      }
      soft(error(ErrorCode::kUpdate, 1, "attribute " + std::to_string(type) + " repeated"));
      continue;
    }
    Reader v(value);
    const bool well_known = type == 1 || type == 2 || type == 3 || type == 5;
    if (well_known && (flags & (kFlagOptional | kFlagTransitive)) != kFlagTransitive) {
      soft(error(ErrorCode::kUpdate, 4, "flags of attribute " + std::to_string(type)));
      continue;
    }
    switch (type) {
      case 1: {  // ORIGIN
        const uint8_t o = v.u8();
        if (len != 1 || o > 2) {
          soft(error(ErrorCode::kUpdate, 6, "ORIGIN " + std::to_string(o)));
          break;
        }
        u.attributes.origin = static_cast<Origin>(o);
        break;
      }
      case 2:  // AS_PATH
        if (!readAsPath(value, ctx.four_octet_as ? 4 : 2, &u.attributes.as_path)) {
          soft(error(ErrorCode::kUpdate, 11, "malformed AS_PATH"));
        }
        break;
      case 3:  // NEXT_HOP
        if (len != 4) {
          soft(error(ErrorCode::kUpdate, 5, "NEXT_HOP of length " + std::to_string(len)));
          break;
        }
        u.attributes.next_hop = IpAddr::fromV4(value.data());
        break;
      case 4:  // MULTI_EXIT_DISC
      case 5:  // LOCAL_PREF
        if (len != 4) {
          soft(error(ErrorCode::kUpdate, 5,
                     "attribute " + std::to_string(type) + " of length " + std::to_string(len)));
          break;
        }
        (type == 4 ? u.attributes.med : u.attributes.local_pref) = v.u32();
        break;
      case 8:  // COMMUNITIES
        if (len == 0 || len % 4 != 0) {
          soft(error(ErrorCode::kUpdate, 5, "COMMUNITIES of length " + std::to_string(len)));
          break;
        }
        while (!v.done()) u.attributes.communities.push_back(v.u32());
        break;
      case 32:  // LARGE_COMMUNITY
        if (len == 0 || len % 12 != 0) {
          soft(error(ErrorCode::kUpdate, 5, "LARGE_COMMUNITY of length " + std::to_string(len)));
          break;
        }
        while (!v.done()) {
          LargeCommunity c;
          c.global = v.u32();
          c.local1 = v.u32();
          c.local2 = v.u32();
          u.attributes.large_communities.push_back(c);
        }
        break;
      case 17: {  // AS4_PATH: validated; meaningful only to 2-octet speakers
        std::vector<uint32_t> ignored;
        if (!readAsPath(value, 4, &ignored))
          soft(error(ErrorCode::kUpdate, 11, "malformed AS4_PATH"));
        break;
      }
      case 14: {  // MP_REACH_NLRI
        MpReach m;
        m.family.afi = v.u16();
        m.family.safi = v.u8();
        const uint8_t nh_len = v.u8();
        const auto nh = v.take(nh_len);
        v.u8();  // reserved
        if (v.failed()) {
          return fail<UpdateMessage>(error(ErrorCode::kUpdate, 9, "short MP_REACH_NLRI"));
        }
        const bool v6 = m.family.afi == 2;
        if (m.family == kIpv4Unicast || m.family == kIpv6Unicast) {
          if (nh_len == 4) {
            m.next_hop = IpAddr::fromV4(nh.data());
          } else if (nh_len == 16 || nh_len == 32) {
            m.next_hop = IpAddr::fromV6(nh.data());
            if (nh_len == 32) m.link_local_hop = IpAddr::fromV6(nh.data() + 16);
          } else {
            return fail<UpdateMessage>(
                error(ErrorCode::kUpdate, 9,
                      "MP_REACH_NLRI next hop of length " + std::to_string(nh_len)));
          }
          if (!readPrefixes(value.subspan(value.size() - v.left()), v6, &m.nlri)) {
            return fail<UpdateMessage>(
                error(ErrorCode::kUpdate, 9, "malformed prefix in MP_REACH_NLRI"));
          }
        }
        u.mp_reach = std::move(m);
        break;
      }
      case 15: {  // MP_UNREACH_NLRI
        MpUnreach m;
        m.family.afi = v.u16();
        m.family.safi = v.u8();
        if (v.failed()) {
          return fail<UpdateMessage>(error(ErrorCode::kUpdate, 9, "short MP_UNREACH_NLRI"));
        }
        if ((m.family == kIpv4Unicast || m.family == kIpv6Unicast) &&
            !readPrefixes(value.subspan(3), m.family.afi == 2, &m.withdrawn)) {
          return fail<UpdateMessage>(
              error(ErrorCode::kUpdate, 9, "malformed prefix in MP_UNREACH_NLRI"));
        }
        u.mp_unreach = std::move(m);
        break;
      }
      default:
        if (!(flags & kFlagOptional)) {
          return fail<UpdateMessage>(
              error(ErrorCode::kUpdate, 2,
                    "unrecognised well-known attribute " + std::to_string(type), {flags, type}));
        }
        ++u.unknown_attributes;
    }
  }
  // Mandatory attributes, when there are routes to carry them.
  const bool announces = !u.nlri.empty() || (u.mp_reach && !u.mp_reach->nlri.empty());
  u.has_attributes = seen.size() > seen.count(15);  // anything but MP_UNREACH_NLRI
  if (announces && !withdraw) {
    for (uint8_t t : {uint8_t{1}, uint8_t{2}}) {
      if (!seen.count(t))
        soft(error(ErrorCode::kUpdate, 3, "missing attribute " + std::to_string(t), {t}));
    }
    if (!u.nlri.empty() && !seen.count(3)) {
      soft(error(ErrorCode::kUpdate, 3, "missing NEXT_HOP", {3}));
    }
  }
  if (withdraw) return fail<UpdateMessage>(*withdraw);
  Decoded<UpdateMessage> d;
  d.value = std::move(u);
  return d;
}

Decoded<Message> decodeMessage(std::span<const uint8_t> msg, const DecodeContext& ctx) {
  auto len = frameLength(msg);
  if (!len.ok()) return fail<Message>(len.error);
  if (*len.value == 0 || *len.value != msg.size()) {
    return fail<Message>(error(ErrorCode::kMessageHeader, 2, "truncated message"));
  }
  const auto body = msg.subspan(kHeaderSize);
  Message m;
  m.type = static_cast<MessageType>(msg[18]);
  switch (m.type) {
    case MessageType::kOpen: {
      auto o = decodeOpen(body);
      if (!o.ok()) return fail<Message>(o.error);
      m.open = std::move(*o.value);
      break;
    }
    case MessageType::kUpdate: {
      auto u = decodeUpdate(body, ctx);
      if (!u.ok()) return fail<Message>(u.error);
      m.update = std::move(*u.value);
      break;
    }
    case MessageType::kNotification:
      m.notification.code = body[0];
      m.notification.subcode = body[1];
      m.notification.data.assign(body.begin() + 2, body.end());
      break;
    case MessageType::kKeepalive:
    case MessageType::kRouteRefresh: break;
  }
  Decoded<Message> d;
  d.value = std::move(m);
  return d;
}

}  // namespace flowlb::agent::bgp

// The BGP-4 wire format (RFC 4271 §4) as plain structs, with a pure encoder
// and decoder: no sockets, no clock, no allocation beyond the vectors.
// Covered: OPEN with capabilities (RFC 5492; multiprotocol RFC 4760,
// route refresh RFC 2918, graceful restart RFC 4724, 4-octet AS numbers
// RFC 6793, extended optional parameters RFC 9072 on input), UPDATE with
// ORIGIN, AS_PATH/AS4_PATH, NEXT_HOP, MULTI_EXIT_DISC, LOCAL_PREF,
// COMMUNITIES (RFC 1997), LARGE_COMMUNITY (RFC 8092), MP_REACH_NLRI and
// MP_UNREACH_NLRI (RFC 4760), KEEPALIVE and NOTIFICATION.
//
// Decoding errors carry the NOTIFICATION code and subcode RFC 4271 §6
// prescribes, and say whether RFC 7606's "treat-as-withdraw" applies (the
// UPDATE is dropped and counted, the session lives on) or the session must
// be reset. The agent never installs what peers send; it decodes UPDATEs
// only to validate and count them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/ip_addr.h"

namespace flowlb::agent::bgp {

inline constexpr size_t kHeaderSize = 19;
inline constexpr size_t kMaxMessageSize = 4096;
inline constexpr uint16_t kAsTrans = 23456;  // RFC 6793: stands for a 4-octet AS in 2 octets

enum class MessageType : uint8_t {
  kOpen = 1,
  kUpdate = 2,
  kNotification = 3,
  kKeepalive = 4,
  kRouteRefresh = 5,
};

// Address family and subsequent address family (RFC 4760).
struct Family {
  uint16_t afi = 1;  // 1 IPv4, 2 IPv6
  uint8_t safi = 1;  // 1 unicast
  friend auto operator<=>(const Family&, const Family&) = default;
};
inline constexpr Family kIpv4Unicast{1, 1};
inline constexpr Family kIpv6Unicast{2, 1};
std::string familyName(Family f);

// RFC 4724 §3 (and the N bit of RFC 8538, decoded but never sent by us).
struct GracefulRestart {
  bool restart_state = false;   // R: the sender has restarted
  bool notification = false;    // N
  uint16_t restart_time_s = 0;  // 12 bits
  struct PerFamily {
    Family family;
    bool forwarding_preserved = false;  // F
    friend bool operator==(const PerFamily&, const PerFamily&) = default;
  };
  std::vector<PerFamily> families;
  friend bool operator==(const GracefulRestart&, const GracefulRestart&) = default;
};

struct OpenMessage {
  uint8_t version = 4;
  uint32_t asn = 0;  // the real AS: from the 4-octet capability when present
  uint16_t hold_time_s = 0;
  uint32_t router_id = 0;  // BGP Identifier, host order
  // Capabilities (RFC 5492). `four_octet_as` is the capability's presence.
  bool four_octet_as = false;
  std::vector<Family> multiprotocol;
  bool route_refresh = false;
  std::optional<GracefulRestart> graceful_restart;
  std::vector<uint8_t> other_capabilities;  // codes we saw and do not use
};

// RFC 4271 §4.5 codes; subcodes are plain numbers at the call sites.
enum class ErrorCode : uint8_t {
  kMessageHeader = 1,
  kOpen = 2,
  kUpdate = 3,
  kHoldTimerExpired = 4,
  kFsm = 5,
  kCease = 6,
};
// Cease subcodes (RFC 4486, RFC 8538, RFC 9384).
inline constexpr uint8_t kCeaseAdminShutdown = 2;
inline constexpr uint8_t kCeasePeerDeconfigured = 3;
inline constexpr uint8_t kCeaseOtherConfigChange = 6;
inline constexpr uint8_t kCeaseOutOfResources = 8;
inline constexpr uint8_t kCeaseHardReset = 9;
inline constexpr uint8_t kCeaseBfdDown = 10;

struct Notification {
  uint8_t code = 0;
  uint8_t subcode = 0;
  std::vector<uint8_t> data;
};
// "OPEN Message Error / Bad Peer AS", for logs and metrics.
std::string describe(const Notification& n);

struct LargeCommunity {
  uint32_t global = 0;
  uint32_t local1 = 0;
  uint32_t local2 = 0;
  friend auto operator<=>(const LargeCommunity&, const LargeCommunity&) = default;
};

enum class Origin : uint8_t { kIgp = 0, kEgp = 1, kIncomplete = 2 };

// The attributes of the routes in one UPDATE. AS_PATH is one AS_SEQUENCE
// (all this speaker ever originates); received AS_SETs are validated and
// their members appended, which is enough to count and log.
struct PathAttributes {
  Origin origin = Origin::kIgp;
  std::vector<uint32_t> as_path;
  std::optional<IpAddr> next_hop;  // NEXT_HOP (IPv4 routes in the classic NLRI)
  std::optional<uint32_t> med;
  std::optional<uint32_t> local_pref;
  std::vector<uint32_t> communities;
  std::vector<LargeCommunity> large_communities;
  friend bool operator==(const PathAttributes&, const PathAttributes&) = default;
};

struct MpReach {
  Family family;
  IpAddr next_hop;                       // the global address
  std::optional<IpAddr> link_local_hop;  // IPv6: the second, link-local one
  std::vector<IpPrefix> nlri;
};
struct MpUnreach {
  Family family;
  std::vector<IpPrefix> withdrawn;
};

struct UpdateMessage {
  std::vector<IpPrefix> withdrawn;  // IPv4 unicast
  bool has_attributes = false;      // false: withdrawals or an End-of-RIB only
  PathAttributes attributes;
  std::optional<MpReach> mp_reach;
  std::optional<MpUnreach> mp_unreach;
  std::vector<IpPrefix> nlri;  // IPv4 unicast
  size_t unknown_attributes = 0;

  // RFC 4724 §2: an UPDATE with nothing in it (IPv4) or an MP_UNREACH with
  // no prefixes and no other attribute (other families).
  std::optional<Family> endOfRib() const;
  size_t routeCount() const;  // reachable prefixes announced
};

// One decoded message.
struct Message {
  MessageType type = MessageType::kKeepalive;
  OpenMessage open;
  UpdateMessage update;
  Notification notification;
};

// Why a message was refused: the NOTIFICATION to send (RFC 4271 §6), or,
// with `treat_as_withdraw`, an UPDATE to drop and count (RFC 7606) with the
// session kept.
struct WireError {
  Notification notification;
  bool treat_as_withdraw = false;
  std::string reason;  // in words, for the log
};

template <typename T>
struct Decoded {
  std::optional<T> value;
  WireError error;
  bool ok() const { return value.has_value(); }
};

// What decoding an UPDATE depends on (negotiated in the OPEN exchange).
struct DecodeContext {
  bool four_octet_as = true;
};

// Framing: the length of the first message in `buf` once its header has
// arrived (0: wait for more bytes), or an error for a bad marker, length or
// type, which must reset the session.
Decoded<size_t> frameLength(std::span<const uint8_t> buf);
// One whole message (its header included), as frameLength delimited it.
Decoded<Message> decodeMessage(std::span<const uint8_t> msg, const DecodeContext& ctx);
// The body of an OPEN or an UPDATE alone (for the fuzzer and tests).
Decoded<OpenMessage> decodeOpen(std::span<const uint8_t> body);
Decoded<UpdateMessage> decodeUpdate(std::span<const uint8_t> body, const DecodeContext& ctx);

// Encoders. Each returns one whole message, header included.
std::vector<uint8_t> encodeOpen(const OpenMessage& open);
std::vector<uint8_t> encodeKeepalive();
std::vector<uint8_t> encodeNotification(const Notification& n);
// `four_octet_as`: whether the peer can read 4-octet AS numbers; if not,
// AS_PATH carries AS_TRANS and AS4_PATH the real path (RFC 6793 §4.2.2).
// The caller keeps the message within kMaxMessageSize (see pack()).
std::vector<uint8_t> encodeUpdate(const UpdateMessage& u, bool four_octet_as);
std::vector<uint8_t> encodeEndOfRib(Family f);

// Prefix encoding shared with the UPDATE packer: bytes a prefix takes in an
// NLRI field.
inline size_t prefixWireSize(const IpPrefix& p) {
  return 1 + (p.length + 7u) / 8u;
}

}  // namespace flowlb::agent::bgp

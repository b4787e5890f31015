// BFD control packets (RFC 5880 §4.1), without authentication: a pure
// encoder and a decoder that applies the checks of §6.8.6 that need no
// session (version, lengths, detect multiplier, multipoint, discriminators).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace flowlb::agent::bfd {

inline constexpr size_t kPacketSize = 24;
inline constexpr uint16_t kControlPort = 3784;  // RFC 5881 §4

enum class State : uint8_t { kAdminDown = 0, kDown = 1, kInit = 2, kUp = 3 };
const char* stateName(State s);

// RFC 5880 §4.1 diagnostic codes.
enum class Diag : uint8_t {
  kNone = 0,
  kDetectionTimeExpired = 1,
  kEchoFailed = 2,
  kNeighborSignaledDown = 3,
  kForwardingPlaneReset = 4,
  kPathDown = 5,
  kConcatenatedPathDown = 6,
  kAdminDown = 7,
  kReverseConcatenatedPathDown = 8,
};
const char* diagName(Diag d);

struct ControlPacket {
  Diag diag = Diag::kNone;
  State state = State::kDown;
  bool poll = false;
  bool final = false;
  bool control_plane_independent = false;  // C: we run in the agent, so never set
  bool demand = false;
  uint8_t detect_mult = 3;
  uint32_t my_discriminator = 0;
  uint32_t your_discriminator = 0;
  uint32_t desired_min_tx_us = 0;
  uint32_t required_min_rx_us = 0;
  uint32_t required_min_echo_rx_us = 0;
  friend bool operator==(const ControlPacket&, const ControlPacket&) = default;
};

std::vector<uint8_t> encode(const ControlPacket& p);
// nullopt (and `why`) for a packet §6.8.6 says to discard.
std::optional<ControlPacket> decode(std::span<const uint8_t> bytes, std::string* why);

}  // namespace flowlb::agent::bfd

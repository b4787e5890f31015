#include "agent/announce/bfd/bfd_packet.h"

#include "agent/announce/wire_util.h"

namespace flowlb::agent::bfd {

const char* stateName(State s) {
  switch (s) {
    case State::kAdminDown: return "AdminDown";
    case State::kDown: return "Down";
    case State::kInit: return "Init";
    case State::kUp: return "Up";
  }
  return "?";
}

const char* diagName(Diag d) {
  static const char* const kNames[] = {"none",
                                       "detection_time_expired",
                                       "echo_failed",
                                       "neighbor_signaled_down",
                                       "forwarding_plane_reset",
                                       "path_down",
                                       "concatenated_path_down",
                                       "admin_down",
                                       "reverse_concatenated_path_down"};
  const auto i = static_cast<size_t>(d);
  return i < std::size(kNames) ? kNames[i] : "unknown";
}

std::vector<uint8_t> encode(const ControlPacket& p) {
  wire::Writer w;
  w.u8(static_cast<uint8_t>(1 << 5 | (static_cast<uint8_t>(p.diag) & 0x1f)));
  w.u8(static_cast<uint8_t>(static_cast<uint8_t>(p.state) << 6 | (p.poll ? 0x20 : 0) |
                            (p.final ? 0x10 : 0) | (p.control_plane_independent ? 0x08 : 0) |
                            (p.demand ? 0x02 : 0)));
  w.u8(p.detect_mult);
  w.u8(kPacketSize);
  w.u32(p.my_discriminator);
  w.u32(p.your_discriminator);
  w.u32(p.desired_min_tx_us);
  w.u32(p.required_min_rx_us);
  w.u32(p.required_min_echo_rx_us);
  return std::move(w.bytes);
}

std::optional<ControlPacket> decode(std::span<const uint8_t> bytes, std::string* why) {
  auto reject = [why](const char* reason) {
    *why = reason;
    return std::nullopt;
  };
  if (bytes.size() < kPacketSize) return reject("shorter than 24 bytes");
  wire::Reader r(bytes);
  const uint8_t vd = r.u8();
  const uint8_t flags = r.u8();
  ControlPacket p;
  p.detect_mult = r.u8();
  const uint8_t length = r.u8();
  p.my_discriminator = r.u32();
  p.your_discriminator = r.u32();
  p.desired_min_tx_us = r.u32();
  p.required_min_rx_us = r.u32();
  p.required_min_echo_rx_us = r.u32();
  if (vd >> 5 != 1) return reject("version is not 1");
  const bool auth = flags & 0x04;
  if (length < (auth ? 26 : 24) || length > bytes.size()) return reject("bad length field");
  if (auth) return reject("authentication is not configured");
  if (p.detect_mult == 0) return reject("detect multiplier 0");
  if (flags & 0x01) return reject("multipoint bit set");
  if (p.my_discriminator == 0) return reject("my discriminator 0");
  p.diag = static_cast<Diag>(vd & 0x1f);
  p.state = static_cast<State>(flags >> 6);
  p.poll = flags & 0x20;
  p.final = flags & 0x10;
  p.control_plane_independent = flags & 0x08;
  p.demand = flags & 0x02;
  if (p.your_discriminator == 0 && p.state != State::kDown && p.state != State::kAdminDown) {
    return reject("your discriminator 0 in state Init or Up");
  }
  return p;
}

}  // namespace flowlb::agent::bfd

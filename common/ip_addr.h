// IpAddr: an IPv4 or IPv6 address in one 16-byte form (IPv4 is stored
// IPv4-mapped, ::ffff:a.b.c.d) so tables and keys need no per-family code.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "common/status.h"

namespace flowlb {

struct IpAddr {
  std::array<uint8_t, 16> bytes{};

  static IpAddr fromV4(const uint8_t* network_order4) {
    IpAddr a;
    a.bytes[10] = 0xff;
    a.bytes[11] = 0xff;
    std::memcpy(&a.bytes[12], network_order4, 4);
    return a;
  }
  static IpAddr fromV6(const uint8_t* network_order16) {
    IpAddr a;
    std::memcpy(a.bytes.data(), network_order16, 16);
    return a;
  }
  static Result<IpAddr> parse(std::string_view text);

  bool isV4() const {
    static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(bytes.data(), kPrefix, 12) == 0;
  }
  const uint8_t* v4() const { return &bytes[12]; }
  std::string toString() const;
  // As a URL or a log names a host: "192.0.2.1", "[2001:db8::1]".
  std::string toHost() const { return isV4() ? toString() : "[" + toString() + "]"; }
  // "192.0.2.1:80", "[2001:db8::1]:80".
  std::string withPort(uint16_t port) const { return toHost() + ":" + std::to_string(port); }

  // Two 8-byte compares: this runs several times per packet.
  friend bool operator==(const IpAddr& a, const IpAddr& b) {
    uint64_t x[2], y[2];
    std::memcpy(x, a.bytes.data(), 16);
    std::memcpy(y, b.bytes.data(), 16);
    return ((x[0] ^ y[0]) | (x[1] ^ y[1])) == 0;
  }
  friend auto operator<=>(const IpAddr&, const IpAddr&) = default;
};

// IpPrefix: address/length; for IPv4 the length is given in IPv4 terms (0..32).
struct IpPrefix {
  IpAddr addr;
  uint8_t length = 0;

  static Result<IpPrefix> parse(std::string_view text);
  bool contains(const IpAddr& a) const;
  std::string toString() const;
  friend bool operator==(const IpPrefix&, const IpPrefix&) = default;
  friend auto operator<=>(const IpPrefix&, const IpPrefix&) = default;
};

}  // namespace flowlb

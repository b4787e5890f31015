#include "common/ip_addr.h"

#include <arpa/inet.h>

namespace flowlb {

Result<IpAddr> IpAddr::parse(std::string_view text) {
  std::string s(text);
  uint8_t buf[16];
  if (inet_pton(AF_INET, s.c_str(), buf) == 1) return IpAddr::fromV4(buf);
  if (inet_pton(AF_INET6, s.c_str(), buf) == 1) return IpAddr::fromV6(buf);
  return Status::error("'" + s + "' is not an IPv4 or IPv6 address");
}

std::string IpAddr::toString() const {
  char buf[INET6_ADDRSTRLEN];
  if (isV4()) {
    inet_ntop(AF_INET, v4(), buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
  }
  return buf;
}

Result<IpPrefix> IpPrefix::parse(std::string_view text) {
  auto slash = text.find('/');
  auto addr = IpAddr::parse(text.substr(0, slash));
  if (!addr) return addr.status();
  IpPrefix p;
  p.addr = *addr;
  int max_len = addr->isV4() ? 32 : 128;
  if (slash == std::string_view::npos) {
    p.length = static_cast<uint8_t>(max_len);
    return p;
  }
  std::string len_text(text.substr(slash + 1));
  char* end = nullptr;
  long len = std::strtol(len_text.c_str(), &end, 10);
  if (len_text.empty() || *end != '\0' || len < 0 || len > max_len) {
    return Status::error("'" + std::string(text) + "': prefix length must be 0.." +
                         std::to_string(max_len));
  }
  p.length = static_cast<uint8_t>(len);
  // Canonicalise: clear host bits so contains() compares only the prefix.
  int bits = p.length + (addr->isV4() ? 96 : 0);
  for (int i = 0; i < 16; ++i) {
    int keep = bits - i * 8;
    if (keep >= 8) continue;
    p.addr.bytes[i] &= keep <= 0 ? 0 : static_cast<uint8_t>(0xff << (8 - keep));
  }
  return p;
}

bool IpPrefix::contains(const IpAddr& a) const {
  if (a.isV4() != addr.isV4()) return false;
  int bits = length + (addr.isV4() ? 96 : 0);
  int full = bits / 8;
  if (std::memcmp(a.bytes.data(), addr.bytes.data(), full) != 0) return false;
  int rest = bits % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a.bytes[full] & mask) == addr.bytes[full];
}

std::string IpPrefix::toString() const {
  return addr.toString() + "/" + std::to_string(length);
}

}  // namespace flowlb

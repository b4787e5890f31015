// The backend id registry as saved beside the conntrack files (issue 15):
// "FLBREG01", a slot count, then per slot 16 address bytes, the port (2,
// little-endian), the reuse tag and a used flag. Decoding checks every field.
#include <cstring>
#include <set>

#include "agent/lb/snapshot.h"

namespace flowlb::agent {
namespace {

constexpr char kMagic[8] = {'F', 'L', 'B', 'R', 'E', 'G', '0', '1'};
constexpr size_t kSlotBytes = 20;

}  // namespace

std::vector<SnapshotBuilder::RegistrySlot> SnapshotBuilder::registry() const {
  std::vector<RegistrySlot> out;
  out.reserve(registry_.size());
  for (const Slot& s : registry_) out.push_back({s.addr, s.port, s.tag, s.used});
  return out;
}

Status SnapshotBuilder::adoptRegistry(const std::vector<RegistrySlot>& slots) {
  if (last_ || !registry_.empty())
    return Status::error("a registry is adopted before the first build");
  if (slots.size() > kBackendIndexMask) return Status::error("the registry has too many slots");
  std::set<std::pair<IpAddr, uint16_t>> seen;
  for (const RegistrySlot& s : slots) {
    if (s.used && !seen.insert({s.addr, s.port}).second) {
      return Status::error("backend " + s.addr.toString() + ":" + std::to_string(s.port) +
                           " holds two ids");
    }
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    const RegistrySlot& r = slots[i];
    Slot s;
    s.addr = r.addr;
    s.port = r.port;
    s.tag = r.tag;
    s.used = r.used;
    s.id = uint32_t{r.tag} << kBackendIndexBits | static_cast<uint32_t>(i);
    registry_.push_back(s);
    if (r.used) {
      index_[{r.addr, r.port}] = static_cast<uint32_t>(i);
    } else {
      free_.push_back(static_cast<uint32_t>(i));
    }
  }
  return Status::ok();
}

std::string encodeRegistry(const std::vector<SnapshotBuilder::RegistrySlot>& slots) {
  std::string out(kMagic, sizeof kMagic);
  const uint32_t n = static_cast<uint32_t>(slots.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(n >> (8 * i)));
  for (const auto& s : slots) {
    out.append(reinterpret_cast<const char*>(s.addr.bytes.data()), 16);
    out.push_back(static_cast<char>(s.port & 0xff));
    out.push_back(static_cast<char>(s.port >> 8));
    out.push_back(static_cast<char>(s.tag));
    out.push_back(s.used ? 1 : 0);
  }
  return out;
}

Result<std::vector<SnapshotBuilder::RegistrySlot>> decodeRegistry(const std::string& b) {
  if (b.size() < 12 || std::memcmp(b.data(), kMagic, sizeof kMagic) != 0) {
    return Status::error("not a flowlb backend registry");
  }
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= uint32_t{static_cast<uint8_t>(b[8 + i])} << (8 * i);
  if (n > kBackendIndexMask || b.size() != 12 + size_t{n} * kSlotBytes) {
    return Status::error("the backend registry is truncated or corrupt");
  }
  std::vector<SnapshotBuilder::RegistrySlot> out(n);
  for (uint32_t i = 0; i < n; ++i) {
    const auto* p = reinterpret_cast<const uint8_t*>(b.data()) + 12 + size_t{i} * kSlotBytes;
    std::memcpy(out[i].addr.bytes.data(), p, 16);
    out[i].port = static_cast<uint16_t>(p[16] | p[17] << 8);
    out[i].tag = p[18];
    if (p[19] > 1) return Status::error("the backend registry is corrupt");
    out[i].used = p[19] == 1;
  }
  return out;
}

}  // namespace flowlb::agent

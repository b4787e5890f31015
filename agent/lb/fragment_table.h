// Remembers the ports of fragmented datagrams. A first fragment carries the
// transport header; later fragments do not, so the forwarder records
// (src, dst, id, proto) -> ports from the first and applies them to the rest.
// A later fragment seen before its first (reordering) or after its record
// was overwritten cannot be routed safely and is dropped with the reason
// fragment_unknown_flow rather than guessed. Direct-mapped, fixed size,
// entries live for `lifetime_ms` (reassembly timeouts are ~30-60 s; a
// forwarded datagram's fragments normally arrive within microseconds).
#pragma once

#include <cstdint>
#include <vector>

#include "agent/packet/packet.h"

namespace flowlb::agent {

class FragmentTable {
 public:
  explicit FragmentTable(size_t entries = 4096, uint32_t lifetime_ms = 2000);

  void remember(const FlowTuple& t, uint32_t id, uint32_t now_ms);
  // Fills t.sport/t.dport; false when the datagram is unknown.
  bool recall(FlowTuple& t, uint32_t id, uint32_t now_ms) const;
  uint64_t overwrites() const { return overwrites_; }

 private:
  struct Entry {
    IpAddr src, dst;
    uint32_t id = 0;
    uint32_t seen_ms = 0;
    uint16_t sport = 0, dport = 0;
    uint8_t proto = 0;
    bool used = false;
  };
  size_t slot(const FlowTuple& t, uint32_t id) const;

  std::vector<Entry> entries_;
  uint32_t lifetime_ms_;
  uint64_t overwrites_ = 0;
};

}  // namespace flowlb::agent

#include "agent/lb/fragment_table.h"

#include "common/hash.h"

namespace flowlb::agent {

FragmentTable::FragmentTable(size_t entries, uint32_t lifetime_ms)
    : entries_(entries == 0 ? 1 : entries), lifetime_ms_(lifetime_ms) {}

size_t FragmentTable::slot(const FlowTuple& t, uint32_t id) const {
  uint64_t h = hashBytes(t.src.bytes.data(), 16, uint64_t{id} << 8 | t.proto);
  h = hashBytes(t.dst.bytes.data(), 16, h);
  return h % entries_.size();
}

void FragmentTable::remember(const FlowTuple& t, uint32_t id, uint32_t now_ms) {
  Entry& e = entries_[slot(t, id)];
  if (e.used && now_ms - e.seen_ms <= lifetime_ms_ &&
      !(e.id == id && e.proto == t.proto && e.src == t.src && e.dst == t.dst)) {
    ++overwrites_;
  }
  e = Entry{t.src, t.dst, id, now_ms, t.sport, t.dport, t.proto, true};
}

bool FragmentTable::recall(FlowTuple& t, uint32_t id, uint32_t now_ms) const {
  const Entry& e = entries_[slot(t, id)];
  if (!e.used || now_ms - e.seen_ms > lifetime_ms_ || e.id != id || e.proto != t.proto ||
      !(e.src == t.src) || !(e.dst == t.dst)) {
    return false;
  }
  t.sport = e.sport;
  t.dport = e.dport;
  return true;
}

}  // namespace flowlb::agent

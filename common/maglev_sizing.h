// The Maglev table size for a backend set: part of the cross-node contract.
// Every node (and every agent version during a rolling upgrade) must build
// the same table for the same backends (rule 3 of docs/architecture.md), so the size is a
// pure function of the backend count, computed by the controller and sent
// explicitly, and by a standalone agent from its file. The Maglev paper
// (§3.4, §5.3) asks for M > 100 x N for shares within 1 %; the sizes come
// from a ladder of primes about 4x apart so that adding one backend rarely
// changes M (and so rarely moves flows that conntrack does not pin).
// Changing this ladder changes tables: see the golden test in
// agent/lb/maglev_test.cc before touching it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace flowlb {

inline constexpr uint32_t kMaglevSizeLadder[] = {
    251, 1021, 4093, 16381, 65537, 262139, 1048573, 4194301, 16777213,
};

// The smallest rung with at least 100 slots per backend (the largest rung
// when none has).
inline constexpr uint32_t maglevSizeFor(size_t backends) {
  for (uint32_t m : kMaglevSizeLadder) {
    if (m >= 100 * backends) return m;
  }
  return kMaglevSizeLadder[sizeof kMaglevSizeLadder / sizeof kMaglevSizeLadder[0] - 1];
}

}  // namespace flowlb

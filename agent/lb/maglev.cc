#include "agent/lb/maglev.h"

#include <algorithm>

#include "common/hash.h"

namespace flowlb::agent {
namespace {

constexpr uint64_t kSkipSeedSalt = 0x5bd1e9955bd1e995ULL;
constexpr uint32_t kEmpty = UINT32_MAX;

}  // namespace

bool isPrime(uint32_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (uint32_t d = 3; uint64_t{d} * d <= n; d += 2) {
    if (n % d == 0) return false;
  }
  return true;
}

Result<MaglevTable> MaglevTable::build(std::vector<MaglevBackend> backends, uint32_t size,
                                       uint64_t seed, std::string* warning) {
  if (size < 3 || size > kMaxMaglevSize || !isPrime(size)) {
    return Status::error("Maglev table size " + std::to_string(size) +
                         " must be a prime between 3 and " + std::to_string(kMaxMaglevSize) +
                         " (e.g. 16381, 65537, 655373)");
  }
  std::sort(backends.begin(), backends.end(),
            [](const MaglevBackend& a, const MaglevBackend& b) { return a.key < b.key; });
  for (size_t i = 1; i < backends.size(); ++i) {
    if (backends[i].key == backends[i - 1].key) {
      return Status::error("duplicate backend '" + backends[i].key + "' in Maglev set");
    }
  }
  if (backends.size() >= size) {
    return Status::error(std::to_string(backends.size()) + " backends do not fit a table of " +
                         std::to_string(size) + " slots; use a larger prime size");
  }
  if (warning != nullptr) {
    warning->clear();
    if (uint64_t{size} < 100 * uint64_t{backends.size()}) {
      *warning = "Maglev table size " + std::to_string(size) + " is below 100 x " +
                 std::to_string(backends.size()) + " backends: shares will differ by more than 1 %";
    }
  }

  MaglevTable t;
  t.seed_ = seed;
  t.backends_ = std::move(backends);
  t.slots_.assign(size, kEmpty);
  const size_t n = t.backends_.size();
  uint32_t max_weight = 0;
  for (const auto& b : t.backends_) max_weight = std::max(max_weight, b.weight);

  if (max_weight > 0) {
    // Per backend: its next position in its permutation and its skip.
    std::vector<uint32_t> pos(n), skip(n);
    std::vector<uint64_t> credit(n, 0);
    for (size_t i = 0; i < n; ++i) {
      const auto& key = t.backends_[i].key;
      pos[i] = static_cast<uint32_t>(hashString(key, seed) % size);
      skip[i] = static_cast<uint32_t>(hashString(key, seed ^ kSkipSeedSalt) % (size - 1) + 1);
    }
    // Occupancy as a bitmap: 8 KiB at M = 65537, so probing stays in L1.
    std::vector<uint64_t> used((size + 63) / 64, 0);
    uint32_t filled = 0;
    while (filled < size) {
      for (size_t i = 0; i < n && filled < size; ++i) {
        credit[i] += t.backends_[i].weight;
        if (credit[i] < max_weight) continue;
        credit[i] -= max_weight;
        uint32_t p = pos[i];
        while (used[p >> 6] >> (p & 63) & 1) {
          p += skip[i];
          if (p >= size) p -= size;
        }
        used[p >> 6] |= uint64_t{1} << (p & 63);
        t.slots_[p] = static_cast<uint32_t>(i);
        p += skip[i];
        if (p >= size) p -= size;
        pos[i] = p;
        ++filled;
      }
    }
    t.has_slots_ = true;
  } else {
    std::fill(t.slots_.begin(), t.slots_.end(), 0);  // no backend takes new flows
  }

  uint64_t fp = hashBytes(&seed, sizeof seed, size);
  for (const auto& b : t.backends_) {
    fp = hashString(b.key, fp ^ b.weight);
  }
  fp = hashBytes(t.slots_.data(), t.slots_.size() * sizeof(uint32_t), fp);
  t.fingerprint_ = fp;
  return t;
}

std::vector<uint32_t> MaglevTable::slotCounts() const {
  std::vector<uint32_t> counts(backends_.size(), 0);
  if (!has_slots_) return counts;
  for (uint32_t s : slots_) ++counts[s];
  return counts;
}

}  // namespace flowlb::agent

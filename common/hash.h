// Portable 64-bit hashing with a seed. The result depends only on the bytes
// and the seed (explicit little-endian loads), never on the platform or the
// process, so every node computes the same value: Maglev permutations and
// table fingerprints rely on it (rule 3 of docs/architecture.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace flowlb {

inline uint64_t mix64(uint64_t x) {  // splitmix64 finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

inline uint64_t loadLe64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

inline uint64_t hashBytes(const void* data, size_t len, uint64_t seed) {
  const auto* p = static_cast<const uint8_t*>(data);
  constexpr uint64_t kMul = 0x9e3779b97f4a7c15ULL;
  uint64_t h = mix64(seed ^ (len * kMul));
  while (len >= 8) {
    h = mix64(h ^ loadLe64(p)) * kMul;
    p += 8;
    len -= 8;
  }
  uint64_t tail = 0;
  for (size_t i = 0; i < len; ++i) tail |= uint64_t{p[i]} << (8 * i);
  return mix64(h ^ tail ^ (uint64_t{len} << 56));
}

inline uint64_t hashString(std::string_view s, uint64_t seed) {
  return hashBytes(s.data(), s.size(), seed);
}

}  // namespace flowlb

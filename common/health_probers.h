// Which nodes probe a backend's health (the contract's HealthProbers): the
// `per_backend` nodes of the list that rank highest for the backend by
// rendezvous hashing of the node name with the service and backend keys.
// The controller and every agent compute the same answer from the same
// list, so the assignment needs no per-node message, and a node that joins
// or leaves moves only the backends it ranks first for (about
// per_backend / nodes of them).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/hash.h"

namespace flowlb {

inline constexpr uint32_t kDefaultProbersPerBackend = 3;

inline uint64_t proberScore(std::string_view node, uint64_t backend_hash) {
  return mix64(hashBytes(node.data(), node.size(), 0x70726f6265ULL) ^ backend_hash);
}

inline uint64_t probedBackendHash(std::string_view service_key, std::string_view backend_key) {
  const uint64_t s = hashBytes(service_key.data(), service_key.size(), 0x68656c7468ULL);
  return hashBytes(backend_key.data(), backend_key.size(), s);
}

// The probers of one backend, best first. `per_backend` 0 means the default.
inline std::vector<std::string> probersFor(const std::vector<std::string>& nodes,
                                           uint32_t per_backend, std::string_view service_key,
                                           std::string_view backend_key) {
  if (per_backend == 0) per_backend = kDefaultProbersPerBackend;
  const uint64_t bh = probedBackendHash(service_key, backend_key);
  std::vector<std::pair<uint64_t, const std::string*>> ranked;
  ranked.reserve(nodes.size());
  for (const std::string& n : nodes) ranked.emplace_back(proberScore(n, bh), &n);
  const size_t k = std::min<size_t>(per_backend, ranked.size());
  std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(k), ranked.end(),
                    [](const auto& a, const auto& b) {
                      return a.first != b.first ? a.first > b.first : *a.second < *b.second;
                    });
  std::vector<std::string> out;
  out.reserve(k);
  for (size_t i = 0; i < k; ++i) out.push_back(*ranked[i].second);
  return out;
}

// Whether `self` probes the backend. An empty node list means every node
// does (a standalone agent, or a controller that assigns none).
inline bool isProber(const std::vector<std::string>& nodes, uint32_t per_backend,
                     std::string_view self, std::string_view service_key,
                     std::string_view backend_key) {
  if (nodes.empty()) return true;
  if (per_backend == 0) per_backend = kDefaultProbersPerBackend;
  if (nodes.size() <= per_backend) {
    return std::find(nodes.begin(), nodes.end(), self) != nodes.end();
  }
  const uint64_t bh = probedBackendHash(service_key, backend_key);
  const uint64_t mine = proberScore(self, bh);
  // Ranked by (score desc, name asc): count the nodes that rank above self.
  uint32_t above = 0;
  bool listed = false;
  for (const std::string& n : nodes) {
    if (n == self) {
      listed = true;
      continue;
    }
    const uint64_t sc = proberScore(n, bh);
    if (sc > mine || (sc == mine && n < self)) {
      if (++above >= per_backend) return false;
    }
  }
  return listed;
}

}  // namespace flowlb

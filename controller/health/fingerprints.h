// Whether every node built the same Maglev table for a service: the pure
// comparison of the fingerprints agents ack (Ack.maglev_fingerprints,
// agents with CAPABILITY_MAGLEV_FINGERPRINTS). Only agents that run the
// same content of the service are compared (the same generation's entry);
// services with externalTrafficPolicy: Local are left out, since each node
// keeps only its own endpoints there and their tables differ by design.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "controller/health/verdict.h"

namespace flowlb::controller {

struct MaglevPrint {
  uint64_t fingerprint = 0;
  uint32_t table_size = 0;
  uint32_t backends = 0;
  bool operator==(const MaglevPrint&) const = default;
};

// One agent's last fingerprint of one service, with the identity of the
// content it built it from (the distribution's Entry: equal for two agents
// exactly when they were sent the same VirtualService).
struct FingerprintSample {
  std::string node;
  const void* content = nullptr;
  MaglevPrint print;
};

struct FingerprintMismatch {
  std::string service_key;  // VirtualService key
  // Per fingerprint seen, its nodes (sorted), most nodes first.
  std::vector<std::pair<MaglevPrint, std::vector<std::string>>> groups;
  bool operator==(const FingerprintMismatch&) const = default;
};

// `samples`: per VirtualService key. `local`: keys with
// externalTrafficPolicy: Local (skipped). Sorted by key.
std::vector<FingerprintMismatch> compareFingerprints(
    const std::map<std::string, std::vector<FingerprintSample>>& samples,
    const std::set<std::string>& local);

// The Warning shown on the Service while agents disagree.
HealthFact mismatchFact(const FingerprintMismatch& m);

}  // namespace flowlb::controller

#include "controller/distribution/announcer_policy.h"

#include <algorithm>

#include "common/hash.h"

namespace flowlb::controller {

std::string rendezvous(const IpAddr& vip, const std::vector<std::string>& candidates) {
  std::string best;
  uint64_t best_h = 0;
  for (const std::string& n : candidates) {
    const uint64_t h = hashString(n, hashBytes(vip.bytes.data(), 16, 0x616e6e6f756e6365ULL));
    if (best.empty() || h > best_h) {
      best = n;
      best_h = h;
    }
  }
  return best;
}

AnnouncerMap assignAnnouncers(const std::vector<VipCandidates>& vips,
                              const std::set<std::string>& live, const AnnouncerMap& previous,
                              bool settling, const std::set<std::string>& lost) {
  AnnouncerMap out;
  std::vector<std::string> live_candidates;
  for (const VipCandidates& v : vips) {
    static const std::vector<std::string> kNone;
    const std::vector<std::string>& c = v.candidates ? *v.candidates : kNone;
    auto prev = previous.find(v.vip);
    if (prev != previous.end() && std::binary_search(c.begin(), c.end(), prev->second) &&
        (live.count(prev->second) || (settling && !lost.count(prev->second)))) {
      out[v.vip] = prev->second;  // 1. sticky
      continue;
    }
    live_candidates.clear();
    for (const std::string& n : c) {
      if (live.count(n)) live_candidates.push_back(n);
    }
    out[v.vip] = rendezvous(v.vip, live_candidates.empty() ? c : live_candidates);  // 2, 3
  }
  return out;
}

}  // namespace flowlb::controller

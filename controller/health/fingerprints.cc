#include "controller/health/fingerprints.h"

#include <algorithm>
#include <cstdio>

#include "controller/distribution/feedback.h"

namespace flowlb::controller {

std::vector<FingerprintMismatch> compareFingerprints(
    const std::map<std::string, std::vector<FingerprintSample>>& samples,
    const std::set<std::string>& local) {
  std::vector<FingerprintMismatch> out;
  for (const auto& [key, list] : samples) {
    if (local.count(key)) continue;
    // Per content the agents were sent, the fingerprints they built.
    std::map<const void*, std::map<uint64_t, std::pair<MaglevPrint, std::vector<std::string>>>>
        by_content;
    for (const FingerprintSample& s : list) {
      auto& g = by_content[s.content][s.print.fingerprint];
      g.first = s.print;
      g.second.push_back(s.node);
    }
    FingerprintMismatch m;
    m.service_key = key;
    for (auto& [content, prints] : by_content) {
      if (prints.size() < 2) continue;
      for (auto& [fp, g] : prints) {
        std::sort(g.second.begin(), g.second.end());
        m.groups.push_back(std::move(g));
      }
    }
    if (m.groups.empty()) continue;
    std::stable_sort(m.groups.begin(), m.groups.end(), [](const auto& a, const auto& b) {
      return a.second.size() != b.second.size() ? a.second.size() > b.second.size()
                                                : a.second < b.second;
    });
    out.push_back(std::move(m));
  }
  return out;
}

HealthFact mismatchFact(const FingerprintMismatch& m) {
  std::string text = "nodes built different Maglev tables for " + m.service_key + ":";
  for (size_t i = 0; i < m.groups.size(); ++i) {
    const auto& [print, nodes] = m.groups[i];
    char fp[32];
    std::snprintf(fp, sizeof fp, "%016llx", static_cast<unsigned long long>(print.fingerprint));
    text += (i ? "; " : " ");
    for (size_t j = 0; j < nodes.size() && j < 5; ++j) text += (j ? ", " : "") + nodes[j];
    if (nodes.size() > 5) text += " and " + std::to_string(nodes.size() - 5) + " more";
    text += " built " + std::string(fp) + " (" + std::to_string(print.table_size) + " slots, " +
            std::to_string(print.backends) + " backends)";
  }
  return {serviceKeyOf(m.service_key), {true, "MaglevTableMismatch", text}};
}

}  // namespace flowlb::controller

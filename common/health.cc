#include "common/health.h"

#include <algorithm>
#include <exception>

namespace flowlb {

void HealthChecks::add(std::string name, Check check) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.push_back({std::move(name), false, std::move(check)});
}

void HealthChecks::addReadiness(std::string name, Check check) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.push_back({std::move(name), true, std::move(check)});
}

HealthChecks::Report HealthChecks::run(bool readiness,
                                       const std::vector<std::string>& exclude) const {
  std::vector<Entry> entries;
  {
    std::lock_guard<std::mutex> lock(mu_);
    entries = entries_;  // checks run without the lock: one may add another
  }
  Report r;
  for (const Entry& e : entries) {
    if (e.readiness_only && !readiness) continue;
    if (std::find(exclude.begin(), exclude.end(), e.name) != exclude.end()) {
      r.text += "[+]" + e.name + " excluded\n";
      continue;
    }
    HealthCheck c;
    try {
      c = e.check();
    } catch (const std::exception& ex) {
      c = HealthCheck::fail(std::string("check threw: ") + ex.what());
    }
    r.ok = r.ok && c.ok;
    r.text += (c.ok ? "[+]" : "[-]") + e.name + (c.ok ? " ok" : " failed");
    if (!c.detail.empty()) r.text += ": " + c.detail;
    r.text += "\n";
  }
  r.text += std::string(readiness ? "readyz" : "healthz") +
            (r.ok ? " check passed\n" : " check failed\n");
  return r;
}

}  // namespace flowlb

// Health and readiness as a registry of named checks, served as /healthz
// (liveness: restart me if this fails) and /readyz (readiness: send me
// work only if this passes) by common/endpoints.h.
//
//   HealthChecks health;
//   health.add("informers", [&] { return watchdog.fresh()
//       ? HealthCheck::pass("last event 2s ago")
//       : HealthCheck::fail("no informer progress for 60s"); });
//   health.addReadiness("caches", [&] { ... });
//
// /healthz runs the liveness checks; /readyz runs the liveness checks and
// the readiness checks. Both answer 200 when every check passes and 503
// otherwise, with one line per check in the style of kube-apiserver
// ("[+]name ok: detail" / "[-]name failed: reason"), so `curl /readyz`
// shows what the process is waiting for. `?exclude=NAME` skips a check.
//
// Any component may add checks at any time (main wires them; a class that
// owns a condition can take a HealthChecks& and add its own). Checks run on
// the HTTP server's thread, each time the endpoint is called, so they must be
// cheap, must not block and must be safe to call from another thread (read
// an atomic, take a short lock). A check that throws counts as failed.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace flowlb {

struct HealthCheck {
  bool ok = true;
  std::string detail;  // what it saw; shown for passing checks too
  static HealthCheck pass(std::string detail = {}) { return {true, std::move(detail)}; }
  static HealthCheck fail(std::string reason) { return {false, std::move(reason)}; }
};

class HealthChecks {
 public:
  using Check = std::function<HealthCheck()>;

  // A liveness check (also part of readiness).
  void add(std::string name, Check check);
  // A readiness-only check.
  void addReadiness(std::string name, Check check);

  struct Report {
    bool ok = true;
    std::string text;  // one line per check, then "healthz check passed|failed"
  };
  // readiness=false: /healthz; true: /readyz. `exclude`: names to skip.
  Report run(bool readiness, const std::vector<std::string>& exclude = {}) const;

 private:
  struct Entry {
    std::string name;
    bool readiness_only;
    Check check;
  };
  mutable std::mutex mu_;  // guards entries_
  std::vector<Entry> entries_;
};

}  // namespace flowlb

// The HTTP endpoints both binaries serve on --metrics-address:
//   /metrics  Prometheus text format of the given registry
//   /healthz  liveness checks (see common/health.h)
//   /readyz   liveness and readiness checks
//   /version  "<version> <commit>"
// on an HttpServer (one thread, bounded connections and deadlines: a
// slowloris cannot lock out the kubelet's probes or a scrape).
#pragma once

#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "common/health.h"
#include "common/http_server.h"

namespace flowlb {

Result<std::unique_ptr<HttpServer>> serveEndpoints(HttpServerOptions options,
                                                   std::shared_ptr<prometheus::Registry> registry,
                                                   const HealthChecks* health);

// flowlb_build_info{component,version,commit} 1, registered in `registry`.
void registerBuildInfo(prometheus::Registry& registry, const std::string& component);

}  // namespace flowlb

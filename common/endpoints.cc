#include "common/endpoints.h"

#include <prometheus/gauge.h>
#include <prometheus/text_serializer.h>

#include <sstream>

#include "common/version.h"

namespace flowlb {
namespace {

std::vector<std::string> excluded(const std::string& query) {
  std::vector<std::string> out;
  std::stringstream ss(query);
  for (std::string kv; std::getline(ss, kv, '&');) {
    if (kv.rfind("exclude=", 0) == 0) out.push_back(kv.substr(8));
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<HttpServer>> serveEndpoints(HttpServerOptions options,
                                                   std::shared_ptr<prometheus::Registry> registry,
                                                   const HealthChecks* health) {
  std::map<std::string, HttpHandler> routes;
  routes["/metrics"] = [registry](const HttpRequest&) {
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = prometheus::TextSerializer().Serialize(registry->Collect());
    return r;
  };
  const auto probe = [health](bool readiness) {
    return [health, readiness](const HttpRequest& req) {
      HttpResponse r;
      if (health == nullptr) {
        r.body = "ok\n";
        return r;
      }
      const HealthChecks::Report rep = health->run(readiness, excluded(req.query));
      r.status = rep.ok ? 200 : 503;
      r.body = rep.text;
      return r;
    };
  };
  routes["/healthz"] = probe(false);
  routes["/livez"] = probe(false);
  routes["/readyz"] = probe(true);
  routes["/version"] = [](const HttpRequest&) {
    return HttpResponse{200, "text/plain; charset=utf-8",
                        std::string(buildVersion()) + " " + buildCommit() + "\n"};
  };
  return HttpServer::start(std::move(options), std::move(routes));
}

void registerBuildInfo(prometheus::Registry& registry, const std::string& component) {
  prometheus::BuildGauge()
      .Name("flowlb_build_info")
      .Help("Version and git commit of this binary (always 1)")
      .Register(registry)
      .Add({{"component", component}, {"version", buildVersion()}, {"commit", buildCommit()}})
      .Set(1);
}

}  // namespace flowlb

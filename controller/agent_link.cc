#include "controller/agent_link.h"

#include <spdlog/spdlog.h>

#include "controller/identity/bootstrap_service.h"
#include "controller/identity/serving_tls.h"
#include "controller/k8s/api_client.h"
#include "controller/k8s/ca_store.h"
#include "controller/k8s/node_authorizer.h"

namespace flowlb::controller {

struct AgentLink::Bootstrap {
  std::unique_ptr<k8s::ApiClient> api;
  std::unique_ptr<k8s::KubeNodeAuthorizer> authorizer;
  std::unique_ptr<BootstrapService> service;
};

bool agentLinkWanted(const AgentLinkFlags& f) {
  return f.plaintext || !f.tls_cert.empty() || !f.tls_ca_key.empty() || !f.ca_secret.empty();
}

std::string agentLinkUsageError(const AgentLinkFlags& f) {
  if (!f.tls_ca_key.empty() && f.tls_ca.empty()) {
    return "--tls-ca-key needs --tls-ca (the certificate of that CA)";
  }
  if (!f.ca_secret.empty() && (!f.tls_ca.empty() || !f.tls_ca_key.empty())) {
    return "--ca-secret replaces --tls-ca/--tls-ca-key: give one or the other";
  }
  if (f.plaintext && (!f.ca_secret.empty() || !f.ca_bundle_configmap.empty())) {
    return "--plaintext has no CA: drop --ca-secret/--ca-bundle-configmap";
  }
  if (!f.plaintext && !f.tls_cert.empty() && f.tls_ca.empty() && !f.allow_unauthenticated_agents) {
    return "TLS without --tls-ca accepts any client as any node: give --tls-ca (the CA of the "
           "agents' certificates), or --allow-unauthenticated-agents to accept that";
  }
  return "";
}

AgentLink::~AgentLink() {
  server_.reset();  // stops serving the bootstrap before it goes
  bootstrap_.reset();
}

Result<std::unique_ptr<AgentLink>> AgentLink::start(
    const AgentLinkFlags& f, const k8s::ClusterConfig* cluster, k8s::ApiTelemetry* telemetry,
    std::function<bool()> is_leader, std::function<std::string()> leader_address,
    std::function<void(std::string_view)> on_certificate) {
  std::unique_ptr<AgentLink> link(new AgentLink());
  SyncServerOptions o;
  o.address = f.grpc_address;
  o.plaintext = f.plaintext;
  o.keepalive_time = std::chrono::milliseconds(f.keepalive_ms);
  o.keepalive_timeout = std::chrono::milliseconds(f.keepalive_timeout_ms);
  o.max_streams = f.max_streams;
  o.max_streams_per_source = f.max_streams_per_source;
  o.health_probers_per_backend = f.health_probers_per_backend;
  o.flow_sync.max_records_per_second = f.flow_sync_max_records_per_second;
  o.leader_address = std::move(leader_address);
  if (f.plaintext) {
    spdlog::warn(
        "event=insecure_agent_link reason=plaintext msg=\"the gRPC link has no TLS: anyone who "
        "can reach {} can read every node's state and speak for any node. Use it for tests and "
        "labs only\"",
        f.grpc_address);
  } else {
    ServingTlsFlags tf;
    tf.cert_file = f.tls_cert;
    tf.key_file = f.tls_key;
    tf.ca_file = f.tls_ca;
    tf.ca_key_file = f.tls_ca_key;
    tf.server_names = f.server_names;
    std::unique_ptr<k8s::ApiClient> api;
    if ((!f.ca_secret.empty() || !f.ca_bundle_configmap.empty()) && cluster == nullptr) {
      return Status::error("--ca-secret and --ca-bundle-configmap need --source=kubernetes");
    }
    if (cluster) {
      api = std::make_unique<k8s::ApiClient>(*cluster, k8s::ApiClientOptions{}, telemetry);
    }
    if (!f.ca_secret.empty()) {
      auto ca = k8s::ensureCaSecret(*api, f.ns, f.ca_secret, f.ca_validity);
      if (!ca) return Status::error("the CA Secret: " + ca.error());
      tf.ca_pem = *ca;
    }
    auto tls = loadServingTls(tf);
    if (!tls) return tls.status();
    if (!f.ca_bundle_configmap.empty()) {
      if (tls->ca_cert_pem.empty()) return Status::error("--ca-bundle-configmap needs a CA");
      if (Status st = k8s::publishCaBundle(*api, f.ns, f.ca_bundle_configmap, tls->ca_cert_pem);
          !st) {
        return Status::error("the CA bundle: " + st.message());
      }
    }
    o.tls_cert_pem = tls->cert_pem;
    o.tls_key_pem = tls->key_pem;
    o.tls_ca_pem = tls->ca_cert_pem;
    if (tls->ca_cert_pem.empty()) {
      spdlog::warn(
          "event=insecure_agent_link reason=unauthenticated_agents msg=\"TLS without --tls-ca: "
          "agents are not authenticated, any client may speak for any node "
          "(--allow-unauthenticated-agents)\"");
    }
    if (tls->self_issued) {
      std::string names;
      for (const std::string& n : f.server_names) names += (names.empty() ? "" : ",") + n;
      spdlog::info("event=serving_certificate_issued names={}", names);
    }
    if (tls->ca && cluster) {
      auto b = std::make_unique<Bootstrap>();
      b->api = std::move(api);
      k8s::NodeAuthorizerOptions ao;
      ao.audience = f.audience;
      ao.agent_namespace = f.agent_namespace;
      ao.agent_service_account = f.agent_service_account;
      b->authorizer = std::make_unique<k8s::KubeNodeAuthorizer>(b->api.get(), ao);
      BootstrapOptions bo;
      bo.validity = f.agent_cert_validity;
      bo.on_result = std::move(on_certificate);
      b->service = std::make_unique<BootstrapService>(std::move(*tls->ca), b->authorizer.get(), bo);
      o.additional_services.push_back(b->service->service());
      spdlog::info(
          "event=certificate_bootstrap enabled=true audience={} service_account={}/{} "
          "validity_s={}",
          f.audience, f.agent_namespace, f.agent_service_account, f.agent_cert_validity.count());
      link->bootstrap_ = std::move(b);
    } else if (tls->ca) {
      spdlog::info(
          "event=certificate_bootstrap enabled=false reason=no_kubernetes msg=\"agents need "
          "certificates for their node names from the CA (--tls-cert/--tls-key)\"");
    }
  }
  auto s = SyncServer::start(o, std::move(is_leader));
  if (!s) return s.status();
  link->server_ = std::move(*s);
  return link;
}

}  // namespace flowlb::controller

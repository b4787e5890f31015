#include "controller/identity/bootstrap_service.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>

#include "controller/identity/peer_identity.h"
#include "flowlb/v1/bootstrap.grpc.pb.h"

namespace flowlb::controller {

namespace pb = flowlb::v1;

bool isKubernetesName(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  const auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(s.front()) || !alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [&](char c) { return alnum(c) || c == '-' || c == '.'; });
}

struct BootstrapService::Impl final : public pb::FlowlbBootstrap::Service {
  pki::CertificateAuthority ca;
  NodeAuthorizer* authorizer;
  BootstrapOptions opt;

  std::mutex mu;  // guards tokens and last
  double tokens;
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();

  Impl(pki::CertificateAuthority c, NodeAuthorizer* a, BootstrapOptions o)
      : ca(std::move(c)), authorizer(a), opt(std::move(o)), tokens(opt.burst) {}

  bool take() {
    std::lock_guard<std::mutex> lock(mu);
    const auto now = std::chrono::steady_clock::now();
    tokens = std::min<double>(opt.burst,
                              tokens + opt.qps * std::chrono::duration<double>(now - last).count());
    last = now;
    if (tokens < 1) return false;
    tokens -= 1;
    return true;
  }

  grpc::Status done(std::string_view result, grpc::Status st) {
    if (opt.on_result) opt.on_result(result);
    return st;
  }

  grpc::Status IssueCertificate(grpc::ServerContext* ctx, const pb::CertificateRequest* req,
                                pb::CertificateResponse* resp) override {
    const std::string peer = logSafe(ctx->peer(), 64);
    if (!take()) {
      return done("throttled", grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                            "too many certificate requests; retry later"));
    }
    const std::string& node = req->node_name();
    if (!isKubernetesName(node)) {
      spdlog::warn("event=certificate_refused reason=invalid_node_name node=\"{}\" peer=\"{}\"",
                   logSafe(node, 64), peer);
      return done("invalid", grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                          "node_name is not a Kubernetes name"));
    }
    if (req->service_account_token().empty() || req->csr_pem().size() > 16384 ||
        req->service_account_token().size() > 16384) {
      return done("invalid", grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                          "a token and a CSR (at most 16 KiB each) are required"));
    }
    const NodeAuthorization a = authorizer->authorize(req->service_account_token(), node);
    using V = NodeAuthorization::Verdict;
    if (a.verdict != V::kAllowed) {
      const char* result = a.verdict == V::kUnauthenticated ? "unauthenticated"
                           : a.verdict == V::kUnavailable   ? "unavailable"
                                                            : "denied";
      spdlog::warn(
          "event=certificate_refused reason={} node={} subject=\"{}\" peer=\"{}\" msg=\"{}\"",
          result, node, logSafe(a.subject, 128), peer, logSafe(a.reason, 256));
      const auto code = a.verdict == V::kUnauthenticated ? grpc::StatusCode::UNAUTHENTICATED
                        : a.verdict == V::kUnavailable   ? grpc::StatusCode::UNAVAILABLE
                                                         : grpc::StatusCode::PERMISSION_DENIED;
      return done(result, grpc::Status(code, a.reason));
    }
    auto cert = ca.signNodeCsr(req->csr_pem(), node, opt.validity);
    if (!cert) {
      spdlog::warn("event=certificate_refused reason=bad_csr node={} subject=\"{}\" msg=\"{}\"",
                   node, logSafe(a.subject, 128), logSafe(cert.error(), 256));
      return done("invalid", grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, cert.error()));
    }
    auto info = pki::inspect(*cert);
    resp->set_certificate_pem(*cert);
    resp->set_ca_pem(ca.certPem());
    resp->set_not_after_unix_ms(info ? static_cast<uint64_t>(info->not_after_unix) * 1000 : 0);
    spdlog::info("event=certificate_issued node={} subject=\"{}\" valid_seconds={}", node,
                 logSafe(a.subject, 128), opt.validity.count());
    return done("issued", grpc::Status::OK);
  }
};

BootstrapService::BootstrapService(pki::CertificateAuthority ca, NodeAuthorizer* authorizer,
                                   BootstrapOptions options)
    : impl_(std::make_unique<Impl>(std::move(ca), authorizer, std::move(options))) {}

BootstrapService::~BootstrapService() = default;

grpc::Service* BootstrapService::service() {
  return impl_.get();
}

}  // namespace flowlb::controller

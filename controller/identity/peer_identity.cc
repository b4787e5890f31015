#include "controller/identity/peer_identity.h"

#include <spdlog/spdlog.h>

namespace flowlb::controller {

std::string logSafe(const std::string& s, size_t max) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

std::string peerCertificateName(const grpc::ServerContext& ctx) {
  const auto auth = ctx.auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) return "";
  const auto cn = auth->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME);
  if (cn.size() != 1) return "";
  return std::string(cn.front().data(), cn.front().size());
}

grpc::Status admitPeer(bool require_certificate, const grpc::ServerContext& ctx) {
  if (!require_certificate || !peerCertificateName(ctx).empty()) return grpc::Status::OK;
  spdlog::warn("event=agent_refused reason=no_client_certificate peer=\"{}\"", logSafe(ctx.peer()));
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      "a client certificate from the agents' CA is required (the agent gets one "
                      "through FlowlbBootstrap.IssueCertificate)");
}

grpc::Status checkHelloNode(bool require_certificate, const grpc::ServerContext& ctx,
                            const std::string& hello_node) {
  if (!require_certificate) return grpc::Status::OK;
  const std::string cn = peerCertificateName(ctx);
  if (cn == hello_node) return grpc::Status::OK;
  spdlog::warn(
      "event=agent_refused reason=identity_mismatch certificate=\"{}\" hello_node=\"{}\" "
      "peer=\"{}\"",
      logSafe(cn), logSafe(hello_node), logSafe(ctx.peer()));
  return grpc::Status(
      grpc::StatusCode::PERMISSION_DENIED,
      "this certificate is for node '" + logSafe(cn) + "', not '" + logSafe(hello_node) + "'");
}

}  // namespace flowlb::controller

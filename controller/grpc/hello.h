// Whether a stream's Hello is accepted: the one place an agent's claims
// are checked against what the controller knows of its peer. Today: the
// node name is a valid Kubernetes node name (a DNS-1123 subdomain, so it
// cannot carry a newline into a log line or a key). Whether the peer's
// certificate speaks for that node is controller/identity/peer_identity.h.
#pragma once

#include <grpcpp/security/auth_context.h>

#include <string>
#include <string_view>

#include "common/status.h"
#include "flowlb/v1/sync.pb.h"

namespace flowlb::controller {

// RFC 1123 subdomain, as Kubernetes validates metadata.name of a Node:
// at most 253 characters, lowercase alphanumerics, '-' and '.', each
// dot-separated label starting and ending with an alphanumeric.
bool validNodeName(std::string_view name);

// `auth` may be null (plaintext, or a test without a context).
Status checkHello(const flowlb::v1::Hello& hello, const grpc::AuthContext* auth);

}  // namespace flowlb::controller

// The agents' CA kept in the Kubernetes API, for installs that cannot
// generate it at render time (manifests/install.yaml, GitOps tools without
// Helm's lookup): the controller generates the CA into an empty Secret at
// its first start (optimistic concurrency: of two replicas starting at
// once, one writes and the other reads what it wrote) and keeps using it
// after; and it publishes the CA certificate, alone, into the ConfigMap the
// agents mount. API calls: get/update that Secret and that ConfigMap.
#pragma once

#include <chrono>
#include <string>

#include "common/pki.h"
#include "common/status.h"
#include "controller/k8s/api_client.h"

namespace flowlb::controller::k8s {

// The CA in Secret ns/name (tls.crt, tls.key), generated there if the
// Secret holds none. The Secret must exist (the manifest creates it empty).
Result<pki::KeyAndCert> ensureCaSecret(ApiClient& api, const std::string& ns,
                                       const std::string& name, std::chrono::seconds validity);

// ConfigMap ns/name gets data["ca.crt"] = cert_pem (written only if it differs).
Status publishCaBundle(ApiClient& api, const std::string& ns, const std::string& name,
                       const std::string& cert_pem);

}  // namespace flowlb::controller::k8s

// Where the API server is and how to authenticate to it: from a kubeconfig
// file (the current context, or a named one) or from the Pod's service
// account (in-cluster), as client-go resolves them.
#pragma once

#include <string>

#include "common/status.h"

namespace flowlb::controller::k8s {

struct ClusterConfig {
  std::string server;  // https://host:port (or http:// for tests)
  std::string ca_pem;  // CA bundle; empty: the system's roots
  bool insecure_skip_verify = false;
  std::string token;       // bearer token
  std::string token_file;  // re-read periodically: projected tokens rotate
  std::string client_cert_pem;
  std::string client_key_pem;
  std::string origin;  // for logs: "kubeconfig FILE (context C)" or "in-cluster"
};

// Reads `path`; `context` empty means current-context. File references
// (certificate-authority, client-certificate, client-key, tokenFile) are
// resolved relative to the file's directory, as kubectl does.
Result<ClusterConfig> loadKubeconfig(const std::string& path, const std::string& context = "");

// The service account mounted into every Pod, and KUBERNETES_SERVICE_HOST/PORT.
Result<ClusterConfig> inClusterConfig(
    const std::string& account_dir = "/var/run/secrets/kubernetes.io/serviceaccount");

// --kubeconfig, else $KUBECONFIG (first file of the list), else in-cluster,
// else ~/.kube/config.
Result<ClusterConfig> resolveClusterConfig(const std::string& kubeconfig_flag);

}  // namespace flowlb::controller::k8s

#include "controller/k8s/kubeconfig.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>

#include "common/base64.h"
#include "common/file.h"

namespace flowlb::controller::k8s {
namespace {

namespace fs = std::filesystem;

// The named entry of a kubeconfig list (clusters, users, contexts).
YAML::Node findNamed(const YAML::Node& list, const std::string& name) {
  if (list && list.IsSequence()) {
    for (const auto& e : list) {
      if (e["name"] && e["name"].as<std::string>() == name) return e;
    }
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

// `field-data` (base64) wins over `field` (a file path).
Result<std::string> dataOrFile(const YAML::Node& n, const std::string& field,
                               const fs::path& base) {
  if (n[field + "-data"]) {
    auto d = base64Decode(n[field + "-data"].as<std::string>());
    if (!d) return Status::error(field + "-data: " + d.error());
    return *d;
  }
  if (n[field]) {
    fs::path p = n[field].as<std::string>();
    if (p.is_relative()) p = base / p;
    return readFile(p.string());
  }
  return std::string();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

Result<ClusterConfig> loadKubeconfig(const std::string& path, const std::string& context) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    return Status::error("kubeconfig " + path + ": " + e.what());
  }
  const fs::path base = fs::path(path).parent_path();
  try {
    const std::string ctx_name =
        context.empty() ? (root["current-context"] ? root["current-context"].as<std::string>() : "")
                        : context;
    if (ctx_name.empty()) return Status::error("kubeconfig " + path + ": no current-context");
    const YAML::Node ctx = findNamed(root["contexts"], ctx_name);
    if (!ctx || !ctx["context"]) {
      return Status::error("kubeconfig " + path + ": no context '" + ctx_name + "'");
    }
    const std::string cluster_name =
        ctx["context"]["cluster"] ? ctx["context"]["cluster"].as<std::string>() : "";
    const std::string user_name =
        ctx["context"]["user"] ? ctx["context"]["user"].as<std::string>() : "";
    const YAML::Node cluster = findNamed(root["clusters"], cluster_name);
    if (!cluster || !cluster["cluster"] || !cluster["cluster"]["server"]) {
      return Status::error("kubeconfig " + path + ": context '" + ctx_name + "' names cluster '" +
                           cluster_name + "', which has no server");
    }
    ClusterConfig c;
    c.origin = "kubeconfig " + path + " (context " + ctx_name + ")";
    const YAML::Node cl = cluster["cluster"];
    c.server = cl["server"].as<std::string>();
    while (!c.server.empty() && c.server.back() == '/') c.server.pop_back();
    c.insecure_skip_verify =
        cl["insecure-skip-tls-verify"] && cl["insecure-skip-tls-verify"].as<bool>();
    auto ca = dataOrFile(cl, "certificate-authority", base);
    if (!ca) return Status::error("kubeconfig " + path + ": " + ca.error());
    c.ca_pem = *ca;
    if (const YAML::Node user = findNamed(root["users"], user_name); user && user["user"]) {
      const YAML::Node u = user["user"];
      if (u["token"]) c.token = u["token"].as<std::string>();
      if (u["tokenFile"]) {
        fs::path p = u["tokenFile"].as<std::string>();
        if (p.is_relative()) p = base / p;
        c.token_file = p.string();
        auto t = readFile(c.token_file);
        if (!t) return Status::error("kubeconfig " + path + ": " + t.error());
        c.token = trim(*t);
      }
      auto cert = dataOrFile(u, "client-certificate", base);
      auto key = dataOrFile(u, "client-key", base);
      if (!cert) return Status::error("kubeconfig " + path + ": " + cert.error());
      if (!key) return Status::error("kubeconfig " + path + ": " + key.error());
      c.client_cert_pem = *cert;
      c.client_key_pem = *key;
      if (c.client_cert_pem.empty() != c.client_key_pem.empty()) {
        return Status::error("kubeconfig " + path + ": user '" + user_name +
                             "' has a client certificate without a key or a key without one");
      }
      if (u["exec"] || u["auth-provider"]) {
        return Status::error("kubeconfig " + path + ": user '" + user_name +
                             "' uses an exec/auth-provider plugin, which flowlb does not run; "
                             "use a token or a client certificate");
      }
    } else if (!user_name.empty()) {
      return Status::error("kubeconfig " + path + ": no user '" + user_name + "'");
    }
    return c;
  } catch (const YAML::Exception& e) {
    return Status::error("kubeconfig " + path + ": " + e.what());
  }
}

Result<ClusterConfig> inClusterConfig(const std::string& account_dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !port || !*host || !*port) {
    return Status::error("not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set");
  }
  ClusterConfig c;
  c.origin = "in-cluster";
  const std::string h = host;
  c.server = "https://" + (h.find(':') != std::string::npos ? "[" + h + "]" : h) + ":" + port;
  c.token_file = account_dir + "/token";
  auto token = readFile(c.token_file);
  if (!token) return Status::error("in-cluster: " + token.error());
  c.token = trim(*token);
  auto ca = readFile(account_dir + "/ca.crt");
  if (!ca) return Status::error("in-cluster: " + ca.error());
  c.ca_pem = *ca;
  return c;
}

Result<ClusterConfig> resolveClusterConfig(const std::string& kubeconfig_flag) {
  if (!kubeconfig_flag.empty()) return loadKubeconfig(kubeconfig_flag);
  if (const char* env = std::getenv("KUBECONFIG"); env && *env) {
    std::string first = env;
    first = first.substr(0, first.find(':'));
    return loadKubeconfig(first);
  }
  if (std::getenv("KUBERNETES_SERVICE_HOST")) return inClusterConfig();
  if (const char* home = std::getenv("HOME")) {
    const std::string p = std::string(home) + "/.kube/config";
    if (fs::exists(p)) return loadKubeconfig(p);
  }
  return Status::error(
      "no API server configuration: give --kubeconfig, set KUBECONFIG, or run in a Pod");
}

}  // namespace flowlb::controller::k8s

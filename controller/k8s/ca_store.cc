#include "controller/k8s/ca_store.h"

#include <cpprest/asyncrt_utils.h>
#include <cpprest/json.h>
#include <spdlog/spdlog.h>

namespace flowlb::controller::k8s {
namespace {

using web::json::value;

std::string dataField(const value& obj, const char* key, bool base64) {
  if (!obj.has_field("data") || !obj.at("data").is_object()) return "";
  const value& data = obj.at("data");
  if (!data.has_field(key) || !data.at(key).is_string()) return "";
  const std::string text = data.at(key).as_string();
  if (!base64) return text;
  try {
    const auto bytes = utility::conversions::from_base64(text);
    return std::string(bytes.begin(), bytes.end());
  } catch (const std::exception&) {
    return "";
  }
}

std::string b64(const std::string& s) {
  return utility::conversions::to_base64(std::vector<unsigned char>(s.begin(), s.end()));
}

Result<value> get(ApiClient& api, const std::string& path) {
  const ApiResponse r = api.request("GET", path);
  if (!r.ok()) {
    return Status::error("GET " + path + ": HTTP " + std::to_string(r.code) + " " +
                         (r.code ? statusMessage(r.body) : r.error));
  }
  try {
    return value::parse(r.body);
  } catch (const std::exception& e) {
    return Status::error("GET " + path + ": " + e.what());
  }
}

}  // namespace

Result<pki::KeyAndCert> ensureCaSecret(ApiClient& api, const std::string& ns,
                                       const std::string& name, std::chrono::seconds validity) {
  const std::string path = "/api/v1/namespaces/" + ns + "/secrets/" + name;
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto obj = get(api, path);
    if (!obj) return obj.status();
    pki::KeyAndCert ca{dataField(*obj, "tls.key", true), dataField(*obj, "tls.crt", true)};
    if (!ca.cert_pem.empty() && !ca.key_pem.empty()) {
      spdlog::info("event=ca_loaded secret={}/{}", ns, name);
      return ca;
    }
    auto fresh = pki::createCa("flowlb CA (" + ns + "/" + name + ")", validity);
    if (!fresh) return fresh.status();
    value updated = *obj;
    updated["type"] = value::string("Opaque");
    updated["data"] = value::object();
    updated["data"]["tls.crt"] = value::string(b64(fresh->cert_pem));
    updated["data"]["tls.key"] = value::string(b64(fresh->key_pem));
    const ApiResponse r = api.request("PUT", path, updated.serialize());
    if (r.ok()) {
      spdlog::info("event=ca_generated secret={}/{} validity_s={}", ns, name, validity.count());
      return *fresh;
    }
    if (r.code != 409) {
      return Status::error("PUT " + path + ": HTTP " + std::to_string(r.code) + " " +
                           (r.code ? statusMessage(r.body) : r.error));
    }
    // Another replica wrote first: read its CA.
  }
  return Status::error("the CA Secret " + ns + "/" + name + " keeps changing under us");
}

Status publishCaBundle(ApiClient& api, const std::string& ns, const std::string& name,
                       const std::string& cert_pem) {
  const std::string path = "/api/v1/namespaces/" + ns + "/configmaps/" + name;
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto obj = get(api, path);
    if (!obj) return obj.status();
    if (dataField(*obj, "ca.crt", false) == cert_pem) return Status::ok();
    value updated = *obj;
    if (!updated.has_field("data") || !updated.at("data").is_object()) {
      updated["data"] = value::object();
    }
    updated["data"]["ca.crt"] = value::string(cert_pem);
    const ApiResponse r = api.request("PUT", path, updated.serialize());
    if (r.ok()) {
      spdlog::info("event=ca_bundle_published configmap={}/{}", ns, name);
      return Status::ok();
    }
    if (r.code != 409) {
      return Status::error("PUT " + path + ": HTTP " + std::to_string(r.code) + " " +
                           (r.code ? statusMessage(r.body) : r.error));
    }
  }
  return Status::error("the ConfigMap " + ns + "/" + name + " keeps changing under us");
}

}  // namespace flowlb::controller::k8s

#include "controller/k8s/node_authorizer.h"

#include <cpprest/json.h>

namespace flowlb::controller::k8s {
namespace {

using web::json::value;
using Verdict = NodeAuthorization::Verdict;

const value* at(const value& v, std::initializer_list<const char*> path) {
  const value* cur = &v;
  for (const char* n : path) {
    if (!cur->is_object()) return nullptr;
    const auto& o = cur->as_object();
    auto it = o.find(n);
    if (it == o.end() || it->second.is_null()) return nullptr;
    cur = &it->second;
  }
  return cur;
}

std::string text(const value* v) {
  return v && v->is_string() ? v->as_string() : "";
}

// The first value of a TokenReview user.extra entry.
std::string extra(const value& status, const char* key) {
  const value* e = at(status, {"user", "extra", key});
  if (!e || !e->is_array() || e->as_array().size() == 0) return "";
  return text(&e->as_array().at(0));
}

NodeAuthorization result(Verdict v, std::string reason, std::string subject = "") {
  return {v, std::move(reason), std::move(subject)};
}

}  // namespace

KubeNodeAuthorizer::KubeNodeAuthorizer(ApiClient* api, NodeAuthorizerOptions options)
    : api_(api), opt_(std::move(options)) {}

NodeAuthorization KubeNodeAuthorizer::authorize(const std::string& token, const std::string& node) {
  value review = value::object();
  review["apiVersion"] = value::string("authentication.k8s.io/v1");
  review["kind"] = value::string("TokenReview");
  review["spec"]["token"] = value::string(token);
  review["spec"]["audiences"][0] = value::string(opt_.audience);
  const ApiResponse r =
      api_->request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", review.serialize());
  if (!r.ok()) {
    return result(Verdict::kUnavailable, "TokenReview failed: HTTP " + std::to_string(r.code) +
                                             " " + (r.code ? statusMessage(r.body) : r.error));
  }
  value got;
  try {
    got = value::parse(r.body);
  } catch (const std::exception& e) {
    return result(Verdict::kUnavailable, std::string("TokenReview answer unreadable: ") + e.what());
  }
  const value* status = at(got, {"status"});
  const value* authed = status ? at(*status, {"authenticated"}) : nullptr;
  if (!status || !authed || !authed->is_boolean() || !authed->as_bool()) {
    const std::string why = status ? text(at(*status, {"error"})) : "";
    return result(Verdict::kUnauthenticated, "the token is not valid for audience " +
                                                 opt_.audience + (why.empty() ? "" : ": " + why));
  }
  const std::string user = text(at(*status, {"user", "username"}));
  const std::string want_user =
      "system:serviceaccount:" + opt_.agent_namespace + ":" + opt_.agent_service_account;
  if (user != want_user) {
    return result(Verdict::kDenied, "the token is " + user + "'s, not " + want_user + "'s", user);
  }
  const std::string pod = extra(*status, "authentication.kubernetes.io/pod-name");
  const std::string pod_uid = extra(*status, "authentication.kubernetes.io/pod-uid");
  if (pod.empty() || pod_uid.empty()) {
    return result(Verdict::kDenied,
                  "the token is not bound to a Pod (use the chart's projected token, not a "
                  "Secret-based one)",
                  user);
  }
  const std::string subject = "pod " + opt_.agent_namespace + "/" + pod;
  const ApiResponse p =
      api_->request("GET", "/api/v1/namespaces/" + opt_.agent_namespace + "/pods/" + pod);
  if (p.code == 404) return result(Verdict::kDenied, "the token's Pod no longer exists", subject);
  if (!p.ok()) {
    return result(Verdict::kUnavailable,
                  "reading the Pod failed: HTTP " + std::to_string(p.code) + " " +
                      (p.code ? statusMessage(p.body) : p.error),
                  subject);
  }
  value obj;
  try {
    obj = value::parse(p.body);
  } catch (const std::exception& e) {
    return result(Verdict::kUnavailable, std::string("Pod unreadable: ") + e.what(), subject);
  }
  if (text(at(obj, {"metadata", "uid"})) != pod_uid) {
    return result(Verdict::kDenied, "the token's Pod was replaced (UID differs)", subject);
  }
  const std::string pod_node = text(at(obj, {"spec", "nodeName"}));
  if (pod_node != node) {
    return result(Verdict::kDenied,
                  "the token's Pod runs on node '" + pod_node + "', not on '" + node + "'",
                  subject);
  }
  const std::string phase = text(at(obj, {"status", "phase"}));
  if (phase == "Succeeded" || phase == "Failed") {
    return result(Verdict::kDenied, "the token's Pod has ended (" + phase + ")", subject);
  }
  return result(Verdict::kAllowed, "", subject);
}

}  // namespace flowlb::controller::k8s

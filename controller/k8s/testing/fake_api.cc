#include "controller/k8s/testing/fake_api.h"

#include "controller/k8s/encode.h"

namespace flowlb::controller::k8s::testing {

using web::json::value;

value mergePatch(value target, const value& patch) {
  if (!patch.is_object()) return patch;
  if (!target.is_object()) target = value::object();
  for (const auto& [k, v] : patch.as_object()) {
    if (v.is_null()) {
      if (target.has_field(k)) target.erase(k);
    } else {
      target[k] = mergePatch(target.has_field(k) ? target.at(k) : value::null(), v);
    }
  }
  return target;
}

void FakeApi::put(const std::string& path, const std::string& json) {
  std::lock_guard<std::mutex> lock(mu_);
  value v = value::parse(json);
  v["metadata"]["resourceVersion"] = value::string(std::to_string(++rv_));
  objects_[path] = v;
}

void FakeApi::putAt(const std::string& path, const std::string& json, uint64_t rv) {
  std::lock_guard<std::mutex> lock(mu_);
  value v = value::parse(json);
  v["metadata"]["resourceVersion"] = value::string(std::to_string(rv));
  objects_[path] = v;
  rv_ = rv;
}

value FakeApi::get(const std::string& path) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = objects_.find(path);
  return it == objects_.end() ? value::null() : it->second;
}

ServiceObject FakeApi::service(const std::string& key) const {
  const value v = get(servicePath(key));
  auto s = decodeService(v);
  return s ? *s : ServiceObject();
}

void FakeApi::remove(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  objects_.erase(path);
}

void FakeApi::touch(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  objects_[path]["metadata"]["resourceVersion"] = value::string(std::to_string(++rv_));
}

void FakeApi::failNext(int count, int code, const std::string& method, const std::string& path_part,
                       double retry_after) {
  std::lock_guard<std::mutex> lock(mu_);
  faults_.push_back({count, code, method, path_part, retry_after});
}

std::vector<FakeApi::Request> FakeApi::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return log_;
}

std::vector<FakeApi::Request> FakeApi::requests(const std::string& method,
                                                const std::string& path_part) const {
  std::vector<Request> out;
  for (const Request& r : requests()) {
    if (r.method == method && r.path.find(path_part) != std::string::npos) out.push_back(r);
  }
  return out;
}

void FakeApi::clearLog() {
  std::lock_guard<std::mutex> lock(mu_);
  log_.clear();
}

ApiResponse FakeApi::answer(int code, const value& body) const {
  ApiResponse r;
  r.code = code;
  r.body = body.serialize();
  if (!r.ok()) r.error = body.has_string_field("message") ? body.at("message").as_string() : "";
  return r;
}

ApiResponse FakeApi::request(const std::string& method, const std::string& path,
                             const std::string& body, const std::string&) {
  std::lock_guard<std::mutex> lock(mu_);
  log_.push_back({method, path, body});
  auto status = [](int code, const std::string& msg) {
    value s = value::object();
    s["kind"] = value::string("Status");
    s["code"] = value::number(code);
    s["message"] = value::string(msg);
    return s;
  };
  for (auto it = faults_.begin(); it != faults_.end(); ++it) {
    if (it->method == method && path.find(it->path) != std::string::npos) {
      const int code = it->code;
      ApiResponse r = answer(code, status(code, "injected"));
      r.retry_after = it->retry_after;
      if (--it->count == 0) faults_.erase(it);
      return r;
    }
  }
  const bool status_part = path.size() > 7 && path.compare(path.size() - 7, 7, "/status") == 0;
  const std::string object = status_part ? path.substr(0, path.size() - 7) : path;
  if (method == "POST") {  // create in a collection (Events)
    value v = value::parse(body);
    const std::string name = "ev-" + std::to_string(++names_);
    v["metadata"]["name"] = value::string(name);
    v["metadata"]["resourceVersion"] = value::string(std::to_string(++rv_));
    objects_[path + "/" + name] = v;
    return answer(201, v);
  }
  auto it = objects_.find(object);
  if (it == objects_.end()) return answer(404, status(404, "not found"));
  if (method == "GET") return answer(200, it->second);
  if (method == "PATCH") {
    const value patch = value::parse(body);
    if (patch.has_object_field("metadata") &&
        patch.at("metadata").has_string_field("resourceVersion") &&
        patch.at("metadata").at("resourceVersion").as_string() !=
            it->second.at("metadata").at("resourceVersion").as_string()) {
      return answer(409, status(409, "the object has been modified"));
    }
    value next = it->second;
    if (status_part) {
      next["status"] = mergePatch(next.has_field("status") ? next.at("status") : value::null(),
                                  patch.has_field("status") ? patch.at("status") : value::object());
    } else {
      value p = patch;
      if (p.has_field("status")) p.erase("status");
      next = mergePatch(next, p);
    }
    next["metadata"]["resourceVersion"] = value::string(std::to_string(++rv_));
    it->second = next;
    return answer(200, next);
  }
  return answer(405, status(405, "not supported"));
}

}  // namespace flowlb::controller::k8s::testing

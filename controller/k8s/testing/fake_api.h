// A fake API server behind the ApiWriter interface, for the writers' unit
// tests: Services (with the status subresource and resourceVersion
// preconditions, as kube-apiserver checks them), Events, IPPools; JSON
// merge patch; scripted failures; a log of every request.
#pragma once

#include <cpprest/json.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "controller/k8s/api_client.h"
#include "controller/k8s/decode.h"

namespace flowlb::controller::k8s::testing {

class FakeApi final : public ApiWriter {
 public:
  struct Request {
    std::string method, path, body;
  };

  ApiResponse request(const std::string& method, const std::string& path,
                      const std::string& body = "",
                      const std::string& content_type = "application/json") override;

  // Objects by path ("/api/v1/namespaces/ns/services/name").
  void put(const std::string& path, const std::string& json);
  // The same at a given resourceVersion (a server restored from a backup).
  void putAt(const std::string& path, const std::string& json, uint64_t rv);
  web::json::value get(const std::string& path) const;
  // The Service as the informer would decode it (the "watch echo").
  ServiceObject service(const std::string& key) const;
  void remove(const std::string& path);
  // The next `count` requests whose method and path contain these fail.
  void failNext(int count, int code, const std::string& method, const std::string& path_part,
                double retry_after = 0);
  std::vector<Request> requests() const;
  std::vector<Request> requests(const std::string& method, const std::string& path_part) const;
  void clearLog();
  // Bumps an object's resourceVersion as if someone else wrote it.
  void touch(const std::string& path);
  void setStopping(bool v) { stopping_ = v; }
  bool stopping() const override { return stopping_; }

 private:
  struct Fault {
    int count, code;
    std::string method, path;
    double retry_after;
  };
  ApiResponse answer(int code, const web::json::value& body) const;
  mutable std::mutex mu_;
  std::map<std::string, web::json::value> objects_;
  std::vector<Fault> faults_;
  std::vector<Request> log_;
  uint64_t rv_ = 100;
  int names_ = 0;
  bool stopping_ = false;
};

web::json::value mergePatch(web::json::value target, const web::json::value& patch);

}  // namespace flowlb::controller::k8s::testing

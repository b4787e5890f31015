// The HTTP(S) client of the Kubernetes API: bearer token or client
// certificate, TLS verification against the cluster's CA, a client-side
// rate limit, and streamed responses for watches. Built on cpprestsdk, which
// only controller/k8s/ includes; callers see strings.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "controller/k8s/kubeconfig.h"

namespace flowlb::controller::k8s {

// What the controller reports about its API traffic (metrics live above).
class ApiTelemetry {
 public:
  virtual ~ApiTelemetry() = default;
  virtual void request(std::string_view /*verb*/, int /*code*/) {}
  virtual void watchRestart(std::string_view /*resource*/, std::string_view /*reason*/) {}
  virtual void rejectedObject(std::string_view /*resource*/) {}
  virtual void throttled(double /*seconds*/) {}
  // A Warning header of an answer (e.g. "unknown field ...ipMode" from a
  // Kubernetes older than 1.29), each distinct text once.
  virtual void apiWarning(std::string_view /*text*/) {}
};

// Token bucket: `qps` requests per second on average, bursts of `burst`.
// Watches are long-lived and not counted.
class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  RateLimiter(double qps, int burst);
  // How long the caller must wait before sending (it has taken its token).
  Clock::duration reserve(Clock::time_point now);

 private:
  std::mutex mu_;
  double qps_;
  double burst_;
  double tokens_;
  Clock::time_point last_;
};

struct ApiResponse {
  int code = 0;            // HTTP status; 0 = no response (connection failed)
  std::string body;        // the response body (an object, a list or a Status)
  std::string error;       // transport problem when code == 0, else the Status message
  double retry_after = 0;  // Retry-After of a 429/503, in seconds
  bool ok() const { return code >= 200 && code < 300; }
  // 429, 5xx and transport failures are worth retrying; 4xx are not.
  bool retryable() const { return code == 0 || code == 429 || code >= 500; }
};

struct ApiClientOptions {
  double qps = 50;
  int burst = 100;
  std::chrono::seconds request_timeout{30};
  std::string user_agent = "flowlb-controller";
};

// The small interface the writers (Service status, Events, IPPool status,
// the Lease) talk to the API through: ApiClient in production, a fake in
// tests.
class ApiWriter {
 public:
  virtual ~ApiWriter() = default;
  // One request; never throws. `path` includes the query string.
  virtual ApiResponse request(const std::string& method, const std::string& path,
                              const std::string& body = "",
                              const std::string& content_type = "application/json") = 0;
  virtual bool stopping() const { return false; }
};

class ApiClient final : public ApiWriter {
 public:
  ApiClient(ClusterConfig cluster, ApiClientOptions options, ApiTelemetry* telemetry);
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  ApiResponse request(const std::string& method, const std::string& path,
                      const std::string& body = "",
                      const std::string& content_type = "application/json") override;

  // A streamed GET (a watch): `on_line` gets each newline-terminated line as
  // it arrives and returns false to stop. Returns when the stream ends, fails,
  // `idle_timeout` passes without data, or shutdown() is called. For a
  // non-2xx answer the body is in the response and on_line is not called.
  ApiResponse stream(const std::string& path, std::chrono::seconds idle_timeout,
                     const std::function<bool(std::string_view)>& on_line);

  // Cancels every stream in progress and makes later calls fail at once.
  void shutdown();
  // Runs `ran` on the HTTP client's thread pool: if it never runs, the pool
  // is starved and no request or watch can complete (the watchdog's probe).
  void probePool(std::function<void()> ran);
  bool stopping() const override { return stopping_.load(); }
  const ClusterConfig& cluster() const { return cluster_; }
  ApiTelemetry* telemetry() const { return telemetry_; }

 private:
  struct Impl;
  std::string bearer();
  void noteWarnings(const std::string& method, const std::string& path, const std::string& header);

  ClusterConfig cluster_;
  ApiClientOptions options_;
  ApiTelemetry* telemetry_;
  RateLimiter limiter_;
  std::atomic<bool> stopping_{false};
  std::mutex token_mu_;
  std::string token_;
  std::chrono::steady_clock::time_point token_read_;
  std::unique_ptr<Impl> impl_;
  std::mutex warnings_mu_;
  std::set<std::string> warnings_seen_;  // logged once each (bounded)
};

// "Bad Request" etc. from a Status body, or the body's start.
std::string statusMessage(const std::string& body);

// The Status `reason` of an error body ("Expired", "Conflict", ...), or "".
std::string statusReason(const std::string& body);

// Whether an answer (HTTP code and Status body, or a watch ERROR event's
// object) says the resourceVersion asked for is newer than the server's:
// kube-apiserver's "Too large resource version" (504, cause
// ResourceVersionTooLarge), after a restore from backup.
bool tooLargeResourceVersion(int code, const std::string& body);

// The texts of a Warning header (RFC 7234: `299 - "text"`, comma-joined).
std::vector<std::string> parseWarningHeader(const std::string& value);

}  // namespace flowlb::controller::k8s

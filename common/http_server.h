// A small HTTP/1.1 server for the endpoints a scraper or a kubelet calls:
// /metrics, /healthz, /readyz. One thread runs a poll() loop over
// non-blocking sockets, so a client that sends its request a byte at a time
// (slowloris) or never reads its response holds a buffer, never a thread.
// Every connection has a deadline (the whole request within
// request_timeout, the whole response within write_timeout, an idle
// keep-alive connection within idle_timeout) and the number of connections
// is capped: at the cap, a new connection closes the oldest one still
// waiting for its request, so slow clients cannot lock out a scraper.
//
// Handlers run on the server's thread: they must be quick and thread-safe
// with respect to the rest of the process (read atomics, take short locks).
// Only GET and HEAD are served; a request body is refused.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"

namespace flowlb {

struct HttpRequest {
  std::string method;  // GET or HEAD
  std::string path;    // without the query
  std::string query;   // after '?', raw
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  std::string address;  // host:port or [v6]:port; port 0 picks a free one
  size_t max_connections = 32;
  size_t max_request_bytes = 8192;
  std::chrono::milliseconds request_timeout{5000};
  std::chrono::milliseconds write_timeout{10000};
  std::chrono::milliseconds idle_timeout{30000};
};

struct HttpServerStats {
  uint64_t accepted = 0;
  uint64_t served = 0;
  uint64_t timed_out = 0;  // closed at their deadline
  uint64_t evicted = 0;    // closed to make room for a new connection
  uint64_t rejected = 0;   // malformed or oversized requests
  uint64_t open = 0;
};

class HttpServer {
 public:
  // Binds, listens and starts the loop; the routes are exact paths.
  static Result<std::unique_ptr<HttpServer>> start(HttpServerOptions options,
                                                   std::map<std::string, HttpHandler> routes);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }
  HttpServerStats stats() const;

 private:
  HttpServer() = default;
  void run();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
  std::thread thread_;
};

// Splits "host:port" / "[v6]:port" without throwing; the port must be a
// number in 0..65535. Used to validate address flags before anything binds.
Status parseHostPort(const std::string& text, std::string* host, uint16_t* port);

}  // namespace flowlb

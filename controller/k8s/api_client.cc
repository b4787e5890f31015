#include "controller/k8s/api_client.h"

#include <cpprest/containerstream.h>
#include <cpprest/http_client.h>
#include <cpprest/json.h>
#include <pplx/threadpool.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <fstream>
#include <list>
#include <sstream>
#include <thread>

#include "common/log_safe.h"

namespace flowlb::controller::k8s {

namespace http = web::http;
namespace client = web::http::client;

RateLimiter::RateLimiter(double qps, int burst)
    : qps_(qps), burst_(std::max(1, burst)), tokens_(burst_), last_(Clock::now()) {}

RateLimiter::Clock::duration RateLimiter::reserve(Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (qps_ <= 0) return Clock::duration::zero();
  const double elapsed = std::chrono::duration<double>(now - last_).count();
  if (elapsed > 0) {
    tokens_ = std::min(burst_, tokens_ + elapsed * qps_);
    last_ = now;
  }
  tokens_ -= 1;  // may go negative: later callers queue behind this one
  if (tokens_ >= 0) return Clock::duration::zero();
  return std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(-tokens_ / qps_));
}

namespace {

client::http_client_config baseConfig(const ClusterConfig& c, std::chrono::seconds timeout) {
  client::http_client_config cfg;
  cfg.set_timeout(timeout);
  cfg.set_validate_certificates(!c.insecure_skip_verify);
  const std::string ca = c.ca_pem, cert = c.client_cert_pem, key = c.client_key_pem;
  cfg.set_ssl_context_callback([ca, cert, key](boost::asio::ssl::context& ctx) {
    if (!ca.empty()) ctx.add_certificate_authority(boost::asio::buffer(ca));
    if (!cert.empty()) {
      ctx.use_certificate_chain(boost::asio::buffer(cert));
      ctx.use_private_key(boost::asio::buffer(key), boost::asio::ssl::context::pem);
    }
  });
  return cfg;
}

double retryAfter(const http::http_response& r) {
  const auto& h = r.headers();
  auto it = h.find("Retry-After");
  if (it == h.end()) return 0;
  try {
    return std::stod(it->second);
  } catch (...) {
    return 0;
  }
}

}  // namespace

// cpprestsdk runs its I/O and task continuations on a shared pool of 40
// threads by default; a handful serves this client's load with far fewer
// context switches (measured: the 10k-Service sync took 5.2 CPU-seconds
// instead of 11, and 5.8 s instead of 10.5). No thread of it ever blocks on
// a watch (stream() waits on the informer's own thread), so the pool need
// not grow with the number of watches.
void sizeThreadPool() {
  static std::once_flag once;
  std::call_once(once, [] {
    try {
      crossplat::threadpool::initialize_with_threads(4);
    } catch (const std::exception&) {
      // Already started by an earlier user: keep its size.
    }
  });
}

struct ApiClient::Impl {
  client::http_client requests;
  std::mutex mu;
  std::list<pplx::cancellation_token_source> streams;  // in progress, for shutdown()
  Impl(const ClusterConfig& c, std::chrono::seconds timeout)
      : requests(utility::conversions::to_string_t(c.server), baseConfig(c, timeout)) {}
};

ApiClient::ApiClient(ClusterConfig cluster, ApiClientOptions options, ApiTelemetry* telemetry)
    : cluster_(std::move(cluster)),
      options_(std::move(options)),
      telemetry_(telemetry),
      limiter_(options_.qps, options_.burst),
      token_(cluster_.token),
      token_read_(std::chrono::steady_clock::now()),
      impl_((sizeThreadPool(), std::make_unique<Impl>(cluster_, options_.request_timeout))) {}

ApiClient::~ApiClient() {
  shutdown();
}

void ApiClient::probePool(std::function<void()> ran) {
  pplx::create_task([ran = std::move(ran)] { ran(); });
}

void ApiClient::shutdown() {
  stopping_.store(true);
  std::lock_guard<std::mutex> lock(impl_->mu);
  for (auto& s : impl_->streams) s.cancel();
}

// Projected service-account tokens are rotated by the kubelet: re-read the
// file once a minute, as client-go does.
std::string ApiClient::bearer() {
  std::lock_guard<std::mutex> lock(token_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (!cluster_.token_file.empty() && now - token_read_ > std::chrono::minutes(1)) {
    std::ifstream in(cluster_.token_file);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string t = ss.str();
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
    if (!t.empty()) token_ = t;
    token_read_ = now;
  }
  return token_;
}

ApiResponse ApiClient::request(const std::string& method, const std::string& path,
                               const std::string& body, const std::string& content_type) {
  ApiResponse out;
  if (stopping_.load()) {
    out.error = "client is shutting down";
    return out;
  }
  const auto wait = limiter_.reserve(RateLimiter::Clock::now());
  if (wait > RateLimiter::Clock::duration::zero()) {
    if (telemetry_) telemetry_->throttled(std::chrono::duration<double>(wait).count());
    std::this_thread::sleep_for(wait);
  }
  try {
    http::http_request req(method);
    req.set_request_uri(path);
    req.headers().add("Accept", "application/json");
    req.headers().add("User-Agent", options_.user_agent);
    if (const std::string t = bearer(); !t.empty())
      req.headers().add("Authorization", "Bearer " + t);
    if (!body.empty()) req.set_body(body, content_type);
    http::http_response resp = impl_->requests.request(req).get();
    out.code = resp.status_code();
    out.body = resp.extract_utf8string(true).get();
    out.retry_after = retryAfter(resp);
    if (!out.ok()) out.error = statusMessage(out.body);
    if (auto w = resp.headers().find("Warning"); w != resp.headers().end()) {
      noteWarnings(method, path, w->second);
    }
  } catch (const std::exception& e) {
    out.code = 0;
    out.error = e.what();
  }
  if (telemetry_) telemetry_->request(method, out.code);
  return out;
}

// "299 - \"unknown field ...\"" (several joined by ", " when repeated).
std::vector<std::string> parseWarningHeader(const std::string& value) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < value.size()) {
    const size_t q = value.find('"', i);
    if (q == std::string::npos) break;
    std::string text;
    size_t j = q + 1;
    for (; j < value.size() && value[j] != '"'; ++j) {
      if (value[j] == '\\' && j + 1 < value.size()) ++j;
      text += value[j];
    }
    out.push_back(text);
    i = j + 1;
  }
  if (out.empty() && !value.empty()) out.push_back(value);
  return out;
}

void ApiClient::noteWarnings(const std::string& method, const std::string& path,
                             const std::string& header) {
  for (const std::string& text : parseWarningHeader(header)) {
    {
      std::lock_guard<std::mutex> lock(warnings_mu_);
      if (warnings_seen_.size() >= 256 || !warnings_seen_.insert(text).second) continue;
    }
    spdlog::warn("event=api_warning verb={} path={} msg=\"{}\"", method, path, logSafe(text));
    if (telemetry_) telemetry_->apiWarning(text);
  }
}

ApiResponse ApiClient::stream(const std::string& path, std::chrono::seconds idle_timeout,
                              const std::function<bool(std::string_view)>& on_line) {
  ApiResponse out;
  std::list<pplx::cancellation_token_source>::iterator me;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (stopping_.load()) {
      out.error = "client is shutting down";
      return out;
    }
    me = impl_->streams.emplace(impl_->streams.end());
  }
  const pplx::cancellation_token token = me->get_token();
  try {
    // A client per stream: its own connection, and a timeout that only
    // fires when the server stays silent (cpprestsdk re-arms it per read).
    client::http_client c(utility::conversions::to_string_t(cluster_.server),
                          baseConfig(cluster_, idle_timeout));
    http::http_request req(http::methods::GET);
    req.set_request_uri(path);
    req.headers().add("Accept", "application/json");
    req.headers().add("User-Agent", options_.user_agent);
    if (const std::string t = bearer(); !t.empty())
      req.headers().add("Authorization", "Bearer " + t);
    http::http_response resp = c.request(req, token).get();
    out.code = resp.status_code();
    if (!out.ok()) {
      out.body = resp.extract_utf8string(true).get();
      out.error = statusMessage(out.body);
      out.retry_after = retryAfter(resp);
    } else {
      // Raw reads into our own buffer, split into lines here, waited for on
      // this (the informer's) thread. Not istream::read_line: for a line
      // longer than its buffer it waits for a flush from inside a pool
      // continuation, and four long events at once left every pool thread
      // waiting on work only a pool thread could do (issue 17.10).
      //
      // One byte is waited for, then whatever else has arrived is taken
      // without waiting. A getn() of the whole buffer would not return until
      // it could be filled (cpprestsdk completes a read early only after a
      // sync(), and its HTTP client never syncs a response body), so a quiet
      // watch handed over its events only when the server ended it:
      // timeoutSeconds, five to ten minutes in a cluster, later.
      auto buf = resp.body().streambuf();
      using Traits = decltype(buf)::traits;
      std::string pending;
      std::vector<uint8_t> chunk(64 * 1024);
      bool go_on = true;
      while (go_on && !token.is_canceled()) {
        const auto first = buf.bumpc().get();
        if (first == Traits::eof()) break;  // end of the stream
        chunk[0] = static_cast<uint8_t>(first);
        size_t n = 1;
        // At most what is buffered already: a read that completes at once.
        const size_t more = std::min(buf.in_avail(), chunk.size() - 1);
        if (more > 0) n += buf.getn(chunk.data() + 1, more).get();
        pending.append(reinterpret_cast<const char*>(chunk.data()), n);
        size_t start = 0;
        for (size_t nl; go_on && (nl = pending.find('\n', start)) != std::string::npos;
             start = nl + 1) {
          std::string_view line(pending.data() + start, nl - start);
          if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
          if (!line.empty()) go_on = on_line(line);
        }
        pending.erase(0, start);
      }
      if (go_on && !token.is_canceled() && !pending.empty()) on_line(pending);
    }
  } catch (const std::exception& e) {
    if (out.ok() || out.code == 0) out.error = e.what();
    if (out.code == 0 || token.is_canceled()) out.code = 0;
  }
  if (telemetry_) telemetry_->request("WATCH", out.code);
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->streams.erase(me);
  return out;
}

namespace {

web::json::value parseOrNull(const std::string& body) {
  try {
    return web::json::value::parse(body);
  } catch (...) {
    return web::json::value::null();
  }
}

}  // namespace

std::string statusMessage(const std::string& body) {
  const web::json::value v = parseOrNull(body);
  if (v.is_object() && v.has_string_field("message")) return v.at("message").as_string();
  return body.substr(0, 200);
}

bool tooLargeResourceVersion(int code, const std::string& body) {
  if (code != 504 && code != 500) return false;
  if (body.find("Too large resource version") != std::string::npos) return true;
  return body.find("ResourceVersionTooLarge") != std::string::npos;
}

std::string statusReason(const std::string& body) {
  const web::json::value v = parseOrNull(body);
  if (v.is_object() && v.has_string_field("reason")) return v.at("reason").as_string();
  return "";
}

}  // namespace flowlb::controller::k8s

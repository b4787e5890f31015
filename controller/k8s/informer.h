// An informer: the client-go pattern for one resource. LIST (in pages, with
// `continue`), then WATCH from the list's resourceVersion with bookmarks,
// applying ADDED/MODIFIED/DELETED to a cache as lines arrive. A watch that
// ends is renewed from the last resourceVersion seen; 410 Gone (the version
// was compacted) re-lists; disconnects, 429 and 5xx back off exponentially
// with jitter. Undecodable objects and garbage lines are reported, never
// fatal. Readers take copies under a lock, or with snapshot() share the
// objects, which never change once stored; `on_change` tells the owner which
// object changed and its secondary index value before and after (for an
// EndpointSlice, the Service it belongs to); key "" after a re-list:
// possibly all of them.
#pragma once

#include <cpprest/base_uri.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/backoff.h"
#include "common/log_safe.h"
#include "common/watchdog.h"
#include "controller/k8s/api_client.h"
#include "controller/k8s/decode.h"

namespace flowlb::controller::k8s {

struct InformerOptions {
  std::string resource;  // "services": for logs and metrics
  std::string path;      // collection path, e.g. "/api/v1/services"
  int page_size = 500;
  // Each watch asks the server to end it after a random time in this range,
  // so renewals of many informers do not line up.
  int watch_timeout_min_s = 300;
  int watch_timeout_max_s = 600;
  std::chrono::milliseconds backoff_initial{200};
  std::chrono::milliseconds backoff_max{30000};
  // Beaten on every step (a list, a watch opened or ended, a line read, a
  // failed attempt): only a thread stuck inside one read stops it.
  Watchdog* watchdog = nullptr;
  // Every object read (listed or watched), with "" when it decoded or why
  // it did not: lets the owner tell users on the object itself (Events).
  std::function<void(const web::json::value& obj, const std::string& why)> on_decoded;
};

template <typename T>
class Informer {
 public:
  using Decode = std::function<Result<T>(const web::json::value&)>;
  using KeyOf = std::function<std::string(const T&)>;
  using IndexOf = std::function<std::string(const T&)>;  // secondary index, may be empty
  using ChangeCallback = std::function<void(const std::string& key, const std::string& index_before,
                                            const std::string& index_after)>;

  Informer(ApiClient* api, InformerOptions options, Decode decode, KeyOf key, IndexOf index,
           ChangeCallback on_change)
      : api_(api),
        opt_(std::move(options)),
        decode_(std::move(decode)),
        key_(std::move(key)),
        index_(std::move(index)),
        on_change_(std::move(on_change)),
        backoff_(opt_.backoff_initial, opt_.backoff_max),
        rng_(std::random_device{}()) {}
  ~Informer() { stop(); }
  Informer(const Informer&) = delete;
  Informer& operator=(const Informer&) = delete;

  void start() {
    thread_ = std::thread([this] { run(); });
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  bool synced() const {
    std::lock_guard<std::mutex> lock(mu_);
    return synced_;
  }
  std::vector<T> list() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<T> out;
    out.reserve(cache_.size());
    for (const auto& [k, v] : cache_) out.push_back(*v);
    return out;
  }
  // Every object, shared rather than copied: a full reconcile of 10k
  // Services reads them all, and a copy of the store doubled the
  // controller's memory at its peak. The objects never change (an update
  // replaces the pointer).
  std::vector<std::shared_ptr<const T>> snapshot() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::shared_ptr<const T>> out;
    out.reserve(cache_.size());
    for (const auto& [k, v] : cache_) out.push_back(v);
    return out;
  }
  std::optional<T> get(const std::string& key) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(key);
    if (it == cache_.end()) return std::nullopt;
    return *it->second;
  }
  // Objects whose secondary index value is `v` (EndpointSlices of a Service).
  std::vector<T> byIndex(const std::string& v) const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<T> out;
    auto it = index_map_.find(v);
    if (it == index_map_.end()) return out;
    for (const std::string& k : it->second) out.push_back(*cache_.at(k));
    return out;
  }
  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return cache_.size();
  }
  std::string resourceVersion() const {
    std::lock_guard<std::mutex> lock(mu_);
    return rv_;
  }
  // Highest resourceVersion applied, as a number (for latency tracing).
  uint64_t lastEventVersion() const {
    std::lock_guard<std::mutex> lock(mu_);
    return last_event_rv_;
  }

 private:
  enum class WatchEnd { kRenew, kRelist, kBackoff };

  void beat() {
    if (opt_.watchdog) opt_.watchdog->beat("informer/" + opt_.resource);
  }

  void run() {
    bool listed = false;
    while (!isStopping()) {
      beat();
      if (!listed) {
        listed = relist();
        if (!listed) {
          sleepFor(backoff_.next());
          continue;
        }
        backoff_.reset();
      }
      switch (watch()) {
        case WatchEnd::kRenew: backoff_.reset(); break;
        case WatchEnd::kRelist: listed = false; break;
        case WatchEnd::kBackoff: sleepFor(std::max(backoff_.next(), retry_after_)); break;
      }
    }
  }

  bool isStopping() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stopping_ || api_->stopping();
  }
  void sleepFor(std::chrono::milliseconds d) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, d, [this] { return stopping_; });
  }

  std::string sep() const { return opt_.path.find('?') == std::string::npos ? "?" : "&"; }

  // The whole collection, page by page; the cache is replaced at the end, so
  // readers never see half a list.
  bool relist() {
    std::map<std::string, std::shared_ptr<const T>> fresh;
    std::string cont, rv;
    int expired_restarts = 0;
    while (true) {
      beat();
      std::string p = opt_.path + sep() + "limit=" + std::to_string(opt_.page_size);
      if (!cont.empty()) p += "&continue=" + web::uri::encode_data_string(cont);
      const ApiResponse r = api_->request("GET", p);
      if (r.code == 410 && !cont.empty() && expired_restarts++ < 3) {
        // The snapshot behind the continue token was compacted: start over.
        spdlog::warn("event=list_restarted resource={} reason=continue_expired", opt_.resource);
        fresh.clear();
        cont.clear();
        continue;
      }
      if (!r.ok()) {
        spdlog::warn("event=list_failed resource={} code={} msg=\"{}\"", opt_.resource, r.code,
                     r.error);
        retry_after_ = std::chrono::milliseconds(static_cast<int64_t>(r.retry_after * 1000));
        report("list_failed");
        return false;
      }
      web::json::value doc;
      try {
        doc = web::json::value::parse(r.body);
      } catch (const std::exception& e) {
        spdlog::warn("event=list_failed resource={} msg=\"unparseable list: {}\"", opt_.resource,
                     e.what());
        report("list_garbage");
        return false;
      }
      const web::json::value* items =
          doc.is_object() && doc.has_array_field("items") ? &doc.at("items") : nullptr;
      if (!items || !doc.has_object_field("metadata")) {
        spdlog::warn("event=list_failed resource={} msg=\"not a list\"", opt_.resource);
        report("list_garbage");
        return false;
      }
      for (const web::json::value& item : items->as_array()) {
        auto obj = decode_(item);
        if (opt_.on_decoded) opt_.on_decoded(item, obj ? "" : obj.error());
        if (!obj) {
          rejected(obj.error());
          continue;
        }
        std::string k = key_(*obj);
        fresh.insert_or_assign(std::move(k), std::make_shared<const T>(std::move(*obj)));
      }
      const auto& m = doc.at("metadata");
      if (m.has_string_field("resourceVersion")) rv = m.at("resourceVersion").as_string();
      cont = m.has_string_field("continue") ? m.at("continue").as_string() : "";
      if (cont.empty()) break;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      cache_ = std::move(fresh);
      index_map_.clear();
      if (index_) {
        for (const auto& [k, v] : cache_) index_map_[index_(*v)].insert(k);
      }
      rv_ = rv;
      last_event_rv_ = resourceVersionNumber(rv);
      synced_ = true;
    }
    spdlog::info("event=listed resource={} objects={} resourceVersion={}", opt_.resource, size(),
                 rv);
    if (on_change_) on_change_("", "", "");
    return true;
  }

  WatchEnd watch() {
    std::uniform_int_distribution<int> pick(
        opt_.watch_timeout_min_s, std::max(opt_.watch_timeout_min_s, opt_.watch_timeout_max_s));
    const int timeout = pick(rng_);
    const std::string p = opt_.path + sep() +
                          "watch=true&allowWatchBookmarks=true&resourceVersion=" +
                          web::uri::encode_data_string(resourceVersion()) +
                          "&timeoutSeconds=" + std::to_string(timeout);
    WatchEnd end = WatchEnd::kRenew;
    bool got_any = false;
    const ApiResponse r =
        api_->stream(p, std::chrono::seconds(timeout + 30), [&](std::string_view line) {
          if (isStopping()) return false;
          got_any = true;
          beat();
          return apply(line, &end);
        });
    beat();
    retry_after_ = std::chrono::milliseconds(static_cast<int64_t>(r.retry_after * 1000));
    if (isStopping()) return WatchEnd::kRenew;
    if (r.code == 410) {
      report("gone");
      return WatchEnd::kRelist;
    }
    if (tooLargeResourceVersion(r.code, r.body)) {
      // The server is behind the version we resume from: its store was
      // restored from a backup. Re-list, as client-go does.
      spdlog::warn(
          "event=watch_resource_version_too_large resource={} resourceVersion={} "
          "msg=\"{}\" action=relist",
          opt_.resource, resourceVersion(), logSafe(r.error));
      report("too_large_resource_version");
      return WatchEnd::kRelist;
    }
    if (!r.ok()) {
      spdlog::warn("event=watch_failed resource={} code={} msg=\"{}\"", opt_.resource, r.code,
                   r.error);
      report(r.code == 0 ? "disconnected" : "http_" + std::to_string(r.code));
      return WatchEnd::kBackoff;
    }
    if (end != WatchEnd::kRenew) return end;
    if (!r.error.empty()) {
      spdlog::warn("event=watch_broken resource={} msg=\"{}\"", opt_.resource, r.error);
      report("broken");
      return got_any ? WatchEnd::kRenew : WatchEnd::kBackoff;
    }
    return WatchEnd::kRenew;  // the server ended it (timeoutSeconds): renew
  }

  // One watch event. Returns false to end the stream.
  bool apply(std::string_view line, WatchEnd* end) {
    web::json::value ev;
    try {
      ev = web::json::value::parse(std::string(line));
    } catch (const std::exception&) {
      // A line we cannot read may have been a real event: resume from the
      // last version we applied, so nothing is skipped.
      spdlog::warn("event=watch_garbage resource={} line=\"{}\"", opt_.resource,
                   std::string(line.substr(0, 120)));
      report("garbage");
      *end = WatchEnd::kBackoff;
      return false;
    }
    const std::string type = ev.has_string_field("type") ? ev.at("type").as_string() : "";
    if (!ev.has_object_field("object")) {
      spdlog::warn("event=watch_garbage resource={} msg=\"event without object\"", opt_.resource);
      report("garbage");
      *end = WatchEnd::kBackoff;
      return false;
    }
    const web::json::value& obj = ev.at("object");
    if (type == "ERROR") {
      const int code = obj.has_integer_field("code") ? obj.at("code").as_integer() : 0;
      const std::string msg = obj.has_string_field("message") ? obj.at("message").as_string() : "";
      if (tooLargeResourceVersion(code, obj.serialize())) {
        spdlog::warn("event=watch_resource_version_too_large resource={} msg=\"{}\" action=relist",
                     opt_.resource, logSafe(msg));
        report("too_large_resource_version");
        *end = WatchEnd::kRelist;
        return false;
      }
      if (code == 410) {
        spdlog::info("event=watch_expired resource={} msg=\"{}\"", opt_.resource, msg);
        report("gone");
        *end = WatchEnd::kRelist;
      } else {
        spdlog::warn("event=watch_error resource={} code={} msg=\"{}\"", opt_.resource, code, msg);
        report("error_event");
        *end = WatchEnd::kBackoff;
      }
      return false;
    }
    std::string rv;
    if (const auto* m = obj.has_object_field("metadata") ? &obj.at("metadata") : nullptr;
        m && m->has_string_field("resourceVersion")) {
      rv = m->at("resourceVersion").as_string();
    }
    if (wentBack(rv)) {
      // Versions only grow on one server; going back means its store was
      // restored (etcd from a backup): what we cached may never have
      // happened there. Re-list.
      spdlog::warn("event=resource_version_regression resource={} had={} got={} action=relist",
                   opt_.resource, resourceVersion(), logSafe(rv, 32));
      report("resource_version_regression");
      *end = WatchEnd::kRelist;
      return false;
    }
    if (type == "BOOKMARK") {
      std::lock_guard<std::mutex> lock(mu_);
      if (!rv.empty()) rv_ = rv;
      return true;
    }
    if (type != "ADDED" && type != "MODIFIED" && type != "DELETED") {
      spdlog::warn("event=watch_garbage resource={} type=\"{}\"", opt_.resource, type);
      report("garbage");
      *end = WatchEnd::kBackoff;
      return false;
    }
    auto decoded = decode_(obj);
    // A deleted object has nothing left to say (its problem goes with it).
    if (opt_.on_decoded) {
      opt_.on_decoded(obj, decoded || type == "DELETED" ? std::string() : decoded.error());
    }
    if (!decoded) {
      rejected(decoded.error());
      std::lock_guard<std::mutex> lock(mu_);
      if (!rv.empty()) rv_ = rv;  // seen; the last good version stays cached
      return true;
    }
    const std::string k = key_(*decoded);
    std::string index_before, index_after;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto old = cache_.find(k);
      if (old != cache_.end() && index_) {
        index_before = index_(*old->second);
        auto it = index_map_.find(index_before);
        if (it != index_map_.end()) {
          it->second.erase(k);
          if (it->second.empty()) index_map_.erase(it);
        }
      }
      if (type == "DELETED") {
        cache_.erase(k);
      } else {
        if (index_) {
          index_after = index_(*decoded);
          index_map_[index_after].insert(k);
        }
        cache_.insert_or_assign(k, std::make_shared<const T>(std::move(*decoded)));
      }
      if (!rv.empty()) {
        rv_ = rv;
        last_event_rv_ = std::max(last_event_rv_, resourceVersionNumber(rv));
      }
    }
    if (on_change_) on_change_(k, index_before, index_after);
    return true;
  }

  // Whether `rv` is older than the version we have: both decimal numbers
  // (the API calls versions opaque; etcd's are numbers, others are not
  // compared).
  bool wentBack(const std::string& rv) const {
    const uint64_t got = resourceVersionNumber(rv);
    const uint64_t had = resourceVersionNumber(resourceVersion());
    return got != 0 && had != 0 && got < had;
  }

  void rejected(const std::string& why) {
    spdlog::warn("event=object_rejected resource={} msg=\"{}\"", opt_.resource, why);
    if (auto* t = telemetry()) t->rejectedObject(opt_.resource);
  }
  void report(const std::string& reason) {
    if (auto* t = telemetry()) t->watchRestart(opt_.resource, reason);
  }
  ApiTelemetry* telemetry() const { return api_->telemetry(); }

  ApiClient* api_;
  InformerOptions opt_;
  Decode decode_;
  KeyOf key_;
  IndexOf index_;
  ChangeCallback on_change_;
  Backoff backoff_;
  std::mt19937_64 rng_;
  std::chrono::milliseconds retry_after_{0};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool synced_ = false;
  std::map<std::string, std::shared_ptr<const T>> cache_;
  std::unordered_map<std::string, std::set<std::string>> index_map_;
  std::string rv_;
  uint64_t last_event_rv_ = 0;
  std::thread thread_;
};

}  // namespace flowlb::controller::k8s

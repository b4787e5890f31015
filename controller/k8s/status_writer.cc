#include "controller/k8s/status_writer.h"

#include <spdlog/spdlog.h>

#include "common/log_safe.h"
#include "controller/k8s/decode.h"
#include "controller/k8s/encode.h"

namespace flowlb::controller::k8s {
namespace {

constexpr const char* kMergePatch = "application/merge-patch+json";

std::chrono::milliseconds retryAfter(const ApiResponse& r) {
  return std::chrono::milliseconds(static_cast<int64_t>(r.retry_after * 1000));
}

}  // namespace

StatusWriter::StatusWriter(StatusWriterOptions options, ApiWriter* api, WriteQueue* queue,
                           ReadService read_service, ReadPool read_pool,
                           std::function<bool()> is_leader, Clock* clock, WriteTelemetry* telemetry)
    : opt_(std::move(options)),
      api_(api),
      queue_(queue),
      read_service_(std::move(read_service)),
      read_pool_(std::move(read_pool)),
      is_leader_(std::move(is_leader)),
      clock_(clock),
      telemetry_(telemetry) {
  // Addresses first: every Service's status before any bookkeeping.
  kind_status_ =
      queue_->addKind("service_status", 0, [this](const std::string& k) { return writeStatus(k); });
  kind_pool_ =
      queue_->addKind("ippool_status", 1, [this](const std::string& k) { return writePool(k); });
  kind_annotation_ = queue_->addKind("service_annotation", 2,
                                     [this](const std::string& k) { return writeAnnotation(k); });
}

void StatusWriter::overlayWritten(ServiceObject* s) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto w = written_.find(s->meta.key());
  if (w != written_.end() && resourceVersionNumber(w->second.meta.resource_version) >
                                 resourceVersionNumber(s->meta.resource_version)) {
    *s = w->second;
  }
}

void StatusWriter::overlay(ServicePtr* s) const {
  const std::string key = (*s)->meta.key();
  const bool to_come = pending(key);
  std::lock_guard<std::mutex> lock(mu_);
  auto written = written_.find(key);
  const bool newer =
      written != written_.end() && resourceVersionNumber(written->second.meta.resource_version) >
                                       resourceVersionNumber((*s)->meta.resource_version);
  // A status write still to come: the reconciler sees the addresses it will
  // write, so a second pass before it lands decides the same.
  auto w = to_come ? wanted_.find(key) : wanted_.end();
  const bool ips = w != wanted_.end() && !w->second.leaving;
  if (!newer && (!ips || (*s)->status.ips == w->second.ips)) return;  // nothing to lay over
  auto copy = std::make_shared<ServiceObject>(newer ? written->second : **s);
  if (ips) copy->status.ips = w->second.ips;
  *s = std::move(copy);
}

bool StatusWriter::pending(const std::string& key) const {
  return queue_->queued(kind_status_, key);
}

std::optional<ServiceObject> StatusWriter::current(const std::string& key) const {
  std::optional<ServiceObject> s = read_service_(key);
  if (s) overlayWritten(&*s);
  return s;
}

std::optional<WantedStatus> StatusWriter::wanted(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = wanted_.find(key);
  if (it == wanted_.end()) return std::nullopt;
  return it->second;
}

void StatusWriter::want(const std::map<std::string, WantedStatus>& wanted, bool complete) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (complete) {
      for (auto it = wanted_.begin(); it != wanted_.end();) {
        it = wanted.count(it->first) ? std::next(it) : wanted_.erase(it);
      }
      for (auto it = written_.begin(); it != written_.end();) {
        it = wanted.count(it->first) ? std::next(it) : written_.erase(it);
      }
    }
    for (const auto& [key, w] : wanted) wanted_[key] = w;
  }
  if (!is_leader_()) return;  // a follower keeps wishes, writes nothing
  for (const auto& [key, w] : wanted) {
    const std::optional<ServiceObject> s = current(key);
    if (!s) continue;
    if (!statusSays(*s, w)) {
      queue_->add(kind_status_, key);
    } else if (!annotationSays(*s, w)) {
      queue_->add(kind_annotation_, key);
    }
  }
}

namespace {

std::string joined(const std::vector<std::string>& invalid) {
  std::string out;
  for (const std::string& w : invalid) out += (out.empty() ? "" : "; ") + w;
  return out;
}

bool samePool(const PoolUsage& a, const PoolUsage& b) {
  return a.used == b.used && a.free == b.free && a.invalid == b.invalid;
}

}  // namespace

void StatusWriter::reconciled(const Reconciled& r) {
  if (!is_leader_()) return;
  for (const auto& [name, usage] : r.pools) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto w = pool_written_.find(name);
      if (w != pool_written_.end() && samePool(w->second, usage)) continue;
    }
    const std::optional<PoolObject> p = read_pool_(name);
    if (p && p->has_status && p->used == usage.used && p->free == usage.free &&
        p->has_valid_condition && p->valid_message == joined(usage.invalid)) {
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      pool_wanted_[name] = usage;
    }
    queue_->add(kind_pool_, name);
  }
}

void StatusWriter::forgetWrites() {
  std::lock_guard<std::mutex> lock(mu_);
  written_.clear();
  pool_written_.clear();
}

void StatusWriter::dropQueued() {
  queue_->clear();
  std::lock_guard<std::mutex> lock(mu_);
  pool_wanted_.clear();
}

void StatusWriter::remember(const std::string& body) {
  try {
    auto s = decodeService(web::json::value::parse(body));
    if (!s) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto& slot = written_[s->meta.key()];
    if (resourceVersionNumber(s->meta.resource_version) >=
        resourceVersionNumber(slot.meta.resource_version)) {
      slot = std::move(*s);
    }
  } catch (const std::exception&) {
  }
}

Verdict StatusWriter::failed(const char* what, const std::string& key, const ApiResponse& r) {
  if (r.code == 409) {
    // Someone wrote in between: read what holds now and decide again.
    if (telemetry_) telemetry_->statusWrite("conflict");
    const ApiResponse g = api_->request("GET", servicePath(key));
    if (g.code == 404) return Verdict::failNoRetry();
    if (!g.ok()) return Verdict::retry(retryAfter(g));
    try {
      auto fresh = decodeService(web::json::value::parse(g.body));
      if (fresh) {
        std::lock_guard<std::mutex> lock(mu_);
        written_[key] = std::move(*fresh);  // what the server holds, whatever its version
      }
    } catch (const std::exception&) {
    }
    return Verdict::retryNow();
  }
  if (r.code == 404) return Verdict::failNoRetry();  // deleted meanwhile
  spdlog::warn("event={}_write_failed service={} code={} msg=\"{}\"", what, key, r.code,
               logSafe(r.error));
  if (telemetry_) telemetry_->statusWrite("failed");
  return r.retryable() ? Verdict::retry(retryAfter(r)) : Verdict::failNoRetry();
}

Verdict StatusWriter::writeStatus(const std::string& key) {
  if (!is_leader_() || api_->stopping()) return Verdict::failNoRetry();
  const std::optional<WantedStatus> w = wanted(key);
  if (!w) return Verdict::success();  // not wanted any more
  std::optional<ServiceObject> s = current(key);
  if (!s) return Verdict::failNoRetry();  // deleted
  // Changed hands meanwhile: the next reconcile decides.
  if (servedByUs(*s, opt_.reconciler) == w->leaving) return Verdict::success();
  if (!statusSays(*s, *w)) {
    const StatusUpdate u =
        statusAfter(*s, *w, rfc3339(std::chrono::system_clock::to_time_t(clock_->wallNow())));
    const ApiResponse r =
        api_->request("PATCH", serviceStatusPath(key),
                      serviceStatusPatch(s->meta.resource_version, u), kMergePatch);
    if (!r.ok()) return failed("status", key, r);
    if (telemetry_) telemetry_->statusWrite("ok");
    remember(r.body);
    s = current(key);
  }
  // The annotation after every pending status: addresses first.
  if (s && !annotationSays(*s, *w)) queue_->add(kind_annotation_, key);
  return Verdict::success();
}

Verdict StatusWriter::writeAnnotation(const std::string& key) {
  if (!is_leader_() || api_->stopping()) return Verdict::failNoRetry();
  const std::optional<WantedStatus> w = wanted(key);
  if (!w) return Verdict::success();
  const std::optional<ServiceObject> s = current(key);
  if (!s) return Verdict::failNoRetry();
  if (servedByUs(*s, opt_.reconciler) == w->leaving) return Verdict::success();
  if (annotationSays(*s, *w)) return Verdict::success();
  const std::optional<std::string> value =
      w->leaving || w->pool.empty() ? std::nullopt : std::optional<std::string>(w->pool);
  const ApiResponse r = api_->request(
      "PATCH", servicePath(key), annotationPatch(kAnnotationAllocatedFrom, value), kMergePatch);
  if (!r.ok()) return failed("annotation", key, r);
  remember(r.body);
  return Verdict::success();
}

Verdict StatusWriter::writePool(const std::string& name) {
  if (!is_leader_() || api_->stopping()) return Verdict::failNoRetry();
  PoolUsage want;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pool_wanted_.find(name);
    if (it == pool_wanted_.end()) return Verdict::success();
    want = it->second;
  }
  const std::string now = rfc3339(std::chrono::system_clock::to_time_t(clock_->wallNow()));
  const ApiResponse r =
      api_->request("PATCH", poolStatusPath(name),
                    poolStatusPatch(want.used, want.free, joined(want.invalid), now), kMergePatch);
  if (!r.ok()) {
    spdlog::warn("event=pool_status_write_failed pool={} code={} msg=\"{}\"", name, r.code,
                 logSafe(r.error));
    if (r.code == 404) return Verdict::failNoRetry();
    return r.retryable() ? Verdict::retry(retryAfter(r)) : Verdict::failNoRetry();
  }
  std::lock_guard<std::mutex> lock(mu_);
  pool_written_[name] = want;
  auto it = pool_wanted_.find(name);
  if (it != pool_wanted_.end() && samePool(it->second, want)) {
    pool_wanted_.erase(it);
  }
  return Verdict::success();
}

}  // namespace flowlb::controller::k8s

#include "controller/k8s/leader.h"

#include <cpprest/json.h>
#include <spdlog/spdlog.h>

#include "controller/k8s/decode.h"

namespace flowlb::controller::k8s {

using web::json::value;

LeaderElector::LeaderElector(ApiClient* api, LeaderOptions options,
                             std::function<void(bool)> on_change)
    : api_(api), opt_(std::move(options)), on_change_(std::move(on_change)) {}

LeaderElector::~LeaderElector() {
  stop();
}

void LeaderElector::start() {
  thread_ = std::thread([this] { run(); });
}

void LeaderElector::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LeaderElector::setLeader(bool v) {
  if (leader_.exchange(v, std::memory_order_acq_rel) == v) return;
  spdlog::info("event={} lease={}/{} identity={}", v ? "leader_elected" : "leader_lost", opt_.ns,
               opt_.name, opt_.identity);
  if (on_change_) on_change_(v);
}

void LeaderElector::run() {
  while (true) {
    const auto started = std::chrono::steady_clock::now();
    const bool held = tryAcquireOrRenew();
    const auto now = std::chrono::steady_clock::now();
    if (held) {
      last_renew_ = now;
      setLeader(true);
    } else if (isLeader() && (held_by_other_ || now - last_renew_ >= opt_.renew_deadline)) {
      // Someone else holds it, or we could not renew in time and someone
      // else may take it now: stop writing at once.
      setLeader(false);
    }
    std::unique_lock<std::mutex> lock(mu_);
    // A leader renews at the retry period; so does a candidate probing.
    auto wait = opt_.retry_period - (std::chrono::steady_clock::now() - started);
    if (isLeader()) {
      // Never sleep past the renew deadline.
      wait = std::min<std::chrono::steady_clock::duration>(
          wait, last_renew_ + opt_.renew_deadline - std::chrono::steady_clock::now());
    }
    if (cv_.wait_for(lock, std::max<std::chrono::steady_clock::duration>(wait, {}),
                     [this] { return stopping_; })) {
      break;
    }
    lock.unlock();
    if (isLeader() && std::chrono::steady_clock::now() - last_renew_ >= opt_.renew_deadline) {
      setLeader(false);
    }
  }
  if (isLeader()) release();
  setLeader(false);
}

namespace {

std::string leasePath(const LeaderOptions& o) {
  return "/apis/coordination.k8s.io/v1/namespaces/" + o.ns + "/leases";
}

value leaseSpec(const LeaderOptions& o, const std::string& acquire, int transitions) {
  value spec = value::object();
  spec["holderIdentity"] = value::string(o.identity);
  spec["leaseDurationSeconds"] = value::number(static_cast<int>(std::max<int64_t>(
      1, std::chrono::duration_cast<std::chrono::seconds>(o.lease_duration).count())));
  spec["acquireTime"] = value::string(acquire);
  spec["renewTime"] = value::string(rfc3339Micro(std::chrono::system_clock::now()));
  spec["leaseTransitions"] = value::number(transitions);
  return spec;
}

}  // namespace

bool LeaderElector::tryAcquireOrRenew() {
  held_by_other_ = false;
  const auto now = std::chrono::steady_clock::now();
  const ApiResponse got = api_->request("GET", leasePath(opt_) + "/" + opt_.name);
  if (got.code == 404) {
    value lease = value::object();
    lease["apiVersion"] = value::string("coordination.k8s.io/v1");
    lease["kind"] = value::string("Lease");
    lease["metadata"] = value::object();
    lease["metadata"]["name"] = value::string(opt_.name);
    lease["metadata"]["namespace"] = value::string(opt_.ns);
    lease["spec"] = leaseSpec(opt_, rfc3339Micro(std::chrono::system_clock::now()), 0);
    const ApiResponse created = api_->request("POST", leasePath(opt_), lease.serialize());
    if (!created.ok()) {
      spdlog::debug("event=lease_create_failed code={} msg=\"{}\"", created.code, created.error);
      return false;
    }
    observed_holder_ = opt_.identity;
    observed_at_ = now;
    return true;
  }
  if (!got.ok()) {
    spdlog::warn("event=lease_read_failed code={} msg=\"{}\"", got.code, got.error);
    return false;
  }
  value lease;
  try {
    lease = value::parse(got.body);
  } catch (const std::exception& e) {
    spdlog::warn("event=lease_read_failed msg=\"unparseable Lease: {}\"", e.what());
    return false;
  }
  value spec = lease.has_object_field("spec") ? lease.at("spec") : value::object();
  const std::string holder =
      spec.has_string_field("holderIdentity") ? spec.at("holderIdentity").as_string() : "";
  const std::string renew =
      spec.has_string_field("renewTime") ? spec.at("renewTime").as_string() : "";
  const int duration_s =
      spec.has_integer_field("leaseDurationSeconds")
          ? spec.at("leaseDurationSeconds").as_integer()
          : static_cast<int>(
                std::chrono::duration_cast<std::chrono::seconds>(opt_.lease_duration).count());
  if (holder != observed_holder_ || renew != observed_renew_) {
    observed_holder_ = holder;
    observed_renew_ = renew;
    observed_at_ = now;
  }
  const bool ours = holder == opt_.identity;
  const bool expired = holder.empty() || now - observed_at_ > std::chrono::seconds(duration_s);
  held_by_other_ = !ours && !expired;
  if (held_by_other_) return false;  // someone else leads

  int transitions =
      spec.has_integer_field("leaseTransitions") ? spec.at("leaseTransitions").as_integer() : 0;
  const std::string acquire = ours && spec.has_string_field("acquireTime")
                                  ? spec.at("acquireTime").as_string()
                                  : rfc3339Micro(std::chrono::system_clock::now());
  if (!ours) ++transitions;
  lease["spec"] = leaseSpec(opt_, acquire, transitions);
  // The update carries the resourceVersion we read: if another candidate
  // wrote in between, the server answers 409 and we lose this round.
  const ApiResponse put =
      api_->request("PUT", leasePath(opt_) + "/" + opt_.name, lease.serialize());
  if (!put.ok()) {
    spdlog::debug("event=lease_update_failed code={} msg=\"{}\"", put.code, put.error);
    return false;
  }
  try {
    const value now_lease = value::parse(put.body);
    observed_holder_ = opt_.identity;
    observed_renew_ = now_lease.at("spec").at("renewTime").as_string();
    observed_at_ = now;
  } catch (const std::exception&) {
  }
  if (!ours) spdlog::info("event=lease_acquired previous_holder=\"{}\"", holder);
  return true;
}

// Hand the Lease back (empty holder) so a follower takes over at once.
void LeaderElector::release() {
  const ApiResponse got = api_->request("GET", leasePath(opt_) + "/" + opt_.name);
  if (!got.ok()) return;
  try {
    value lease = value::parse(got.body);
    if (lease.at("spec").at("holderIdentity").as_string() != opt_.identity) return;
    lease["spec"]["holderIdentity"] = value::string("");
    lease["spec"]["leaseDurationSeconds"] = value::number(1);
    api_->request("PUT", leasePath(opt_) + "/" + opt_.name, lease.serialize());
  } catch (const std::exception&) {
  }
}

}  // namespace flowlb::controller::k8s

#include "controller/k8s/leader.h"

#include <cpprest/json.h>
#include <spdlog/spdlog.h>

#include "common/log_safe.h"
#include "controller/k8s/decode.h"
#include "controller/k8s/encode.h"

namespace flowlb::controller::k8s {

using web::json::value;

LeaderElector::LeaderElector(ApiWriter* api, LeaderOptions options,
                             std::function<void(bool)> on_change,
                             std::function<void(const std::string&)> on_problem)
    : api_(api),
      opt_(std::move(options)),
      on_change_(std::move(on_change)),
      on_problem_(std::move(on_problem)) {}

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

void LeaderElector::setProblem(const std::string& problem, const std::string& detail) {
  bool changed;
  {
    std::lock_guard<std::mutex> lock(problem_mu_);
    const auto now = std::chrono::steady_clock::now();
    changed = problem != problem_;
    if (problem.empty()) {
      if (changed) spdlog::info("event=leader_election_recovered");
    } else if (changed || now - problem_logged_ >= std::chrono::minutes(1)) {
      // At error level: the first time, and once a minute while it lasts.
      spdlog::error("event=leader_election_failed reason=\"{}\" msg=\"{}\"", problem,
                    logSafe(detail));
      problem_logged_ = now;
    }
    problem_ = problem;
  }
  if (changed && on_problem_) on_problem_(problem);
}

std::string LeaderElector::leaderAddress() const {
  std::lock_guard<std::mutex> lock(problem_mu_);
  return leader_address_;
}

std::string LeaderElector::problem() const {
  std::lock_guard<std::mutex> lock(problem_mu_);
  return problem_;
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

std::string leasesOf(const LeaderOptions& o) {
  return leasesPath(o.ns);
}

LeaseWrite leaseWrite(const LeaderOptions& o, const std::string& holder, const std::string& acquire,
                      int transitions) {
  LeaseWrite w;
  w.holder = holder;
  w.duration_s = static_cast<int>(std::max<int64_t>(
      1, std::chrono::duration_cast<std::chrono::seconds>(o.lease_duration).count()));
  w.acquire = acquire;
  w.renew = rfc3339Micro(std::chrono::system_clock::now());
  w.transitions = transitions;
  w.leader_address = holder.empty() ? "" : o.advertise_address;
  return w;
}

}  // namespace

bool LeaderElector::tryAcquireOrRenew() {
  held_by_other_ = false;
  const auto now = std::chrono::steady_clock::now();
  const ApiResponse got = api_->request("GET", leasePath(opt_.ns, opt_.name));
  if (got.code == 404) {
    const std::string now_text = rfc3339Micro(std::chrono::system_clock::now());
    const ApiResponse created = api_->request(
        "POST", leasesOf(opt_),
        leaseCreateBody(opt_.ns, opt_.name, leaseWrite(opt_, opt_.identity, now_text, 0)));
    if (!created.ok()) {
      if (created.code == 404 || created.code == 403 || created.code == 401) {
        // Nothing changes until the operator acts: say so loudly, and in
        // readiness (issue 13.5: a missing namespace left us silent).
        setProblem(created.code == 404
                       ? "cannot create the leader Lease: namespace " + opt_.ns +
                             " does not exist (create it, or set --lease-namespace)"
                       : "cannot create the leader Lease in namespace " + opt_.ns +
                             ": forbidden (HTTP " + std::to_string(created.code) +
                             "); check the ClusterRole/Role allows leases create/update",
                   created.error);
      } else {
        spdlog::debug("event=lease_create_failed code={} msg=\"{}\"", created.code, created.error);
      }
      return false;
    }
    setProblem("", "");
    observed_holder_ = opt_.identity;
    observed_at_ = now;
    return true;
  }
  if (!got.ok()) {
    if (got.code == 403 || got.code == 401) {
      setProblem("cannot read the leader Lease " + opt_.ns + "/" + opt_.name +
                     ": forbidden (HTTP " + std::to_string(got.code) + ")",
                 got.error);
    } else {
      spdlog::warn("event=lease_read_failed code={} msg=\"{}\"", got.code, got.error);
    }
    return false;
  }
  setProblem("", "");
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
  {
    std::string address;
    if (held_by_other_) {
      try {
        address = lease.at("metadata").at("annotations").at(kLeaderAddressAnnotation).as_string();
      } catch (const std::exception&) {
      }
    }
    std::lock_guard<std::mutex> lock(problem_mu_);
    leader_address_ = address;
  }
  if (held_by_other_) return false;  // someone else leads

  int transitions =
      spec.has_integer_field("leaseTransitions") ? spec.at("leaseTransitions").as_integer() : 0;
  const std::string acquire = ours && spec.has_string_field("acquireTime")
                                  ? spec.at("acquireTime").as_string()
                                  : rfc3339Micro(std::chrono::system_clock::now());
  if (!ours) ++transitions;
  // The update carries the resourceVersion we read: if another candidate
  // wrote in between, the server answers 409 and we lose this round.
  const ApiResponse put = api_->request(
      "PUT", leasePath(opt_.ns, opt_.name),
      leaseUpdateBody(got.body, leaseWrite(opt_, opt_.identity, acquire, transitions)));
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
  const ApiResponse got = api_->request("GET", leasePath(opt_.ns, opt_.name));
  if (!got.ok()) return;
  try {
    const value lease = value::parse(got.body);
    const value& spec = lease.at("spec");
    if (spec.at("holderIdentity").as_string() != opt_.identity) return;
    LeaseWrite w = leaseWrite(
        opt_, "", spec.at("acquireTime").as_string(),
        spec.has_integer_field("leaseTransitions") ? spec.at("leaseTransitions").as_integer() : 0);
    w.duration_s = 1;
    api_->request("PUT", leasePath(opt_.ns, opt_.name), leaseUpdateBody(got.body, w));
  } catch (const std::exception&) {
  }
}

}  // namespace flowlb::controller::k8s

#include "controller/k8s/kube_controller.h"

#include <spdlog/spdlog.h>

#include "controller/k8s/kube_source.h"

namespace flowlb::controller::k8s {

KubeController::KubeController(KubeControllerOptions options, ControllerTelemetry* telemetry)
    : opt_(std::move(options)),
      telemetry_(telemetry),
      api_(opt_.cluster, opt_.api, telemetry),
      queue_(WriteQueueOptions{}) {}

KubeController::~KubeController() {
  stop();
}

bool KubeController::isLeader() const {
  return !elector_ || elector_->isLeader();
}

bool KubeController::synced() const {
  return source_ && source_->synced();
}

std::string KubeController::problem() const {
  return elector_ ? elector_->problem() : "";
}

std::string KubeController::leaderAddress() const {
  return elector_ ? elector_->leaderAddress() : "";
}

void KubeController::feedback(const std::map<std::string, ServiceFeedback>& changed) {
  if (loop_) loop_->feedback(changed);
}

void KubeController::tellDecodeProblem(const std::string& key, const std::string& uid,
                                       const std::string& why) {
  if (!recorder_) return;
  std::vector<ServiceEvent> facts;
  if (!why.empty()) facts.push_back({true, "InvalidSpec", why});
  recorder_->observe(key, uid, "decode", facts);
}

std::map<std::string, uint64_t> KubeController::bgpStatus(const BgpPeerSessions& sessions) {
  if (!bgp_reporter_) return {};
  bgp_reporter_->update(sessions);
  return bgp_reporter_->perState();
}

void KubeController::start(ReconcileLoop::Published on_reconciled) {
  if (started_) return;
  started_ = true;
  // Everything below reaches the loop through these; the loop exists
  // before any informer or elector thread runs.
  KubeSourceOptions so;
  so.watch_timeout_min_s = opt_.watch_timeout_min_s;
  so.watch_timeout_max_s = opt_.watch_timeout_max_s;
  so.backoff_initial = opt_.backoff_initial;
  so.backoff_max = opt_.backoff_max;
  so.watchdog = watchdog_.get();
  so.secret_namespace = opt_.secret_namespace;
  KubeSourceCallbacks cb;
  cb.service_changed = [this](const std::string& key) { loop_->serviceChanged(key); };
  cb.slices_changed = [this](const std::string& key) { loop_->slicesChanged(key); };
  cb.everything_changed = [this] { loop_->everythingChanged(); };
  cb.services_relisted = [this] { status_->forgetWrites(); };
  // A refused BGPPeer or BGPAdvertisement says why on itself (Warning
  // InvalidSpec), once per reason; fixed, the fact is gone.
  cb.bgp_object_decoded = [this](const std::string& kind, const std::string& name,
                                 const std::string& uid, const std::string& why) {
    const std::string key = kind + "/" + name;
    std::lock_guard<std::mutex> lock(decode_mu_);  // one teller at a time, in order
    if (why.empty()) {
      decode_problems_.erase(key);
    } else {
      decode_problems_[key] = {uid, why};
    }
    tellDecodeProblem(key, uid, why);
  };
  source_ = std::make_unique<KubeSource>(&api_, so, std::move(cb));
  if (opt_.leader_elect) {
    elector_ = std::make_unique<LeaderElector>(
        &api_, opt_.leader,
        [this](bool is_leader) {
          if (telemetry_) telemetry_->leader(is_leader);
          if (is_leader) {  // what a follower could not post
            std::lock_guard<std::mutex> lock(decode_mu_);
            for (const auto& [key, p] : decode_problems_) tellDecodeProblem(key, p.first, p.second);
          }
          if (!is_leader) {
            status_->dropQueued();
            bgp_status_->dropQueued();
          }
          bgp_reporter_->resend();
          loop_->everythingChanged();  // a new leader writes everything that differs
        },
        [this](const std::string& problem) {
          if (telemetry_) telemetry_->leaderElectionProblem(problem);
        });
  } else if (telemetry_) {
    telemetry_->leader(true);
  }
  auto leader = [this] { return isLeader(); };
  status_ = std::make_unique<StatusWriter>(
      StatusWriterOptions{opt_.reconciler}, &api_, &queue_,
      [this](const std::string& key) { return source_->service(key); },
      [this](const std::string& name) { return source_->pool(name); }, leader, SystemClock::get(),
      telemetry_);
  poster_ = std::make_unique<EventPoster>(&api_, &queue_, opt_.leader.identity, leader,
                                          SystemClock::get(), telemetry_);
  recorder_ = std::make_unique<EventRecorder>(poster_.get());
  poster_->setRecorder(recorder_.get());
  bgp_status_ = std::make_unique<BgpStatusWriter>(&api_, &queue_, leader);
  bgp_reporter_ = std::make_unique<BgpPeerReporter>(
      recorder_.get(), bgp_status_.get(), [this](const std::string& peer) {
        for (const BgpPeerSpec& p : source_->bgpPeers()) {
          if (p.name == peer) return p.uid;
        }
        return std::string();
      });
  ReconcileLoopOptions lo;
  lo.reconciler = opt_.reconciler;
  lo.debounce = opt_.debounce;
  lo.resync = opt_.resync;
  lo.watchdog = watchdog_.get();
  loop_ = std::make_unique<ReconcileLoop>(lo, source_.get(), status_.get(), recorder_.get(),
                                          std::move(on_reconciled), telemetry_);
  loop_->start();
  source_->start();
  if (elector_) elector_->start();
  queue_.startWorkers(opt_.writers);
  watchdog_->expect("api-client-pool", std::chrono::seconds(10));
  prober_ = std::thread([this] {
    bool was_ok = true;
    std::unique_lock<std::mutex> lock(prober_mu_);
    while (!prober_cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; })) {
      api_.probePool([wd = watchdog_] { wd->beat("api-client-pool"); });
      const Watchdog::Verdict v = watchdog_->check();
      if (v.ok != was_ok) {
        if (v.ok) {
          spdlog::info("event=watchdog_recovered");
        } else {
          spdlog::error("event=watchdog_stuck msg=\"{}\" action=\"liveness fails: restart\"",
                        v.detail);
        }
        if (telemetry_) telemetry_->stuck(!v.ok);
        was_ok = v.ok;
      }
    }
  });
}

void KubeController::stop() {
  if (!started_) return;
  started_ = false;
  {
    std::lock_guard<std::mutex> lock(prober_mu_);
    stopping_ = true;
  }
  prober_cv_.notify_all();
  if (prober_.joinable()) prober_.join();
  loop_->stop();
  if (elector_) elector_->stop();  // releases the Lease (needs the client)
  status_->dropQueued();
  api_.shutdown();  // ends watches and pending requests
  queue_.stop();
  source_->stop();
}

}  // namespace flowlb::controller::k8s

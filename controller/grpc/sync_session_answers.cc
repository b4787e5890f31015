// What an agent says on its stream: Acks (its view, apply errors, Maglev
// fingerprints) and Reports (datapath health, probes, BGP sessions).
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include "common/log_safe.h"
#include "controller/grpc/bgp_report.h"
#include "controller/grpc/sync_server_impl.h"

namespace flowlb::controller {

void Session::onAck(const pb::Ack& a) {
  std::string error;
  bool changed = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!unacked_ || a.generation() != sent_gen_) return;  // not the state in flight
    unacked_ = false;
    switch (a.result()) {
      case pb::ACK_RESULT_APPLIED:
      case pb::ACK_RESULT_APPLIED_WITH_ERRORS: {
        agent_view_ = sent_view_;
        acked_gen_ = a.generation();
        rejected_view_ = nullptr;
        last_error_.clear();
        std::map<std::string, std::pair<std::string, std::string>> errors;
        for (const pb::ApplyError& e : a.errors()) {
          last_error_ += (last_error_.empty() ? "" : "; ") + e.service_key() + ": " + e.message();
          std::string code = pb::ApplyErrorCode_Name(e.code());
          if (code.rfind("APPLY_ERROR_CODE_", 0) == 0) code = code.substr(17);
          errors[e.service_key().substr(0, 512)] = {code, e.message().substr(0, 512)};
          std::lock_guard<std::mutex> srv_lock(srv_->mu);
          ++srv_->counters.apply_errors[code];
        }
        if (prints_cap_) {
          // A FULL state rebuilt every table; an INCREMENTAL one those it lists.
          std::map<std::string, MaglevPrint> prints = maglevPrintsOf(a);
          if (!sent_full_) prints.insert(prints_->begin(), prints_->end());  // new ones win
          for (const auto& [key, e] : errors) prints.erase(key);
          // Only services of the state it acknowledged: a key an agent made
          // up, or a service removed since, is not kept, so merging
          // INCREMENTAL acks cannot grow this past the state's size.
          for (auto it = prints.begin(); sent_view_ && it != prints.end();) {
            if (!sent_view_->services.find(it->first)) {
              it = prints.erase(it);
            } else {
              ++it;
            }
          }
          if (prints != *prints_) {
            changed = true;
            prints_ = std::make_shared<const std::map<std::string, MaglevPrint>>(std::move(prints));
          }
        }
        changed = changed || !report_.acked || report_.rejected || errors != report_.errors;
        report_.acked = true;
        report_.rejected = false;
        report_.errors = std::move(errors);
        break;
      }
      case pb::ACK_RESULT_BASE_GENERATION_MISMATCH:
        agent_view_ = nullptr;  // a FULL state next
        last_error_ = a.error_message();
        break;
      default:  // REJECTED, or unspecified: FULL next (a rejected FULL: once the view changes)
        agent_view_ = nullptr;
        if (sent_full_) rejected_view_ = sent_view_;
        last_error_ = a.error_message();
        changed = !report_.rejected || report_.reject_message != a.error_message().substr(0, 512);
        report_.acked = true;
        report_.rejected = true;
        report_.reject_message = a.error_message().substr(0, 512);
        break;
    }
    last_error_ = logSafe(last_error_, 1024);
    error = last_error_;
  }
  if (!error.empty()) {
    spdlog::warn("event=agent_apply_error node={} generation={} result={} msg=\"{}\"", node_,
                 a.generation(), pb::AckResult_Name(a.result()), logSafe(error, 512));
  }
  if (changed) {
    std::lock_guard<std::mutex> lock(srv_->mu);
    srv_->feedback_dirty = true;
  }
  srv_->changed.notify_all();
  kick();
}

void Session::onBgpSessions(const pb::Report& r) {
  std::vector<BgpNodeSession> sessions = bgpSessionsOf(r);
  bool changed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!bgp_) sessions.clear();  // not a BGP speaker: nothing to say
    for (BgpNodeSession& b : sessions) b.node = node_;
    changed = sessions != report_.bgp;
    if (changed) report_.bgp = std::move(sessions);
  }
  if (changed) {
    std::lock_guard<std::mutex> lock(srv_->mu);
    srv_->feedback_dirty = true;
  }
}

void Session::onReport(const pb::Report& r) {
  bool probes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    probes = probes_;
  }
  // Sent in full in every Report by a prober.
  if (probes) srv_->healthReport(node_, this, proberHealthOf(r));
  onBgpSessions(r);
  const bool healthy = r.datapath().state() == pb::DATAPATH_STATE_HEALTHY ||
                       r.datapath().state() == pb::DATAPATH_STATE_UNSPECIFIED;
  bool live;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (healthy == healthy_) return;
    healthy_ = healthy;
    live = l2_ && healthy_;
  }
  spdlog::warn(
      "event=agent_health node={} healthy={} reasons=\"{}\"", node_, healthy,
      logSafe(r.datapath().degraded_reasons_size() > 0 ? r.datapath().degraded_reasons(0) : ""));
  srv_->liveChanged(node_, this, live);
}

}  // namespace flowlb::controller

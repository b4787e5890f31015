#include "controller/k8s/bgp_status_writer.h"

#include <spdlog/spdlog.h>

#include "common/log_safe.h"
#include "controller/k8s/encode.h"

namespace flowlb::controller::k8s {

BgpStatusWriter::BgpStatusWriter(ApiWriter* api, WriteQueue* queue, std::function<bool()> is_leader)
    : api_(api), queue_(queue), is_leader_(std::move(is_leader)) {
  kind_ = queue_->addKind("bgppeer_status", 1, [this](const std::string& p) { return write(p); });
}

void BgpStatusWriter::want(const std::string& peer, const std::vector<BgpNodeSession>& sessions) {
  if (!is_leader_()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    wanted_[peer] = sessions;
  }
  queue_->add(kind_, peer);
}

void BgpStatusWriter::dropQueued() {
  std::lock_guard<std::mutex> lock(mu_);
  wanted_.clear();
}

Verdict BgpStatusWriter::write(const std::string& peer) {
  if (!is_leader_() || api_->stopping()) return Verdict::failNoRetry();
  std::vector<BgpNodeSession> want;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = wanted_.find(peer);
    if (it == wanted_.end()) return Verdict::success();
    want = it->second;
  }
  const ApiResponse r = api_->request("PATCH", bgpPeerStatusPath(peer), bgpPeerStatusPatch(want),
                                      "application/merge-patch+json");
  if (!r.ok()) {
    if (r.code == 404) {  // deleted meanwhile: nothing to show it on
      std::lock_guard<std::mutex> lock(mu_);
      wanted_.erase(peer);
      return Verdict::failNoRetry();
    }
    spdlog::warn("event=bgppeer_status_write_failed peer={} code={} msg=\"{}\"", peer, r.code,
                 logSafe(r.error));
    return r.retryable() ? Verdict::retry(std::chrono::milliseconds(
                               static_cast<int64_t>(r.retry_after * 1000)))
                         : Verdict::failNoRetry();
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = wanted_.find(peer);
  if (it != wanted_.end() && it->second == want) wanted_.erase(it);
  return Verdict::success();
}

}  // namespace flowlb::controller::k8s

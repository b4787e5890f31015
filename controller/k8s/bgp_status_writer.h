// Writes each BGPPeer's status (per node: its session) for the
// BgpPeerReporter, through the writers' queue: the newest wish per peer,
// retried from one verdict like every other write; a peer deleted
// meanwhile (404) is dropped. Only the leader writes.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "controller/k8s/api_client.h"
#include "controller/k8s/write_queue.h"
#include "controller/status/bgp_peer_report.h"

namespace flowlb::controller::k8s {

class BgpStatusWriter final : public BgpStatusSink {
 public:
  BgpStatusWriter(ApiWriter* api, WriteQueue* queue, std::function<bool()> is_leader);
  void want(const std::string& peer, const std::vector<BgpNodeSession>& sessions) override;
  // Leadership lost: nothing queued is written.
  void dropQueued();

 private:
  Verdict write(const std::string& peer);

  ApiWriter* api_;
  WriteQueue* queue_;
  std::function<bool()> is_leader_;
  int kind_;
  std::mutex mu_;
  std::map<std::string, std::vector<BgpNodeSession>> wanted_;
};

}  // namespace flowlb::controller::k8s

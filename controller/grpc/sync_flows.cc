// Flow sync (docs/flow-sync.md): NAT flow records relayed between the
// agents that take them, and dump requests for nodes that join.
#include "controller/grpc/sync_server_impl.h"

namespace flowlb::controller {

bool Session::prepareFlowSync() {
  if (flow_dump_for_) {
    out_.mutable_flow_sync_dump()->set_for_node(*flow_dump_for_);
    flow_dump_for_.reset();
  } else if (std::optional<FlowSyncItem> item = flow_queue_.pop()) {
    pb::FlowSyncBatch* b = out_.mutable_flow_sync();
    b->set_format(kFlowRecordFormat);
    b->set_origin_node(std::move(item->origin_node));
    b->set_dump(item->dump);
    b->set_records(std::move(item->records));
  } else {
    return false;
  }
  srv_->flow_sync->sent(out_.ByteSizeLong());
  return true;
}

void Session::queueFlows(FlowSyncItem item) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finishing_ || !flow_sync_) return;
    flow_records_queued_ += item.count();
    srv_->flow_sync->relayed(item.count());
    srv_->flow_sync->queueFull(flow_queue_.push(std::move(item)));
  }
  kick();
}

void Session::queueDumpRequest(const std::string& for_node) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finishing_ || !flow_sync_) return;
    // One waiting request serves every node that joined meanwhile: the
    // dump goes to all of them.
    flow_dump_for_ = for_node;
    ++flow_dump_requests_;
  }
  kick();
}

void Session::onFlowSync(const pb::FlowSyncBatch& b) {
  FlowSyncHub& hub = *srv_->flow_sync;
  const auto now = SteadyClock::now();
  bool capable;
  {
    std::lock_guard<std::mutex> lock(mu_);
    capable = flow_sync_;
  }
  if (!capable) {
    hub.notCapable(node_, b, now);
    return;
  }
  const std::vector<std::shared_ptr<Session>> peers = srv_->flowPeers(this, b.dump(), now);
  std::vector<std::string> nodes;
  nodes.reserve(peers.size());
  for (const auto& p : peers) nodes.push_back(p->node());
  std::vector<std::string> records =
      hub.relay(node_, b, flow_bucket_, nodes, srv_->currentView(), now);
  for (size_t i = 0; i < records.size(); ++i) {
    if (!records[i].empty()) peers[i]->queueFlows({std::move(records[i]), node_, b.dump()});
  }
}

std::vector<std::shared_ptr<Session>> SyncServer::Impl::flowPeers(const Session* sender, bool dump,
                                                                  SteadyClock::time_point now) {
  std::vector<std::shared_ptr<Session>> all;
  {
    std::lock_guard<std::mutex> lock(mu);  // never held while a session's lock is taken
    for (const auto& [node, s] : by_node) {
      if (s.get() != sender) all.push_back(s);
    }
  }
  std::vector<std::shared_ptr<Session>> out;
  for (auto& s : all) {
    if (s->takesFlows(dump, now)) out.push_back(std::move(s));
  }
  return out;
}

void SyncServer::Impl::flowSyncJoined(const std::shared_ptr<Session>& s) {
  const std::string node = s->node();
  for (const auto& p : flowPeers(s.get(), false, SteadyClock::now())) p->queueDumpRequest(node);
}

}  // namespace flowlb::controller

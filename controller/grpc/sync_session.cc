// One agent's stream (sync_server_impl.h): reading, the Hello, and the
// writer that sends the DesiredState it is missing.
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/log_safe.h"
#include "controller/grpc/hello.h"
#include "controller/grpc/proto_encode.h"
#include "controller/grpc/sync_server_impl.h"
#include "controller/identity/peer_identity.h"

namespace flowlb::controller {
namespace {

bool has(const pb::Hello& h, pb::Capability c) {
  return std::find(h.capabilities().begin(), h.capabilities().end(), c) != h.capabilities().end();
}

}  // namespace

void Session::kick() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finishing_ || !hello_ || writing_) return;
    // Flow sync does not wait for a DesiredState's Ack.
    if (!(!unacked_ && prepareState()) && !prepareFlowSync()) return;
    writing_ = true;
  }
  StartWrite(&out_);
}

bool Session::prepareState() {
  const std::shared_ptr<const View> view = srv_->currentView();
  if (!view || view == agent_view_ || view == rejected_view_) return false;
  NodeUpdate u = nodeUpdate(agent_view_, view, node_);
  if (u.empty()) return false;  // nothing this node runs changed
  if (!u.full && !incremental_) u = nodeUpdate(nullptr, view, node_);
  out_ = desiredStateMessage(
      u, node_,
      MessageOptions{!implicit_keys_, bgp_, probes_, srv_->opt.health_probers_per_backend});
  const uint64_t size = out_.ByteSizeLong();
  bytes_ += size;
  srv_->bytes_sent += size;
  ++(u.full ? srv_->states_full : srv_->states_incremental);
  sent_full_ = u.full;
  unacked_ = true;
  sent_view_ = view;
  sent_gen_ = u.generation;
  return true;
}

void Session::OnReadDone(bool ok) {
  if (!ok) {
    end(grpc::Status::OK);  // the agent closed its side
    return;
  }
  bool greeted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    greeted = hello_;
  }
  if (!greeted) {
    if (!in_.has_hello()) {
      if (in_.has_flow_sync())
        srv_->flow_sync->notCapable(peer_, in_.flow_sync(), SteadyClock::now());
      end(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must be a Hello"));
      return;
    }
    onHello(in_.hello());
  } else if (in_.has_ack()) {
    onAck(in_.ack());
  } else if (in_.has_report()) {
    onReport(in_.report());
  } else if (in_.has_flow_sync()) {
    srv_->flow_sync->received(in_.ByteSizeLong());
    onFlowSync(in_.flow_sync());
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finishing_) return;
  }
  StartRead(&in_);
}

void Session::onHello(const pb::Hello& h) {
  if (Status st = checkHello(h, ctx_->auth_context().get()); !st) {
    {
      std::lock_guard<std::mutex> lock(srv_->mu);
      ++srv_->counters.hello_rejected;
    }
    srv_->changed.notify_all();
    spdlog::warn("event=agent_refused reason=bad_hello peer={} msg=\"{}\"", logSafe(peer_, 64),
                 logSafe(st.message()));
    end(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, st.message()));
    return;
  }
  // A certificate speaks for one node: the Hello must name it (the real
  // node's stream, if any, is left alone).
  if (grpc::Status st = checkHelloNode(srv_->mtls(), *ctx_, h.node_name()); !st.ok()) {
    {
      std::lock_guard<std::mutex> lock(srv_->mu);
      ++srv_->counters.hello_rejected;
    }
    srv_->changed.notify_all();
    end(std::move(st));
    return;
  }
  bool live;
  {
    std::lock_guard<std::mutex> lock(mu_);
    hello_ = true;
    node_ = h.node_name();
    incremental_ = has(h, pb::CAPABILITY_INCREMENTAL_UPDATES);
    implicit_keys_ = has(h, pb::CAPABILITY_IMPLICIT_BACKEND_KEYS);
    bgp_ = has(h, pb::CAPABILITY_BGP);
    l2_ = has(h, pb::CAPABILITY_L2_ANNOUNCEMENT);
    probes_ = has(h, pb::CAPABILITY_HEALTH_CHECKS);
    prints_cap_ = has(h, pb::CAPABILITY_MAGLEV_FINGERPRINTS);
    version_ = h.agent_version().substr(0, 64);
    conntrack_capacity_ = h.datapath().conntrack_capacity();
    flow_sync_ = has(h, pb::CAPABILITY_FLOW_SYNC);
    if (flow_sync_) wants_dumps_until_ = SteadyClock::now() + srv_->opt.flow_sync.dump_window;
    live = l2_ && healthy_;
  }
  const pb::DatapathCapabilities& dc = h.datapath();
  spdlog::info(
      "event=agent_connected node={} peer={} version=\"{}\" last_applied={} incremental={} l2={} "
      "flow_sync={} af_xdp={} xdp={} conntrack={}",
      node_, logSafe(peer_, 64), logSafe(version_, 64), h.last_applied_generation(), incremental_,
      l2_, flow_sync_,
      dc.af_xdp_zero_copy() ? "zerocopy"
      : dc.af_xdp_copy()    ? "copy"
                            : "none",
      dc.xdp_native()    ? "native"
      : dc.xdp_generic() ? "generic"
                         : "none",
      conntrack_capacity_);
  srv_->helloAccepted(self_, h.last_applied_generation(), live,
                      has(h, pb::CAPABILITY_HEALTH_CHECKS));
  if (has(h, pb::CAPABILITY_FLOW_SYNC)) srv_->flowSyncJoined(self_);
  kick();
}

}  // namespace flowlb::controller

#include "controller/grpc/sync_server.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "common/file.h"
#include "common/log_safe.h"
#include "controller/distribution/feedback.h"
#include "controller/grpc/bgp_report.h"
#include "controller/grpc/hello.h"
#include "controller/grpc/proto_encode.h"
#include "controller/grpc/sync_health.h"
#include "controller/identity/peer_identity.h"
#include "flowlb/v1/sync.grpc.pb.h"

namespace flowlb::controller {
namespace {

namespace pb = flowlb::v1;
using Clock = std::chrono::steady_clock;

// "ipv4:10.0.0.1:5555" / "ipv6:[fd00::1]:5555" -> the address.
std::string sourceOf(const std::string& peer) {
  std::string s = peer.substr(peer.find(':') + 1);
  if (!s.empty() && s[0] == '[') return s.substr(1, s.find(']') - 1);
  return s.substr(0, s.rfind(':'));
}

bool has(const pb::Hello& h, pb::Capability c) {
  return std::find(h.capabilities().begin(), h.capabilities().end(), c) != h.capabilities().end();
}

}  // namespace

class Session;

struct SyncServer::Impl final : public pb::FlowlbControl::CallbackService,
                                public std::enable_shared_from_this<SyncServer::Impl> {
  SyncServerOptions opt;
  std::function<bool()> is_leader;
  std::unique_ptr<grpc::Server> server;
  int bound_port = 0;

  mutable std::mutex mu;                    // everything below, and the distributor
  mutable std::condition_variable changed;  // connects, disconnects, acks (waitUntil)
  // The housekeeper's own: through `changed`, each change's 200 acks woke
  // it 200 times for nothing (issue 13: about 14% of the controller's CPU
  // in the fan-out benchmark went to those wakeups).
  std::condition_variable stop_cv;
  bool stopping = false;
  std::unique_ptr<Distributor> distributor;
  std::unique_ptr<SyncHealth> health;      // the verdicts; publish() goes through it
  std::unique_ptr<FlowSyncHub> flow_sync;  // thread-safe itself; set at start
  std::set<std::string> prober_nodes;      // connected agents with CAPABILITY_HEALTH_CHECKS
  std::vector<std::shared_ptr<Session>> sessions;
  std::map<std::string, std::shared_ptr<Session>> by_node;
  std::map<std::string, int> per_source;
  SyncCounters counters;  // but the three below
  std::atomic<uint64_t> bytes_sent{0}, states_full{0}, states_incremental{0};
  std::map<std::string, Clock::time_point> refusal_logged;  // per source, bounded
  std::vector<std::string> flow_joined;  // nodes that started running the view (takeView)
  bool was_leader = true;
  bool was_settling = true;
  std::thread housekeeper;
  // Feedback (agents' answers, announcers) is recomputed by the housekeeper
  // when something it depends on changed, and passed on as a diff.
  FeedbackListener feedback_listener;
  BgpStatusListener bgp_listener;
  bool feedback_dirty = true;
  Clock::time_point feedback_at{};
  std::map<std::string, ServiceFeedback> feedback;

  std::mutex view_mu;
  std::shared_ptr<const View> view;  // the distributor's current view, for sessions

  std::shared_ptr<const View> currentView() {
    std::lock_guard<std::mutex> lock(view_mu);
    return view;
  }
  // Caller holds mu. True when the view changed (then kick everyone).
  bool takeView() {
    std::shared_ptr<const View> v = distributor->view();
    std::lock_guard<std::mutex> lock(view_mu);
    if (v == view) return false;
    // Feedback depends on who announces, which nodes run what and which
    // Services exist; not on an endpoint change.
    if (!view || !v->changed_vips.empty() || v->nodes_changed ||
        v->services.size() != view->services.size()) {
      feedback_dirty = true;
    }
    // A node that starts running the view (it turned Ready) has missed the
    // flows shared meanwhile: it joins flow sync as a new stream does.
    if (view && v->nodes && v->nodes != view->nodes) {
      for (const std::string& n : *v->nodes) {
        if (!view->runs(n)) flow_joined.push_back(n);
      }
    }
    view = std::move(v);
    return true;
  }
  // Sends every stream what it is missing, after the dump requests for the
  // nodes that started running the view.
  void kickAll();
  grpc::ServerBidiReactor<pb::AgentMessage, pb::ControllerMessage>* Sync(
      grpc::CallbackServerContext* ctx) override;
  void helloAccepted(const std::shared_ptr<Session>& s, uint64_t last_applied, bool live,
                     bool probes);
  void liveChanged(const std::string& node, const Session* s, bool live);
  void healthReport(const std::string& node, const Session* s, ProberHealth h);
  // Flow sync: the other nodes' streams that take a batch now (dump: only
  // those that joined within the dump window), and a joiner announced to
  // the others so they send it every flow they share.
  std::vector<std::shared_ptr<Session>> flowPeers(const Session* sender, bool dump,
                                                  Clock::time_point now);
  void flowSyncJoined(const std::shared_ptr<Session>& s);
  // The probers: connected agents with CAPABILITY_HEALTH_CHECKS that run
  // the view. Caller holds mu; true when the view changed.
  bool updateProbers();
  // Verdicts decided again when reports, probers or services changed.
  // Caller holds mu; true when the view changed.
  bool decideHealth();
  void ended(const std::shared_ptr<Session>& s);
  void housekeep();
  void refreshFeedback(std::unique_lock<std::mutex>& lock);
  bool leaderNow() const { return !is_leader || is_leader(); }
  // Agents must present a certificate naming their node.
  bool mtls() const { return !opt.plaintext && (!opt.tls_ca.empty() || !opt.tls_ca_pem.empty()); }
};

// One agent's stream. Owned by the server's registry and by itself until
// gRPC is done with it (OnDone); every gRPC operation is started outside
// `mu_`, guarded by flags set under it.
class Session final : public grpc::ServerBidiReactor<pb::AgentMessage, pb::ControllerMessage> {
 public:
  Session(std::shared_ptr<SyncServer::Impl> srv, grpc::CallbackServerContext* ctx,
          std::string source)
      : srv_(std::move(srv)),
        ctx_(ctx),
        peer_(ctx->peer()),
        source_(std::move(source)),
        since_(Clock::now()),
        hello_deadline_(since_ + srv_->opt.hello_timeout),
        flow_bucket_(srv_->flow_sync->bucket(since_)),
        flow_queue_(srv_->flow_sync->queue()) {}

  void begin(std::shared_ptr<Session> self) {
    self_ = std::move(self);
    StartRead(&in_);
  }
  // Ends the stream at once with `s` (never writes after it).
  void end(grpc::Status s) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finishing_) return;
      finishing_ = true;
      if (writing_) {  // after the write in flight
        finish_status_ = std::move(s);
        return;
      }
    }
    Finish(std::move(s));
  }
  // Refused before anything else: the status, or NotLeader then the status.
  // Kept alive by itself until gRPC is done with it; never registered.
  void refuse(std::shared_ptr<Session> self, grpc::Status s, bool not_leader,
              const std::string& leader) {
    self_ = std::move(self);
    registered_ = false;
    finishing_ = true;
    if (not_leader) {
      out_.mutable_not_leader()->set_leader_address(leader);
      StartWriteAndFinish(&out_, grpc::WriteOptions(), std::move(s));
    } else {
      Finish(std::move(s));
    }
  }
  // This replica stopped leading: say where the leader is and close.
  void notLeader(const std::string& leader) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finishing_) return;
      if (writing_) {  // after the write in flight
        not_leader_pending_ = true;
        leader_ = leader;
        return;
      }
      finishing_ = true;
      out_.Clear();
      out_.mutable_not_leader()->set_leader_address(leader);
    }
    StartWriteAndFinish(&out_, grpc::WriteOptions(),
                        grpc::Status(grpc::StatusCode::UNAVAILABLE, "not the leader"));
  }

  // Sends what the agent is missing, if it may be sent now: a DesiredState
  // first (unless one is unacknowledged), then flow sync.
  void kick();
  // Flow sync: whether it takes a relayed batch now (CAPABILITY_FLOW_SYNC,
  // not finishing; a dump only within the window after it joined).
  bool takesFlows(bool dump, Clock::time_point now) const {
    std::lock_guard<std::mutex> lock(mu_);
    return flow_sync_ && !finishing_ && (!dump || now < wants_dumps_until_);
  }
  // It starts running the view: true if it takes flow sync (then it gets
  // dumps for the window from now on).
  bool joinFlows() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!flow_sync_ || finishing_) return false;
    wants_dumps_until_ = Clock::now() + srv_->opt.flow_sync.dump_window;
    return true;
  }
  // Queue for the stream (then sent); the oldest go when the queue is full.
  void queueFlows(FlowSyncItem item);
  void queueDumpRequest(const std::string& for_node);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> finish;
    bool not_leader = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      // gRPC is done with it: a FULL state is megabytes at 10,000
      // Services, and 200 agents each kept their last one (a cleared
      // message keeps its repeated fields' objects; a fresh one does not).
      pb::ControllerMessage().Swap(&out_);
      if (finish_status_) {
        finish = std::move(finish_status_);
        finish_status_.reset();
      } else if (not_leader_pending_) {
        not_leader_pending_ = false;
        not_leader = true;
      }
    }
    if (finish) {
      Finish(std::move(*finish));
    } else if (not_leader) {
      notLeader(leader_);
    } else if (!ok) {
      end(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
    } else {
      kick();
    }
  }
  void OnCancel() override { end(grpc::Status::CANCELLED); }
  void OnDone() override {
    std::shared_ptr<Session> keep = std::move(self_);  // may free this on return
    if (registered_) srv_->ended(keep);
  }

  AgentStatus status() const {
    std::lock_guard<std::mutex> lock(mu_);
    AgentStatus st;
    st.node = node_;
    st.peer = peer_;
    st.sent_generation = sent_gen_;
    st.acked_generation = acked_gen_;
    st.last_error = last_error_;
    st.connected_seconds = std::chrono::duration<double>(Clock::now() - since_).count();
    st.bytes_sent = bytes_;
    st.incremental = incremental_;
    st.agent_version = version_;
    st.l2_announcement = l2_;
    st.health_checks = probes_;
    st.conntrack_capacity = conntrack_capacity_;
    st.flow_sync = flow_sync_;
    st.flow_records_queued = flow_records_queued_;
    st.flow_dump_requests = flow_dump_requests_;
    return st;
  }
  bool helloDue(Clock::time_point now) const {
    std::lock_guard<std::mutex> lock(mu_);
    return !hello_ && !finishing_ && now >= hello_deadline_;
  }
  bool greeted() const {
    std::lock_guard<std::mutex> lock(mu_);
    return hello_;
  }
  const std::string& source() const { return source_; }
  std::string node() const {
    std::lock_guard<std::mutex> lock(mu_);
    return node_;
  }

 private:
  void onHello(const pb::Hello& h);
  void onAck(const pb::Ack& a);
  void onReport(const pb::Report& r);
  void onBgpSessions(const pb::Report& r);
  void onFlowSync(const pb::FlowSyncBatch& b);
  // Fill out_ with what is to be sent; caller holds mu_.
  bool prepareState();
  bool prepareFlowSync();

  std::shared_ptr<SyncServer::Impl> srv_;
  grpc::CallbackServerContext* ctx_;
  const std::string peer_;
  const std::string source_;
  const Clock::time_point since_;
  const Clock::time_point hello_deadline_;
  std::shared_ptr<Session> self_;  // until OnDone
  bool registered_ = true;         // in the server's registry
  pb::AgentMessage in_;            // the read in flight (one at a time)
  TokenBucket flow_bucket_;        // its flow records' rate; the reader's only

  mutable std::mutex mu_;
  pb::ControllerMessage out_;  // the write in flight (one at a time)
  bool hello_ = false;
  bool writing_ = false;
  bool unacked_ = false;
  bool finishing_ = false;
  bool sent_full_ = false;
  std::optional<grpc::Status> finish_status_;
  bool not_leader_pending_ = false;
  std::string leader_;
  std::string node_;
  bool incremental_ = false;
  bool implicit_keys_ = false;
  bool bgp_ = false;  // CAPABILITY_BGP: BgpConfig and mode BGP announcements
  bool l2_ = false;
  bool probes_ = false;      // CAPABILITY_HEALTH_CHECKS
  bool prints_cap_ = false;  // CAPABILITY_MAGLEV_FINGERPRINTS
  // The last fingerprint of each service; replaced, never changed in place
  // (the feedback thread reads it without copying).
  std::shared_ptr<const std::map<std::string, MaglevPrint>> prints_ =
      std::make_shared<const std::map<std::string, MaglevPrint>>();
  std::string version_;
  uint64_t conntrack_capacity_ = 0;
  bool healthy_ = true;
  std::shared_ptr<const View> agent_view_;     // what it acknowledged (nullptr: needs FULL)
  std::shared_ptr<const View> sent_view_;      // what the state in flight brings it to
  std::shared_ptr<const View> rejected_view_;  // not sent again until the view changes
  uint64_t sent_gen_ = 0;
  uint64_t acked_gen_ = 0;
  uint64_t bytes_ = 0;
  std::string last_error_;
  AgentReport report_;  // what it said about the services, for feedback
  // Flow sync: what it said in Hello, the batches relayed to it, a dump
  // request to send it, until when it gets dumps.
  bool flow_sync_ = false;
  FlowSyncQueue flow_queue_;
  std::optional<std::string> flow_dump_for_;
  Clock::time_point wants_dumps_until_{};
  uint64_t flow_records_queued_ = 0;
  uint64_t flow_dump_requests_ = 0;

 public:
  AgentReport report() const {
    std::lock_guard<std::mutex> lock(mu_);
    AgentReport r = report_;
    r.node = node_;
    return r;
  }
  // Its fingerprints with the view it acknowledged.
  std::pair<std::shared_ptr<const View>, std::shared_ptr<const std::map<std::string, MaglevPrint>>>
  prints() const {
    std::lock_guard<std::mutex> lock(mu_);
    return {agent_view_, prints_};
  }
};

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
  const auto now = Clock::now();
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
      if (in_.has_flow_sync()) srv_->flow_sync->notCapable(peer_, in_.flow_sync(), Clock::now());
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
    if (flow_sync_) wants_dumps_until_ = Clock::now() + srv_->opt.flow_sync.dump_window;
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

grpc::ServerBidiReactor<pb::AgentMessage, pb::ControllerMessage>* SyncServer::Impl::Sync(
    grpc::CallbackServerContext* ctx) {
  const std::string source = sourceOf(ctx->peer());
  auto s = std::make_shared<Session>(shared_from_this(), ctx, source);
  if (!leaderNow()) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ++counters.not_leader;
    }
    changed.notify_all();
    Session* raw = s.get();
    raw->refuse(std::move(s), grpc::Status(grpc::StatusCode::UNAVAILABLE, "not the leader"), true,
                opt.leader_address ? opt.leader_address() : "");
    return raw;
  }
  // With mutual TLS, a peer without a certificate from the agents' CA is
  // refused before anything is read from it (controller/identity/).
  if (grpc::Status st = admitPeer(mtls(), *ctx); !st.ok()) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ++counters.hello_rejected;
    }
    changed.notify_all();
    Session* raw = s.get();
    raw->refuse(std::move(s), std::move(st), false, "");
    return raw;
  }
  bool refused = false, log = false;
  {
    std::lock_guard<std::mutex> lock(mu);
    int& n = per_source[source];
    if (stopping || static_cast<int>(sessions.size()) >= opt.max_streams ||
        n >= opt.max_streams_per_source) {
      refused = true;
      ++counters.refused_streams;
      auto& last = refusal_logged[source];
      if (refusal_logged.size() > 1024) refusal_logged.clear();
      log = Clock::now() - last > std::chrono::seconds(10);
      if (log) last = Clock::now();
      if (n == 0) per_source.erase(source);
    } else {
      ++n;
      sessions.push_back(s);
    }
  }
  if (refused) {
    changed.notify_all();
    if (log) {
      spdlog::warn(
          "event=agent_refused reason=stream_limit source={} total_limit={} "
          "per_source_limit={}",
          logSafe(source, 64), opt.max_streams, opt.max_streams_per_source);
    }
    Session* raw = s.get();
    raw->refuse(std::move(s),
                grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many streams"), false, "");
    return raw;
  }
  s->begin(s);
  return s.get();
}

void SyncServer::Impl::kickAll() {
  std::vector<std::shared_ptr<Session>> all, joined;
  {
    std::lock_guard<std::mutex> lock(mu);
    all = sessions;
    for (const std::string& n : flow_joined) {
      auto it = by_node.find(n);
      if (it != by_node.end()) joined.push_back(it->second);
    }
    flow_joined.clear();
  }
  for (const auto& s : joined) {
    if (s->joinFlows()) flowSyncJoined(s);
  }
  for (const auto& s : all) s->kick();
}

void SyncServer::Impl::helloAccepted(const std::shared_ptr<Session>& s, uint64_t last_applied,
                                     bool live, bool probes) {
  std::shared_ptr<Session> replaced;
  bool new_view;
  const std::string node = s->node();
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = by_node.find(node);
    // The same node again (an agent restarted before its old stream died):
    // the new stream wins.
    if (it != by_node.end() && it->second != s) replaced = it->second;
    by_node[node] = s;
    if (probes) {
      prober_nodes.insert(node);
    } else {
      prober_nodes.erase(node);
    }
    feedback_dirty = true;
    distributor->generationAbove(last_applied);
    distributor->setLive(node, live);
    updateProbers();
    new_view = takeView();
  }
  changed.notify_all();
  if (replaced) replaced->end(grpc::Status(grpc::StatusCode::ABORTED, "a newer stream took over"));
  if (new_view) kickAll();
}

std::vector<std::shared_ptr<Session>> SyncServer::Impl::flowPeers(const Session* sender, bool dump,
                                                                  Clock::time_point now) {
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
  for (const auto& p : flowPeers(s.get(), false, Clock::now())) p->queueDumpRequest(node);
}

void SyncServer::Impl::liveChanged(const std::string& node, const Session* s, bool live) {
  bool new_view;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = by_node.find(node);
    if (it == by_node.end() || it->second.get() != s) return;
    distributor->setLive(node, live);
    new_view = takeView();
  }
  if (new_view) kickAll();
}

void SyncServer::Impl::healthReport(const std::string& node, const Session* s, ProberHealth h) {
  std::lock_guard<std::mutex> lock(mu);
  auto it = by_node.find(node);
  if (it == by_node.end() || it->second.get() != s) return;
  health->report(node, std::move(h));  // decided by the housekeeper (at most every 50 ms)
}

bool SyncServer::Impl::updateProbers() {
  // No Service has a health check: no list, so agents coming and going (a
  // DaemonSet rollout) change nothing any agent receives.
  std::vector<std::string> probers;
  const std::shared_ptr<const View> v = distributor->view();
  for (const std::string& node : prober_nodes) {  // sorted
    if (health->anyChecks() && v->runs(node)) probers.push_back(node);
  }
  health->setProbers(probers);
  return distributor->setProbers(std::move(probers));
}

bool SyncServer::Impl::decideHealth() {
  if (!health->dirty()) {
    health->decide();  // counts the reports as seen
    return false;
  }
  // The facts on Services may change with any decision (a backend left, a
  // port fails open), not only with a verdict; feedback is recomputed only
  // when they did (not on every endpoint change).
  const std::vector<HealthFact> before = health->facts();
  const bool decided = health->decide();
  if (health->facts() != before) feedback_dirty = true;
  if (!decided) return false;
  distributor->setDesired(health->desired());
  return true;
}

void SyncServer::Impl::ended(const std::shared_ptr<Session>& s) {
  bool new_view = false;
  const std::string node = s->node();
  const bool greeted = s->greeted();
  {
    std::lock_guard<std::mutex> lock(mu);
    sessions.erase(std::remove(sessions.begin(), sessions.end(), s), sessions.end());
    if (--per_source[s->source()] <= 0) per_source.erase(s->source());
    auto it = by_node.find(node);
    if (it != by_node.end() && it->second == s) {
      by_node.erase(it);
      feedback_dirty = true;
      distributor->setLive(node, false);  // its VIPs move to the remaining agents now
      health->forget(node);
      prober_nodes.erase(node);
      updateProbers();
      new_view = takeView();
    }
    if (!stopping && greeted) ++counters.stream_resets;
  }
  changed.notify_all();
  if (greeted) {
    const AgentStatus st = s->status();
    spdlog::warn("event=agent_disconnected node={} peer={} acked={}", node, logSafe(st.peer, 64),
                 st.acked_generation);
  }
  if (new_view) kickAll();
}

// Hello deadlines, leadership changes and the end of settling: checked
// every 50 ms by one thread for all streams.
void SyncServer::Impl::housekeep() {
  std::unique_lock<std::mutex> lock(mu);
  while (!stop_cv.wait_for(lock, std::chrono::milliseconds(50), [this] { return stopping; })) {
    const auto now = Clock::now();
    const std::vector<std::shared_ptr<Session>> all = sessions;
    const bool leader = leaderNow();
    const bool lost = was_leader && !leader;
    if (leader && !was_leader) distributor->resettle();  // agents are coming back
    was_leader = leader;
    bool new_view = false;
    const bool settling = distributor->settling();
    if (was_settling && !settling) {  // announcers may now move to live agents
      distributor->tick();
      new_view = takeView();
    }
    if (was_settling != settling) feedback_dirty = true;  // announcers are known now
    if (decideHealth()) new_view = takeView() || new_view;
    was_settling = settling;
    refreshFeedback(lock);
    lock.unlock();
    uint64_t late = 0;
    for (const auto& s : all) {
      if (!s->helloDue(now)) continue;
      ++late;
      s->end(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "no Hello in time"));
    }
    if (lost) {
      const std::string leader_address = opt.leader_address ? opt.leader_address() : "";
      for (const auto& s : all) s->notLeader(leader_address);
    }
    if (new_view) kickAll();
    lock.lock();
    counters.hello_timeouts += late;
    if (lost) counters.not_leader += all.size();
  }
}

// Caller holds `lock` (on mu); it is released while the sessions are asked
// for their reports and while the listener runs.
void SyncServer::Impl::refreshFeedback(std::unique_lock<std::mutex>& lock) {
  const auto now = Clock::now();
  if (now - feedback_at >= std::chrono::seconds(10)) feedback_dirty = true;  // resync
  if (!feedback_dirty || (!feedback_listener && !bgp_listener)) return;
  feedback_dirty = false;
  feedback_at = now;
  const std::shared_ptr<const View> v = distributor->view();
  const std::set<std::string> live = distributor->live();
  const bool known = !distributor->settling();
  // Copies: onFeedback/onBgpStatus may replace them while they run unlocked.
  const FeedbackListener feedback_to = feedback_listener;
  const BgpStatusListener bgp_to = bgp_listener;
  std::vector<std::shared_ptr<Session>> agents;
  for (const auto& [node, s] : by_node) agents.push_back(s);
  lock.unlock();
  std::vector<AgentReport> reports;
  reports.reserve(agents.size());
  for (const auto& s : agents) reports.push_back(s->report());
  std::map<std::string, ServiceFeedback> now_fb = serviceFeedback(*v, live, known, reports);
  using Prints = std::shared_ptr<const std::map<std::string, MaglevPrint>>;
  std::vector<std::pair<std::string, std::pair<std::shared_ptr<const View>, Prints>>> prints;
  for (const auto& s : agents) prints.emplace_back(s->node(), s->prints());
  std::vector<AgentPrints> compared;
  for (const auto& [node, p] : prints) compared.push_back({node, p.first, p.second.get()});
  lock.lock();
  health->comparePrints(compared);
  for (HealthFact& f : health->facts()) {
    auto it = now_fb.find(f.service);
    if (it != now_fb.end()) it->second.health.push_back(std::move(f.event));
  }
  lock.unlock();
  uint64_t failing = 0;
  std::map<std::string, ServiceFeedback> changed_fb;
  for (auto& [key, f] : now_fb) {
    failing += !f.failed.empty();
    auto old = feedback.find(key);
    if (old == feedback.end() || !(old->second == f)) changed_fb.emplace(key, f);
  }
  feedback = std::move(now_fb);  // only this thread touches it
  if (!changed_fb.empty() && feedback_to) feedback_to(changed_fb);
  // Not while agents may still be coming back (after a start or a new
  // leadership): a status with half the nodes would be written, then fixed.
  if (bgp_to && known) bgp_to(bgpPeerSessions(*v, reports));
  lock.lock();
  counters.services_not_programmed = failing;
}

void SyncServer::onBgpStatus(BgpStatusListener listener) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->bgp_listener = std::move(listener);
  impl_->feedback_dirty = true;
}

void SyncServer::onFeedback(FeedbackListener listener) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->feedback_listener = std::move(listener);
  impl_->feedback_dirty = true;
}

Result<std::unique_ptr<SyncServer>> SyncServer::start(SyncServerOptions options,
                                                      std::function<bool()> is_leader) {
  std::unique_ptr<SyncServer> s(new SyncServer());
  s->impl_ = std::make_shared<Impl>();
  Impl& impl = *s->impl_;
  impl.opt = std::move(options);
  impl.is_leader = std::move(is_leader);
  impl.distributor = std::make_unique<Distributor>(encodeVirtualService, impl.opt.distribution);
  impl.health = std::make_unique<SyncHealth>(impl.opt.health_probers_per_backend);
  impl.flow_sync = std::make_unique<FlowSyncHub>(impl.opt.flow_sync);
  impl.view = impl.distributor->view();
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (impl.opt.plaintext) {
    creds = grpc::InsecureServerCredentials();
  } else {
    auto cert = impl.opt.tls_cert_pem.empty() ? readFile(impl.opt.tls_cert)
                                              : Result<std::string>(impl.opt.tls_cert_pem);
    auto key = impl.opt.tls_key_pem.empty() ? readFile(impl.opt.tls_key)
                                            : Result<std::string>(impl.opt.tls_key_pem);
    if (!cert) return cert.status();
    if (!key) return key.status();
    grpc::SslServerCredentialsOptions o;
    o.pem_key_cert_pairs.push_back({*key, *cert});
    if (!impl.opt.tls_ca.empty() || !impl.opt.tls_ca_pem.empty()) {
      auto ca = impl.opt.tls_ca_pem.empty() ? readFile(impl.opt.tls_ca)
                                            : Result<std::string>(impl.opt.tls_ca_pem);
      if (!ca) return ca.status();
      o.pem_root_certs = *ca;
      // Mutual TLS: an agent without a certificate from this CA is refused.
      o.client_certificate_request =
          impl.opt.additional_services.empty()
              ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
              : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;  // Sync checks (admitPeer)
    }
    creds = grpc::SslServerCredentials(o);
  }
  grpc::ServerBuilder b;
  b.AddListeningPort(impl.opt.address, creds, &impl.bound_port);
  b.RegisterService(&impl);
  for (grpc::Service* extra : impl.opt.additional_services) b.RegisterService(extra);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                       static_cast<int>(impl.opt.keepalive_time.count()));
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                       static_cast<int>(impl.opt.keepalive_timeout.count()));
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  b.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Agents ping as often as we do; do not punish them for it.
  b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 50);
  b.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  b.SetMaxSendMessageSize(256 << 20);
  b.SetMaxReceiveMessageSize(16 << 20);  // an Ack with an error per service
  impl.server = b.BuildAndStart();
  if (!impl.server || impl.bound_port == 0) {
    return Status::error("cannot serve gRPC on " + impl.opt.address);
  }
  impl.was_leader = impl.leaderNow();
  impl.housekeeper = std::thread([p = s->impl_.get()] { p->housekeep(); });
  spdlog::info("event=grpc_listening address={} port={} tls={} mtls={}", impl.opt.address,
               impl.bound_port, !impl.opt.plaintext,
               !impl.opt.tls_ca.empty() || !impl.opt.tls_ca_pem.empty());
  return s;
}

SyncServer::~SyncServer() {
  if (!impl_) return;
  std::vector<std::shared_ptr<Session>> all;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
    all = impl_->sessions;
  }
  impl_->changed.notify_all();
  impl_->stop_cv.notify_all();
  if (impl_->housekeeper.joinable()) impl_->housekeeper.join();
  for (const auto& s : all) s->end(grpc::Status(grpc::StatusCode::UNAVAILABLE, "shutting down"));
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

void SyncServer::publish(const Reconciled& r) {
  bool new_view;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    // An endpoint change is a patch of what the distribution holds: the
    // work is the change's, not the cluster's.
    if (impl_->health->setReconciled(r)) {
      impl_->distributor->patchDesired(impl_->health->patch());
    } else {
      impl_->distributor->setDesired(impl_->health->desired());
    }
    impl_->updateProbers();  // the nodes that run it may have changed
    new_view = impl_->takeView();
  }
  if (new_view) impl_->kickAll();
}

std::vector<AgentStatus> SyncServer::agents() const {
  std::vector<std::shared_ptr<Session>> all;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    for (const auto& [node, s] : impl_->by_node) all.push_back(s);
  }
  std::vector<AgentStatus> out;
  for (const auto& s : all) out.push_back(s->status());
  return out;
}

uint64_t SyncServer::generation() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->distributor->view()->generation;
}

uint64_t SyncServer::streamResets() const {
  return counters().stream_resets;
}

SyncCounters SyncServer::counters() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  SyncCounters c = impl_->counters;
  c.bytes_sent = impl_->bytes_sent;
  c.states_full = impl_->states_full;
  c.states_incremental = impl_->states_incremental;
  c.backends_unhealthy = impl_->health->unhealthyPerService();
  c.health_down = impl_->health->transitionsDown();
  c.health_up = impl_->health->transitionsUp();
  c.health_statuses = impl_->health->decidedStatuses();
  c.maglev_mismatches = impl_->health->mismatches();
  c.maglev_agreeing = impl_->health->agreeing();
  c.health_reports = impl_->health->reportsReceived();
  c.health_reports_decided = impl_->health->reportsDecided();
  c.flow_sync = impl_->flow_sync->counters();
  return c;
}

AnnouncerMap SyncServer::announcers() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->distributor->announcers();
}

int SyncServer::port() const {
  return impl_->bound_port;
}

bool SyncServer::waitFor(const std::function<bool(const std::vector<AgentStatus>&)>& done,
                         std::chrono::milliseconds timeout) const {
  return waitUntil([&] { return done(agents()); }, timeout);
}

bool SyncServer::waitUntil(const std::function<bool()>& done,
                           std::chrono::milliseconds timeout) const {
  const auto deadline = Clock::now() + timeout;
  while (!done()) {
    // done() takes the lock itself: it must not be held here (a wait that
    // timed out deadlocked on it).
    if (Clock::now() >= deadline) return false;
    std::unique_lock<std::mutex> lock(impl_->mu);
    // Woken by every connect, disconnect, refusal and acknowledgement; the
    // short bound only covers a notification between the check and the wait.
    impl_->changed.wait_for(lock, std::chrono::milliseconds(20));
  }
  return true;
}

}  // namespace flowlb::controller

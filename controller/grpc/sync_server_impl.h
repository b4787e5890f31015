// The inside of the Sync server (sync_server.h), shared by the files that
// implement it and by nothing else:
// - sync_server.cc: start, stop, the public API, admitting streams and
//   registering agents;
// - sync_session.cc: one agent's stream and what is written to it;
// - sync_session_answers.cc: what an agent says (Acks, Reports);
// - sync_feedback.cc: the housekeeper (Hello deadlines, leadership,
//   settling, health verdicts, feedback to the reconcile loop);
// - sync_flows.cc: flow sync between agents (docs/flow-sync.md).
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "controller/distribution/feedback.h"
#include "controller/grpc/flow_sync_hub.h"
#include "controller/grpc/flow_sync_queue.h"
#include "controller/grpc/sync_health.h"
#include "controller/grpc/sync_server.h"
#include "flowlb/v1/sync.grpc.pb.h"

namespace flowlb::controller {

namespace pb = flowlb::v1;
using SteadyClock = std::chrono::steady_clock;

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
  std::map<std::string, SteadyClock::time_point> refusal_logged;  // per source, bounded
  std::vector<std::string> flow_joined;  // nodes that started running the view (takeView)
  bool was_leader = true;
  bool was_settling = true;
  std::thread housekeeper;
  // Feedback (agents' answers, announcers) is recomputed by the housekeeper
  // when something it depends on changed, and passed on as a diff.
  FeedbackListener feedback_listener;
  BgpStatusListener bgp_listener;
  bool feedback_dirty = true;
  SteadyClock::time_point feedback_at{};
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
                                                  SteadyClock::time_point now);
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
        since_(SteadyClock::now()),
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
  bool takesFlows(bool dump, SteadyClock::time_point now) const {
    std::lock_guard<std::mutex> lock(mu_);
    return flow_sync_ && !finishing_ && (!dump || now < wants_dumps_until_);
  }
  // It starts running the view: true if it takes flow sync (then it gets
  // dumps for the window from now on).
  bool joinFlows() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!flow_sync_ || finishing_) return false;
    wants_dumps_until_ = SteadyClock::now() + srv_->opt.flow_sync.dump_window;
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
    st.connected_seconds = std::chrono::duration<double>(SteadyClock::now() - since_).count();
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
  bool helloDue(SteadyClock::time_point now) const {
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
  const SteadyClock::time_point since_;
  const SteadyClock::time_point hello_deadline_;
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
  SteadyClock::time_point wants_dumps_until_{};
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
}  // namespace flowlb::controller

// Simulated agents for the controller's fan-out benchmark: COUNT real gRPC
// clients in one process, each with its own channel (its own connection),
// speaking the real protocol: Hello with the capabilities real agents list,
// FULL and INCREMENTAL states applied to a per-agent store of services by
// key (an INCREMENTAL state against another base is answered
// BASE_GENERATION_MISMATCH), one Ack per state. They skip the datapath:
// this measures the controller, not the agents.
//
// Commands on stdin, one per line; answers on stdout:
//   synced             SYNCED <ms> <bytes of one FULL state>   every agent acked a state
//   watch KEY          WATCHING, then DONE <t> <bytes> once every agent acked a state
//                      carrying KEY: t is CLOCK_MONOTONIC seconds at the last ack (the
//                      same clock as Python's time.monotonic()); bytes: all
//                      DesiredStates all agents got since the command
//   rollout            ROLLOUT <ms> <bytes> <full_states>   each agent reconnects in
//                      turn, the next once the previous acked its new FULL state
//   quit
//
// Usage: fanout_agents HOST:PORT COUNT [NODE_PREFIX]
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "flowlb/v1/sync.grpc.pb.h"

namespace {

namespace pb = flowlb::v1;
using Clock = std::chrono::steady_clock;

struct Shared {
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> full_states{0};
  uint64_t one_full = 0;
  std::set<int> synced;          // agents that acked a state
  std::string watched;           // key being watched
  std::set<int> saw_watched;     // agents that acked a state carrying it
  std::vector<double> acked_at;  // seconds after the watch began, one per agent that acked it
  Clock::time_point watch_since;
  bool stopping = false;
};

class Agent {
 public:
  Agent(int id, std::string node, std::shared_ptr<grpc::Channel> channel, Shared* shared)
      : id_(id),
        node_(std::move(node)),
        stub_(pb::FlowlbControl::NewStub(std::move(channel))),
        shared_(shared) {
    thread_ = std::thread([this] { run(); });
  }
  ~Agent() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      if (ctx_) ctx_->TryCancel();
    }
    thread_.join();
  }
  // Ends the stream; the agent reconnects at once (as a restarted agent).
  void reconnect() {
    std::lock_guard<std::mutex> lock(mu_);
    acked_full_ = false;
    if (ctx_) ctx_->TryCancel();
  }
  bool ackedFullSinceReconnect() {
    std::lock_guard<std::mutex> lock(mu_);
    return acked_full_;
  }

 private:
  void run() {
    while (true) {
      grpc::ClientContext ctx;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_) return;
        ctx_ = &ctx;
      }
      stream(ctx);
      std::lock_guard<std::mutex> lock(mu_);
      ctx_ = nullptr;
      if (stop_) return;
    }
  }

  void stream(grpc::ClientContext& ctx) {
    auto s = stub_->Sync(&ctx);
    pb::AgentMessage hello;
    pb::Hello* h = hello.mutable_hello();
    h->set_node_name(node_);
    h->set_agent_version("fanout-bench");
    h->set_last_applied_generation(applied_);
    h->add_capabilities(pb::CAPABILITY_L2_ANNOUNCEMENT);
    h->add_capabilities(pb::CAPABILITY_INCREMENTAL_UPDATES);
    h->add_capabilities(pb::CAPABILITY_IMPLICIT_BACKEND_KEYS);
    if (!s->Write(hello)) return;
    pb::ControllerMessage m;
    while (s->Read(&m)) {
      if (!m.has_desired_state()) continue;
      const pb::DesiredState& ds = m.desired_state();
      const uint64_t size = m.ByteSizeLong();
      shared_->bytes += size;
      pb::AgentMessage ack;
      pb::Ack* a = ack.mutable_ack();
      a->set_generation(ds.generation());
      const bool full = ds.kind() == pb::DESIRED_STATE_KIND_FULL;
      if (!full && ds.base_generation() != applied_) {
        a->set_result(pb::ACK_RESULT_BASE_GENERATION_MISMATCH);
        a->set_active_generation(applied_);
        if (!s->Write(ack)) return;
        continue;
      }
      if (full) {
        services_.clear();
        ++shared_->full_states;
      }
      for (const std::string& k : ds.removed_service_keys()) services_.erase(k);
      bool watched = false;
      std::string want;
      {
        std::lock_guard<std::mutex> lock(shared_->mu);
        want = shared_->watched;
      }
      for (const pb::VirtualService& vs : ds.services()) {
        services_[vs.key()] = static_cast<uint32_t>(vs.backends_size());
        watched |= !want.empty() && vs.key() == want;
      }
      applied_ = ds.generation();
      a->set_result(pb::ACK_RESULT_APPLIED);
      a->set_active_generation(applied_);
      if (!s->Write(ack)) return;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (full) acked_full_ = true;
      }
      // Reading into a message that holds a FULL state first clears every
      // one of its 10,000 services; 200 agents doing that on the next
      // (tiny) state, on the same two cores, delayed the first change after
      // the connect burst by 3-4 s (acks: first at 74 ms, median 3.9 s).
      // A real agent has its own node's CPU for it: let go of it now.
      if (full) pb::ControllerMessage().Swap(&m);
      {
        std::lock_guard<std::mutex> lock(shared_->mu);
        if (full && shared_->one_full == 0 && !services_.empty()) shared_->one_full = size;
        shared_->synced.insert(id_);
        if (watched && want == shared_->watched && shared_->saw_watched.insert(id_).second) {
          shared_->acked_at.push_back(
              std::chrono::duration<double>(Clock::now() - shared_->watch_since).count());
        }
      }
      shared_->cv.notify_all();
    }
    const grpc::Status st = s->Finish();
    if (!st.ok() && st.error_code() != grpc::StatusCode::CANCELLED) {
      std::fprintf(stderr, "agent %s: stream ended: %d %s\n", node_.c_str(),
                   static_cast<int>(st.error_code()), st.error_message().c_str());
    }
  }

  const int id_;
  const std::string node_;
  std::unique_ptr<pb::FlowlbControl::Stub> stub_;
  Shared* shared_;
  std::map<std::string, uint32_t> services_;  // the agent's state: key -> backends
  uint64_t applied_ = 0;
  std::mutex mu_;
  grpc::ClientContext* ctx_ = nullptr;
  bool stop_ = false;
  bool acked_full_ = false;
  std::thread thread_;
};

double msSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: fanout_agents HOST:PORT COUNT [NODE_PREFIX]\n");
    return 2;
  }
  const std::string address = argv[1];
  const int count = std::atoi(argv[2]);
  const std::string prefix = argc > 3 ? argv[3] : "node-";
  Shared shared;
  std::vector<std::unique_ptr<Agent>> agents;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  for (int i = 0; i < count; ++i) {
    // A channel each, with its own connection, as on separate nodes (gRPC
    // would otherwise share one connection between identical channels).
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    agents.push_back(std::make_unique<Agent>(
        i, prefix + std::to_string(i),
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args), &shared));
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    const auto t0 = Clock::now();
    if (line == "synced") {
      std::unique_lock<std::mutex> lock(shared.mu);
      shared.cv.wait(lock, [&] { return static_cast<int>(shared.synced.size()) == count; });
      std::printf("SYNCED %.1f %llu\n", msSince(t0),
                  static_cast<unsigned long long>(shared.one_full));
    } else if (line.rfind("watch ", 0) == 0) {
      const uint64_t bytes0 = shared.bytes;
      std::unique_lock<std::mutex> lock(shared.mu);
      shared.watched = line.substr(6);
      shared.saw_watched.clear();
      shared.acked_at.clear();
      shared.watch_since = Clock::now();
      lock.unlock();
      std::printf("WATCHING\n");
      std::fflush(stdout);
      lock.lock();
      shared.cv.wait(lock, [&] { return static_cast<int>(shared.saw_watched.size()) == count; });
      shared.watched.clear();
      const double done = std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
      std::printf("DONE %.6f %llu\n", done, static_cast<unsigned long long>(shared.bytes - bytes0));
      // A slow change (over 500 ms): when the agents acked it, from the
      // watch command (stderr): all late, or a few?
      std::vector<double>& at = shared.acked_at;
      std::sort(at.begin(), at.end());
      if (!at.empty() && at.back() > 0.5) {
        std::fprintf(stderr, "acks after the watch: first %.0f ms, median %.0f ms, last %.0f ms\n",
                     at.front() * 1000, at[at.size() / 2] * 1000, at.back() * 1000);
      }
    } else if (line == "rollout") {
      const uint64_t bytes0 = shared.bytes, full0 = shared.full_states;
      for (auto& a : agents) {
        a->reconnect();
        std::unique_lock<std::mutex> lock(shared.mu);
        shared.cv.wait(lock, [&] { return a->ackedFullSinceReconnect(); });
      }
      std::printf("ROLLOUT %.1f %llu %llu\n", msSince(t0),
                  static_cast<unsigned long long>(shared.bytes - bytes0),
                  static_cast<unsigned long long>(shared.full_states - full0));
    } else if (line == "quit") {
      break;
    }
    std::fflush(stdout);
  }
  agents.clear();
  return 0;
}

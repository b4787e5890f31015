// Leader election on a coordination.k8s.io/v1 Lease, as client-go's
// leaderelection does: the holder renews every retry period; another
// candidate takes the Lease once it has seen no renewal for the lease
// duration (measured on its own clock, so clock skew does not matter); a
// holder that cannot renew within the renew deadline steps down at once.
// Only the leader writes to the API; followers keep warm caches.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "controller/k8s/api_client.h"

namespace flowlb::controller::k8s {

struct LeaderOptions {
  std::string ns = "flowlb-system";
  std::string name = "flowlb-controller";
  std::string identity;  // unique per instance
  // The gRPC address agents reach this instance at ("" unknown); the leader
  // publishes it on the Lease, followers name it in NotLeader.
  std::string advertise_address;
  std::chrono::milliseconds lease_duration{15000};
  std::chrono::milliseconds renew_deadline{10000};
  std::chrono::milliseconds retry_period{2000};
};

class LeaderElector {
 public:
  // `on_change(true)` when this instance becomes leader, `(false)` when it
  // stops being one. Called from the elector's thread.
  // `on_problem` hears each change of problem() ("" when it is solved).
  LeaderElector(ApiWriter* api, LeaderOptions options, std::function<void(bool)> on_change,
                std::function<void(const std::string&)> on_problem = nullptr);
  ~LeaderElector();
  void start();
  // Stops; a leader releases the Lease so a successor need not wait.
  void stop();
  bool isLeader() const { return leader_.load(std::memory_order_acquire); }
  // A problem only the operator can fix (no Lease namespace, RBAC), or "".
  std::string problem() const;
  // The leader's advertised gRPC address, when another instance leads and
  // published one; "" otherwise.
  std::string leaderAddress() const;
  const std::string& identity() const { return opt_.identity; }

 private:
  void run();
  // One attempt to acquire or renew. True when we hold the Lease after it.
  bool tryAcquireOrRenew();
  void setLeader(bool v);
  void setProblem(const std::string& problem, const std::string& detail);
  void release();

  ApiWriter* api_;
  LeaderOptions opt_;
  std::function<void(bool)> on_change_;
  std::function<void(const std::string&)> on_problem_;
  std::atomic<bool> leader_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
  // What we last saw of the Lease, and when (our clock).
  std::string observed_holder_;
  std::string observed_renew_;
  std::chrono::steady_clock::time_point observed_at_{};
  std::chrono::steady_clock::time_point last_renew_{};
  bool held_by_other_ = false;
  mutable std::mutex problem_mu_;
  std::string problem_;
  std::string leader_address_;  // guarded by problem_mu_
  std::chrono::steady_clock::time_point problem_logged_{};
};

}  // namespace flowlb::controller::k8s

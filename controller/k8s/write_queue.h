// The writers' queue: keyed items in kinds of different priority (Service
// statuses before annotations, so every address is out before the
// bookkeeping), each key handled by one worker at a time, and retries
// decided in one place from the handler's verdict (MetalLB's SyncState):
// Success and FailNoRetry drop the item, Retry brings it back after a
// jittered backoff (or at once, after a 409 was re-read). Due times come
// from an injected clock, so tests drive the queue with runOne() and a
// FakeClock; in production a few worker threads do.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"

namespace flowlb::controller::k8s {

struct Verdict {
  enum class Kind { kSuccess, kRetry, kFailNoRetry };
  Kind kind = Kind::kSuccess;
  bool now = false;                       // kRetry: at once (the handler re-read the object)
  std::chrono::milliseconds at_least{0};  // kRetry: not before (a Retry-After)
  static Verdict success() { return {Kind::kSuccess, false, {}}; }
  static Verdict failNoRetry() { return {Kind::kFailNoRetry, false, {}}; }
  static Verdict retry(std::chrono::milliseconds at_least = {}) {
    return {Kind::kRetry, false, at_least};
  }
  static Verdict retryNow() { return {Kind::kRetry, true, {}}; }
};

struct WriteQueueOptions {
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{5000};
  int max_attempts = 8;  // then it waits for the next resync
};

class WriteQueue {
 public:
  using Handler = std::function<Verdict(const std::string& key)>;
  explicit WriteQueue(WriteQueueOptions options = {}, Clock* clock = SystemClock::get());
  ~WriteQueue();
  WriteQueue(const WriteQueue&) = delete;
  WriteQueue& operator=(const WriteQueue&) = delete;

  // A kind of item; lower priority numbers run first.
  int addKind(std::string name, int priority, Handler handler);
  // Queues `key` (due now). Already queued: stays as it is. In flight: runs
  // again after the current attempt, which may have used older wishes.
  void add(int kind, const std::string& key);
  bool queued(int kind, const std::string& key) const;  // queued or in flight
  size_t size() const;
  // Drops everything queued (leadership lost); attempts in flight finish.
  void clear();

  // Runs one due item on the caller's thread; false when none is due.
  bool runOne();
  std::optional<std::chrono::steady_clock::time_point> nextDue() const;

  void startWorkers(int n);
  void stop();

 private:
  struct Item {
    std::chrono::steady_clock::time_point due;
    int attempts = 0;
  };
  struct KindInfo {
    std::string name;
    int priority;
    Handler handler;
  };
  using ItemKey = std::pair<int, std::string>;  // kind, key
  std::optional<ItemKey> pickLocked(std::chrono::steady_clock::time_point now) const;
  std::optional<std::chrono::steady_clock::time_point> nextDueLocked() const;
  void putLocked(const ItemKey& k, const Item& item);
  std::chrono::milliseconds backoff(int attempts);

  WriteQueueOptions opt_;
  Clock* clock_;
  std::vector<KindInfo> kinds_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<ItemKey, Item> items_;  // never holds a key in flight
  // The same items by priority, then due time: picking is O(log n).
  std::map<int, std::set<std::pair<std::chrono::steady_clock::time_point, ItemKey>>> order_;
  std::set<ItemKey> inflight_;
  std::set<ItemKey> again_;  // added while in flight
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace flowlb::controller::k8s

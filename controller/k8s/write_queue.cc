#include "controller/k8s/write_queue.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

namespace flowlb::controller::k8s {

WriteQueue::WriteQueue(WriteQueueOptions options, Clock* clock)
    : opt_(std::move(options)), clock_(clock) {}

WriteQueue::~WriteQueue() {
  stop();
}

int WriteQueue::addKind(std::string name, int priority, Handler handler) {
  std::lock_guard<std::mutex> lock(mu_);
  kinds_.push_back({std::move(name), priority, std::move(handler)});
  return static_cast<int>(kinds_.size() - 1);
}

void WriteQueue::add(int kind, const std::string& key) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    const ItemKey k{kind, key};
    if (inflight_.count(k)) {
      again_.insert(k);
      return;
    }
    if (!items_.count(k)) putLocked(k, Item{clock_->now(), 0});
  }
  cv_.notify_one();
}

void WriteQueue::putLocked(const ItemKey& k, const Item& item) {
  items_[k] = item;
  order_[kinds_[static_cast<size_t>(k.first)].priority].insert({item.due, k});
}

bool WriteQueue::queued(int kind, const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  const ItemKey k{kind, key};
  return items_.count(k) || inflight_.count(k);
}

size_t WriteQueue::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return items_.size() + inflight_.size();
}

void WriteQueue::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  items_.clear();
  order_.clear();
  again_.clear();
}

std::optional<WriteQueue::ItemKey> WriteQueue::pickLocked(
    std::chrono::steady_clock::time_point now) const {
  for (const auto& [priority, by_due] : order_) {
    if (!by_due.empty() && by_due.begin()->first <= now) return by_due.begin()->second;
  }
  return std::nullopt;
}

std::optional<std::chrono::steady_clock::time_point> WriteQueue::nextDueLocked() const {
  std::optional<std::chrono::steady_clock::time_point> next;
  for (const auto& [priority, by_due] : order_) {
    if (!by_due.empty() && (!next || by_due.begin()->first < *next)) next = by_due.begin()->first;
  }
  return next;
}

std::chrono::milliseconds WriteQueue::backoff(int attempts) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  const double d = std::min<double>(
      static_cast<double>(opt_.backoff_max.count()),
      static_cast<double>(opt_.backoff_initial.count()) * (1u << std::min(attempts, 20)));
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  return std::chrono::milliseconds(static_cast<int64_t>(d * jitter(rng)));
}

bool WriteQueue::runOne() {
  ItemKey k;
  Item item;
  Handler handler;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto picked = pickLocked(clock_->now());
    if (!picked) return false;
    k = *picked;
    auto it = items_.find(k);
    item = it->second;
    order_[kinds_[static_cast<size_t>(k.first)].priority].erase({item.due, k});
    items_.erase(it);
    inflight_.insert(k);
    handler = kinds_[static_cast<size_t>(k.first)].handler;
  }
  const Verdict v = handler(k.second);
  {
    std::lock_guard<std::mutex> lock(mu_);
    inflight_.erase(k);
    const bool again = again_.erase(k) > 0;
    const auto now = clock_->now();
    if (v.kind == Verdict::Kind::kRetry) {
      ++item.attempts;
      if (item.attempts >= opt_.max_attempts) {
        spdlog::warn(
            "event=write_given_up kind={} key={} attempts={} msg=\"left to the next "
            "resync\"",
            kinds_[static_cast<size_t>(k.first)].name, k.second, item.attempts);
      } else {
        item.due = v.now ? now : now + std::max(backoff(item.attempts - 1), v.at_least);
        putLocked(k, item);
      }
    }
    if (again && !items_.count(k)) putLocked(k, Item{now, 0});
  }
  cv_.notify_one();
  return true;
}

std::optional<std::chrono::steady_clock::time_point> WriteQueue::nextDue() const {
  std::lock_guard<std::mutex> lock(mu_);
  return nextDueLocked();
}

void WriteQueue::startWorkers(int n) {
  for (int i = 0; i < std::max(1, n); ++i) {
    workers_.emplace_back([this] {
      while (true) {
        {
          std::unique_lock<std::mutex> lock(mu_);
          if (stopping_) return;
          if (!pickLocked(clock_->now())) {
            // Sleep until the next item is due or something is added.
            const auto next = nextDueLocked();
            if (next) {
              cv_.wait_for(lock, *next - clock_->now());
            } else {
              cv_.wait(lock);
            }
            continue;
          }
        }
        runOne();
      }
    });
  }
}

void WriteQueue::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
}

}  // namespace flowlb::controller::k8s

// A sorted list that successive views share: its entries live in immutable
// chunks of about kChunk, held by shared_ptr. A view made from the previous
// one with a few entries replaced, added or taken out (edit()) copies the
// chunk pointers and rebuilds only the chunks those entries are in, so an
// endpoint change costs the size of the change, not of the cluster (issue
// 13: each new view copied and later freed every one of 10,000 entries).
//
// Reads are as from a sorted vector: size(), operator[], forward iteration,
// find() by key in O(log n). The key of an entry is given by a KeyOf
// functor (KeyOf()(entry) returns something comparable with <).
#pragma once

#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace flowlb::controller {

template <class T, class KeyOf>
class SharedList {
 public:
  static constexpr size_t kChunk = 64;
  using Chunk = std::vector<T>;
  using value_type = T;

  SharedList() = default;
  SharedList(std::initializer_list<T> items) : SharedList(Chunk(items)) {}
  // From entries already sorted by key.
  explicit SharedList(Chunk sorted) {
    for (size_t i = 0; i < sorted.size(); i += kChunk) {
      const size_t end = std::min(sorted.size(), i + kChunk);
      append(std::make_shared<const Chunk>(std::make_move_iterator(sorted.begin() + i),
                                           std::make_move_iterator(sorted.begin() + end)));
    }
  }

  size_t size() const { return ends_.empty() ? 0 : ends_.back(); }
  bool empty() const { return size() == 0; }
  const T& operator[](size_t i) const {
    const size_t c = std::upper_bound(ends_.begin(), ends_.end(), i) - ends_.begin();
    return (*chunks_[c])[i - (c == 0 ? 0 : ends_[c - 1])];
  }

  class const_iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = const T*;
    using reference = const T&;
    const_iterator() = default;
    const_iterator(const SharedList* l, size_t chunk, size_t at) : l_(l), chunk_(chunk), at_(at) {}
    reference operator*() const { return (*l_->chunks_[chunk_])[at_]; }
    pointer operator->() const { return &**this; }
    const_iterator& operator++() {
      if (++at_ == l_->chunks_[chunk_]->size()) {
        ++chunk_;
        at_ = 0;
      }
      return *this;
    }
    const_iterator operator++(int) {
      const_iterator old = *this;
      ++*this;
      return old;
    }
    bool operator==(const const_iterator& o) const { return chunk_ == o.chunk_ && at_ == o.at_; }

   private:
    const SharedList* l_ = nullptr;
    size_t chunk_ = 0, at_ = 0;
  };
  const_iterator begin() const { return {this, 0, 0}; }
  const_iterator end() const { return {this, chunks_.size(), 0}; }

  // The entry with this key, or nullptr.
  template <class K>
  const T* find(const K& key) const {
    const KeyOf key_of;
    // The first chunk whose last entry is not below the key.
    auto c = std::lower_bound(
        chunks_.begin(), chunks_.end(), key,
        [&](const std::shared_ptr<const Chunk>& ch, const K& k) { return key_of(ch->back()) < k; });
    if (c == chunks_.end()) return nullptr;
    auto it = std::lower_bound((*c)->begin(), (*c)->end(), key,
                               [&](const T& e, const K& k) { return key_of(e) < k; });
    return it != (*c)->end() && !(key < key_of(*it)) ? &*it : nullptr;
  }

  // Appends an entry whose key is above every other (tests build lists so).
  void push_back(T item) {
    if (chunks_.empty() || chunks_.back()->size() >= kChunk) {
      append(std::make_shared<const Chunk>(Chunk{std::move(item)}));
      return;
    }
    auto last = std::make_shared<Chunk>(*chunks_.back());
    last->push_back(std::move(item));
    chunks_.back() = std::move(last);
    ++ends_.back();
  }

  // A copy with these entries put in place of those with the same key (a
  // nullopt takes the key's entry out). `puts` is sorted by key, one per
  // key. Chunks no put falls in are shared with this list.
  template <class K>
  SharedList edit(const std::vector<std::pair<K, std::optional<T>>>& puts) const {
    const KeyOf key_of;
    SharedList out;
    out.chunks_.reserve(chunks_.size() + 1);
    out.ends_.reserve(chunks_.size() + 1);
    size_t p = 0;
    for (size_t c = 0; c < chunks_.size(); ++c) {
      const Chunk& ch = *chunks_[c];
      // The puts that fall in this chunk: up to its last key, and for the
      // last chunk every one left (keys above all others are appended).
      size_t q = p;
      const bool last = c + 1 == chunks_.size();
      while (q < puts.size() && (last || !(key_of(ch.back()) < puts[q].first))) ++q;
      if (q == p) {
        out.append(chunks_[c]);
        continue;
      }
      Chunk merged;
      merged.reserve(ch.size() + (q - p));
      auto e = ch.begin();
      for (; p < q; ++p) {
        const auto& [key, item] = puts[p];
        for (; e != ch.end() && key_of(*e) < key; ++e) merged.push_back(*e);
        if (e != ch.end() && !(key < key_of(*e))) ++e;  // replaced or taken out
        if (item) merged.push_back(*item);
      }
      merged.insert(merged.end(), e, ch.end());
      out.appendSplit(std::move(merged));
    }
    if (chunks_.empty()) {
      Chunk added;
      for (const auto& [key, item] : puts) {
        if (item) added.push_back(*item);
      }
      out.appendSplit(std::move(added));
    }
    return out;
  }

  // How many chunks it has, and how many of them `o` holds too (tests).
  size_t chunks() const { return chunks_.size(); }
  size_t chunksSharedWith(const SharedList& o) const {
    size_t n = 0;
    for (const auto& c : chunks_) {
      n += std::find(o.chunks_.begin(), o.chunks_.end(), c) != o.chunks_.end();
    }
    return n;
  }

  friend bool operator==(const SharedList& a, const SharedList& b) {
    if (a.size() != b.size()) return false;
    if (a.chunks_ == b.chunks_) return true;
    return std::equal(a.begin(), a.end(), b.begin());
  }

 private:
  void append(std::shared_ptr<const Chunk> c) {
    if (c->empty()) return;
    ends_.push_back(size() + c->size());
    chunks_.push_back(std::move(c));
  }
  // A rebuilt chunk: split when it grew past two chunks' worth; joined to
  // the one before when it shrank to a few entries (removals).
  void appendSplit(Chunk c) {
    if (!c.empty() && c.size() < kChunk / 4 && !chunks_.empty() &&
        chunks_.back()->size() + c.size() <= 2 * kChunk) {
      Chunk joined(*chunks_.back());
      joined.insert(joined.end(), std::make_move_iterator(c.begin()),
                    std::make_move_iterator(c.end()));
      chunks_.pop_back();
      ends_.pop_back();
      c = std::move(joined);
    }
    if (c.size() <= 2 * kChunk) {
      append(std::make_shared<const Chunk>(std::move(c)));
      return;
    }
    for (size_t i = 0; i < c.size(); i += kChunk) {
      const size_t end = c.size() - i < 2 * kChunk ? c.size() : i + kChunk;
      append(std::make_shared<const Chunk>(std::make_move_iterator(c.begin() + i),
                                           std::make_move_iterator(c.begin() + end)));
      if (end == c.size()) break;
    }
  }

  std::vector<std::shared_ptr<const Chunk>> chunks_;  // none empty
  std::vector<size_t> ends_;                          // entries up to and including each chunk
};

}  // namespace flowlb::controller

#include "controller/distribution/shared_list.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>

namespace flowlb::controller {
namespace {

struct Item {
  int key;
  std::string value;
  bool operator==(const Item&) const = default;
};
struct KeyOfItem {
  int operator()(const Item& i) const { return i.key; }
};
using List = SharedList<Item, KeyOfItem>;
using Puts = std::vector<std::pair<int, std::optional<Item>>>;

void expectSame(const List& l, const std::map<int, std::string>& want) {
  ASSERT_EQ(l.size(), want.size());
  size_t i = 0;
  auto w = want.begin();
  for (const Item& it : l) {
    ASSERT_EQ(it.key, w->first) << "at " << i;
    ASSERT_EQ(it.value, w->second);
    if (i % 37 == 0) {
      ASSERT_EQ(l[i].key, it.key);
    }
    ++i;
    ++w;
  }
  for (const auto& [k, v] : want) {
    const Item* f = l.find(k);
    ASSERT_NE(f, nullptr) << k;
    EXPECT_EQ(f->value, v);
  }
}

// Random edits (puts, replacements, removals, runs of new keys that split
// chunks, removals that empty them) give the same list as a std::map.
TEST(SharedListTest, EditsAgreeWithASortedMap) {
  std::mt19937 rng(7);
  std::map<int, std::string> want;
  List l;
  for (int round = 0; round < 300; ++round) {
    std::map<int, std::optional<Item>> puts;
    const int n = static_cast<int>(rng() % 200) + 1;
    const int base = static_cast<int>(rng() % 5000);
    const bool dense = rng() % 4 == 0;  // many keys in one chunk's range
    for (int i = 0; i < n; ++i) {
      const int k = dense ? base + i : static_cast<int>(rng() % 5000);
      if (rng() % 3 == 0) {
        puts[k] = std::nullopt;
      } else {
        puts[k] = Item{k, std::to_string(round)};
      }
    }
    Puts sorted(puts.begin(), puts.end());
    l = l.edit(sorted);
    for (const auto& [k, item] : sorted) {
      if (item) {
        want[k] = item->value;
      } else {
        want.erase(k);
      }
    }
    ASSERT_NO_FATAL_FAILURE(expectSame(l, want)) << "round " << round;
    EXPECT_EQ(l.find(-1), nullptr);
    EXPECT_EQ(l.find(1 << 20), nullptr);
  }
  // Chunks stay near their size: not one per entry after many removals.
  EXPECT_LE(l.chunks(), want.size() / 8 + 2);
}

// One entry changed in 10,000: the new list shares every chunk but one
// with the old, and the old is unchanged (views before it keep reading it).
TEST(SharedListTest, AnEditRebuildsOnlyTheChunkItTouches) {
  std::vector<Item> items;
  for (int k = 0; k < 10000; ++k) items.push_back({k * 2, "a"});
  const List before{std::vector<Item>(items)};
  const List after = before.edit(Puts{{5000, Item{5000, "b"}}});
  EXPECT_EQ(after.chunks(), before.chunks());
  EXPECT_EQ(after.chunksSharedWith(before), before.chunks() - 1);
  EXPECT_EQ(after.find(5000)->value, "b");
  EXPECT_EQ(before.find(5000)->value, "a");
  const List added = before.edit(Puts{{5001, Item{5001, "new"}}, {10000, std::nullopt}});
  EXPECT_EQ(added.size(), before.size());
  EXPECT_EQ(added.chunksSharedWith(before), before.chunks() - 2);
  EXPECT_NE(added.find(5001), nullptr);
  EXPECT_EQ(added.find(10000), nullptr);
  EXPECT_FALSE(added == before);
  EXPECT_TRUE(before.edit(Puts{}) == before);
}

}  // namespace
}  // namespace flowlb::controller

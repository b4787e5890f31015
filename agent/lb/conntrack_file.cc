// Conntrack in a file that outlives the process (issue 15): the layout, its
// header and the checks a restarted agent runs before it adopts a table.
//
//   [ header, 4 KiB ][ signatures: 4 B x slots, padded to 4 KiB ][ entries ]
//
// The file is mapped shared, so the workers' ordinary writes are the
// persistence: nothing is copied or flushed on the packet path. A table is
// adopted only when every field that gives its bytes a meaning matches
// (layout, sizes, seed, worker, SNAT range, boot); then every occupied slot
// is checked (key kind, state, the slot its hash allows, the peer link), and
// what fails is freed, so a torn write or a corrupt file costs flows, never
// a crash (agent/fuzz/conntrack_adopt_fuzz.cc feeds it garbage).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "agent/lb/conntrack.h"
#include "common/unique_fd.h"

namespace flowlb::agent {
namespace {

constexpr char kMagic[8] = {'F', 'L', 'O', 'W', 'L', 'B', 'C', 'T'};
// 2: the SNAT ports are shared out between workers by port % workers
// (agent/lb/snat_ports.h), no longer in blocks; a version 1 table is the
// same only for a single worker.
constexpr uint32_t kVersion = 2;
constexpr size_t kHeaderBytes = 4096;

// Everything that gives the bytes of an entry their meaning.
constexpr uint64_t layoutHash() {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (uint64_t v :
       {sizeof(FlowKey), sizeof(FlowEntry), offsetof(FlowEntry, last_seen_ms),
        offsetof(FlowEntry, timeout_ms), offsetof(FlowEntry, backend), offsetof(FlowEntry, peer),
        offsetof(FlowEntry, nat_port), offsetof(FlowEntry, state), offsetof(FlowEntry, flags),
        uint64_t{ConnTrack::kWays}, uint64_t{static_cast<uint8_t>(FlowKind::kKernelReply)},
        uint64_t{static_cast<uint8_t>(FlowState::kAffinity)}}) {
    h = (h ^ v) * 0x100000001b3ULL;
  }
  return h;
}

struct FileHeader {
  char magic[8];
  uint32_t version;
  uint32_t header_bytes;
  uint64_t layout;
  uint64_t buckets;
  uint64_t seed;
  uint32_t worker;
  uint32_t workers;
  uint16_t snat_port_min;
  uint16_t snat_port_max;
  uint32_t pad;
  char boot_id[40];
  uint64_t check;  // over the bytes above
};
static_assert(sizeof(FileHeader) <= kHeaderBytes);

uint64_t checkOf(const FileHeader& h) {
  return hashBytes(&h, offsetof(FileHeader, check), 0x5eed);
}

size_t sigBytes(size_t slots) {
  return (slots * sizeof(uint32_t) + kHeaderBytes - 1) / kHeaderBytes * kHeaderBytes;
}

// Why an existing header cannot be adopted, or nullptr.
const char* mismatch(const FileHeader& h, size_t buckets, const ConntrackOwner& o) {
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0) return "not a flowlb conntrack file";
  if (checkOf(h) != h.check) return "its header is corrupt";
  if (h.version == 1 && o.workers > 1) return "its SNAT ports are shared out the old way";
  if ((h.version != kVersion && h.version != 1) || h.header_bytes != kHeaderBytes ||
      h.layout != layoutHash()) {
    return "it was written by an agent with another entry layout";
  }
  if (h.buckets != buckets) return "its capacity differs (--conntrack-entries changed)";
  if (h.worker != o.worker || h.workers != o.workers) return "the number of workers changed";
  if (h.snat_port_min != o.snat_port_min || h.snat_port_max != o.snat_port_max) {
    return "the SNAT port range changed";
  }
  if (std::strncmp(h.boot_id, o.boot_id.c_str(), sizeof h.boot_id) != 0) {
    return "it is from another boot (its timestamps mean nothing now)";
  }
  return nullptr;
}

}  // namespace

Result<std::unique_ptr<ConnTrack>> ConnTrack::openFile(const std::string& path, size_t capacity,
                                                       uint64_t seed, const ConntrackOwner& owner,
                                                       ConntrackAdoption* adoption) {
  ConntrackAdoption local;
  ConntrackAdoption& a = adoption ? *adoption : local;
  a = {};
  const size_t buckets = bucketsFor(capacity);
  const size_t slots = buckets * kWays;
  const size_t bytes = kHeaderBytes + sigBytes(slots) + slots * sizeof(FlowEntry);

  const UniqueFd file(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  const int fd = file.get();
  if (fd < 0) {
    return Status::error("cannot open conntrack file " + path + ": " + std::strerror(errno));
  }
  struct stat st {};
  FileHeader h{};
  bool adopt = false;
  if (fstat(fd, &st) == 0 && st.st_size > 0) {
    if (static_cast<size_t>(st.st_size) != bytes) {
      a.why_not = "its size does not match this capacity and layout";
    } else if (pread(fd, &h, sizeof h, 0) != static_cast<ssize_t>(sizeof h)) {
      a.why_not = "its header cannot be read";
    } else if (const char* why = mismatch(h, buckets, owner)) {
      a.why_not = why;
    } else {
      adopt = true;
    }
  }
  if (!adopt) {
    // A fresh table: truncating gives zeroed pages (zero signatures: free).
    if (ftruncate(fd, 0) != 0 || ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
      const int err = errno;
      return Status::error("cannot size conntrack file " + path + ": " + std::strerror(err));
    }
    std::memset(&h, 0, sizeof h);
    std::memcpy(h.magic, kMagic, sizeof kMagic);
    h.version = kVersion;
    h.header_bytes = kHeaderBytes;
    h.layout = layoutHash();
    h.buckets = buckets;
    h.seed = seed;
    h.worker = owner.worker;
    h.workers = owner.workers;
    h.snat_port_min = owner.snat_port_min;
    h.snat_port_max = owner.snat_port_max;
    std::strncpy(h.boot_id, owner.boot_id.c_str(), sizeof h.boot_id - 1);
    h.check = checkOf(h);
  }
  void* map = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int map_err = errno;  // the mapping keeps the file once `file` closes it
  if (map == MAP_FAILED) {
    return Status::error("cannot map conntrack file " + path + ": " + std::strerror(map_err));
  }
  std::unique_ptr<ConnTrack> ct(new ConnTrack());
  ct->bucket_count_ = buckets;
  ct->seed_ = h.seed;
  ct->map_ = map;
  ct->map_bytes_ = bytes;
  ct->sigs_ = reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(map) + kHeaderBytes);
  ct->entries_ =
      reinterpret_cast<FlowEntry*>(static_cast<uint8_t*>(map) + kHeaderBytes + sigBytes(slots));
  if (adopt) {
    a.discarded = ct->sanitize();
    a.adopted = true;
    a.entries = ct->size_;
  } else {
    std::memcpy(map, &h, sizeof h);
  }
  return ct;
}

size_t ConnTrack::sanitize() {
  const size_t n = bucket_count_ * kWays;
  size_t freed = 0;
  const auto kill = [&](size_t i) {
    sigs_[i] = 0;
    std::memset(static_cast<void*>(&entries_[i]), 0, sizeof(FlowEntry));
    ++freed;
  };
  // Each slot on its own: a sane key in a slot its hash allows.
  for (size_t i = 0; i < n; ++i) {
    if (sigs_[i] == 0) continue;
    FlowEntry& e = entries_[i];
    const auto kind = static_cast<uint8_t>(e.key.kind);
    const auto state = static_cast<uint8_t>(e.state);
    const uint64_t h = hash(e.key);
    const size_t bucket = i / kWays;
    const bool placed = bucket == bucketOf(h) || bucket == altBucketOf(h);
    if (kind < 1 || kind > static_cast<uint8_t>(FlowKind::kKernelReply) || state == 0 ||
        state > static_cast<uint8_t>(FlowState::kAffinity) || e.key.zero != 0 ||
        sigs_[i] != signature(h) || !placed || (e.peer != kNoPeer && e.peer >= n)) {
      kill(i);
    }
  }
  // Then the links, until nothing changes: a reply and its forward entry
  // point at each other; a reply alone, or a link to a freed or unrelated
  // slot, is freed (and with it, next round, what still pointed at it).
  for (bool changed = true; changed;) {
    const size_t before = freed;
    for (size_t i = 0; i < n; ++i) {
      if (sigs_[i] == 0) continue;
      const FlowEntry& e = entries_[i];
      if (e.peer == kNoPeer) {
        if (isReplyKind(e.key.kind)) kill(i);
        continue;
      }
      const FlowEntry& p = entries_[e.peer];
      const bool linked =
          sigs_[e.peer] != 0 && p.peer == i && isReplyKind(e.key.kind) != isReplyKind(p.key.kind);
      if (!linked) kill(i);
    }
    changed = freed != before;
  }
  size_ = 0;
  for (size_t i = 0; i < n; ++i) size_ += sigs_[i] != 0;
  return freed;
}

}  // namespace flowlb::agent

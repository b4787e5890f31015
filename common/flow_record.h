// One NAT flow as the LB nodes share it (issue 15, docs/flow-sync.md): the
// wire record of flow sync, packed in FlowSyncBatch.records. An agent sends
// a record when one of its VIP-sourced NAT flows is answered (upsert) and
// when it closes (delete); the controller checks and relays it to the other
// agents, which adopt the flow if the VIP comes to them. The format is fixed
// size and versioned by FlowSyncBatch.format, so a batch is checked and
// decoded without allocation per record.
//
// Layout (kFlowRecordBytes = 64, multi-byte fields in network order):
//   0 op (1 upsert, 2 delete)   1 IP protocol (6, 17)   2 flags (kFlowRecord*)
//   3 zero                      4 PROXY protocol sequence origin (u32)
//   8 client address (16)      24 VIP (16)              40 backend (16)
//  56 client port  58 VIP port  60 backend port  62 SNAT port (source port
//     the backend sees, with the VIP as source address)
// Addresses are 16 bytes, IPv4 mapped (::ffff:a.b.c.d); all three are of
// one family.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/ip_addr.h"
#include "common/status.h"

namespace flowlb {

inline constexpr uint32_t kFlowRecordFormat = 1;
inline constexpr size_t kFlowRecordBytes = 64;

// FlowRecord::flags.
inline constexpr uint8_t kFlowRecordProxyV2 = 0x1;  // a PROXY v2 header went to the backend
inline constexpr uint8_t kFlowRecordKnownFlags = kFlowRecordProxyV2;

enum class FlowRecordOp : uint8_t { kUpsert = 1, kDelete = 2 };

struct FlowRecord {
  FlowRecordOp op = FlowRecordOp::kUpsert;
  uint8_t proto = 0;
  uint8_t flags = 0;
  uint32_t proxy_seq = 0;
  IpAddr client, vip, backend;
  uint16_t client_port = 0, vip_port = 0, backend_port = 0, nat_port = 0;
};

bool operator==(const FlowRecord& a, const FlowRecord& b);

// Writes the record's 64 bytes at `p`.
void encodeFlowRecord(const FlowRecord& r, uint8_t* p);
// Appends the record's 64 bytes to `out`.
void appendFlowRecord(std::string* out, const FlowRecord& r);
// Decodes and checks the 64 bytes at `p`: nullptr when well formed, else
// why not. Never allocates.
const char* decodeFlowRecord(const uint8_t* p, FlowRecord* out);

// Decodes a batch: its length a multiple of 64 and at most `max_records`
// records, each well formed (known op, TCP or UDP, known flags, one family,
// no zero port or unspecified address). Any fault refuses the whole batch
// with the record and the reason: a batch is applied whole or not at all.
Result<std::vector<FlowRecord>> decodeFlowRecords(std::string_view bytes, size_t max_records);

}  // namespace flowlb

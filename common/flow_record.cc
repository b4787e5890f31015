#include "common/flow_record.h"

#include <cstring>

namespace flowlb {
namespace {

void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void put32(uint8_t* p, uint32_t v) {
  put16(p, static_cast<uint16_t>(v >> 16));
  put16(p + 2, static_cast<uint16_t>(v));
}
uint16_t get16(const uint8_t* p) {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}
uint32_t get32(const uint8_t* p) {
  return (uint32_t{get16(p)} << 16) | get16(p + 2);
}
bool unspecified(const IpAddr& a) {
  if (a.isV4()) return a.v4()[0] == 0 && a.v4()[1] == 0 && a.v4()[2] == 0 && a.v4()[3] == 0;
  for (uint8_t b : a.bytes) {
    if (b != 0) return false;
  }
  return true;
}

// Why a record is refused, or nullptr.
}  // namespace

const char* decodeFlowRecord(const uint8_t* p, FlowRecord* r) {
  if (p[0] != static_cast<uint8_t>(FlowRecordOp::kUpsert) &&
      p[0] != static_cast<uint8_t>(FlowRecordOp::kDelete)) {
    return "unknown op";
  }
  if (p[1] != 6 && p[1] != 17) return "protocol is neither TCP nor UDP";
  if ((p[2] & ~kFlowRecordKnownFlags) != 0) return "unknown flags";
  if (p[3] != 0) return "reserved byte set";
  r->op = static_cast<FlowRecordOp>(p[0]);
  r->proto = p[1];
  r->flags = p[2];
  r->proxy_seq = get32(p + 4);
  std::memcpy(r->client.bytes.data(), p + 8, 16);
  std::memcpy(r->vip.bytes.data(), p + 24, 16);
  std::memcpy(r->backend.bytes.data(), p + 40, 16);
  r->client_port = get16(p + 56);
  r->vip_port = get16(p + 58);
  r->backend_port = get16(p + 60);
  r->nat_port = get16(p + 62);
  if (r->client.isV4() != r->vip.isV4() || r->vip.isV4() != r->backend.isV4()) {
    return "addresses of different families";
  }
  if (unspecified(r->client) || unspecified(r->vip) || unspecified(r->backend)) {
    return "unspecified address";
  }
  if (r->client_port == 0 || r->vip_port == 0 || r->backend_port == 0 || r->nat_port == 0) {
    return "zero port";
  }
  return nullptr;
}

bool operator==(const FlowRecord& a, const FlowRecord& b) {
  return a.op == b.op && a.proto == b.proto && a.flags == b.flags && a.proxy_seq == b.proxy_seq &&
         a.client == b.client && a.vip == b.vip && a.backend == b.backend &&
         a.client_port == b.client_port && a.vip_port == b.vip_port &&
         a.backend_port == b.backend_port && a.nat_port == b.nat_port;
}

void appendFlowRecord(std::string* out, const FlowRecord& r) {
  uint8_t p[kFlowRecordBytes];
  encodeFlowRecord(r, p);
  out->append(reinterpret_cast<const char*>(p), sizeof p);
}

void encodeFlowRecord(const FlowRecord& r, uint8_t* p) {
  std::memset(p, 0, kFlowRecordBytes);
  p[0] = static_cast<uint8_t>(r.op);
  p[1] = r.proto;
  p[2] = r.flags;
  put32(p + 4, r.proxy_seq);
  std::memcpy(p + 8, r.client.bytes.data(), 16);
  std::memcpy(p + 24, r.vip.bytes.data(), 16);
  std::memcpy(p + 40, r.backend.bytes.data(), 16);
  put16(p + 56, r.client_port);
  put16(p + 58, r.vip_port);
  put16(p + 60, r.backend_port);
  put16(p + 62, r.nat_port);
}

Result<std::vector<FlowRecord>> decodeFlowRecords(std::string_view bytes, size_t max_records) {
  if (bytes.size() % kFlowRecordBytes != 0) {
    return Status::error("flow records: " + std::to_string(bytes.size()) +
                         " bytes is not a whole number of " + std::to_string(kFlowRecordBytes) +
                         "-byte records");
  }
  const size_t n = bytes.size() / kFlowRecordBytes;
  if (n > max_records) {
    return Status::error("flow records: " + std::to_string(n) + " records, more than the " +
                         std::to_string(max_records) + " a batch may carry");
  }
  std::vector<FlowRecord> out(n);
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  for (size_t i = 0; i < n; ++i) {
    if (const char* why = decodeFlowRecord(p + i * kFlowRecordBytes, &out[i])) {
      return Status::error("flow record " + std::to_string(i) + ": " + why);
    }
  }
  return out;
}

}  // namespace flowlb

// Benchmark traffic tool (not part of flowlb):
//   xdp_traffic gen IFACE DST_MAC SRC_IP DST_IP DPORT SECONDS FLOWS [syn]
//     sends 64-byte UDP frames (or, with "syn", TCP SYNs: a SYN flood) out
//     of IFACE as fast as the kernel's live-frames BPF_PROG_RUN allows
//     (FLOWS distinct flows; 0: a new flow per packet, from ever new source
//     addresses and ports) and prints "sent N pps P".
//   xdp_traffic sink IFACE SECONDS
//     counts and drops what arrives on IFACE (native XDP) and prints the
//     rate of each 250 ms interval: "rate PPS".
//   xdp_traffic pass IFACE SECONDS
//     a native XDP_PASS program on IFACE for SECONDS (gives a veth NAPI).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench/bpf_counter.h"

namespace {

using flowlb::bench::readCounter;

volatile sig_atomic_t g_stop = 0;
void onSignal(int) {
  g_stop = 1;
}

std::string objectPath() {
  char exe[4096] = {};
  if (readlink("/proc/self/exe", exe, sizeof exe - 1) < 0) return "traffic.o";
  std::string dir(exe);
  return dir.substr(0, dir.rfind('/')) + "/flowlb_bench_traffic.o";
}

// The program's rodata: `flows` then the 60-byte frame template.
struct Rodata {
  uint32_t flows;
  uint32_t pad;
  uint8_t tmpl[64];
};

struct bpf_object* open(uint32_t flows, const uint8_t* tmpl = nullptr) {
  struct bpf_object* obj = bpf_object__open_file(objectPath().c_str(), nullptr);
  if (libbpf_get_error(obj)) return nullptr;
  struct bpf_map* m = nullptr;
  bpf_object__for_each_map(m, obj) {
    std::string name = bpf_map__name(m);
    if (name.size() > 7 && name.substr(name.size() - 7) == ".rodata") {
      size_t size = 0;
      const void* init = bpf_map__initial_value(m, &size);
      std::vector<uint8_t> rodata(static_cast<const uint8_t*>(init),
                                  static_cast<const uint8_t*>(init) + size);
      if (size < sizeof(Rodata)) return nullptr;
      std::memcpy(rodata.data(), &flows, 4);
      if (tmpl != nullptr) std::memcpy(rodata.data() + offsetof(Rodata, tmpl), tmpl, 60);
      bpf_map__set_initial_value(m, rodata.data(), size);
    }
  }
  if (bpf_object__load(obj) != 0) return nullptr;
  return obj;
}

int gen(char** a, bool syn) {
  const unsigned ifindex = if_nametoindex(a[0]);
  unsigned mac[6];
  if (ifindex == 0 || sscanf(a[1], "%x:%x:%x:%x:%x:%x", &mac[0], &mac[1], &mac[2], &mac[3], &mac[4],
                             &mac[5]) != 6) {
    fprintf(stderr, "bad interface or MAC\n");
    return 2;
  }
  const double seconds = atof(a[5]);
  // Ethernet + IPv4 + UDP + 18 bytes of payload = 60 bytes (64 with FCS);
  // the buffer is 64 so the program can copy the template in 8-byte words.
  uint8_t f[64] = {};
  for (int i = 0; i < 6; ++i) f[i] = static_cast<uint8_t>(mac[i]);
  f[6] = 0x02;
  f[12] = 0x08;
  f[14] = 0x45;
  f[16] = 0;
  f[17] = syn ? 40 : 46;  // IP total length
  f[22] = 64;
  f[23] = syn ? 6 : 17;
  inet_pton(AF_INET, a[2], &f[26]);
  inet_pton(AF_INET, a[3], &f[30]);
  uint32_t sum = 0;
  for (int i = 14; i < 34; i += 2) sum += static_cast<uint32_t>(f[i] << 8 | f[i + 1]);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  f[24] = static_cast<uint8_t>(~sum >> 8);
  f[25] = static_cast<uint8_t>(~sum);
  const int dport = atoi(a[4]);
  f[36] = static_cast<uint8_t>(dport >> 8);
  f[37] = static_cast<uint8_t>(dport);
  if (syn) {
    f[38] = 0x5a;    // sequence number, some bytes
    f[46] = 5 << 4;  // data offset
    f[47] = 0x02;    // SYN (the TCP checksum is not kept valid: a flood)
    f[48] = 0xff;
    f[49] = 0xff;  // window
  } else {
    f[39] = 26;  // UDP length
  }
  struct bpf_object* obj = open(static_cast<uint32_t>(atoi(a[6])), f);
  if (obj == nullptr) {
    fprintf(stderr, "cannot load %s\n", objectPath().c_str());
    return 1;
  }
  struct xdp_md ctx = {};
  ctx.data_end = 64;
  ctx.ingress_ifindex = ifindex;
  const int prog = bpf_program__fd(bpf_object__find_program_by_name(obj, "flowlb_gen"));
  const auto start = std::chrono::steady_clock::now();
  uint64_t runs = 0;
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() <
         seconds) {
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = f, .data_size_in = 64, .ctx_in = &ctx,
                .ctx_size_in = sizeof ctx, .repeat = 1 << 16, .flags = BPF_F_TEST_XDP_LIVE_FRAMES,
                .batch_size = 64);
    if (bpf_prog_test_run_opts(prog, &opts) != 0) {
      perror("BPF_PROG_RUN live frames");
      return 1;
    }
    runs += 1 << 16;
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  printf("sent %llu pps %.0f\n", static_cast<unsigned long long>(readCounter(obj)),
         static_cast<double>(readCounter(obj)) / secs);
  (void)runs;
  bpf_object__close(obj);
  return 0;
}

int sink(char** a, const char* program = "flowlb_sink") {
  const unsigned ifindex = if_nametoindex(a[0]);
  struct bpf_object* obj = open(16);
  if (ifindex == 0 || obj == nullptr) {
    fprintf(stderr, "bad interface or cannot load\n");
    return 1;
  }
  const int prog = bpf_program__fd(bpf_object__find_program_by_name(obj, program));
  if (bpf_xdp_attach(static_cast<int>(ifindex), prog, XDP_FLAGS_DRV_MODE, nullptr) != 0) {
    perror("attach sink");
    return 1;
  }
  const double seconds = atof(a[1]);
  uint64_t last = readCounter(obj);
  auto t0 = std::chrono::steady_clock::now();
  signal(SIGTERM, onSignal);
  signal(SIGINT, onSignal);
  for (double t = 0; t < seconds && !g_stop; t += 0.25) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    const uint64_t now = readCounter(obj);
    const auto t1 = std::chrono::steady_clock::now();
    printf("rate %.0f\n",
           static_cast<double>(now - last) / std::chrono::duration<double>(t1 - t0).count());
    fflush(stdout);
    last = now;
    t0 = t1;
  }
  bpf_xdp_detach(static_cast<int>(ifindex), XDP_FLAGS_DRV_MODE, nullptr);
  bpf_object__close(obj);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 9 && std::string(argv[1]) == "gen") return gen(argv + 2, false);
  if (argc == 10 && std::string(argv[1]) == "gen" && std::string(argv[9]) == "syn") {
    return gen(argv + 2, true);
  }
  if (argc == 4 && std::string(argv[1]) == "sink") return sink(argv + 2);
  if (argc == 4 && std::string(argv[1]) == "pass") return sink(argv + 2, "flowlb_pass");
  fprintf(stderr,
          "usage: xdp_traffic gen IFACE DST_MAC SRC_IP DST_IP DPORT SECONDS FLOWS [syn]\n"
          "       xdp_traffic sink|pass IFACE SECONDS\n");
  return 2;
}

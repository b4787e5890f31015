/* Benchmark traffic programs (not part of flowlb).
 * flowlb_gen: run by BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES on a
 *   template UDP (or TCP SYN) frame; sets the source port (and, for a new
 *   flow per packet, the low bytes of the source address) from a counter
 *   and transmits the frame (XDP_TX). The UDP checksum is 0 (IPv4 allows
 *   it); a SYN's is left stale (a flood).
 * flowlb_sink: counts and drops the generated traffic (UDP to port 53).
 * flowlb_pass: passes everything to the kernel. */
/* libbpf's headers use the kernel's types, so they come last. */
/* clang-format off */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
/* clang-format on */

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} counter SEC(".maps");

/* Set by the tool before load. Live-frames pages are recycled without being
 * reset (and the kernel edits them on the way: TTL, MACs), so every frame
 * is rewritten from this template. */
const volatile __u32 flows = 16;   /* distinct flows; 0: a new flow per packet */
const volatile __u64 tmpl[8] = {}; /* 60 bytes used; volatile: read at run time */

SEC("xdp")
int flowlb_gen(struct xdp_md* ctx) {
  void* data = (void*)(long)ctx->data;
  void* end = (void*)(long)ctx->data_end;
  if (data + 64 > end) return XDP_ABORTED;
#pragma unroll
  for (int k = 0; k < 8; k++) ((__u64*)data)[k] = tmpl[k];
  struct ethhdr* eth = data;
  struct iphdr* ip = (void*)(eth + 1);
  struct udphdr* udp = (void*)(ip + 1);
  __u32 zero = 0;
  __u64* n = bpf_map_lookup_elem(&counter, &zero);
  if (!n) return XDP_ABORTED;
  __u64 i = (*n)++;
  if (flows != 0) i %= flows;
  udp->source = bpf_htons(1024 + (i & 0xffff) % 60000);
  /* For a new flow per packet the upper counter bits go into the low
   * 16 bits of the source address; the header checksum follows. */
  __u16 hi = (__u16)(i >> 16);
  __u16* lo = (__u16*)&ip->saddr + 1;
  __u32 csum = (__u16)~bpf_ntohs(ip->check);
  csum += (__u16)~bpf_ntohs(*lo);
  *lo = bpf_htons(bpf_ntohs(*lo) + hi);
  csum += bpf_ntohs(*lo);
  csum = (csum & 0xffff) + (csum >> 16);
  csum = (csum & 0xffff) + (csum >> 16);
  ip->check = bpf_htons(~csum & 0xffff);
  return XDP_TX;
}

SEC("xdp")
int flowlb_sink(struct xdp_md* ctx) {
  /* Only the generated traffic (IPv4 UDP to port 53) is counted and
   * dropped; ARP and the rest pass, so neighbour resolution through the
   * switch keeps working during a run. */
  void* data = (void*)(long)ctx->data;
  void* end = (void*)(long)ctx->data_end;
  struct ethhdr* eth = data;
  struct iphdr* ip = (void*)(eth + 1);
  struct udphdr* udp = (void*)(ip + 1);
  if ((void*)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != 17 ||
      ip->ihl != 5 || udp->dest != bpf_htons(53))
    return XDP_PASS;
  __u32 zero = 0;
  __u64* n = bpf_map_lookup_elem(&counter, &zero);
  if (n) *n += 1;
  return XDP_DROP;
}

/* XDP_PASS on the LB's client-side veth in the kernel cases: frames sent
 * with XDP_TX into a veth are only delivered by its NAPI, which a native
 * XDP program provides. */
SEC("xdp")
int flowlb_pass(struct xdp_md* ctx) {
  (void)ctx;
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

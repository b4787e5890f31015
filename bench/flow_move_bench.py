"""NAT flows across VIP moves (issue 15, item 2) in the lab of
e2e/test_flow_move.py: two agents with --nat-source=vip and flow sync
through the standalone controller, real backends and a client. Prints
FIGURE lines:
  nat_vip_move_flows_lost      NAT downloads that did not complete
      byte-identical across the VIP's moves, over all rounds (each round:
      an announcer change with both nodes alive, then the announcing agent
      killed; the dead node's agent is started again before the next)
  nat_vip_move_flows           how many downloads were running across them
  nat_vip_move_flows_lost_without_sync   the announcer change of one round in
      the same lab with --nat-source=node (today's default), for comparison
  conntrack_sync_bytes_per_new_flow   flow sync bytes on the wire (the
      FlowSyncBatch messages as the controller receives them) per NAT flow
      the announcing agent opened (short HTTP connections: each shared once
      answered and once closed); _record_bytes_: the records alone (64 each);
      _relayed_bytes_: what the controller sent on to the other node
  conntrack_sync_kbytes_per_s_at_10k_new_flows   the same at 10,000 new
      flows/s, per LB node (what the controller relays, times the other
      nodes)
Usage (from the repository root, as root): python3 -m bench.flow_move_bench [ROUNDS]
"""
import sys

from e2e.lib import prom
from e2e.lib.cluster_lab import AGENT_METRICS, CONTROLLER_METRICS, NODES, NODES_YAML
from e2e.lib.wait import wait_until
from e2e.test_flow_move import DOWNLOADS, MoveLab


def figure(name, value, unit):
    print(f"FIGURE {name} {value:.4g} {unit}", flush=True)


def restore(lab):
    for n in NODES:
        if not lab.running(n):
            lab.kill(n)
            lab.start_agent(n)
    lab.wait_connected(2)
    lab.write("nodes.yaml", NODES_YAML)
    lab.announcer()


def baseline():
    lab = MoveLab(nat_source="node")
    try:
        lab.up()
        first = lab.announcer()
        other = next(n for n in NODES if n != first)
        names = lab.downloads("base")
        lab.move_to(other)
        lost = len(lab.lost(names))
    finally:
        lab.down()
    figure("nat_vip_move_flows_lost_without_sync", lost, f"of {len(names)} flows")


def moves(lab, rounds):
    lost = flows = 0
    for r in range(rounds):
        restore(lab)
        first = lab.announcer()
        other = next(n for n in NODES if n != first)
        held = lab.shared(other, "others")
        names = lab.downloads(f"chg{r}")
        lab.wait_shared(other, held, DOWNLOADS, "flows shared")
        lab.move_to(other)
        lost += len(lab.lost(names))
        flows += len(names)
        # Both Ready again; the VIP stays where it is (sticky), then its node dies.
        lab.write("nodes.yaml", NODES_YAML)
        held = lab.shared(first, "others")
        names = lab.downloads(f"kill{r}")
        lab.wait_shared(first, held, DOWNLOADS, "flows shared")
        lab.kill(other)
        wait_until(lambda: lab.announcers(exclude=(other,)) == [first], 10, "failover")
        lost += len(lab.lost(names))
        flows += len(names)
    figure("nat_vip_move_flows_lost", lost, "flows")
    figure("nat_vip_move_flows", flows, "flows")


def sync_bytes(lab, connections=600):
    restore(lab)
    node = lab.announcer()

    def counters():
        ctl = lab.metrics("ctl", CONTROLLER_METRICS)
        agent = lab.metrics(node, AGENT_METRICS)  # (no series before the first flow)
        return (prom.value(agent, "flowlb_agent_flow_sync_sent_bytes_total", default=0),
                prom.value(agent, "flowlb_agent_service_new_flows_total", default=0),
                prom.value(ctl, "flowlb_controller_flow_sync_bytes_total", default=0,
                           direction="in"),
                prom.value(ctl, "flowlb_controller_flow_sync_bytes_total", default=0,
                           direction="out"))
    before = counters()
    lab.spread(lab.vip, connections)
    # Every flow's close has been shared, relayed and published (1 s ticks).
    wait_until(lambda: counters()[0] - before[0] >= 2 * 64 * connections * 0.95, 10,
               "the closes shared")
    wait_until(lambda: counters()[3] - before[3] >= 2 * 64 * connections * 0.95, 10,
               "the closes relayed")
    after = counters()
    flows = max(after[1] - before[1], 1)
    records = (after[0] - before[0]) / flows
    wire_in = (after[2] - before[2]) / flows
    wire_out = (after[3] - before[3]) / flows
    figure("conntrack_sync_bytes_per_new_flow", wire_in, "bytes")  # as the controller receives them
    figure("conntrack_sync_record_bytes_per_new_flow", records, "bytes")
    figure("conntrack_sync_relayed_bytes_per_new_flow", wire_out, "bytes (to 1 other node)")
    figure("conntrack_sync_kbytes_per_s_at_10k_new_flows", wire_in * 10000 / 1000, "kB/s per node")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    lab = MoveLab()
    try:
        lab.up()
        sync_bytes(lab)
        moves(lab, rounds)
    finally:
        lab.down()
    baseline()


if __name__ == "__main__":
    main()

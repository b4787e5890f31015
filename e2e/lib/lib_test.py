"""Tests of the shared e2e helpers: python3 -m unittest e2e.lib.lib_test"""
import os
import unittest
from unittest import mock

from e2e.lib import prom
from e2e.lib.cluster_lab import applied_states, failover_gap_ms, samples
from e2e.lib.content import expected_md5, md5, pattern
from e2e.lib.proc import lab_prefix
from e2e.lib.wait import WaitTimeout, wait_until

TEXT = """# HELP flowlb_agent_l2_announcements_total ARP/NDP
# TYPE flowlb_agent_l2_announcements_total counter
flowlb_agent_l2_announcements_total{kind="arp_reply"} 3
flowlb_agent_l2_announcements_total{kind="na_reply"} 2
flowlb_agent_xsk_frames{socket="l0:0",state="free"} 4096
flowlb_agent_xsk_frames{socket="l1:0",state="free"} 4000
flowlb_agent_xsk_frames{socket="l1:0",state="total"} 4096
flowlb_agent_config_generation 7
odd{msg="a \\"quoted\\", comma\\\\ and\\nline",b="x"} 1.5e3 1700000000000
flowlb_controller_leader{} NaN
"""


class PromTest(unittest.TestCase):
    def test_labels_are_parsed_and_matched_as_a_subset(self):
        self.assertEqual(prom.value(TEXT, "flowlb_agent_l2_announcements_total", kind="arp_reply"), 3)
        self.assertEqual(prom.value(TEXT, "flowlb_agent_l2_announcements_total"), 5)
        self.assertEqual(prom.value(TEXT, "flowlb_agent_xsk_frames", state="free"), 8096)
        self.assertEqual(prom.value(TEXT, "flowlb_agent_xsk_frames", socket="l1:0", state="free"),
                         4000)
        self.assertEqual(prom.value(TEXT, "flowlb_agent_config_generation"), 7)

    def test_escapes_commas_and_timestamps(self):
        (s,) = prom.select(TEXT, "odd")
        self.assertEqual(s.labels, {"msg": 'a "quoted", comma\\ and\nline', "b": "x"})
        self.assertEqual(s.value, 1500)
        self.assertEqual(prom.value(TEXT, "odd", b="x"), 1500)

    def test_a_name_is_not_a_prefix(self):
        self.assertEqual(prom.select(TEXT, "flowlb_agent_xsk"), [])

    def test_absent_series_raise(self):
        with self.assertRaises(prom.MetricAbsent):
            prom.value(TEXT, "flowlb_agent_nothing")
        with self.assertRaises(prom.MetricAbsent):
            prom.value(TEXT, "flowlb_agent_l2_announcements_total", kind="gratuitous")
        with self.assertRaises(prom.MetricAbsent):
            prom.value("", "flowlb_agent_config_generation")

    def test_garbage_is_an_error(self):
        with self.assertRaises(prom.ParseError):
            prom.parse("this is not a sample line at all\n")
        with self.assertRaises(prom.ParseError):
            prom.parse('x{a="1",b} 2\n')


class WaitTest(unittest.TestCase):
    def test_returns_the_truthy_value(self):
        calls = []
        self.assertEqual(wait_until(lambda: calls.append(1) or len(calls) >= 3 and "done", 5, "x",
                                    interval=0), "done")
        self.assertEqual(len(calls), 3)

    def test_raises_with_what_the_last_value_and_context(self):
        with self.assertRaises(WaitTimeout) as err:
            wait_until(lambda: 0, 0.05, "the answer", interval=0.01, context=lambda: "log tail")
        self.assertIsInstance(err.exception, AssertionError)
        for part in ("the answer", "0.05", "last: 0", "log tail"):
            self.assertIn(part, str(err.exception))

    def test_ignored_exceptions_are_retried_and_reported_others_propagate(self):
        def absent():
            raise prom.MetricAbsent("no series x")
        with self.assertRaises(WaitTimeout) as err:
            wait_until(absent, 0.05, "x", interval=0.01, ignore=(prom.MetricAbsent,))
        self.assertIn("MetricAbsent: no series x", str(err.exception))
        with self.assertRaises(ZeroDivisionError):
            wait_until(lambda: 1 / 0, 5, "x", ignore=(prom.MetricAbsent,))


class PrefixTest(unittest.TestCase):
    def test_default_and_override(self):
        with mock.patch.dict(os.environ, {"FLOWLB_E2E_PREFIX": ""}):
            self.assertEqual(lab_prefix("flbe2e"), "flbe2e")
        with mock.patch.dict(os.environ, {"FLOWLB_E2E_PREFIX": "ann"}):
            self.assertEqual(lab_prefix("flbe2e"), "ann-flbe2e")
        for bad in ("a b", "x;rm", "a-b", "x" * 17):
            with mock.patch.dict(os.environ, {"FLOWLB_E2E_PREFIX": bad}):
                with self.assertRaises(ValueError):
                    lab_prefix("flbe2e")


class ContentAndLogsTest(unittest.TestCase):
    def test_pattern(self):
        self.assertEqual(pattern(4), bytes([3, 10, 17, 24]))
        self.assertEqual(pattern(3, start=36), bytes([255, 6, 13]))
        self.assertEqual(pattern(40000)[16384:], pattern(40000 - 16384, start=16384))
        self.assertEqual(expected_md5(1000), md5(pattern(1000)))

    def test_applied_lines_and_loop_samples(self):
        log = ("[..] [info] event=desired_state_applied generation=5 services=1 backends=3 announced=1\n"
               "[..] [info] event=desired_state_applied generation=9 services=2 refused=1 backends=7 "
               "announced=0\n")
        got = applied_states(log)
        self.assertEqual([(a.generation, a.services, a.refused, a.backends, a.announced) for a in got],
                         [(5, 1, 0, 3, 1), (9, 2, 1, 7, 0)])
        out = "[1.0, 1.01, \"b1\"]\n[1.1, 1.2, null]\n[1.3, 1.31, \"b2\"]\nTraceback? no\n"
        s = samples(out)
        self.assertEqual(len(s), 3)
        self.assertAlmostEqual(failover_gap_ms(s, 1.05), 300, places=3)


if __name__ == "__main__":
    unittest.main()

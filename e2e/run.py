"""Runs e2e suites, optionally in a random order, from the repository root.

    python3 -m e2e.run [--shuffle SEED|random] [--list] NAME...

NAME is anything `python3 -m unittest` takes (e2e.test_datapath,
e2e.test_cluster.ClusterTest, e2e.test_cluster.ClusterTest.test_x). With
--shuffle the classes run in a random order and the tests of each class in a
random order, so a test that depends on another one's leftovers fails; a
class stays together so its shared lab (setUpClass) is built once. The seed is
printed first; the same seed gives the same order. Exit code 0 if every test
passed.
"""
import argparse
import random
import sys
import unittest


def flatten(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from flatten(t)
        else:
            yield t


def ordered(tests, seed):
    """Tests grouped by class, in declaration order or shuffled with `seed`."""
    by_class = {}
    for t in tests:
        by_class.setdefault(type(t), []).append(t)
    groups = list(by_class.values())
    if seed is not None:
        rng = random.Random(seed)
        rng.shuffle(groups)
        for g in groups:
            rng.shuffle(g)
    return [t for g in groups for t in g]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m e2e.run", description=__doc__.split("\n")[0])
    ap.add_argument("--shuffle", metavar="SEED", help="an integer, or 'random' for a new one")
    ap.add_argument("--list", action="store_true", help="print the order and exit")
    ap.add_argument("names", nargs="+")
    args = ap.parse_args(argv)
    seed = None
    if args.shuffle is not None:
        seed = random.SystemRandom().randrange(1 << 31) if args.shuffle == "random" \
            else int(args.shuffle)
        print(f"e2e.run: shuffled with seed {seed} (again: python3 -m e2e.run --shuffle {seed} "
              f"{' '.join(args.names)})", flush=True)
    tests = ordered(flatten(unittest.defaultTestLoader.loadTestsFromNames(args.names)), seed)
    if args.list:
        for t in tests:
            print(t.id())
        return 0
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(unittest.TestSuite(tests))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())

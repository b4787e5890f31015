"""The base of every suite that shares one lab between its tests: the lab
is built by make_lab(), brought up once for the class (as root only; a
set-up that fails takes it down again before raising), and taken down
after the last test. Subclasses may add their own start in prepare(), and
collect FIGURE lines in `figures`, printed once the lab is down."""
import os
import sys
import unittest


class LabTest(unittest.TestCase):
    lab = None
    figures = None  # a list of FIGURE lines the tests fill

    @classmethod
    def make_lab(cls):
        raise NotImplementedError

    @classmethod
    def prepare(cls):
        """After the lab is up: the suite's own set-up (services, waits)."""

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (network namespaces, XDP)")
        cls.lab = cls.make_lab()
        try:
            cls.lab.up()
            cls.prepare()
        except BaseException:
            cls.lab.down()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.lab.down()
        for f in cls.figures or []:
            print(f, file=sys.stderr)

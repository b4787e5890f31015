"""Whether the running test has failed, seen from its tearDown.

tearDown dumps logs only when the test failed. Python 3.11 no longer clears
`_outcome.success` when the test body fails (only for subtests): it records
the failure in the result instead, so reading `success` alone never printed
a log. This reads both.
"""


def test_failed(case):
    outcome = getattr(case, "_outcome", None)
    if outcome is None:
        return False
    if not getattr(outcome, "success", True):
        return True
    result = getattr(outcome, "result", None)
    for kind in ("errors", "failures", "unexpectedSuccesses"):
        for entry in getattr(result, kind, None) or []:
            test = entry[0] if isinstance(entry, tuple) else entry
            if test is case or getattr(test, "test_case", None) is case:
                return True
    return False

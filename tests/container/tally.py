"""Pass/fail tally shared by the container and manifest checks.

Owns: printing one line per check and the closing `LABEL: N passed, M
failed` line that the test command reads. Must not: decide what is checked.
"""

from __future__ import annotations

passed = 0
failed = 0


def check(name: str, ok: bool, detail: str = "") -> bool:
    """Record and print one check; returns ``ok``."""
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name}" + (f": {detail}" if detail else ""))
    return ok


def summary(label: str) -> int:
    """Print the closing line; the exit status (1 if anything failed)."""
    print(f"{label}: {passed} passed, {failed} failed")
    return 1 if failed else 0

"""Counts kept by the hostile-input sweep, printed at the end of the run (tests/conftest.py)."""

from collections import Counter

COUNTS: Counter = Counter()
FAILURES: list[str] = []


def summary_lines() -> list[str]:
    if not COUNTS:
        return []
    lines = [
        "requests tried: {tried}; refused as expected: {refused}; accepted: {accepted}; 5xx: {server_error}; "
        "leaks: {leak}; refused but wrote rows: {wrote_on_refusal}; unescaped HTML: {unescaped}; "
        "hostile value accepted: {accepted_hostile}".format_map({k: COUNTS.get(k, 0) for k in (
            "tried", "refused", "accepted", "server_error", "leak", "wrote_on_refusal", "unescaped", "accepted_hostile",
        )})
    ]
    if FAILURES:
        lines.append(f"{len(FAILURES)} problems (each once):")
        lines += [f"  {line}" for line in sorted(set(FAILURES))]
    return lines

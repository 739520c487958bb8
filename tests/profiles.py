"""Field-by-field comparison of a served profile with the oracle's, with clear failures."""

from __future__ import annotations

import math
from typing import Any

# Money is summed in a different order by the engine (per batch) and the oracle (per
# customer): the float sums can differ in the last bits, and round(2) can then differ
# by a cent at a .xx5 boundary.
MONEY = 0.011
RELATIVE = 1e-6


def _close(a: Any, b: Any, path: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        problems = []
        if set(a) != set(b):
            problems.append(f"{path}: keys {sorted(set(a) ^ set(b))} differ")
        for key in set(a) & set(b):
            problems += _close(a[key], b[key], f"{path}.{key}")
        return problems
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {a!r} != {b!r}"]
        return [
            p
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for p in _close(x, y, f"{path}[{i}]")
        ]
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, int | float) and isinstance(b, int | float):
            tolerance = max(MONEY, RELATIVE * max(abs(a), abs(b)))
            if math.isclose(a, b, rel_tol=RELATIVE, abs_tol=tolerance):
                return []
        return [f"{path}: {a!r} != {b!r}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def assert_profile_matches(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every field of ``expected`` equals ``actual``'s (anonymous ids as sets)."""
    actual = dict(actual)
    expected = dict(expected)
    actual["anonymous_ids"] = sorted(actual.get("anonymous_ids", []))
    expected["anonymous_ids"] = sorted(expected.get("anonymous_ids", []))
    problems = _close(actual, expected, expected.get("id", "profile"))
    assert not problems, "profile differs from the oracle:\n  " + "\n  ".join(sorted(problems))

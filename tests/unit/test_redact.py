"""Dead letters are redacted with an email pattern linear in the payload's length
(``privacy/redact.py``). It must find exactly what the plain pattern found: compared here
on random texts over the characters that decide a match, and on the hostile shapes that
made the plain one quadratic."""

from __future__ import annotations

import random
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from cdpulse.privacy.redact import _EMAIL, redact

# The plain pattern: every start position of a run tried, and the run rescanned from it.
PLAIN = re.compile(r"[^\s\"'<>@,;:\\]+@[^\s\"'<>@,;:\\]+\.[A-Za-z]{2,}")
# Letters and digits, the separators, and what a domain needs.
ALPHABET = "ab9Z.@ \t\"'<>,;:\\+-_[{é"


def test_the_same_matches_as_the_plain_pattern_on_random_texts() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40)))
        assert _EMAIL.sub("[email]", text) == PLAIN.sub("[email]", text), text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(ALPHABET), max_size=60))
def test_the_same_matches_as_the_plain_pattern_on_generated_texts(text: str) -> None:
    assert [m.span() for m in _EMAIL.finditer(text)] == [m.span() for m in PLAIN.finditer(text)]


def test_hostile_shapes_redact_as_before() -> None:
    shapes = [
        "9" * 4000,
        "[" * 4096,
        "a@" * 2000,
        "x" * 3000 + "@" + "y" * 1000,
        "x" * 2000 + "@" + "b." * 1000 + "com",
        ("bob" * 300 + "@example.org ") * 3,
    ]
    for text in shapes:
        assert _EMAIL.sub("[email]", text) == PLAIN.sub("[email]", text)
    assert redact("mail " + "a" * 3000 + "@example.org now") == "mail [email] now"

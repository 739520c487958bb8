"""Hostile input, seeded: valid events mutated into every shape a careless or malicious
client sends, and HTTP bodies to match.

Some mutations stay valid (an id in right-to-left script is still an id); the contract
decides, and the oracle follows it. Every mutated copy gets fresh event and profile ids,
so it neither collides with its original nor links visitors the original did not.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

Event = dict[str, Any]

NASTY_TEXT = (
    "\u202eevil",  # right-to-left override
    "a\u200db",  # zero-width joiner
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # a family emoji, five code points
    "e\u0301",  # a combining accent
    "\uffff\ufffe",  # noncharacters
    "\ufeff",  # a byte-order mark
    "x\u2028y\u2029",  # line and paragraph separators
    "\U0010ffff",
    "\U0001d54f\u16a0",
    "'; DROP TABLE profiles; --",
    "{x}",
    "*",
    "a:b:{c}",
    "../../etc/passwd",
    "%00",
    " ",
    '"\\',
    "<script>alert(1)</script>",
    "\u0130\u0131\u00df",  # case mappings that change length
)
NASTY_NUMBERS: tuple[Any, ...] = (
    -1,
    0,
    5,
    -0.0,
    5e-324,
    1e13,
    1.7976931348623157e308,
    2**64,
    -(2**63),
    "12.50",
    True,
    None,
    [],
    {},
)
# Raw JSON number literals that no json.dumps writes. Integers stay under Python's
# 4300-digit limit here: longer ones are their own test (test_hostile_input.py).
NUMBER_LITERALS = (b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"1e-400", b"9" * 4000)
BAD_UTF8 = (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf4\x90\x80\x80", b"\x80")
NUMBER_FIELDS = ("price", "revenue", "amount", "quantity", "cart_value")
IDS = ("event_id", "customer_id", "anonymous_id")


def nasty_value(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value, biased to the ones that break parsers and validators."""
    kind = rng.randrange(6 if depth < 3 else 4)
    if kind == 0:
        return rng.choice(NASTY_NUMBERS)
    if kind == 1:
        return rng.choice(NASTY_TEXT)
    if kind == 2:
        return rng.choice((None, True, False, ""))
    if kind == 3:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(1, 40)))
    if kind == 4:
        return [nasty_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(NASTY_TEXT): nasty_value(rng, depth + 1) for _ in range(rng.randrange(4))}


class Mutator:
    """Turns valid events into hostile raw messages, one seeded kind at a time."""

    def __init__(self, seed: int, exclude: tuple[str, ...] = ()) -> None:
        self.rng = random.Random(seed)
        self.made = 0
        kinds: dict[str, Callable[[Event], bytes]] = {
            "wrong_type": self.wrong_type,
            "unicode_ids": self.unicode_ids,
            "deep_nesting": self.deep_nesting,
            "number_literal": self.number_literal,
            "duplicate_keys": self.duplicate_keys,
            "bad_utf8": self.bad_utf8,
            "truncated": self.truncated,
            "escaped_surrogate": self.escaped_surrogate,
            "noise": self.noise,
            "not_an_event": self.not_an_event,
        }
        self.kinds = {name: make for name, make in kinds.items() if name not in exclude}

    def __call__(self, event: Event, kind: str | None = None) -> tuple[str, bytes]:
        """A hostile raw message made from ``event`` (left unchanged), and its kind."""
        kind = kind or self.rng.choice(sorted(self.kinds))
        copy: Event = json.loads(json.dumps(event))
        self.made += 1
        copy["event_id"] = f"{copy['event_id']}-h{self.made}"
        for field in ("customer_id", "anonymous_id"):
            if field in copy:  # fresh ids: a mutant never joins or links a real profile
                copy[field] = f"{copy[field]}-h{self.made}"
        return kind, self.kinds[kind](copy)

    def _encode(self, event: Event) -> bytes:
        return json.dumps(event, ensure_ascii=self.rng.random() < 0.5).encode("utf-8")

    def _value_for(self, name: str) -> Any:
        value = nasty_value(self.rng)
        if name in IDS and isinstance(value, str):
            # still unique: the engine drops a repeated event_id only within one profile
            value = f"{value}-{self.made}"
        return value

    def wrong_type(self, event: Event) -> bytes:
        target = event if self.rng.random() < 0.5 else event.setdefault("properties", {})
        name = self.rng.choice(sorted(target) or ["x"])
        target[name] = self._value_for(name)
        return self._encode(event)

    def unicode_ids(self, event: Event) -> bytes:
        nasty = self.rng.choice(NASTY_TEXT)
        event["event_id"] = f"{nasty}{self.made}"
        for field in ("customer_id", "anonymous_id"):
            if field in event:
                event[field] = f"{nasty}-{field}-{self.made}"
        for field in ("product_id", "category", "url", "query"):
            if field in event.get("properties", {}):
                event["properties"][field] = self.rng.choice(NASTY_TEXT)
        return self._encode(event)

    def deep_nesting(self, event: Event) -> bytes:
        depth = self.rng.choice((50, 900, 5_000, 200_000))
        nested = b"[" * depth + b"]" * depth
        raw = self._encode({**event, "context": "@"})
        return raw.replace(b'"@"', nested, 1) if self.rng.random() < 0.7 else nested

    def number_literal(self, event: Event) -> bytes:
        properties = event.get("properties", {})
        field = next((f for f in NUMBER_FIELDS if f in properties), None)
        literal = self.rng.choice(NUMBER_LITERALS)
        if field is None:
            event["timestamp"] = "@"
        else:
            properties[field] = "@"
        return self._encode(event).replace(b'"@"', literal, 1)

    def duplicate_keys(self, event: Event) -> bytes:
        raw = self._encode(event)
        name = self.rng.choice(("type", "event_id", "customer_id", "timestamp", "properties"))
        again = json.dumps({name: self._value_for(name)})[1:-1].encode()
        # the duplicate goes first or last: json keeps the last one
        if self.rng.random() < 0.5:
            return b"{" + again + b"," + raw[1:]
        return raw[:-1] + b"," + again + b"}"

    def bad_utf8(self, event: Event) -> bytes:
        raw = self._encode(event)
        at = self.rng.randrange(len(raw))
        return raw[:at] + self.rng.choice(BAD_UTF8) + raw[at:]

    def truncated(self, event: Event) -> bytes:
        raw = self._encode(event)
        return raw[: self.rng.randrange(len(raw))]

    def escaped_surrogate(self, event: Event) -> bytes:
        field = self.rng.choice(("event_id", "customer_id", "anonymous_id", "channel"))
        event[field] = "@"
        lone = self.rng.choice((b'"\\ud800"', b'"x\\udfff"', b'"\\udc00\\ud800"'))
        return self._encode(event).replace(b'"@"', lone, 1)

    def noise(self, event: Event) -> bytes:
        return bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 300)))

    def not_an_event(self, event: Event) -> bytes:
        return json.dumps(nasty_value(self.rng)).encode()

    def large(self, event: Event, size: int) -> bytes:
        """``event`` padded to about ``size`` bytes with one long string."""
        event = {**event, "context": {"user_agent": "@"}}
        raw = self._encode(event)
        return raw.replace(b'"@"', b'"' + b"A" * max(0, size - len(raw)) + b'"', 1)

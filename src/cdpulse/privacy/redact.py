"""Redaction of personal values from text that must be kept for debugging (dead letters).

A dead letter keeps its raw payload so that an operator can see why it was rejected;
that payload need not keep an email address or phone number. The payload may be
broken JSON, so this works on text: the values of personal fields by name, and
anything shaped like an email address or an international phone number anywhere.

>>> redact('{"traits": {"email": "Alice@Example.com", "phone": "030 1234567"}, "t": 1767225600000}')
'{"traits": {"email": "[redacted]", "phone": "[redacted]"}, "t": 1767225600000}'
>>> redact('note: call +49 30 1234567 or mail bob@example.org on 2026-01-01')
'note: call [phone] or mail [email] on 2026-01-01'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# What an address's two halves may hold.
_PART = r"[^\s\"'<>@,;:\\]"
# Linear in the text's length, which a dead letter's hostile payload chooses: a match
# starts only where a run of such characters begins (the lookbehind), and that run is
# taken whole (``++``, never given back). The plain ``[...]+@`` tried every position of
# a run and rescanned the rest from each: a 4,096-character run without an ``@`` (a
# number of 4,000 digits, a deep nesting of brackets) took 0.16 s, and a batch of such
# dead letters held the worker's loop for seconds. It matches what it matched: the
# leftmost start of any match is where its run begins.
_EMAIL = re.compile(rf"(?<!{_PART}){_PART}++@{_PART}+\.[A-Za-z]{{2,}}")
_PHONE = re.compile(r"\+\d[\d ().\-/]{5,}\d")
# A JSON number, true or false (not inside a string: a string value is matched first).
_SCALAR = r"(?:-?\d[\d.eE+\-]*|true|false)"


def redact(text: str, fields: Iterable[str] = ("email", "phone")) -> str:
    """``text`` with the values of ``fields`` (strings, and numbers or booleans: a phone
    sent as a number is still a phone), email addresses and international phone numbers
    replaced by placeholders.

    >>> redact('{"phone": 4915112345678, "email": true, "n": 3}')
    '{"phone": "[redacted]", "email": "[redacted]", "n": 3}'
    """
    for name in fields:
        key = rf'("{re.escape(name)}"\s*:\s*)'
        text = re.sub(key + r'"(?:[^"\\]|\\.)*"', r'\1"[redacted]"', text)
        text = re.sub(key + _SCALAR, r'\1"[redacted]"', text)
    return _PHONE.sub("[phone]", _EMAIL.sub("[email]", text))

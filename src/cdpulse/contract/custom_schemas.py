"""The operators' JSON Schemas for custom events: one file per event name, checked at start-up.

A folder (``CDPULSE_CUSTOM_EVENT_SCHEMAS``) holds ``<name>.json`` for each custom event
name whose ``properties`` must follow a schema; other names stay free-form, and files not
ending in ``.json`` are not read. Every file is checked when a role starts: a file name
that is no custom event name, text that is not JSON, a schema its own meta-schema refuses
or a ``$ref`` out of the file (nothing is fetched: another file or a URL) stops the
process with the file's path and the fix. ``validation`` then dead-letters a registered
event that violates its schema (``schema_violation``) with the failing paths, named as in
the event (``'properties.price'``) and the schema's keyword and value, never the input's.

jsonschema-rs validates: ~0.2 µs for a valid event here against ~27 µs for the
pure-Python ``jsonschema``, and the worker checks every registered event it decodes.
A schema without ``$schema`` is read as Draft 2020-12; ``format`` is an annotation
only, as that draft says.

>>> schemas = CustomSchemas({"wishlist_added": {"required": ["product_id"]}})
>>> schemas.violation("wishlist_added", {"price": 3})
"custom event wishlist_added violates its schema: 'properties.product_id': is required [required]"
>>> schemas.violation("video_played", {}) is None   # no schema: free-form
True
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema_rs

from cdpulse.contract.events import custom_name_problem
from cdpulse.settings import ConfigurationError, Settings

# At most this many of an event's errors are named; the rest are counted.
ERRORS_SHOWN = 3
# A path part shaped like a field name is shown; any other is a key the sender chose (a
# trait's name may be an email address) and is shown as ``[key]``.
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


class CustomSchemaError(ConfigurationError, ValueError):
    """A schema file that does not check out: the message names the file and the fix.

    A ``ValueError`` too, as a segments or rules file's error is: the roles' start-up
    reports either the same way."""


@dataclass(frozen=True)
class CustomSchemas:
    """The registered schemas: custom event name -> JSON Schema of its ``properties``;
    ``names`` are the names registered.

    Compiled when made; raises ``CustomSchemaError`` for a schema that does not compile,
    naming its file under ``folder`` (or the name, without one).
    """

    documents: Mapping[str, Any] = field(default_factory=dict, hash=False)
    folder: str = ""
    _validators: dict[str, jsonschema_rs.Validator] = field(
        init=False, repr=False, compare=False, hash=False
    )
    # The profile rules read it for every custom event: made once.
    names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validators = {}
        for name, schema in self.documents.items():
            where = self.where(name)
            problem = custom_name_problem(name)
            if problem is not None:
                raise CustomSchemaError(
                    f"{where}: the file's name is that of its custom event, and it {problem}; "
                    "rename the file"
                )
            validators[name] = _compiled(schema, where)
        object.__setattr__(self, "_validators", validators)
        object.__setattr__(self, "names", frozenset(validators))

    @classmethod
    def load(cls, folder: str) -> CustomSchemas:
        """The schemas of the ``*.json`` files in ``folder``; none for an empty path."""
        if not folder:
            return cls()
        directory = Path(folder)
        if not directory.is_dir():
            raise CustomSchemaError(
                f"CDPULSE_CUSTOM_EVENT_SCHEMAS={folder}: no such folder; create it with one "
                "<custom event name>.json per registered event, or leave the setting empty"
            )
        documents: dict[str, Any] = {}
        for path in sorted(directory.glob("*.json")):
            try:
                documents[path.stem] = json.loads(path.read_text(encoding="utf-8"))
            except OSError as exc:
                raise CustomSchemaError(
                    f"{path}: cannot read it ({exc.strerror}); make it readable by the role"
                ) from None
            except UnicodeDecodeError as exc:
                raise CustomSchemaError(
                    f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8 JSON"
                ) from None
            except json.JSONDecodeError as exc:
                raise CustomSchemaError(
                    f"{path}: line {exc.lineno}, column {exc.colno}: not JSON ({exc.msg}); "
                    "a schema file holds one JSON Schema object"
                ) from None
        return cls(documents, str(directory))

    @classmethod
    def from_settings(cls, settings: Settings) -> CustomSchemas:
        return cls.load(settings.custom_event_schemas)

    def where(self, name: str) -> str:
        """The file of ``name``'s schema, for messages."""
        return str(Path(self.folder) / f"{name}.json") if self.folder else f"schema {name!r}"

    def violation(self, name: str, properties: Any) -> str | None:
        """Why ``properties`` violate the schema registered for ``name``, or None (also
        when ``name`` has none). Names paths and the schema's expectation, never a value."""
        validator = self._validators.get(name)
        if validator is None or validator.is_valid(properties):
            return None
        schema = self.documents[name]
        errors = [e for e in validator.iter_errors(properties) if not _spurious(e)]
        shown = "; ".join(_describe(e, schema) for e in errors[:ERRORS_SHOWN])
        more = f" (+{len(errors) - ERRORS_SHOWN} more)" if len(errors) > ERRORS_SHOWN else ""
        return f"custom event {name} violates its schema: {shown}{more}"

    def __bool__(self) -> bool:
        return bool(self._validators)


def _compiled(schema: Any, where: str) -> jsonschema_rs.Validator:
    """The validator of ``schema``; raises CustomSchemaError naming ``where`` and the fix."""
    if not isinstance(schema, dict | bool):
        raise CustomSchemaError(
            f"{where}: a schema is a JSON object (or true/false), got {type(schema).__name__}"
        )
    try:
        jsonschema_rs.meta.validate(schema)
        # offline: a $ref is resolved within the file only; nothing is fetched at run time.
        return jsonschema_rs.validator_for(schema, offline=True)
    except jsonschema_rs.ValidationError as exc:
        at = _schema_path(exc.instance_path)
        raise CustomSchemaError(
            f"{where}: not a valid JSON Schema at {at}: {exc.message.splitlines()[0]}; "
            "fix it (Draft 2020-12 unless its $schema says otherwise; a $ref must point "
            "inside the file)"
        ) from None
    except Exception as exc:  # the library's other refusals (a regex it cannot compile)
        raise CustomSchemaError(f"{where}: the schema does not compile: {exc}; fix it") from None


def _schema_path(parts: list[str | int]) -> str:
    return "/" + "/".join(str(p) for p in parts) if parts else "its root"


def _describe(error: jsonschema_rs.ValidationError, schema: Any) -> str:
    """One error as ``'properties.path': what the schema wants [keyword]``."""
    keyword = error.kind.name
    path: list[str | int] = ["properties", *error.instance_path]
    if keyword == "required":
        # The missing property's name is the schema's (its ``required`` list), not the input's.
        missing = getattr(error.kind, "property", None)
        if isinstance(missing, str):
            return f"{field_path([*path, missing])!r}: is required [required]"
    expected = _at(schema, error.schema_path)
    wants = "" if expected is _NOTHING else f" {_shown(expected)}"
    return f"{field_path(path)!r}: does not satisfy {keyword!r}{wants} [{keyword}]"


def _spurious(error: jsonschema_rs.ValidationError) -> bool:
    """A ``required`` error for a property that is there: jsonschema-rs 0.61 adds one
    beside ``additionalProperties: false`` refusing a required property the schema does
    not list. The verdict stands (the other error); the path would mislead."""
    missing = getattr(error.kind, "property", None)
    return (
        error.kind.name == "required"
        and isinstance(error.instance, dict)
        and (missing in error.instance)
    )


def field_path(parts: Sequence[str | int]) -> str:
    """``parts`` as a dotted path that never quotes a key the sender chose (``[key]``);
    every rejection's detail names its fields so."""
    return ".".join(
        str(part) if isinstance(part, int) or _FIELD_NAME.fullmatch(part) else "[key]"
        for part in parts
    )


_NOTHING = object()


def _at(schema: Any, parts: list[str | int]) -> Any:
    """The schema's value at ``parts`` (a keyword's), or ``_NOTHING`` when the path leads
    through a ``$ref`` or elsewhere the document does not spell out."""
    node = schema
    for part in parts:
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            node = node[part]
            continue
        if not (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            return _NOTHING
        node = node[part]
    return node


def _shown(value: Any) -> str:
    """The schema's own value, short: the operator's text, never the sender's."""
    text = json.dumps(value, ensure_ascii=True, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."

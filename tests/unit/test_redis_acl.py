"""The Redis ACL allow-list (``store/acl.py``) and ``cdpulse redis-acl``. What the ACL
lets the roles do and what it refuses is checked against a real Redis in
``tests/integration/test_privacy.py`` and ``tests/integration/test_cli.py``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources

import pytest

from cdpulse.cli.main import main
from cdpulse.settings import Settings, get_settings
from cdpulse.store import acl


def _lua_calls() -> set[str]:
    called: set[str] = set()
    for entry in resources.files("cdpulse.store").iterdir():
        if entry.name.endswith(".lua"):
            text = entry.read_text(encoding="utf-8")
            called.update(re.findall(r"redis\.p?call\(\s*['\"]([A-Za-z]+)['\"]", text))
            # A command named by a variable could not be checked against the list.
            assert not re.search(r"redis\.p?call\(\s*[^'\"\s]", text), entry.name
    return {name.lower() for name in called}


def test_the_lua_list_is_what_the_scripts_call() -> None:
    assert set(acl.LUA) == _lua_calls()


def test_the_rules_deny_everything_then_allow_commands_one_by_one() -> None:
    rules = acl.rules(["shop"])
    assert rules[:3] == ["~shop:*", "resetchannels", "-@all"]
    allowed = rules[3:]
    assert allowed == [f"+{command}" for command in acl.COMMANDS]
    assert len(set(allowed)) == len(allowed)
    assert not any(rule.startswith("+@") for rule in allowed)  # no category


def test_glob_characters_in_a_prefix_are_matched_literally() -> None:
    assert acl.rules(["a*b", r"c\d"])[:2] == [r"~a\*b:*", r"~c\\d:*"]


def test_a_prefix_with_whitespace_is_refused_naming_the_prefix() -> None:
    with pytest.raises(ValueError, match="'a b' holds whitespace"):
        acl.rules(["a b"])


def test_setuser_starts_from_nothing_and_names_every_prefix_once() -> None:
    settings = Settings(redis_prefix="live")
    command = acl.setuser_command(settings, "cdp", "#ab", also=["rebuilt", "live"])
    assert command[:6] == ["ACL", "SETUSER", "cdp", "reset", "on", "#ab"]
    assert [r for r in command if r.startswith("~")] == ["~live:*", "~rebuilt:*"]
    without = acl.setuser_command(settings, "cdp", None)
    assert not any(r.startswith((">", "#", "nopass")) for r in without)


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("CDPULSE_REDIS_USERNAME", "CDPULSE_REDIS_PASSWORD", "CDPULSE_REDIS_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_the_cli_prints_the_password_hashed_never_the_settings_secret(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("CDPULSE_REDIS_USERNAME", "cdp")
    environment.setenv("CDPULSE_REDIS_PASSWORD", "settings-secret")
    environment.setenv("ACL_PASSWORD", "env-secret")
    assert main(["redis-acl", "--password-env", "ACL_PASSWORD"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ACL SETUSER cdp reset on #")
    assert acl.hashed_password("env-secret") in out
    assert "secret" not in out

    assert main(["redis-acl"]) == 0
    printed = capsys.readouterr()
    assert "settings-secret" not in printed.out and "#" not in printed.out
    assert "nobody can log in as 'cdp'" in printed.err


@pytest.mark.parametrize(
    ("args", "variables", "error"),
    [
        ([], {}, "no user: pass --user NAME or set CDPULSE_REDIS_USERNAME"),
        (["--user", "a b"], {}, "--user 'a b': Redis user names hold no spaces"),
        (["--user", "u", "--password-env", "UNSET_PW"], {}, "--password-env UNSET_PW: the"),
        (["--user", "u"], {"CDPULSE_REDIS_PREFIX": "my shop"}, "'my shop' holds whitespace"),
    ],
)
def test_cli_errors_name_the_input_and_the_fix(
    environment: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    variables: dict[str, str],
    error: str,
) -> None:
    environment.delenv("UNSET_PW", raising=False)
    for name, value in variables.items():
        environment.setenv(name, value)
    assert main(["redis-acl", *args]) == 2
    assert error in capsys.readouterr().err

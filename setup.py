"""cdpulse's build: pure Python, or with its hot core compiled by mypyc.

``pip install .`` builds the pure package (and ``pip install -e .`` the editable one that
``make venv`` makes for development and the test suite). With ``CDPULSE_COMPILE=1`` the
modules below are compiled with mypyc into C extensions beside their sources:
``make compiled`` (the bench's and the image's build) does it with
``pip install --no-build-isolation``, because mypyc type-checks them against the
installed dependencies (msgspec, pydantic, ...) under the ``[tool.mypy]`` settings.

Why mypyc: the worker's CPU per event is spread over a dozen pure stages, none above a
quarter, so no single change cuts it by a third (BENCHMARKS.md). The core is typed and
``mypy --strict`` clean, and mypyc turns exactly such code into C that calls its own
functions and reads its own dataclasses natively: -21% CPU per event in-process for the
modules below. Modules defining msgspec structs (``profile/model.py``,
``contract/mirror.py``, ...) stay interpreted: mypyc would compile a struct into a native
class, which msgspec does not accept. So do the adapters (faust, redis, aiokafka): their
time is in those libraries.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

# The worker's per-event path and the recommender's, by package (``src/cdpulse/``).
COMPILED = [
    "profile/dedupe.py",
    "profile/windows.py",
    "profile/rules.py",
    "profile/send_hours.py",
    "profile/custom.py",
    "profile/limits.py",
    "profile/view.py",  # the item events' context (its cart), ~0.4 per event
    "privacy/consent.py",  # ``allows``: ~2 calls per event from the compiled stages
    "kpis/fold.py",
    "kpis/distinct.py",
    "kpis/sessions.py",
    "kpis/tally.py",
    "triggers/situations.py",
    "triggers/engine.py",
    "triggers/decide.py",
    "triggers/caps.py",
    "pipeline/stages.py",
    "pipeline/identity.py",
    "pipeline/outputs.py",
    "models/churn/features.py",
    "models/churn/labels.py",
    "models/churn/scoring.py",
    "models/send_time.py",
    "models/next_purchase.py",
    # The recommender's learner and lists (the learner role, and the api's lists): -20%
    # CPU per item event learned, -10% per list (python -m cdpulse.bench.reco_cost).
    # Its pickled classes (Recommender, Ranker, Folded, Leaders) stay ordinary classes
    # (``mypyc_attr(native_class=False)``): their snapshots read the same in either build.
    "models/reco/candidates.py",
    "models/reco/covisitation.py",
    "models/reco/examples.py",
    "models/reco/trending.py",
    "models/reco/ranker.py",
    "models/reco/recommender.py",
    "models/reco/leaders.py",
]


def compiled() -> bool:
    return os.environ.get("CDPULSE_COMPILE", "").lower() in {"1", "true", "yes"}


# The commands that build extensions. pip runs setup.py for the metadata first
# (egg_info, dist_info), which needs none: mypyc's type check is not run for those.
BUILDS = {"build", "build_ext", "bdist_wheel", "install", "develop", "editable_wheel"}


def ext_modules() -> list[object]:
    if not compiled() or not BUILDS & set(sys.argv[1:]):
        return []
    from mypyc.build import mypycify

    return list(mypycify([f"src/cdpulse/{path}" for path in COMPILED]))


setup(ext_modules=ext_modules())

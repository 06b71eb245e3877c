"""The model of whole nights (tests/model/nights.py), bounded for `make test`: a few short sequences of nights
with faults, kills, damage and repairs, each step checked against the model. `make soak` runs the same machine
for as long as asked (tests/model/soak.py)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.model.nights import machine_factory, strict_sandbox

BOUNDED = settings(max_examples=int(os.environ.get("NIGHTS_EXAMPLES", "2")),
                   stateful_step_count=int(os.environ.get("NIGHTS_STEPS", "3")), deadline=None, database=None,
                   suppress_health_check=list(HealthCheck), print_blob=True)


@pytest.fixture(scope="module")
def model_sandbox():
    with strict_sandbox() as handle:
        yield handle


@pytest.mark.timeout(600)
def test_whole_nights_follow_the_model(model_sandbox):
    run_state_machine_as_test(machine_factory(model_sandbox, seed=int(os.environ.get("NIGHTS_SEED", "2112"))),
                              settings=BOUNDED)

"""Fault injection for `/users/track`: 5xx, latency, applied-then-5xx, connection resets, 429 storms.

Each request draws its faults from one `random.Random(seed)`, one draw per enabled fault in a fixed
order, so the same sequence of requests meets the same faults on every run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FAIL_STATUSES = (502, 503, 504)
APPLIED_THEN_FAIL_STATUSES = (502, 504)


@dataclass(frozen=True, slots=True)
class Decision:
    """The faults one request meets; all falsy means a normal answer."""

    latency_s: float = 0.0
    reset: bool = False
    storm: bool = False
    fail_status: int = 0
    applied_then_fail_status: int = 0


NO_FAULT = Decision()


class Faults:
    """Fault rates (probabilities per request), changeable while the server runs."""

    def __init__(
        self,
        fail_rate: float = 0.0,
        applied_then_fail_rate: float = 0.0,
        reset_rate: float = 0.0,
        storm_rate: float = 0.0,
        latency_ms: int = 0,
        seed: int = 0,
    ) -> None:
        self.fail_rate = self.applied_then_fail_rate = self.reset_rate = self.storm_rate = 0.0
        self.latency_ms = 0
        self.configure(
            fail_rate=fail_rate,
            applied_then_fail_rate=applied_then_fail_rate,
            reset_rate=reset_rate,
            storm_rate=storm_rate,
            latency_ms=latency_ms,
            seed=seed,
        )

    def configure(self, **settings) -> None:
        """Change some rates; a `seed` restarts the random sequence."""
        for name in ("fail_rate", "applied_then_fail_rate", "reset_rate", "storm_rate"):
            if settings.get(name) is not None:
                value = float(settings[name])
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{name} must be a probability in [0, 1]")
                setattr(self, name, value)
        if settings.get("latency_ms") is not None:
            if int(settings["latency_ms"]) < 0:
                raise ValueError("latency_ms must be >= 0")
            self.latency_ms = int(settings["latency_ms"])
        if settings.get("seed") is not None:
            self.rng = random.Random(int(settings["seed"]))

    def settings(self) -> dict:
        """The current rates, JSON-ready."""
        return {
            "fail_rate": self.fail_rate,
            "applied_then_fail_rate": self.applied_then_fail_rate,
            "reset_rate": self.reset_rate,
            "storm_rate": self.storm_rate,
            "latency_ms": self.latency_ms,
        }

    def _hit(self, rate: float) -> bool:
        return rate > 0.0 and self.rng.random() < rate

    def decide(self) -> Decision:
        """Draw this request's faults."""
        if not (
            self.fail_rate
            or self.applied_then_fail_rate
            or self.reset_rate
            or self.storm_rate
            or self.latency_ms
        ):
            return NO_FAULT
        reset = self._hit(self.reset_rate)
        storm = self._hit(self.storm_rate)
        fail = self.rng.choice(FAIL_STATUSES) if self._hit(self.fail_rate) else 0
        applied = self.rng.choice(APPLIED_THEN_FAIL_STATUSES) if self._hit(self.applied_then_fail_rate) else 0
        return Decision(self.latency_ms / 1000.0, reset, storm, fail, applied)

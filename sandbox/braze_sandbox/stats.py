"""Counters that tests and benchmarks read back: requests, statuses, 429s, data points, faults."""

from __future__ import annotations

from collections import Counter

FAULT_KINDS = ("fail", "applied_then_fail", "reset", "storm", "latency")


class Stats:
    """Plain counters, mutated only on the server's event-loop thread."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Back to zero."""
        self.requests = 0
        self.by_endpoint: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.throttled = 0
        self.throttled_by_endpoint: Counter[str] = Counter()
        self.data_points = 0
        self.objects: Counter[str] = Counter()
        self.faults: Counter[str] = Counter({kind: 0 for kind in FAULT_KINDS})

    def request(self, endpoint: str) -> None:
        """Count one request to a Braze endpoint (the `/_sandbox` hooks are not counted)."""
        self.requests += 1
        self.by_endpoint[endpoint] += 1

    def answered(self, endpoint: str, status: int) -> None:
        """Count one answer by status; every 429 is also counted as throttled."""
        self.by_status[str(status)] += 1
        if status == 429:
            self.throttled += 1
            self.throttled_by_endpoint[endpoint] += 1

    def to_dict(self) -> dict:
        """A JSON-ready snapshot."""
        return {
            "requests": self.requests,
            "requests_by_endpoint": dict(self.by_endpoint),
            "requests_by_status": dict(self.by_status),
            "throttled": self.throttled,
            "throttled_by_endpoint": dict(self.throttled_by_endpoint),
            "data_points": self.data_points,
            "objects": dict(self.objects),
            "faults": dict(self.faults),
        }

    def load(self, data: dict) -> None:
        """Restore a snapshot written by `to_dict` (persistence)."""
        self.requests = data.get("requests", 0)
        self.by_endpoint = Counter(data.get("requests_by_endpoint", {}))
        self.by_status = Counter(data.get("requests_by_status", {}))
        self.throttled = data.get("throttled", 0)
        self.throttled_by_endpoint = Counter(data.get("throttled_by_endpoint", {}))
        self.data_points = data.get("data_points", 0)
        self.objects = Counter(data.get("objects", {}))
        self.faults = Counter({kind: 0 for kind in FAULT_KINDS}) + Counter(data.get("faults", {}))
        for kind in FAULT_KINDS:
            self.faults.setdefault(kind, 0)

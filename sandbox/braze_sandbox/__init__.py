"""A local Braze-compatible server for tests, the demo and users' own QA.

It behaves like `/users/track` and `/users/export/ids` as braze-api.md documents them (limits,
per-object errors, rate-limit headers, 429s), stores what it accepted, counts data points, and
injects faults on demand. Start one with `start_sandbox()`, or `braze-migrate sandbox`.
"""

from braze_sandbox.cli import add_cli_arguments, run_cli
from braze_sandbox.config import SandboxConfig
from braze_sandbox.server import SandboxHandle, start_sandbox

__all__ = ["SandboxConfig", "SandboxHandle", "add_cli_arguments", "run_cli", "start_sandbox"]

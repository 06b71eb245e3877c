"""`make soak MINUTES=30 [SEED=n]`: the model of whole nights for as long as asked.

Rounds of sequences, each round seeded from the soak's seed (printed first), until the time is up. A failure
stops the soak and prints the seed of its round and the shortest failing sequence Hypothesis found (replay
it with `make soak SEED=<round seed> MINUTES=1`). The last line gives the seed, rounds, sequences, steps and
failures."""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.model.nights import Counters, machine_factory, strict_sandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--examples", type=int, default=5, help="sequences per round")
    parser.add_argument("--steps", type=int, default=12, help="most steps per sequence")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"soak: seed {seed}, {args.minutes:g} minutes, {args.examples} sequences per round, "
          f"at most {args.steps} steps each", flush=True)
    deadline = time.monotonic() + args.minutes * 60
    rounds, failures = 0, 0
    each = settings(max_examples=args.examples, stateful_step_count=args.steps, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)
    with strict_sandbox() as sandbox:
        while time.monotonic() < deadline:
            round_seed = (seed + rounds) % 2**32
            try:
                run_state_machine_as_test(machine_factory(sandbox, seed=round_seed), settings=each)
            except Exception as exc:  # noqa: BLE001 - any failure ends the soak; the shrunk sequence is in its notes
                failures += 1
                print(f"soak: FAILURE in round {rounds} (round seed {round_seed}; replay: make soak "
                      f"SEED={round_seed} MINUTES=1)", flush=True)
                traceback.print_exception(exc)
                break
            finally:
                rounds += 1
            print(f"soak: round {rounds} done, {Counters.sequences} sequences, {Counters.steps} steps, "
                  f"{(deadline - time.monotonic()) / 60:.1f} minutes left", flush=True)
    print(f"soak: seed {seed}: {rounds} rounds, {Counters.sequences} sequences, {Counters.steps} steps, "
          f"{failures} failures", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""A model of whole nights: Hypothesis' RuleBasedStateMachine drives `braze-migrate` (subprocesses, as cron
would) through nightly exports, faults, kills, damage and repairs against the sandbox, and after every step
compares the sandbox's profiles with a plain-Python model computed from the exports alone.

The model knows only the exports and which of them were accepted: attributes are those of the last accepted
export (merged over nights, as Braze keeps an attribute until it is set again), every event and purchase is
in Braze exactly once, and a user deleted through `user_deletes` is absent for good, whatever later exports
hold. Every command must end with a documented exit code and, when it is not 0, one line saying what to do;
when that line (or the run's advice) names commands, the machine runs exactly those commands, in order.

docs/testing.md explains how to run it longer (`make soak`) and how to replay a failure from its seed.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.nights import DOCUMENTED_EXITS, event, purchase

API_KEY = "model-sandbox-key"
ATTRS = ("tier", "city", "prefs", "pets[id]")  # a string, a string, a nested object, an array of objects by id
TIERS = ("gold", "silver", "bronze", "platinum")
CITIES = ("Oslo", "Lima", "Pune", "Kyiv")
MAX_ROUNDS = 8  # commands run to settle one night (advice followed); more is a defect of the advice


class Counters:
    """Sequences and steps run in this process (the soak prints them)."""

    sequences = 0
    steps = 0


def _py() -> list[str]:
    return [sys.executable, "-m", "braze_migrate.cli.main"]


class NightsMachine(RuleBasedStateMachine):
    """One state folder, one sandbox, night after night."""

    sandbox = None  # set by the test: a running sandbox handle (strict when the sandbox has that mode)

    def __init__(self):
        super().__init__()
        Counters.sequences += 1
        self.sandbox.reset()
        self.sandbox.set_faults(fail_rate=0.0, applied_then_fail_rate=0.0, reset_rate=0.0, storm_rate=0.0,
                                latency_ms=0)
        self.root = Path(tempfile.mkdtemp(prefix="nights-"))
        self.state = self.root / "state"
        self.env = {**os.environ, "BRAZE_REST_ENDPOINT": self.sandbox.url, "BRAZE_API_KEY": API_KEY,
                    "PREFECT_HOME": str(self.root / "prefect"), "BRAZE_MIGRATE_MAX_RETRY_SECONDS": "20"}
        self.night = 0
        self.export: Path | None = None
        self.users: dict[str, dict] = {}       # tonight's users export: external_id -> attributes
        self.events: dict[str, str] = {}       # every event exported so far: event_id -> external_id
        self.purchases: dict[str, str] = {}
        self.deletes_tonight: list[str] = []
        self.tier_column = "tier"              # renamed once to "Tier" (then accepted)
        # The model of Braze, from accepted exports only.
        self.expected: dict[str, dict] = {}    # external_id -> custom attributes
        self.sent_events: dict[str, str] = {}  # the events and purchases of the accepted exports
        self.sent_purchases: dict[str, str] = {}
        self.deleted: set[str] = set()
        self.next_user = 0
        self.next_occurrence = 0
        self.log: list[str] = []

    def teardown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    # --- the export ------------------------------------------------------------------------------------

    def _new_user(self, rnd: random.Random) -> str:
        eid = f"u{self.next_user:04d}"
        self.next_user += 1
        self.users[eid] = {self.tier_column: rnd.choice(TIERS), "city": rnd.choice(CITIES),
                           "prefs": {"lang": rnd.choice(("en", "fr")), "news": rnd.random() < 0.5},
                           "pets[id]": [{"id": 1, "kind": rnd.choice(("cat", "dog"))}]}
        return eid

    def _write(self) -> None:
        self.night += 1
        folder = self.root / f"night-{self.night:03d}"
        folder.mkdir(parents=True)
        with open(folder / "users.ndjson", "w") as fh:
            fh.writelines(json.dumps({"external_id": eid, **attrs}) + "\n" for eid, attrs in self.users.items())
        from tests.nights import write_night
        write_night(folder, None, [{**event(int(k[1:]), v), "event_id": k} for k, v in self.events.items()],
                    [{**purchase(int(k[1:]), v), "purchase_id": k} for k, v in self.purchases.items()],
                    self.deletes_tonight or None)
        self.export = folder

    def _accept_export(self) -> None:
        """Tonight's export was accepted and fully acknowledged: the model of Braze takes it."""
        for eid, attrs in self.users.items():
            if eid in self.deleted:
                continue
            mine = self.expected.setdefault(eid, {})
            for column, value in attrs.items():
                mine[column.removesuffix("[id]")] = value
        for eid in list(self.events.values()) + list(self.purchases.values()):
            if eid not in self.deleted:
                self.expected.setdefault(eid, {})
        for eid in self.deletes_tonight:
            self.deleted.add(eid)
            self.expected.pop(eid, None)
        self.sent_events, self.sent_purchases = dict(self.events), dict(self.purchases)

    # --- running commands --------------------------------------------------------------------------------

    def _cli(self, *args, timeout: float = 600) -> subprocess.CompletedProcess:
        done = subprocess.run([*_py(), *map(str, args)], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        self._check_exit(args, done.returncode, done.stderr)
        return done

    def _check_exit(self, args, code: int, stderr: str) -> None:
        Counters.steps += 1
        self.log.append(f"{' '.join(map(str, args[:2]))} -> {code}")
        assert "Traceback" not in stderr, stderr[-3000:]
        assert code in DOCUMENTED_EXITS, (args, code, stderr[-2000:])
        if code not in (0, 3):
            lines = [ln for ln in stderr.strip().splitlines() if not ln.startswith("[braze-migrate]")]
            assert lines, f"exit {code} without a line on stderr: {args}"
        assert "NoneType: None" not in stderr

    def _load(self, *extra: str) -> tuple[int, dict, str]:
        done = self._cli("sync", self.export, "--state", self.state, "--no-prefect", "--json", *extra)
        out = done.stdout.strip().splitlines()
        return done.returncode, (json.loads(out[-1]) if out and out[-1].startswith("{") else {}), done.stderr

    def _run_step(self, command: str) -> tuple[int, dict, str]:
        """One advised command, run as printed (plus --no-prefect --json for a load run)."""
        args = command.split()
        assert args[0] == "braze-migrate", command
        args = args[1:]
        if args[0] in ("sync", "backfill"):
            done = self._cli(*args, "--no-prefect", "--json")
            out = done.stdout.strip().splitlines()
            return done.returncode, (json.loads(out[-1]) if out and out[-1].startswith("{") else {}), done.stderr
        if args[0] == "settle":
            done = self._cli(*args, "--json")
            answer = json.loads(done.stdout.strip().splitlines()[-1])
            for step in answer.get("advice", []):  # undecided by the counts: a person checks Braze
                cmd = step["command"]
                if (" --delivered " in cmd) == self._landed(answer):
                    self._cli(*cmd.split()[1:])
            return done.returncode, {}, done.stderr
        done = self._cli(*args)
        return done.returncode, {}, done.stderr

    def _landed(self, settle_answer: dict) -> bool:
        """What a person finds in Braze's dashboard for batches `settle --check` could not decide: are all of
        tonight's events there already (the sandbox applied them when it answered applied-then-5xx)?"""
        profiles = self._profiles()
        for k, eid in self.events.items():
            if eid in self.deleted or eid not in profiles:
                continue
            when = event(int(k[1:]), eid)["time"].replace("Z", ".000Z")
            if when not in {e["time"] for e in profiles[eid].get("events", [])}:
                return False
        return True

    def _settle_night(self, code: int, summary: dict, stderr: str, *, accept_held: bool) -> None:
        """Follow the advice until the night is done (exit 0)."""
        for _ in range(MAX_ROUNDS):
            if code == 0:
                return
            if code == 4 and not accept_held:
                return
            if code == 5:
                code, summary, stderr = self._run_step(f"braze-migrate repair --state {self.state}")
                assert code == 0, stderr
                code, summary, stderr = self._load()
                continue
            steps = summary.get("advice") or []
            if not steps:  # killed, or a stop without a summary: the same command resumes
                assert code in (1, 3, 137, -9) or not summary, (code, summary)
                code, summary, stderr = self._load()
                continue
            for step in steps:
                assert "--in-doubt resend" not in step["command"], step
                code, summary, stderr = self._run_step(step["command"])
            self._weak_invariant()
        raise AssertionError(f"the advice did not finish the night in {MAX_ROUNDS} rounds: {self.log[-12:]}")

    # --- invariants --------------------------------------------------------------------------------------

    def _profiles(self) -> dict[str, dict]:
        return {p["external_id"]: p for p in self.sandbox.profiles().values() if p.get("external_id")}

    def _weak_invariant(self) -> None:
        """At any moment: no occurrence twice, no deleted user back."""
        profiles = self._profiles()
        assert not (self.deleted & set(profiles)), sorted(self.deleted & set(profiles))
        for eid, p in profiles.items():
            times = [e["time"] for e in p.get("events", [])]
            assert len(times) == len(set(times)), (eid, "an event was sent twice")
            times = [e["time"] for e in p.get("purchases", [])]
            assert len(times) == len(set(times)), (eid, "a purchase was sent twice")

    @invariant()
    def profiles_follow_the_accepted_exports(self):
        if self.export is None:
            return
        self._weak_invariant()
        profiles = self._profiles()
        assert set(profiles) == set(self.expected), (sorted(set(profiles) ^ set(self.expected))[:10], self.log[-8:])
        for eid, attrs in self.expected.items():
            got = profiles[eid].get("custom_attributes", {})
            got = {**got, "pets": sorted(got["pets"], key=lambda x: x["id"])} if "pets" in got else got
            want = {**attrs, "pets": sorted(attrs["pets"], key=lambda x: x["id"])} if "pets" in attrs else attrs
            assert got == want, (eid, got, want, self.log[-8:])
        events = {eid: sorted(e["time"] for e in p.get("events", [])) for eid, p in profiles.items()}
        want_events: dict[str, list] = {}
        for k, eid in self.sent_events.items():
            if eid not in self.deleted:
                want_events.setdefault(eid, []).append(event(int(k[1:]), eid)["time"].replace("Z", ".000Z"))
        assert {k: v for k, v in events.items() if v} == {k: sorted(v) for k, v in want_events.items()}, self.log[-8:]
        purchases = {eid: len(p.get("purchases", [])) for eid, p in profiles.items() if p.get("purchases")}
        want_p: dict[str, int] = {}
        for eid in self.sent_purchases.values():
            if eid not in self.deleted:
                want_p[eid] = want_p.get(eid, 0) + 1
        assert purchases == want_p, self.log[-8:]

    # --- rules -------------------------------------------------------------------------------------------

    @initialize(n=st.integers(3, 12), seed=st.integers(0, 2**32 - 1))
    def first_backfill(self, n, seed):
        rnd = random.Random(seed)
        for _ in range(n):
            self._new_user(rnd)
        self._add_occurrences(rnd, 4, 2)
        self._write()
        done = self._cli("backfill", self.export, "--state", self.state, "--no-prefect", "--json")
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        self._settle_night(done.returncode, summary, done.stderr, accept_held=False)
        self._accept_export()

    def _add_occurrences(self, rnd: random.Random, n_events: int, n_purchases: int) -> None:
        live = [u for u in self.users if u not in self.deleted] or list(self.users)
        for _ in range(n_events):
            self.events[f"e{self.next_occurrence}"] = rnd.choice(live)
            self.next_occurrence += 1
        for _ in range(n_purchases):
            self.purchases[f"p{self.next_occurrence}"] = rnd.choice(live)
            self.next_occurrence += 1

    @rule(seed=st.integers(0, 2**32 - 1), changes=st.integers(0, 4), new=st.integers(0, 3),
          vanish=st.integers(0, 2), n_events=st.integers(0, 6), n_purchases=st.integers(0, 3),
          deletes=st.integers(0, 2), keep_deleted=st.booleans())
    def new_night(self, seed, changes, new, vanish, n_events, n_purchases, deletes, keep_deleted):
        """Tonight's export: attribute, nested and array-of-object edits, new and vanished users, new events and
        purchases, erasures (a deleted user may stay in the export: it must not come back)."""
        rnd = random.Random(seed)
        ids = sorted(self.users)
        for eid in rnd.sample(ids, min(changes, len(ids))):
            attrs = self.users[eid]
            what = rnd.choice(("tier", "city", "prefs", "pets"))
            if what == "tier":
                attrs[self.tier_column] = rnd.choice(TIERS)
            elif what == "city":
                attrs["city"] = rnd.choice(CITIES)
            elif what == "prefs":
                attrs["prefs"] = {**attrs["prefs"], "lang": rnd.choice(("en", "fr", "de"))}
            else:
                pets = [dict(p) for p in attrs["pets[id]"]]
                if pets and rnd.random() < 0.5:
                    pets[0]["kind"] = rnd.choice(("cat", "dog", "fox"))
                else:
                    pets.append({"id": max((p["id"] for p in pets), default=0) + 1, "kind": "owl"})
                attrs["pets[id]"] = pets
        for _ in range(new):
            self._new_user(rnd)
        for eid in rnd.sample(sorted(self.users), min(vanish, max(0, len(self.users) - 2))):
            del self.users[eid]  # absence never deletes: Braze keeps the user as last acknowledged
        self._add_occurrences(rnd, n_events, n_purchases)
        alive = sorted(u for u in self.expected if u not in self.deleted)
        self.deletes_tonight = rnd.sample(alive, min(deletes, max(0, len(alive) - 2)))
        if not keep_deleted:
            for eid in self.deletes_tonight:
                self.users.pop(eid, None)
        self._write()

    def _sync_and_settle(self) -> None:
        code, summary, stderr = self._load()
        self._settle_night(code, summary, stderr, accept_held=True)
        self._accept_export()

    @precondition(lambda self: self.export is not None)
    @rule()
    def sync(self):
        self._sync_and_settle()

    @precondition(lambda self: self.export is not None and self.tier_column == "tier")
    @rule()
    def rename_a_column(self):
        """`tier` becomes `Tier` in tonight's export: held until accepted (the advice accepts it)."""
        for attrs in self.users.values():
            attrs["Tier"] = attrs.pop("tier")
        self.tier_column = "Tier"
        self._write()
        code, summary, stderr = self._load()
        assert code == 4 and "'tier'" in summary["message"] and "'Tier'" in summary["message"], (code, stderr)
        self._weak_invariant()
        self._settle_night(code, summary, stderr, accept_held=True)
        self._accept_export()

    @precondition(lambda self: self.export is not None)
    @rule(kind=st.sampled_from(["fail", "applied_then_fail", "storm", "reset"]),
          rate=st.sampled_from([0.3, 0.6, 1.0]), fault_seed=st.integers(0, 2**31))
    def sync_with_faults(self, kind, rate, fault_seed):
        """5xx, applied-then-5xx, 429 storms, resets: whatever is left, the advice finishes it, nothing doubled."""
        self.sandbox.set_faults(**{f"{kind}_rate": rate}, seed=fault_seed)
        try:
            code, summary, stderr = self._load("--max-attempts", "2")
        finally:
            self.sandbox.set_faults(fail_rate=0.0, applied_then_fail_rate=0.0, reset_rate=0.0, storm_rate=0.0)
        self._weak_invariant()
        if code == 1:
            assert summary["advice"], summary
            doubt = [b for b in summary["in_doubt"] if b["events"] + b["purchases"] and "held" in b["action"]]
            settle = [s for s in summary["advice"] if " settle " in s["command"]]
            assert bool(doubt) == bool(settle), (summary["in_doubt"], summary["advice"])
        self._settle_night(code, summary, stderr, accept_held=True)
        self._accept_export()

    @precondition(lambda self: self.export is not None)
    @rule(after=st.floats(0.2, 4.0), latency=st.sampled_from([0, 20, 80]))
    def kill_9_mid_run(self, after, latency):
        """The sync killed at a random moment (plan, load, commit or deletes), then the same command again."""
        self.sandbox.set_faults(latency_ms=latency)
        proc = subprocess.Popen([*_py(), "sync", str(self.export), "--state", str(self.state), "--no-prefect",
                                 "--json"], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            proc.wait(timeout=after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        self.sandbox.set_faults(latency_ms=0)
        self.log.append(f"sync killed after {after:.2f}s -> {proc.returncode}")
        assert "Traceback" not in err, err[-3000:]
        self._weak_invariant()
        if proc.returncode == 0:
            self._accept_export()
            return
        if proc.returncode > 0:
            self._check_exit(["sync", "(stopped)"], proc.returncode, err)
        code, summary, stderr = self._load()
        self._settle_night(code, summary, stderr, accept_held=True)
        self._accept_export()

    @precondition(lambda self: self.export is not None and (self.state / "snapshot").is_dir())
    @rule(victim=st.sampled_from(["events", "purchases", "held", "users_part"]), also_plan=st.booleans())
    def damage_then_repair(self, victim, also_plan):
        """A snapshot file lost (and maybe a committed plan file): the next run refuses (exit 5), `repair`
        rebuilds from the plans or refuses naming the plan file; restored, it rebuilds; nothing resent."""
        snap = self.state / "snapshot"
        files = sorted(snap.glob("users/part-*.parquet")) if victim == "users_part" else [snap / f"{victim}.parquet"]
        files = [f for f in files if f.exists()]
        if not files:
            return
        files[0].unlink()
        plans = sorted(self.state.glob("runs/*/plan/objects/*.parquet"))
        backup = None
        if also_plan and plans:
            backup = plans[-1].read_bytes(), plans[-1]
            plans[-1].unlink()
        code, _, stderr = self._load()
        assert code == 5, (code, stderr[-500:])
        done = self._cli("repair", "--state", self.state)
        if backup is not None:
            assert done.returncode == 5 and str(backup[1]) in done.stderr, done.stderr
            backup[1].write_bytes(backup[0])  # restored from a backup, as the line says
            done = self._cli("repair", "--state", self.state)
        assert done.returncode == 0, done.stderr
        self._sync_and_settle()

    @precondition(lambda self: self.export is not None and (self.state / "ledger.sqlite").exists())
    @rule()
    def settle_check(self):
        """`settle --check` on the last run: whatever it says, nothing changes in Braze."""
        from connectors.state.ledger import Ledger

        ledger = Ledger(self.state / "ledger.sqlite")
        try:
            runs = [r.run_id for r in ledger.runs(limit=1) if r.status == "committed"]
        finally:
            ledger.close()
        if runs:
            done = self._cli("settle", runs[0], "--check", "--state", self.state, "--json")
            assert done.returncode in (0, 1)


def machine_factory(sandbox, seed: int | None = None):
    """The machine's factory for `run_state_machine_as_test`, bound to a sandbox and, when given, a seed."""
    NightsMachine.sandbox = sandbox

    def factory():
        return NightsMachine()

    if seed is not None:
        factory._hypothesis_internal_use_seed = seed
    return factory


@contextlib.contextmanager
def strict_sandbox():
    """A sandbox of its own for the model, in its strict mode when it has one."""
    import dataclasses

    from braze_sandbox import SandboxConfig, start_sandbox

    fields = {f.name for f in dataclasses.fields(SandboxConfig)}
    with start_sandbox(SandboxConfig(api_key=API_KEY, **({"strict": True} if "strict" in fields else {}))) as handle:
        yield handle


def elapsed(start: float) -> float:
    return time.monotonic() - start

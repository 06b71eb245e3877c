"""Conformance: the optional SQLite persistence lets a sandbox survive a restart."""

from __future__ import annotations

from braze_sandbox import SandboxConfig, start_sandbox

from tests.sandbox.helpers import KEY, UNLIMITED, attrs, event, open_api, purchase


def config(path) -> SandboxConfig:
    return SandboxConfig(api_key=KEY, rate_limit=UNLIMITED, db_path=str(path), flush_interval_s=0.05)


def test_rule_db_keeps_profiles_occurrences_and_counters_across_restart(tmp_path):
    """Rule (sandbox): with a database, profiles, every event/purchase occurrence and the counters
    survive a restart."""
    db = tmp_path / "sandbox.db"
    with start_sandbox(config(db)) as handle:
        api = open_api(handle)
        api.track(
            attributes=[
                attrs(
                    "u1",
                    first_name="Ada",
                    tags=["a"],
                    email="ada@example.com",
                    push_tokens=[{"app_id": "ios", "token": "e" * 64}],
                )
            ],
            events=[event("u1"), event("u1")],
            purchases=[purchase("u1")],
        )
        api.track(
            attributes=[
                {"user_alias": {"alias_name": "n", "alias_label": "l"}, "_update_existing_only": False}
            ]
        )
        before_profiles, before_stats = handle.profiles(), handle.stats()
        api.http.close()
    with start_sandbox(config(db)) as handle:
        api = open_api(handle)
        assert handle.profiles() == before_profiles
        assert handle.stats() == before_stats
        api.track(events=[event("u1")])
        api.track(events=[{"email": "ada@example.com", "name": "by-email", "time": "2024-01-01T00:00:00Z"}])
        profile = handle.profile("u1")
        assert len(profile["events"]) == 4
        api.track(attributes=[attrs("u2")])
        assert handle.profile("u2")["braze_id"] not in {p["braze_id"] for p in before_profiles.values()}
        api.http.close()


def test_rule_reset_empties_the_database(tmp_path):
    """Rule (sandbox): POST /_sandbox/reset also empties the database."""
    db = tmp_path / "sandbox.db"
    with start_sandbox(config(db)) as handle:
        api = open_api(handle)
        api.track(attributes=[attrs("u1")])
        handle.reset()
        api.http.close()
    with start_sandbox(config(db)) as handle:
        assert handle.profiles() == {}
        assert handle.stats()["requests"] == 0


def test_rule_hook_alterations_are_persisted(tmp_path):
    """Rule (sandbox): alterations made through the test hooks are persisted too."""
    db = tmp_path / "sandbox.db"
    with start_sandbox(config(db)) as handle:
        api = open_api(handle)
        api.track(attributes=[attrs("u1")], events=[event("u1")])
        api.track(attributes=[attrs("u2")])
        handle.patch_user("u1", first_name="Changed", events=[])
        handle.delete_user("u2")
        api.http.close()
    with start_sandbox(config(db)) as handle:
        profiles = handle.profiles()
        assert list(profiles) == ["u1"]
        assert profiles["u1"]["first_name"] == "Changed" and profiles["u1"]["events"] == []

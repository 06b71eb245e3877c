"""Remote sources end to end: the day1 sample from a local folder, an S3-compatible server (moto, over real
HTTP) and PostgreSQL (the warehouse's own column names, mapped back by a mapping file) leaves identical
sandbox state; object-store layout, globs and hive partitions; failures that name what to fix."""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path

import boto3
import polars as pl
import pytest
import requests
from moto.server import ThreadedMotoServer
from psycopg.types.json import Jsonb

from braze_migrate.plan import planner
from braze_migrate.run.engine import Engine
from braze_migrate.settings import load_settings
from connectors.mapping import MappingError
from connectors.sources import SourceError, iter_batches, open_source, scan_folder, source_fingerprint
from tests.conftest import API_KEY
from tests.test_sql_source import postgres_tables
from transforms.csv_typing import parse_datetime

DAY1 = Path(__file__).resolve().parents[1] / "data" / "samples" / "day1"
KEY_ID, SECRET = "test-key-id", "test-secret-key"


@pytest.fixture
def pg(pg_server):
    yield from postgres_tables(pg_server)


@pytest.fixture(scope="module")
def moto_url():
    """A moto S3 server in this process, on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(moto_url, monkeypatch):
    """A fresh bucket; AWS_* in the environment point Polars and the listing at the moto server."""
    for name, value in {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    name = f"exports-{uuid.uuid4().hex[:12]}"
    s3().create_bucket(Bucket=name)
    return name


def s3(**credentials):
    import os

    return boto3.client(
        "s3",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=credentials.get("key_id", KEY_ID),
        aws_secret_access_key=credentials.get("secret", SECRET),
    )


def upload_folder(bucket: str, folder: Path, prefix: str) -> str:
    client = s3()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            client.upload_file(str(f), bucket, f"{prefix}/{f.relative_to(folder).as_posix()}")
    return f"s3://{bucket}/{prefix}/"


# --- the acceptance test: three sources, one sandbox state -------------------------------------------------


def day1_into_postgres(conn, t: str) -> dict[str, tuple[str, list[str]]]:
    """day1 as a warehouse would hold it: real types, upper-case names of its own, a load sequence column.

    Values that cannot be stored in a typed column (price `12,50`, time `yesterday`, dob `1990-02-30`) are
    NULL, as a warehouse would have them; those rows or cells are rejected whichever way they come.
    """
    day1 = {name: ds.frame.collect().sort("_file", "_row") for name, ds in scan_folder(DAY1).items()}
    utc = pl.Datetime("us", "UTC")
    users = day1["users"]
    tables = {
        "customers": (
            {
                "CUSTOMER_ID": ("text", users["external_id"]),
                "UPDATED_AT": ("timestamp", users["updated_at"]),
                "EMAIL_ADDRESS": ("text", users["email"]),
                **{
                    c.upper(): ("text", users[c])
                    for c in (
                        "first_name",
                        "last_name",
                        "phone",
                        "gender",
                        "country",
                        "home_city",
                        "language",
                        "time_zone",
                        "email_subscribe",
                        "push_subscribe",
                        "zip",
                        "loyalty_tier",
                    )
                },
                "DOB": (
                    "date",
                    users.select(pl.col("dob").str.to_date("%Y-%m-%d", strict=False)).to_series(),
                ),
                "LIFETIME_VALUE": ("double precision", users["lifetime_value"]),
                "ORDERS_COUNT": ("integer", users["orders_count"]),
                "VIP": ("boolean", users["vip"]),
                "SIGNUP_AT": ("timestamptz", users["signup_at"]),
                "LAST_ORDER_DATE": ("date", users["last_order_date"]),
                "FAVORITE_CATEGORIES": ("text[]", users["favorite_categories"]),
                "PREFERENCES": (
                    "jsonb",
                    users["preferences"].map_elements(
                        lambda p: Jsonb({**p, "since": p["since"].isoformat()}), return_dtype=pl.Object
                    ),
                ),
                "$LEGACY_SCORE": ("bigint", users["$legacy_score"]),
            },
            users.height,
        ),
    }
    p = day1["purchases"]
    tables["order_lines"] = (
        {
            "ORDER_LINE_ID": ("text", p["purchase_id"]),
            "CUSTOMER_ID": ("text", p["external_id"]),
            "SKU": ("text", p["product_id"]),
            "CURRENCY_CODE": ("text", p["currency"]),
            "AMOUNT": ("numeric(12, 2)", p["price"].cast(pl.Float64, strict=False)),
            "QTY": ("integer", p["quantity"].cast(pl.Int32, strict=False)),
            "ORDERED_AT": ("timestamptz", p.select(parse_datetime(pl.col("time"))).to_series()),
            "PROPS": ("text", p["properties"]),
        },
        p.height,
    )
    e = day1["events"]
    tables["app_events"] = (
        {
            "EVENT_ID": ("text", e["event_id"]),
            "CUSTOMER_ID": ("text", e["external_id"]),
            "EVENT_NAME": ("text", e["name"]),
            "OCCURRED_AT": ("timestamptz", e.select(parse_datetime(pl.col("time"))).to_series().cast(utc)),
            # The reader keeps NDJSON properties as their JSON text (each row's own types): stored as the object.
            "PROPERTIES": ("jsonb", e["properties"].map_elements(lambda t: Jsonb(json.loads(t)), return_dtype=pl.Object)),
        },
        e.height,
    )
    d = day1["push_tokens"]
    tables["devices"] = (
        {
            "CUSTOMER_ID": ("text", d["external_id"]),
            "APP_ID": ("text", d["app_id"]),
            "PUSH_TOKEN": ("text", d["token"]),
            "DEVICE_ID": ("text", d["device_id"]),
            "PLATFORM": ("text", d["platform"]),
        },
        d.height,
    )
    for table, (columns, height) in tables.items():
        columns = {
            **columns,
            "ROW_SEQ": ("bigint", pl.Series(range(1, height + 1))),
            "LOADED_AT": ("timestamptz", pl.Series([None] * height, dtype=utc)),
        }
        names = ", ".join(f'"{c}"' for c in columns)
        declared = ", ".join(f'"{c}" {kind}' for c, (kind, _) in columns.items())
        conn.execute(f"CREATE TABLE {t}_{table} ({declared})")
        with conn.cursor().copy(f"COPY {t}_{table} ({names}) FROM STDIN") as copy:
            for row in zip(*(s.to_list() for _, s in columns.values())):
                copy.write_row(row)
    return tables


def warehouse_mapping(folder: Path, t: str, *, customer_id: str = "CUSTOMER_ID") -> Path:
    text = f"""\
sql:
  connection_env: WAREHOUSE_URL
  batch_size: 100
datasets:
  users:
    query: SELECT * FROM {t}_customers ORDER BY "ROW_SEQ"
    columns:
      external_id: {customer_id}
      email: EMAIL_ADDRESS
    column_case: lower
    skip: [ROW_SEQ, LOADED_AT]
    types:
      preferences: {{channel: string, newsletter: bool, since: datetime}}
  purchases:
    query: SELECT * FROM {t}_order_lines ORDER BY "ROW_SEQ"
    columns: {{purchase_id: ORDER_LINE_ID, external_id: CUSTOMER_ID, product_id: SKU, currency: CURRENCY_CODE,
               price: AMOUNT, quantity: QTY, time: ORDERED_AT, properties: PROPS}}
    skip: [ROW_SEQ, LOADED_AT]
  events:
    query: SELECT * FROM {t}_app_events ORDER BY "ROW_SEQ"
    columns: {{event_id: EVENT_ID, external_id: CUSTOMER_ID, name: EVENT_NAME, time: OCCURRED_AT,
               properties: PROPERTIES}}
    skip: [ROW_SEQ, LOADED_AT]
  push_tokens:
    query: SELECT * FROM {t}_devices ORDER BY "ROW_SEQ"
    columns: {{external_id: CUSTOMER_ID, app_id: APP_ID, token: PUSH_TOKEN, device_id: DEVICE_ID,
               platform: PLATFORM}}
    skip: [ROW_SEQ, LOADED_AT]
"""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "warehouse.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def engine_reads_sources(monkeypatch, tmp_path):
    """Route the planner's source scan through `open_source` for as long as the planner calls `scan_folder`
    (the wiring of `open_source` into the planner is the lead's change)."""
    if not hasattr(planner, "open_source"):
        work = tmp_path / "source-work"
        monkeypatch.setattr(planner, "scan_folder", lambda source: open_source(source, work_dir=work))


def backfill(source, state: Path, sandbox) -> dict:
    engine = Engine(load_settings(state=state))
    try:
        prepared = engine.prepare("backfill", str(source))
        engine.apply(prepared, sandbox.url, API_KEY)
        return engine.finish(prepared, started=time.monotonic())
    finally:
        engine.close()


def sandbox_state(sandbox) -> dict:
    """Every profile without the ids and times the sandbox assigns, its occurrence lists in a fixed order;
    anonymous ones as a sorted list."""
    known, anonymous = {}, []
    for key, profile in sandbox.profiles().items():
        profile = {k: v for k, v in profile.items() if k not in ("braze_id", "created_at")}
        # Batches go out concurrently, so a user's events may arrive in any order: compare them as sets.
        for name in ("events", "purchases", "push_tokens"):
            if isinstance(profile.get(name), list):
                profile[name] = sorted(profile[name], key=lambda item: json.dumps(item, sort_keys=True))
        if profile.get("external_id"):
            known[key] = profile
        else:
            anonymous.append(json.dumps(profile, sort_keys=True))
    return {"known": known, "anonymous": sorted(anonymous)}


def test_the_same_sample_from_a_folder_s3_and_postgres_leaves_identical_sandbox_state(
    pg_server, bucket, pg, sandbox, engine_reads_sources, tmp_path, monkeypatch
):
    conn, t = pg
    s3_source = upload_folder(bucket, DAY1, "exports/2026-11-27")
    day1_into_postgres(conn, t)
    monkeypatch.setenv("WAREHOUSE_URL", pg_server)
    sources = {"local": str(DAY1), "s3": s3_source, "postgres": str(warehouse_mapping(tmp_path, t))}

    states, summaries = {}, {}
    for label, source in sources.items():
        sandbox.reset()
        summaries[label] = backfill(source, tmp_path / f"state-{label}", sandbox)
        assert summaries[label]["status"] == "completed", label
        states[label] = sandbox_state(sandbox)

    assert len(states["local"]["known"]) > 200 and states["local"]["anonymous"]
    assert states["s3"] == states["local"]
    assert states["postgres"] == states["local"]
    for label in ("s3", "postgres"):
        for name, counts in summaries["local"]["datasets"].items():
            theirs = summaries[label]["datasets"][name]
            assert (theirs["read"], theirs["acknowledged"], theirs["rejected"]) == (
                counts["read"],
                counts["acknowledged"],
                counts["rejected"],
            ), (label, name)


def test_a_mapping_typo_fails_before_the_first_request_naming_the_column_and_the_file(
    pg_server, pg, sandbox, engine_reads_sources, tmp_path, monkeypatch
):
    conn, t = pg
    day1_into_postgres(conn, t)
    monkeypatch.setenv("WAREHOUSE_URL", pg_server)
    mapping = warehouse_mapping(tmp_path, t, customer_id="CUSTOMR_ID")
    with pytest.raises(MappingError) as err:
        backfill(mapping, tmp_path / "state", sandbox)
    message = str(err.value)
    assert str(mapping) in message and "'CUSTOMR_ID'" in message and "did you mean 'CUSTOMER_ID'?" in message
    assert "line 8" in message
    assert sandbox.stats()["requests"] == 0
    assert not (tmp_path / "source-work" / "sql").exists()


# --- object stores: layout, globs, hive partitions, fingerprints ------------------------------------------


def test_an_s3_prefix_follows_the_local_layout_rules(bucket, tmp_path):
    source = upload_folder(bucket, DAY1, "day1")
    client = s3()
    for key in ("day1/_SUCCESS", "day1/README.md", "day1/push_tokens/.crc", "day1/push_tokens/manifest.txt"):
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    remote = open_source(source, work_dir=tmp_path)
    local = scan_folder(DAY1)
    assert {n: (d.format, [Path(f).name for f in d.files]) for n, d in remote.items()} == {
        n: (d.format, [Path(f).name for f in d.files]) for n, d in local.items()
    }
    assert remote["push_tokens"].files[0] == f"s3://{bucket}/day1/push_tokens/part-0001.csv"
    for name in local:
        assert remote[name].frame.collect().drop("_file").equals(local[name].frame.collect().drop("_file"))


def test_objects_are_read_in_batches_with_the_rows_of_their_frames(bucket, tmp_path):
    """Each object is streamed to a temporary local file and read in bounded batches like a local one."""
    source = upload_folder(bucket, DAY1, "day1")
    remote = open_source(source, work_dir=tmp_path)
    for name, ds in remote.items():
        batches = list(iter_batches(ds, 2))
        assert max(b.height for b in batches) <= 2
        assert pl.concat(batches).equals(ds.frame.collect()), name
        assert batches[0]["_file"][0].startswith(f"s3://{bucket}/day1/")


def test_the_fingerprint_of_a_prefix_follows_its_objects(bucket, tmp_path):
    source = upload_folder(bucket, DAY1, "day1")
    first = source_fingerprint(source)
    s3().put_object(Bucket=bucket, Key="day1/README.md", Body=b"notes")
    assert source_fingerprint(source) == first
    s3().put_object(
        Bucket=bucket, Key="day1/users.parquet", Body=(DAY1 / "users.parquet").read_bytes()[:-1] + b"!"
    )
    assert source_fingerprint(source) != first


def test_a_mapping_file_reads_globs_and_hive_partitions_with_credentials_named_in_the_file(
    bucket, moto_url, tmp_path, monkeypatch
):
    client = s3()
    for day, rows in (
        ("2026-11-26", "C1;0150;1;2026-11-26T10:00:00Z\n"),
        ("2026-11-27", "C2;0007;2;2026-11-27\n"),
    ):
        client.put_object(
            Bucket=bucket,
            Key=f"unload/customers/load_date={day}/0000_part_00.csv",
            Body=("CUSTOMER_ID;ZIP;SCORE;SIGNUP\n" + rows).encode(),
        )
    client.put_object(Bucket=bucket, Key="unload/customers/_manifest", Body=b"{}")
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ALLOW_HTTP"):
        monkeypatch.delenv(name)
    mapping = tmp_path / "unload.yaml"
    mapping.write_text(f"""\
source: s3://{bucket}/unload/
storage:
  endpoint: {moto_url}
  region: us-east-1
  allow_http: true
  access_key_id_env: ACME_KEY_ID
  secret_access_key_env: ACME_SECRET
datasets:
  users:
    path: customers/**/*.csv
    separator: ";"
    hive_columns: true
    columns: {{external_id: CUSTOMER_ID}}
    column_case: lower
    types: {{zip: string, score: int, signup: datetime, load_date: date}}
""")
    env = {"ACME_KEY_ID": KEY_ID, "ACME_SECRET": SECRET}
    monkeypatch.setenv("ACME_KEY_ID", KEY_ID)
    monkeypatch.setenv("ACME_SECRET", SECRET)
    users = open_source(mapping, work_dir=tmp_path / "work", environ=env)["users"]
    df = users.frame.collect()
    assert df.columns == ["external_id", "zip", "score", "signup", "load_date", "_file", "_row"]
    assert df.select("external_id", "zip", "score").rows() == [("C1", "0150", 1), ("C2", "0007", 2)]
    assert df.schema["signup"] == pl.Datetime("us", "UTC") and str(df["load_date"][1]) == "2026-11-27"
    assert users.typed == ("zip", "score", "signup", "load_date")
    assert df["_file"][1] == f"s3://{bucket}/unload/customers/load_date=2026-11-27/0000_part_00.csv"


def test_a_wrong_secret_key_fails_naming_the_uri_without_the_secret(bucket, moto_url, tmp_path, monkeypatch):
    """moto checks signatures once IAM authentication is on: a user with a real key, then a wrong secret."""
    upload_folder(bucket, DAY1, "day1")
    iam = boto3.client(
        "iam",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    user = f"loader-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(
        UserName=user,
        PolicyName="read",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(UserName=user)["AccessKey"]
    wrong = "Wr0ngSecretKeyValue/abc123"
    previous = requests.post(f"{moto_url}/moto-api/reset-auth", data=b"0", timeout=10).json()
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        assert "users" in open_source(f"s3://{bucket}/day1/", work_dir=tmp_path)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
        with pytest.raises(SourceError) as from_env:
            open_source(f"s3://{bucket}/day1/", work_dir=tmp_path)
        mapping = tmp_path / "m.yaml"
        mapping.write_text(
            "storage: {access_key_id_env: ACME_KEY_ID, secret_access_key_env: ACME_SECRET}\n"
            "datasets:\n  users: {path: users.parquet}\n"
        )
        env = {"ACME_KEY_ID": key["AccessKeyId"], "ACME_SECRET": wrong}
        with pytest.raises(SourceError) as from_mapping:
            open_source(f"s3://{bucket}/day1/", mapping=mapping, work_dir=tmp_path, environ=env)
    finally:
        requests.post(
            f"{moto_url}/moto-api/reset-auth",
            data=str(previous["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]).encode(),
            timeout=10,
        )
    for err in (from_env, from_mapping):
        message = str(err.value)
        assert f"s3://{bucket}/day1/" in message and "403" in message and "SignatureDoesNotMatch" in message
        assert wrong not in message and key["SecretAccessKey"] not in message
        assert "check the credentials" in message and err.value.__cause__ is None


@pytest.mark.parametrize(
    "uri,storage",
    [
        ("gs://exports/day1/", "{endpoint: 'http://127.0.0.1:PORT', anonymous: true, allow_http: true}"),
        (
            "az://exports/day1/",
            "{endpoint: 'http://127.0.0.1:PORT', account_name: acme, anonymous: true, allow_http: true}",
        ),
    ],
)
def test_gcs_and_azure_options_reach_the_configured_endpoint(uri, storage, tmp_path):
    """gs:// and az:// go through the same listing and options as s3://: an endpoint nobody listens on
    fails fast, naming the URI."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mapping = tmp_path / "m.yaml"
    mapping.write_text(f"storage: {storage.replace('PORT', str(port))}\n")
    started = time.monotonic()
    with pytest.raises(SourceError) as err:
        open_source(uri, mapping=mapping, work_dir=tmp_path)
    assert str(err.value) == (
        f"could not list {uri}: the endpoint could not be reached: "
        "check the endpoint, the network and the credentials"
    )
    assert time.monotonic() - started < 30

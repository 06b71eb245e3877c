"""Mapping files: every kind of mistake fails before data is read, naming the file, line and column."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from connectors.mapping import MappingError, load_mapping
from connectors.sources import SourceError, open_source

EXPORT_COLUMNS = "CUSTOMER_ID,EMAIL_ADDRESS,ZIP,VIP,SIGNUP\n"


@pytest.fixture
def export(tmp_path) -> Path:
    """A warehouse export with its own column names: users as CSV, purchases as Parquet."""
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "users.csv").write_text(
        EXPORT_COLUMNS + "000123,ann@example.com,0150,true,2026-11-01T10:00:00Z\n"
        "u2,bob@example.com,2000,false,\n"
    )
    pl.DataFrame(
        {
            "ORDER_ID": ["p1"],
            "CUSTOMER_ID": ["000123"],
            "SKU": ["sku-1"],
            "CCY": ["EUR"],
            "AMOUNT": [9.5],
            "ORDERED_AT": ["2026-11-01T10:00:00Z"],
        }
    ).write_parquet(folder / "purchases.parquet")
    return folder


def mapping_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "acme.yaml"
    path.write_text(text)
    return path


def problem(tmp_path, export, text, **env) -> str:
    with pytest.raises(MappingError) as err:
        open_source(export, mapping=mapping_file(tmp_path, text), work_dir=tmp_path / "work", environ=env)
    message = str(err.value)
    assert message.startswith(f"mapping file {tmp_path / 'acme.yaml'}: ")
    assert "\n" not in message
    return message


GOOD_USERS = "datasets:\n  users:\n    columns: {external_id: CUSTOMER_ID, email: EMAIL_ADDRESS}\n"


def test_a_good_mapping_renames_lower_cases_skips_and_types_columns(tmp_path, export):
    m = mapping_file(
        tmp_path,
        GOOD_USERS + "    column_case: lower\n    skip: [VIP]\n    types: {ZIP: string, signup: datetime}\n",
    )
    users = open_source(export, mapping=m, work_dir=tmp_path / "work")["users"]
    df = users.frame.collect()
    assert df.columns == ["external_id", "email", "zip", "signup", "_file", "_row"]
    assert df["zip"].to_list() == ["0150", "2000"] and df.schema["signup"] == pl.Datetime("us", "UTC")
    assert df["signup"][1] is None
    assert users.typed == ("zip", "signup") and users.format == "csv"


def test_datasets_the_mapping_does_not_name_are_read_as_they_are(tmp_path, export):
    data = open_source(export, mapping=mapping_file(tmp_path, GOOD_USERS), work_dir=tmp_path / "work")
    assert list(data) == ["users", "purchases"]
    assert "ORDER_ID" in data["purchases"].frame.collect_schema()


def test_an_unknown_column_is_named_with_the_closest_one(tmp_path, export):
    message = problem(tmp_path, export, "datasets:\n  users:\n    columns:\n      external_id: CUSTOMR_ID\n")
    assert "line 4 (datasets.users.columns.external_id)" in message
    assert "column 'CUSTOMR_ID' is not in the export of users" in message and "users.csv" in message
    assert "did you mean 'CUSTOMER_ID'?" in message


def test_a_column_in_another_case_is_suggested_as_written_in_the_export(tmp_path, export):
    message = problem(tmp_path, export, "datasets:\n  users:\n    columns: {external_id: customer_id}\n")
    assert "did you mean 'CUSTOMER_ID'?" in message


def test_unknown_columns_in_skip_and_types_are_named(tmp_path, export):
    message = problem(tmp_path, export, GOOD_USERS + "    skip: [VIPP]\n    types: {SIGNUPP: datetime}\n")
    assert "2 problems" in message
    assert "(datasets.users.skip.0): column 'VIPP'" in message and "did you mean 'VIP'?" in message
    assert (
        "(datasets.users.types.SIGNUPP): column 'SIGNUPP'" in message and "did you mean 'SIGNUP'?" in message
    )


def test_a_missing_key_column_says_how_to_map_it(tmp_path, export):
    message = problem(tmp_path, export, "datasets:\n  users:\n    columns: {extrenal_id: CUSTOMER_ID}\n    "
                      "skip: [EMAIL_ADDRESS]\n")
    assert "users has no identifier column after mapping" in message
    assert "map a column onto external_id, alias_name and alias_label, email or phone" in message


def test_a_target_that_is_no_column_of_the_dataset_is_named_with_the_closest_one(tmp_path, export):
    message = problem(
        tmp_path,
        export,
        """\
datasets:
  purchases:
    columns: {purchase_id: ORDER_ID, external_id: CUSTOMER_ID, product_id: SKU, currency: CCY, prise: AMOUNT,
              time: ORDERED_AT}
""",
    )
    assert "'prise' is not a column of purchases; did you mean 'price'?" in message
    assert "purchases has no 'price' column after mapping" in message


def test_an_unknown_type_suggests_the_closest(tmp_path, export):
    message = problem(tmp_path, export, GOOD_USERS + "    types:\n      ZIP: integer\n")
    assert "line 5 (datasets.users.types.ZIP): unknown type 'integer'; did you mean 'int'?" in message


def test_a_type_the_column_cannot_have_is_refused(tmp_path, export):
    message = problem(
        tmp_path,
        export,
        """\
datasets:
  purchases:
    columns: {purchase_id: ORDER_ID, external_id: CUSTOMER_ID, product_id: SKU, currency: CCY, price: AMOUNT,
              time: ORDERED_AT}
    types: {price: date}
""",
    )
    assert "column 'AMOUNT' is Float64 in the export; it cannot be read as \"date\"" in message


def test_a_value_of_the_wrong_kind_is_named(tmp_path, export):
    message = problem(tmp_path, export, GOOD_USERS + "    column_case: upper\n    hive_columns: maybe\n")
    assert "(datasets.users.column_case): must be 'keep' or 'lower'" in message
    assert "(datasets.users.hive_columns): Input should be a valid boolean" in message


def test_an_unknown_option_suggests_the_closest_name(tmp_path, export):
    message = problem(tmp_path, export, "datasets:\n  users:\n    colums: {external_id: CUSTOMER_ID}\n")
    assert "line 3 (datasets.users.colums): unknown option 'colums'; did you mean 'columns'?" in message
    message = problem(tmp_path, export, "storage:\n  endpont: http://127.0.0.1:9000\n" + GOOD_USERS)
    assert "unknown option 'endpont'; did you mean 'endpoint'?" in message
    message = problem(tmp_path, export, "datasetz:\n  users: {}\n")
    assert "unknown option 'datasetz'; did you mean 'datasets'?" in message


def test_an_unknown_dataset_suggests_the_closest_name(tmp_path, export):
    message = problem(tmp_path, export, "datasets:\n  user:\n    columns: {external_id: CUSTOMER_ID}\n")
    assert "line 2 (datasets.user): unknown dataset 'user'; did you mean 'users'?" in message


def test_a_dataset_the_source_does_not_have_is_named(tmp_path, export):
    message = problem(tmp_path, export, "datasets:\n  events:\n    columns: {event_id: EVENT_ID}\n")
    assert f"dataset 'events' is not found in {export}" in message


def test_secrets_never_go_in_the_file_and_are_never_echoed(tmp_path, export):
    message = problem(
        tmp_path,
        export,
        "sql:\n  connection_env: postgresql://loader:hunter2@db/warehouse\n"
        "  password: hunter3\n" + GOOD_USERS,
    )
    assert "(sql.connection_env): must be the NAME of an environment variable" in message
    assert "unknown option 'password'; credentials go in environment variables" in message
    assert "hunter2" not in message and "hunter3" not in message


def test_a_query_needs_a_connection_and_cannot_also_have_a_path(tmp_path, export):
    message = problem(tmp_path, export, "datasets:\n  users:\n    query: SELECT 1\n")
    assert "dataset 'users' has a query but no connection" in message
    message = problem(
        tmp_path,
        export,
        "sql: {connection_env: DB}\ndatasets:\n  users:\n    query: SELECT 1\n    path: users.csv\n",
    )
    assert "give either path or query, not both" in message


def test_an_environment_variable_the_file_names_must_be_set(tmp_path, export):
    message = problem(tmp_path, export, "storage: {secret_access_key_env: ACME_SECRET}\n" + GOOD_USERS)
    assert "line 1 (storage.secret_access_key_env): environment variable ACME_SECRET is not set" in message


def test_storage_options_of_another_store_are_refused_before_any_request(tmp_path):
    m = mapping_file(tmp_path, "storage: {account_name: acme}\n")
    with pytest.raises(MappingError, match=r"storage.account_name does not apply to s3:// sources"):
        open_source("s3://no-such-bucket/exports/", mapping=m, work_dir=tmp_path / "work")


def test_broken_yaml_names_the_line(tmp_path, export):
    message = problem(tmp_path, export, "datasets:\n  users:\n    columns: {external_id: CUSTOMER_ID\n")
    assert message.split(": ", 1)[1].startswith("line 4")


def test_a_mapping_file_source_takes_no_second_mapping(tmp_path, export):
    m = mapping_file(tmp_path, f"source: {export}\n" + GOOD_USERS)
    assert list(open_source(m, work_dir=tmp_path / "work")) == ["users", "purchases"]
    with pytest.raises(SourceError, match="is itself a mapping file"):
        open_source(m, mapping=m, work_dir=tmp_path / "work")


def test_paths_in_a_mapping_file_are_relative_to_its_folder(tmp_path, export):
    m = mapping_file(
        tmp_path, "datasets:\n  users:\n    path: export/users.csv\n    columns: {external_id: CUSTOMER_ID}\n"
    )
    users = open_source(m, work_dir=tmp_path / "work")["users"]
    assert users.files == [str(export / "users.csv")]
    assert users.frame.collect()["external_id"].to_list() == ["000123", "u2"]


def test_the_example_mapping_is_valid():
    example = Path(__file__).resolve().parents[1] / "data" / "samples" / "mapping.example.yaml"
    model = load_mapping(example).model
    assert set(model.datasets) == {"users", "purchases", "events", "push_tokens"}


def test_a_local_glob_reads_hive_partitions_and_parts_without_an_extension(tmp_path):
    for day in ("2026-11-26", "2026-11-27"):
        folder = tmp_path / "unload" / "events" / f"load_date={day}"
        folder.mkdir(parents=True)
        (folder / "0000_part_00.csv").write_text(
            f"EVENT_ID|CUSTOMER_ID|NAME|TIME\ne-{day}|000123|login|{day}\n"
        )
        (folder / "_SUCCESS").write_text("")
    devices = tmp_path / "unload" / "devices"
    devices.mkdir()
    pl.DataFrame({"external_id": ["000123"], "app_id": ["app"], "token": ["t" * 64]}).write_parquet(
        devices / "0000_part_00"
    )
    m = mapping_file(
        tmp_path,
        """\
source: unload
datasets:
  events:
    path: events/**/*.csv
    separator: "|"
    hive_columns: true
    columns: {event_id: EVENT_ID, external_id: CUSTOMER_ID, name: NAME, time: TIME}
    types: {load_date: date}
  push_tokens:
    path: devices
    format: parquet
""",
    )
    data = open_source(m, work_dir=tmp_path / "work")
    events = data["events"].frame.collect()
    assert events.select("event_id", "load_date").rows() == [
        ("e-2026-11-26", date(2026, 11, 26)),
        ("e-2026-11-27", date(2026, 11, 27)),
    ]
    assert [Path(f).parent.name for f in data["events"].files] == [
        "load_date=2026-11-26",
        "load_date=2026-11-27",
    ]
    assert data["push_tokens"].format == "parquet" and data["push_tokens"].frame.collect().height == 1

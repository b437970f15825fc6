"""Hourly report: waits for an hour of the lake to be complete, then queries it.

weir writes `_SUCCESS` into `<lake>/events/dt=YYYY-MM-DD/hour=HH/` once every source
partition has committed that hour and passed its end plus the allowed lateness, so the query
never sees a partial hour. The sensor reschedules itself between pokes (it holds no worker
slot while it waits). For a lake on S3, swap the sensor for the Amazon provider's
`S3KeySensor` on the same key.

Environment (or Airflow Variables of the same names):
  WEIR_LAKE     the lake's root
  WEIR_REPORTS  where the reports go (default: <lake>/../reports)
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow import DAG
from airflow.models import Variable
from airflow.operators.python import PythonOperator
from airflow.sensors.python import PythonSensor


def setting(name: str, default: str | None = None) -> str | None:
    """An Airflow Variable, else the environment, else `default`."""
    return Variable.get(name, default_var=None) or os.environ.get(name, default)


def hour_folder(data_interval_start: datetime) -> Path:
    lake = Path(setting("WEIR_LAKE", "lake"))
    return lake / "events" / data_interval_start.strftime("dt=%Y-%m-%d/hour=%H")


def hour_is_complete(data_interval_start: datetime, **_) -> bool:
    return (hour_folder(data_interval_start) / "_SUCCESS").exists()


def report(data_interval_start: datetime, **_) -> str:
    """Events and users per event type of the hour, as JSON under WEIR_REPORTS."""
    import duckdb

    folder = hour_folder(data_interval_start)
    rows = duckdb.sql(
        f"select type, count(*) as events, count(distinct user_id) as users "
        f"from read_parquet('{folder}/*.parquet') group by type order by type"
    ).fetchall()
    reports = Path(setting("WEIR_REPORTS", str(Path(setting("WEIR_LAKE", "lake")).parent / "reports")))
    out = reports / data_interval_start.strftime("%Y-%m-%dT%H.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    body = {t: {"events": e, "users": u} for t, e, u in rows}
    out.write_text(json.dumps(body, sort_keys=True))
    return str(out)


with DAG(
    dag_id="weir_hourly_report",
    description="Waits for an hour's completion marker, then reports on the hour",
    schedule="@hourly",
    start_date=datetime(2026, 11, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    tags=["weir"],
) as dag:
    complete = PythonSensor(
        task_id="hour_complete",
        python_callable=hour_is_complete,
        mode="reschedule",
        poke_interval=60,
        timeout=timedelta(hours=6).total_seconds(),
    )
    complete >> PythonOperator(task_id="report", python_callable=report)

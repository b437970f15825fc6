"""Backfill: re-runs one day of clickstream files through weir into the lake.

One run per day (`airflow dags backfill weir_backfill -s 2026-11-01 -e 2026-11-30` replays a
month). A file source ends when its files do, so `weir run` is bounded; at its end every hour
of the day has its `_SUCCESS` marker. Retries back off; a final failure calls `alert`.

Environment (or Airflow Variables of the same names):
  WEIR_BIN         the weir binary (default: `weir` on PATH)
  WEIR_PLUGIN_DIR  the folder of the plugins' .wasm files
  WEIR_INPUT_ROOT  the raw files, one folder per day: <root>/dt=YYYY-MM-DD/*.ndjson
  WEIR_LAKE        the lake's root
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow import DAG
from airflow.models import Variable
from airflow.operators.bash import BashOperator

CONFIG = Path(__file__).resolve().parent.parent / "backfill.toml"


def setting(name: str, default: str | None = None) -> str | None:
    """An Airflow Variable, else the environment, else `default`."""
    return Variable.get(name, default_var=None) or os.environ.get(name, default)


def alert(context: dict) -> None:
    """Called once a task has failed for good: logs it, and posts it to
    WEIR_ALERT_WEBHOOK (a Slack or Alertmanager-style webhook) when one is set."""
    ti = context["task_instance"]
    message = (
        f"weir backfill of {context['ds']} failed in {ti.task_id} "
        f"after {ti.try_number} tries: {context.get('exception')}"
    )
    logging.getLogger("weir").error(message)
    webhook = setting("WEIR_ALERT_WEBHOOK")
    if webhook:
        import json
        import urllib.request

        request = urllib.request.Request(
            webhook,
            data=json.dumps({"text": message}).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10)


with DAG(
    dag_id="weir_backfill",
    description="One day of clickstream files through weir into the lake",
    schedule="@daily",
    start_date=datetime(2026, 11, 1),
    catchup=False,
    max_active_runs=2,
    default_args={
        "retries": 3,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
        "on_failure_callback": alert,
    },
    tags=["weir"],
) as dag:
    BashOperator(
        task_id="weir_run",
        bash_command=f'"$WEIR_BIN" run --config {CONFIG}',
        env={
            "WEIR_BIN": setting("WEIR_BIN", "weir"),
            "WEIR_PLUGIN_DIR": setting("WEIR_PLUGIN_DIR", "target/plugins"),
            "WEIR_INPUT": f"{setting('WEIR_INPUT_ROOT', 'input')}/dt={{{{ ds }}}}",
            "WEIR_LAKE": setting("WEIR_LAKE", "lake"),
            "WEIR_DAY": "{{ ds }}",
            # Metrics on any free port: two days may run at once.
            "WEIR_ADMIN_LISTEN": "127.0.0.1:0",
        },
        append_env=True,
        execution_timeout=timedelta(hours=2),
    )

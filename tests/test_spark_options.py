"""The Spark engine's options and notes that need no Spark: the CLI's --spark-conf, which
Python the executors run, and when the feature store counts as shared (README, "When one
machine is not enough")."""

from __future__ import annotations

import sys

import pytest

from recommender.cli import _spark_conf, main
from recommender.engines.spark.session import python_source, store_note


def test_spark_conf_pairs_become_the_sessions_settings():
    conf = _spark_conf(["spark.executor.memory=4g", "spark.checkpoint.dir=hdfs:///a=b"])
    assert conf == {"spark.executor.memory": "4g", "spark.checkpoint.dir": "hdfs:///a=b"}


@pytest.mark.parametrize("bad", ["spark.executor.memory", "=4g"])
def test_a_spark_conf_without_key_and_value_is_one_line(bad, tmp_path, capsys):
    code = main(["build", str(tmp_path), "--out", str(tmp_path / "m"), "--engine", "spark",
                 "--spark-conf", bad])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err
    assert err.startswith("error: --spark-conf takes KEY=VALUE")
    assert not (tmp_path / "m").exists()


def test_spark_options_need_the_spark_engine(tmp_path, capsys):
    code = main(["build", str(tmp_path), "--out", str(tmp_path / "m"), "--spark-conf", "a=b"])
    assert code == 1
    assert "need --engine spark" in capsys.readouterr().err


def test_the_executors_python_is_pyspark_python_when_set(monkeypatch):
    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    assert python_source().startswith(f"Spark executors run Python {sys.executable} (this")
    monkeypatch.setenv("PYSPARK_PYTHON", "/opt/env/bin/python")
    assert python_source() == "Spark executors run Python /opt/env/bin/python (PYSPARK_PYTHON)"
    conf = {"spark.pyspark.python": "./env/bin/python"}
    assert python_source(conf).endswith("./env/bin/python (spark.pyspark.python)")


@pytest.mark.parametrize(
    "master,declared,noted",
    [
        ("local[2]", False, False),  # one machine
        ("spark://127.0.0.1:7077", False, False),  # its workers can only be on this machine
        ("spark://localhost:7077", False, False),
        ("spark://head:7077", False, True),  # other machines: say so...
        ("spark://head:7077", True, False),  # ...unless HASHTAG_CACHE says where the store is
        ("yarn", False, True),
        ("spark://127.0.0.1:7077,head:7077", False, True),
    ],
)
def test_the_store_note_follows_the_readmes_rule(master, declared, noted):
    note = store_note(master, "/home/me/.cache/hashtag-recommender", declared)
    assert (note is not None) == noted
    if noted:
        assert "\n" not in note and "HASHTAG_CACHE" in note

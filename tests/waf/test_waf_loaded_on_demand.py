"""The WAF engine (its matchers and CRS's compiled rules: megabytes of every worker's memory)
is loaded only by a config that has a `waf` step."""

from __future__ import annotations

from pathlib import Path

from tests.module_probe import loaded_with

ENGINE = "outwork.waf.engine"


def test_a_config_without_the_waf_leaves_the_engine_unloaded(tmp_path: Path) -> None:
    assert not loaded_with(tmp_path, ENGINE, {"headers": {"remove": ["server"]}})


def test_a_waf_step_loads_it_with_the_config(tmp_path: Path) -> None:
    assert loaded_with(tmp_path, ENGINE, {"waf": {"paranoia_level": 1}})

"""The core names no project: projects register through their entry points."""

from __future__ import annotations

import pathlib
import re

import pytest

from framework.config import registry
from framework.errors import ConfigError

FRAMEWORK = pathlib.Path(__file__).resolve().parents[2] / "framework"


def test_projects_register_through_entry_points():
    assert registry.project_packages() == (
        "projects.adatape",
        "projects.altup",
        "projects.baselines",
    )
    assert {"adatape_parity", "t5_altup", "ut_parity", "t5"} <= set(registry.MODELS.names())
    assert {"parity", "altup"} <= set(registry.TABLES.names())


def test_core_source_names_no_project():
    mentions = [
        f"{path.relative_to(FRAMEWORK)}: {line.strip()}"
        for path in FRAMEWORK.rglob("*.py")
        for line in path.read_text().splitlines()
        if re.search(r"\bprojects\.\w|import projects|\b(adatape|altup|tape_length)\b", line)
        and not line.lstrip().startswith("#")
    ]
    assert not mentions, mentions


def test_unknown_name_lists_known_ones():
    with pytest.raises(ConfigError, match=r"unknown model 'nope'; known: .*adatape_parity"):
        registry.MODELS.get("nope")

"""The documentation does not drift from the code: generated API reference, README commands, config keys."""
from __future__ import annotations

import importlib.util
import re
import sys

from tests.conftest import ROOT

DOCS = ROOT / "docs"
README = ROOT / "README.md"


def _generator():
    name = "gen_api_docs"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "gen_api_docs.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file executes
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_api_reference_is_up_to_date():
    assert (DOCS / "API.md").read_text() == _generator().render(), \
        "docs/API.md is stale: run python scripts/gen_api_docs.py"


def test_every_rpc_of_the_proto_is_documented():
    proto = (ROOT / "proto" / "solo" / "v1" / "solo.proto").read_text()
    rpcs = re.findall(r"^\s*rpc\s+(\w+)\s*\(", proto, flags=re.M)
    assert rpcs, "no rpc found in solo.proto"
    api = (DOCS / "API.md").read_text()
    for rpc in rpcs:
        assert f"### rpc {rpc}\n" in api, f"rpc {rpc} is missing from docs/API.md"
    assert set(_generator().RPC_NOTES) <= set(rpcs), "RPC_NOTES names an rpc the proto does not have"


def test_every_status_code_is_explained():
    from solo.gateway.status import STATUS_BY_CODE
    assert set(STATUS_BY_CODE) <= set(_generator().CODE_MEANINGS)


def test_readme_error_table_matches_the_status_table():
    from solo.gateway.status import STATUS_BY_CODE
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| `([A-Z_]+)` \|", README.read_text(), flags=re.M))
    assert rows == {code: status.name for code, status in STATUS_BY_CODE.items()}


def test_readme_commands_are_the_ci_commands():
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    test_command = 'pip install -e ".[dev]" && ruff check . && python -m pytest'
    assert ci[-1] == test_command, ".ci/run must run exactly the README's test command"
    readme = README.read_text()
    assert test_command in readme
    assert "pip install -e . && solo up" in readme


def test_every_config_key_is_in_the_operations_guide():
    from pydantic import BaseModel

    from solo.config import SoloConfig
    guide = (DOCS / "OPERATIONS.md").read_text()

    def keys(model: type[BaseModel], prefix: str = ""):
        for name, info in model.model_fields.items():
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
                yield from keys(info.annotation, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}"

    missing = [key for key in keys(SoloConfig) if f"`{key.rsplit('.', 1)[-1]}`" not in guide]
    assert not missing, f"config keys not documented in docs/OPERATIONS.md: {missing}"


def test_every_metric_is_in_the_operations_guide():
    from solo.metrics import REGISTRY
    guide = (DOCS / "OPERATIONS.md").read_text()
    families = list(REGISTRY.collect())
    assert families
    for family in families:
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{name}`" in guide, f"metric {name} is not documented in docs/OPERATIONS.md"


def test_relative_links_resolve():
    for page in [README, ROOT / "CHANGELOG.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if target.startswith("../bench/") or target.startswith("bench/"):
                continue  # bench/RESULTS.md is written by running the benchmark
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to missing {target}"

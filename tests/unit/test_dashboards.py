"""The Grafana dashboard (cluster/grafana/solo-dashboard.json) and the Prometheus alert rules
(cluster/prometheus-alerts.yml) use only metrics and labels solo/metrics.py exports, so a rename cannot silently
break them; the rules are wired into prometheus.yml and docker-compose.yml. With `promtool` on the PATH the rules
are also checked by Prometheus' own parser; without it, by the small PromQL reader below."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from solo import metrics

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "cluster"
DASHBOARD = KIT / "grafana" / "solo-dashboard.json"
RULES = KIT / "prometheus-alerts.yml"
EXPORTED = metrics.names()
BUILTIN = {"up": ("job", "instance")}  # what Prometheus itself adds to every scrape
TARGET_LABELS = {"job", "instance", "gateway_process"}  # added by Prometheus and by gateway/group.py
FUNCTIONS = {"rate", "increase", "sum", "min", "max", "avg", "count", "histogram_quantile", "vector", "clamp_min",
             "label_values", "abs", "topk", "irate", "time", "changes", "resets"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset"}


def dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    found = []

    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))
    for panel in panels(board["panels"]):
        found += [t["expr"] for t in panel.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            found.append(variable["query"]["query"])
    return found


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def references(expr: str) -> tuple[dict[str, set[str]], set[str]]:
    """(metric name -> label names its selectors match on, label names in by/without/on lists and
    label_values) of a PromQL expression (Grafana's $variables allowed in strings and ranges)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings: their content is not a name
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    grouping: set[str] = set()
    for clause in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text):
        grouping |= {n.strip() for n in clause.group(1).split(",") if n.strip()}
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    values = re.match(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*$", text)
    if values:
        grouping.add(values.group(2))
        text = values.group(1)
    used: dict[str, set[str]] = {}
    for found in re.finditer(r"([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?\s*(\()?", text):
        name, selector, call = found.groups()
        if call or name in KEYWORDS or name in FUNCTIONS or re.fullmatch(r"\d+\w*", name):
            continue
        labels = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector or ""))
        used.setdefault(name, set()).update(labels)
    # what is left in a selector without a metric name ({...} alone) is not allowed here
    assert not re.search(r"(^|[^\w}])\{", re.sub(r"[A-Za-z_:][\w:]*\s*\{[^}]*\}", "", text)), expr
    return used, grouping


def check(expr: str) -> None:
    used, grouping = references(expr)
    assert used, f"no metric in {expr!r}"
    known = {**EXPORTED, **BUILTIN}
    for name, labels in used.items():
        assert name in known, f"{expr!r} uses {name!r}, which solo/metrics.py does not export"
        assert labels <= set(known[name]) | TARGET_LABELS, f"{expr!r}: {name} has no label {labels - set(known[name])}"
    available = set().union(*(known[n] for n in used)) | TARGET_LABELS
    assert grouping <= available, f"{expr!r} groups by {grouping - available}, which none of its metrics has"


def test_the_reader_finds_names_and_labels():
    used, grouping = references('sum by (tenant, le) (rate(solo_gateway_call_duration_seconds_bucket'
                                '{tenant=~"$tenant", service!="x"}[$__rate_interval])) / on(job) up')
    assert used == {"solo_gateway_call_duration_seconds_bucket": {"tenant", "service"}, "up": set()}
    assert grouping == {"tenant", "le", "job"}
    with pytest.raises(AssertionError, match="does not export"):
        check("rate(solo_gateway_call_seconds_bucket[5m])")  # the old name
    with pytest.raises(AssertionError, match="has no label"):
        check('solo_service_memory_rss_bytes{method="x"}')
    with pytest.raises(AssertionError, match="groups by"):
        check("sum by (code) (solo_gateway_in_flight)")


def test_every_dashboard_query_uses_exported_metrics_and_labels():
    queries = dashboard_queries()
    assert len(queries) >= 15
    for expr in queries:
        check(expr)
    used = set().union(*(references(q)[0] for q in queries))
    for wanted in ("solo_gateway_calls_total", "solo_gateway_call_duration_seconds_bucket", "solo_gateway_shed_total",
                   "solo_gateway_breaker_transitions_total", "solo_gateway_in_flight", "solo_service_restarts_total",
                   "solo_service_memory_rss_bytes", "solo_service_cpu_seconds_total", "solo_event_log_writable",
                   "solo_gateway_ready"):
        assert wanted in used, f"the dashboard has no panel for {wanted}"


def test_the_dashboard_is_importable_grafana_json():
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 30
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource", "tenant", "service"]


def test_alert_rules_cover_what_operators_must_know_and_use_exported_metrics():
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= {"SoloEventLogNotWritable", "SoloGatewayNotReady", "SoloBreakerOpen",
                                           "SoloBreakerFlapping", "SoloServiceRestartLoop", "SoloHighShedRatio"}
    for rule in rules:
        check(rule["expr"])
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        for text in rule["annotations"].values():  # templates name only labels the expression keeps
            kept = references(rule["expr"])[1] or {"job", "instance"}
            for label in re.findall(r"\$labels\.(\w+)", text):
                assert label in kept, f"{rule['alert']}: $labels.{label} is summed away"


def test_the_rules_are_wired_into_prometheus_and_compose():
    config = yaml.safe_load((KIT / "prometheus.yml").read_text())
    compose = yaml.safe_load((KIT / "docker-compose.yml").read_text())
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in compose["services"]["prometheus"]["volumes"])
    mounted = {Path(inside).name: outside for outside, inside in mounts.items()}
    for name in config["rule_files"]:
        assert name in mounted and (KIT / mounted[name]).resolve() == RULES


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules():
    done = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr

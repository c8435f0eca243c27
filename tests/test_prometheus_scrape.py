"""The service's metrics scraped by a real Prometheus (Debian's /usr/bin/prometheus), with
examples/observability's alerting rules loaded into it and its dashboard's queries run by it.

The incident API is served in this process on a durable SQLite file with a fast SLA monitor;
Prometheus, on another free loopback port with a temporary TSDB, scrapes its ``/metrics``
every second. An incident is approved over HTTP, one expires, one stays pending close to its
deadline; then Prometheus's HTTP API must show those events, the pending-approval and SLA
sweep gauges, the rule groups loaded and evaluating without error, and the near-deadline
alert firing.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from durable_ir.demo.agent import DEMO_GRAPH_NAME, DEMO_INCIDENTS, DemoIncident, demo_alert
from durable_ir.service import ServiceSettings, create_app
from durable_ir.service.auth import parse_token_entries
from support.prometheus import PrometheusServer, require_prometheus, running_prometheus
from support.service import auth, serving, tokens_json

pytestmark = pytest.mark.slow

OBSERVABILITY = Path(__file__).resolve().parent.parent / "examples" / "observability"
RULES = OBSERVABILITY / "durable-ir-rules.yml"
DASHBOARD = OBSERVABILITY / "durable-ir-dashboard.json"
TIMEOUT = 45.0  # every wait below is bounded by this

APPROVED = DEMO_INCIDENTS[0]  # bad_deploy, P1: approved over HTTP
EXPIRES = DemoIncident("expired_certificate", 3, "expire", approval_window_s=2)
NEAR_DEADLINE = DemoIncident("bad_deploy", 3, "approve", approval_window_s=100)  # stays pending


def scrape(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The service's own ``/metrics`` (no token), as {(sample name, labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def total(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The sum of ``name``'s samples carrying ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def poll(check: Callable[[], Any], what: str, deadline: float) -> Any:
    """``check()`` until it returns something truthy, or fail at ``deadline`` (monotonic)."""
    last: Any = None
    while True:
        try:
            last = check()
        except (httpx.HTTPError, AssertionError) as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {last!r}")
        time.sleep(0.25)


def value(prom: PrometheusServer, expr: str) -> float | None:
    """The single value of an instant query, or None if it returned nothing."""
    result = prom.query(expr)
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def open_incident(client: httpx.Client, spec: DemoIncident) -> str:
    alert = demo_alert(spec, run=uuid.uuid4().hex[:8])
    response = client.post("/alerts", headers=auth("alertmanager"), json=alert)
    assert response.status_code == 202, response.text
    (item,) = response.json()["incidents"]
    return str(item["incident_id"])


def status(client: httpx.Client, incident_id: str) -> dict[str, Any]:
    response = client.get(f"/incidents/{incident_id}", headers=auth("vic"))
    assert response.status_code == 200, response.text
    return dict(response.json())


def dashboard_queries() -> dict[str, list[str]]:
    """Each dashboard panel's PromQL, with Grafana's variables filled in."""
    board = yaml.safe_load(DASHBOARD.read_text())  # JSON is YAML
    assert board["__inputs"][0]["name"] == "DS_PROMETHEUS"
    fills = {"$__rate_interval": "1m", "$__range": "5m", "$job": ".+"}
    queries: dict[str, list[str]] = {}
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            expr = target["expr"]
            for variable, filled in fills.items():
                expr = expr.replace(variable, filled)
            assert "$" not in expr, (panel["title"], expr)
            queries.setdefault(panel["title"], []).append(expr)
    return queries


def settings_for(tmp_path: Path) -> ServiceSettings:
    """The service on a durable SQLite file, its SLA monitor sweeping every 0.2 s."""
    return ServiceSettings(
        database_url=f"sqlite:///{tmp_path / 'incidents.db'}",
        api_tokens=parse_token_entries(tokens_json()),
        sla_interval=0.2,
        graph_name=DEMO_GRAPH_NAME,
    )


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)  # the demo graph stays offline


def test_a_real_prometheus_scrapes_the_service_and_evaluates_the_rules(tmp_path: Path) -> None:
    require_prometheus()
    settings = settings_for(tmp_path)
    rules = yaml.safe_load(RULES.read_text())
    groups = {g["name"]: {r["alert"] for r in g["rules"]} for g in rules["groups"]}

    with ExitStack() as stack:
        server = stack.enter_context(serving(create_app(settings=settings)))
        client = stack.enter_context(httpx.Client(base_url=server.url, timeout=30))
        # The collectors are this process's: other tests may have counted already.
        before = scrape(client)
        target = server.url.removeprefix("http://")
        prom = stack.enter_context(running_prometheus(tmp_path / "prometheus", [target], [RULES]))
        deadline = time.monotonic() + TIMEOUT

        # -- the incident ---------------------------------------------------------------------
        pending = open_incident(client, NEAR_DEADLINE)
        approved = open_incident(client, APPROVED)
        expired = open_incident(client, EXPIRES)
        poll(
            lambda: status(client, approved)["status"] == "awaiting_approval",
            "the incident to pause for approval",
            deadline,
        )
        response = client.post(
            f"/incidents/{approved}/approve", headers=auth("alice"), json={"reason": "rollback"}
        )
        assert response.status_code == 202, response.text
        assert response.json()["decision"]["decided_by"] == "alice"
        poll(lambda: status(client, approved)["outcome"] == "resolved", "resolved", deadline)
        poll(lambda: status(client, expired)["status"] == "finished", "the expiry", deadline)
        (expiry,) = status(client, expired)["approvals"]
        assert (expiry["status"], expiry["decided_by"]) == ("expired", "system:sla")
        poll(
            lambda: status(client, pending)["status"] == "awaiting_approval",
            "the third incident to pause for approval",
            deadline,
        )
        assert status(client, pending)["severity"] == "P1"

        # -- what Prometheus scraped ----------------------------------------------------------
        def at_least(expr: str, minimum: float) -> Callable[[], float | None]:
            def check() -> float | None:
                got = value(prom, expr)
                return got if got is not None and got >= minimum else None

            return check

        def counted(name: str, more: int = 1, **labels: str) -> float:
            """Wait until Prometheus holds ``more`` events of ``name`` over ``before``."""
            selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
            expr = f"sum({name}{{{selector}}})"
            minimum = total(before, name, **labels) + more
            return float(poll(at_least(expr, minimum), f"{expr} >= {minimum}", deadline))

        poll(at_least('up{job="durable-ir"}', 1), "a scrape", deadline)  # no token needed
        human = counted("durable_ir_decisions_total", kind="approved", decider_type="human")
        counted("durable_ir_decisions_total", kind="expired", decider_type="system:sla")
        counted("durable_ir_expiries_total")
        counted("durable_ir_alerts_total", 3, outcome="received")
        counted("durable_ir_alerts_total", 3, outcome="opened")
        counted("durable_ir_approval_wait_seconds_count", decider_type="human")
        counted("durable_ir_approval_wait_seconds_count", decider_type="system:sla")
        counted("durable_ir_decide_seconds_count")  # the HTTP approval, recorded then applied
        # Labelled counters exist from the start: every decision kind × decider type, every
        # intake outcome (0 until counted).
        decisions = (
            'durable_ir_decisions_total{job="durable-ir",kind=~"approved|rejected|expired",'
            'decider_type=~"human|system:sla|system:auto-approve"}'
        )
        assert value(prom, f"count({decisions})") == 9
        outcomes = "received|opened|deduplicated|refused|resolved"
        assert value(prom, f'count(durable_ir_alerts_total{{outcome=~"{outcomes}"}})') == 5

        # The gauges are the database's view: one P1 approval waits, ~100 s from its deadline.
        def one_pending() -> list[dict[str, Any]]:
            series = prom.query('durable_ir_pending_approvals{job="durable-ir"} > 0')
            return series if [s["value"][1] for s in series] == ["1"] else []

        (gauge,) = poll(one_pending, "durable_ir_pending_approvals == 1", deadline)
        assert gauge["metric"]["severity"] == "P1" and gauge["metric"]["graph_version"]
        # The nearest deadline is a Unix time: compared with Prometheus's time(), it counts
        # down between sweeps.
        left = value(
            prom, 'min(durable_ir_nearest_deadline_timestamp_seconds{severity="P1"}) - time()'
        )
        assert left is not None and 0 < left <= 100, left
        # The monitor sweeps every 0.2 s, Prometheus scrapes every second.
        age = value(
            prom, 'time() - max(durable_ir_sla_last_sweep_timestamp_seconds{job="durable-ir"})'
        )
        assert age is not None and 0 <= age < 60, age
        swept = total(scrape(client), "durable_ir_sla_last_sweep_timestamp_seconds")
        assert 0 <= time.time() - swept < 60, swept

        # The counters Prometheus holds are the service's own.
        now = scrape(client)
        assert human == total(
            now, "durable_ir_decisions_total", kind="approved", decider_type="human"
        )

        # -- the rules ------------------------------------------------------------------------
        def evaluated() -> list[dict[str, Any]]:
            loaded = prom.api("rules", type="alert")["groups"]
            rules = [r for g in loaded for r in g["rules"]]
            return loaded if all(r["health"] != "unknown" for r in rules) else []

        loaded = poll(evaluated, "every rule evaluated once", deadline)
        assert {g["name"]: {r["name"] for r in g["rules"]} for g in loaded} == groups
        for group in loaded:
            assert group["file"] == str(RULES)
            for rule in group["rules"]:
                assert (rule["health"], rule.get("lastError", "")) == ("ok", ""), rule

        # The near-deadline alert fires on the real gauge (P1, < 120 s, no `for:`).
        firing = (
            'ALERTS{alertname="DurableIrApprovalNearDeadline",alertstate="firing",'
            'incident_severity="P1",severity="critical"}'
        )
        poll(lambda: prom.query(firing), firing, deadline)
        assert prom.query('ALERTS{alertname="DurableIrApprovalPastDeadline"}') == []
        assert prom.query('ALERTS{alertname="DurableIrSlaMonitorStalled"}') == []

        # -- the dashboard's queries ----------------------------------------------------------
        with_data = set()
        for title, exprs in dashboard_queries().items():
            for expr in exprs:
                if prom.api("query", query=expr)["result"]:  # a PromQL error raises
                    with_data.add(title)
        assert {
            "Pending approvals",
            "Nearest deadline",
            "Last SLA sweep age",
            "Pending approvals by severity and graph version",
            "Nearest deadline by severity",
            "Decisions by kind and decider",
            "Alert intake by outcome",
            "Time to decision",
            "Replicas up",
        } <= with_data, with_data

        # Prometheus shuts down on SIGTERM (the ExitStack then stops the service).
        prom.stop()
        assert prom.returncode == 0, prom.output()
        assert re.search(r"level=(error|fatal)", prom.log.read_text()) is None, prom.output()


def test_http_decisions_are_timed(tmp_path: Path) -> None:
    """The service records a decision and applies it in the background; the histogram times
    both, once per decision (what DurableIrDecideSlow and the Decide latency panel read)."""
    deadline = time.monotonic() + TIMEOUT
    with (
        serving(create_app(settings=settings_for(tmp_path))) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        incident = open_incident(client, APPROVED)
        poll(
            lambda: status(client, incident)["status"] == "awaiting_approval",
            "the incident to pause for approval",
            deadline,
        )
        before = total(scrape(client), "durable_ir_decide_seconds_count")
        response = client.post(
            f"/incidents/{incident}/approve", headers=auth("alice"), params={"wait": "true"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["outcome"] == "resolved"
        assert total(scrape(client), "durable_ir_decide_seconds_count") == before + 1

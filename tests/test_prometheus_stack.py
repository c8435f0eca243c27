"""The real alert-to-evidence loop, end to end, with real components only (issue #17 item 4):

a simulated fleet serves ``/metrics`` (tests/support/exporter.py, the exporter of
examples/prometheus_stack); Debian's Prometheus scrapes it every second and evaluates an
alerting rule on checkout's 5xx ratio; Debian's Alertmanager routes the alert to
``durable-ir serve --config`` (a child process, on SQLite and on PostgreSQL); a bad deploy of
checkout makes the rule fire; the incident gathers its evidence from Prometheus, the offline
analyzer names the deploy confidently, PagerDuty (a local Events v2 server) is paged once, and
the incident pauses; alice approves over the API; the webhook executor POSTs the rollback to
the fleet, which clears the fault; the verifier reads the error ratio back from Prometheus
until it has recovered; the incident closes resolved; Alertmanager sends the resolved notice.
One incident and one page for the whole episode, despite Alertmanager's repeats.

Every wait is bounded (monotonic deadlines); nothing asserts a wall-clock time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from durable_ir import open_runtime
from support.alertmanager import require_alertmanager, running_alertmanager
from support.exporter import Exporter
from support.local_http import serving
from support.pagerduty_api import PagerDutyApi
from support.prometheus import PrometheusServer, require_prometheus, running_prometheus
from support.service import TOKENS, ServiceProcess, auth, free_port, service_env, wait_for

pytestmark = pytest.mark.slow

BASELINE_SCRAPES = 30  # healthy samples of checkout before the bad deploy
PD_KEY = "e2e-routing-key-0123456789abcdef"
EXEC_TOKEN = "e2e-automation-token-0123456789"
RUNBOOK = "https://runbooks.example/checkout/high-error-ratio"

ERROR_RATIO = (
    'sum by (service) (rate(http_requests_total{service="{service}",code=~"5.."}[5s])) '
    '/ sum by (service) (rate(http_requests_total{service="{service}"}[5s]))'
)

RULES = {
    "groups": [
        {
            "name": "fleet",
            "rules": [
                {
                    "alert": "HighErrorRatio",
                    "expr": ERROR_RATIO.replace('service="{service}",', "").replace(
                        '{service="{service}"}', ""
                    )
                    + " > 0.05",
                    # Long enough that the evidence window (it ends when the alert fired)
                    # holds a stretch of the spike, not its first sample.
                    "for": "10s",
                    "labels": {"severity": "P1"},
                    "annotations": {
                        "summary": "{{ $labels.service }} answers 5xx",
                        "runbook_url": RUNBOOK,
                    },
                }
            ],
        }
    ]
}

CONFIG = """
[graph]
name = "incident"

[graph.allow_list]
actions = {{ rollback = "medium", restart = "low" }}

[graph.rca]
threshold = 0.7
windows = ["60s", "120s", "240s"]

[gatherer]
kind = "prometheus"
base_url = "{prometheus}"
step = 1

[gatherer.queries.http_5xx_rate]
query = 'sum by (service) (rate(http_requests_total{{service="{{service}}",code=~"5.."}}[5s]))'
unit = "req/s"

[gatherer.queries.http_request_rate]
query = 'sum by (service) (rate(http_requests_total{{service="{{service}}"}}[5s]))'
unit = "req/s"

[gatherer.queries.latency_p99_seconds]
query = '''histogram_quantile(0.99, sum by (service, le)
  (rate(http_request_duration_seconds_bucket{{service="{{service}}"}}[5s])))'''
unit = "s"

[gatherer.queries.build]
query = 'app_build_info{{service="{{service}}"}}'
change = "deploy"

[analyzer]
kind = "offline"

[executor]
kind = "webhook"
url = "{exporter}/remediate"
timeout = 5
retries = 2
backoff = 0.2
token_env = "IR_TEST_EXEC_TOKEN"

[verifier]
kind = "prometheus"
wait = "60s"
interval = 1

[verifier.checks.error_ratio]
query = '''{ratio}'''
below = 0.05

[integrations.pagerduty]
routing_key_env = "IR_TEST_PD_KEY"
base_url = "{pagerduty}"
page_on_open = ["P1"]
"""


@pytest.fixture
def fleet() -> Iterator[Exporter]:
    with serving(Exporter(token=EXEC_TOKEN)) as exporter:
        yield exporter


def scrapes(prometheus: PrometheusServer, expr: str) -> int:
    result = prometheus.query(f"count_over_time(({expr})[5m:1s])")
    return int(float(result[0]["value"][1])) if result else 0


def test_an_alert_from_prometheus_is_investigated_approved_remediated_verified_and_resolved(
    tmp_path: Path, durable_url: str, fleet: Exporter
) -> None:
    require_prometheus()
    require_alertmanager()
    rules = tmp_path / "rules.yml"
    rules.write_text(json.dumps(RULES, indent=2))  # JSON is YAML
    port = free_port()
    with (
        serving(PagerDutyApi()) as pagerduty,
        running_alertmanager(
            tmp_path / "alertmanager",
            f"http://127.0.0.1:{port}/alerts",
            token=TOKENS["alertmanager"][0],
        ) as alertmanager,
        running_prometheus(
            tmp_path / "prometheus",
            [fleet.url.removeprefix("http://")],
            [rules],
            alertmanagers=[alertmanager.address],
        ) as prometheus,
    ):
        config = tmp_path / "serve.toml"
        config.write_text(
            CONFIG.format(
                prometheus=prometheus.url,
                exporter=fleet.url,
                pagerduty=pagerduty.url,
                ratio=ERROR_RATIO,
            )
        )
        env = service_env(IR_TEST_PD_KEY=PD_KEY, IR_TEST_EXEC_TOKEN=EXEC_TOKEN)
        log = tmp_path / "serve.log"
        server = ServiceProcess(durable_url, "--config", str(config), env=env, log=log, port=port)
        try:
            server.wait_ready()
            incident_id = run_episode(server, prometheus, alertmanager, fleet, pagerduty)
        except BaseException:
            print(server.output())
            raise
        finally:
            server.stop()
    # The evidence the analysis concluded on came from Prometheus: the error and request rates
    # of checkout and the deploy, read as a change from app_build_info.
    cited = asyncio.run(cited_evidence(durable_url, incident_id))
    kinds = {i.rsplit("-", 1)[0] for i in cited if i.startswith("metric-")}
    assert {"metric-http_5xx_rate", "metric-http_request_rate"} <= kinds, cited
    assert any(i.startswith("change-build-") for i in cited), cited
    assert PD_KEY not in log.read_text(errors="replace")
    assert EXEC_TOKEN not in log.read_text(errors="replace")


def run_episode(
    server: ServiceProcess,
    prometheus: PrometheusServer,
    alertmanager: Any,
    fleet: Exporter,
    pagerduty: PagerDutyApi,
) -> str:
    """The episode; returns the incident's id."""
    healthy = 'up{job="durable-ir"} == 1'
    wait_for(
        lambda: scrapes(prometheus, healthy) >= BASELINE_SCRAPES,
        timeout=120,
        what="a healthy baseline in Prometheus",
    )
    fleet.deploy("checkout", "v1.5.0", errors_per_s=8.0)  # the bad deploy
    fleet.deploy("catalog", "v8")  # harmless at the same time: the red herring

    with httpx.Client(base_url=server.url, timeout=30) as client:

        def incidents() -> list[dict[str, Any]]:
            got = client.get("/incidents", headers=auth("vic"))
            assert got.status_code == 200, got.text
            return list(got.json()["incidents"])

        def detail(incident_id: str) -> dict[str, Any]:
            got = client.get(f"/incidents/{incident_id}", headers=auth("vic"))
            assert got.status_code == 200, got.text
            return dict(got.json())

        (opened,) = wait_for(incidents, timeout=90, what="Alertmanager to open an incident")
        incident_id = opened["incident_id"]
        paused = wait_for(
            lambda: (d := detail(incident_id))["status"] in ("awaiting_approval", "finished") and d,
            timeout=120,
            what="the incident to pause for approval",
        )
        assert paused["status"] == "awaiting_approval", paused
        assert (paused["service"], paused["severity"]) == ("checkout", "P1"), paused
        # The offline analyzer named the injected fault, confidently, from Prometheus's data.
        rca = paused["rca"]
        assert rca["status"] == "confident", rca
        assert (rca["fault"], rca["service"]) == ("bad_deploy", "checkout"), rca
        assert rca["confidence"] >= 0.7, rca
        assert "v1.5.0" in rca["root_cause"], rca
        # The plan's dry run went through the webhook, which said what it would do.
        (step,) = paused["dry_run"]
        assert "would roll checkout back from v1.5.0 to v1.4.0" in step["detail"], step
        # Paged once on open (P1 is in page_on_open).
        wait_for(
            lambda: [e for e in pagerduty.events() if e["event_action"] == "trigger"],
            what="the PagerDuty trigger",
        )

        # Alertmanager repeats the firing alert (repeat_interval 4s) while it waits: the
        # repeat attaches to the incident, it opens no other.
        wait_for(
            lambda: webhook_notifications(alertmanager) >= 2,
            timeout=60,
            what="Alertmanager to send the firing alert again",
        )
        attached = wait_for(
            lambda: (d := detail(incident_id))["alerts_received"] >= 2 and d,
            timeout=30,
            what="the repeat to reach the incident",
        )
        assert attached["status"] == "awaiting_approval", attached
        assert [i["incident_id"] for i in incidents()] == [incident_id]

        decided = client.post(
            f"/incidents/{incident_id}/approve?wait=true",
            json={"reason": "roll the deploy back"},
            headers=auth("alice"),
            timeout=120,  # the answer waits for apply and for verification's bounded wait
        )
        assert decided.status_code == 200, decided.text
        done = decided.json()
        assert done["status"] == "finished", done
        assert done["outcome"] == "resolved", (done["outcome"], done["outcome_reason"], done)
        timeline = json.dumps(done["timeline"])
        assert "rolled checkout back to v1.4.0" in timeline, timeline
        assert "recovered in Prometheus" in timeline, timeline

    # The webhook got the dry run and exactly one apply, with its key, epoch and token.
    calls = [(r["phase"], r["action"], r["target"]) for r in fleet.remediations]
    assert calls == [("dry_run", "rollback", "checkout"), ("apply", "rollback", "checkout")]
    apply = fleet.remediations[1]
    assert apply["idempotency_key"] == f"{incident_id}/step-1/apply", apply
    assert isinstance(apply["epoch"], int) and apply["in_doubt"] is False, apply
    assert fleet.services["checkout"].version == "v1.4.0"
    # Prometheus sees checkout healthy again, and Alertmanager stops holding the alert.
    wait_for(
        lambda: not prometheus.query('ALERTS{alertname="HighErrorRatio",service="checkout"}'),
        timeout=60,
        what="the alerting rule to stop firing",
    )
    wait_for(
        lambda: not [a for a in alertmanager.alerts() if a["status"]["state"] == "active"],
        timeout=60,
        what="Alertmanager to resolve the alert",
    )
    with httpx.Client(base_url=server.url, timeout=30) as client:

        def final() -> dict[str, Any]:
            return dict(client.get(f"/incidents/{incident_id}", headers=auth("vic")).json())

        # Alertmanager's resolved notice reaches the incident's alert timeline.
        resolved = wait_for(
            lambda: (d := final())["alert_resolved_at"] is not None and d,
            timeout=60,
            what="Alertmanager's resolved notice on the incident's alert timeline",
        )
        kinds = [e["kind"] for e in resolved["alert_events"]]
        assert kinds[0] == "fired" and kinds[-1] == "resolved", kinds
        assert set(kinds) <= {"fired", "repeated", "resolved"}, kinds
        assert resolved["outcome"] == "resolved" and resolved["state"] == "closed", resolved
        # The alert's links and its group came along from Alertmanager.
        assert resolved["links"].get("runbook") == RUNBOOK, resolved["links"]
        # generatorURL: Prometheus's external URL (its host name by default) and the rule.
        source = resolved["links"].get("source", "")
        assert f":{prometheus.port}/graph?g0.expr=" in source, resolved["links"]
        assert resolved["group_key"], resolved
        # Alertmanager re-sent the firing alert (and sent the resolved notice): several
        # notifications, still one incident.
        assert webhook_notifications(alertmanager) >= 3
        everything = client.get("/incidents", headers=auth("vic")).json()["incidents"]
        assert [i["incident_id"] for i in everything] == [incident_id], everything
    triggers = [e for e in pagerduty.events() if e["event_action"] == "trigger"]
    assert len(triggers) == 1, pagerduty.events()
    wait_for(  # the page is resolved with the incident
        lambda: pagerduty.alerts and not pagerduty.open_alerts(),
        what="the PagerDuty alert to be resolved",
    )
    return incident_id


async def cited_evidence(database_url: str, incident_id: str) -> list[str]:
    """The evidence ids the concluding hypothesis cites, from the incident's state."""
    async with open_runtime(database_url) as rt:
        snapshot = await rt.get(incident_id)
    return list(snapshot.values["rca"]["hypothesis"]["cited_evidence"])


def webhook_notifications(alertmanager: Any) -> int:
    """How many notifications Alertmanager sent to its webhook receiver (its own metric)."""
    text = httpx.get(f"{alertmanager.url}/metrics", timeout=10).text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("alertmanager_notifications_total{") and 'integration="webhook"' in line
    )

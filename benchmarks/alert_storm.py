"""Alert-storm benchmark: Alertmanager webhooks from many groups, against ``durable-ir serve``
and a hand-written FastAPI + LangGraph intake, in one run.

The workload (a pure function of ``--seed``, so every variant gets the same one) models
Alertmanager: ``--groups`` groups (``groupKey``, ``groupLabels``, ``commonLabels``), each with
2–6 alerts with stable fingerprints and ``startsAt``. Alertmanager re-sends the WHOLE group on
every change and every repeat interval, so most alert objects delivered are repeats; while the
storm goes on, an alert now and then resolves (sent once with ``status: resolved`` and
``endsAt``) and later fires again (a new ``startsAt``: a new firing, same fingerprint). The
storm is compressed: ``--alerts`` alert objects (default 10,000) within ``--duration`` seconds
(default 60), i.e. each group re-sent about every ``duration × groups × 4 / alerts`` seconds
(0.7 s at the defaults; a real ``group_interval`` is rather 5 min, which is what makes this a
storm). "Alerts" counts alert objects delivered, repeats included.

Two services, each a separate OS process on a free loopback port, on a fresh PostgreSQL
database (created and dropped) or a temporary SQLite file:

- **durable-ir**: ``durable-ir serve --graph _storm_apps:build_graph`` (the service as
  documented in docs/service.md, default settings, ``--log-level warning``): the builder's
  incident graph whose gatherer finds nothing and whose analyzer is not confident, so every
  incident escalates and pages PagerDuty once through ``PagerDutyNotifier`` (which retries
  429s) — see ``_storm_apps.py``;
- **hand-written**: ``_storm_apps:baseline_app`` under uvicorn: one LangGraph thread per
  webhook on LangGraph's stock saver, run in a FastAPI background task, paging once per
  incident with ``httpx`` and no retry.

Both page a local PagerDuty Events v2 server (``_local_pagerduty.py``) that enforces
``--pd-limit`` events per minute per routing key (default 120) with 429 + ``Retry-After``.

Each variant and store runs two phases, each on a fresh service, database and PagerDuty:

- **offered**: webhooks sent at their scheduled times (the workload's rate, 167 alerts/s at
  the defaults), at most ``--concurrency`` in flight;
- **saturating**: the same webhooks sent as fast as the service takes them, ``--concurrency``
  in flight: the service's intake capacity.

After sending, each phase waits (at most ``--settle-timeout`` s) until the service has no
incident left to run (durable-ir: no open incident; hand-written: no background run), so the
pages, their retries and 429s are all counted. Reported per variant and store: alerts and
webhooks sent, incidents opened (from the answers), PagerDuty triggers accepted, 429s sent,
unretried 429s (429s after which the same event — action and ``dedup_key`` — was never
accepted), intake (alerts/s from the first send to the last answer) and p50/p99 webhook
latency, for both phases; ratios ours / hand-written; how many cores other processes kept
busy meanwhile. The last line is machine-readable:
``alert_storm store=… incidents=… pd_triggers=… unretried_429=… intake_per_s=…
baseline_incidents=… …`` (for ``--store both``: PostgreSQL's; ``intake_per_s`` is the
saturating phase's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ROOT,
    disturbed,
    exit_cleanly_on_sigterm,
    fmt,
    fresh_database,
    host_cpu_seconds,
    is_local_server,
    log,
    percentile,
    postgres_cpu_seconds,
    server_url,
)
from _local_pagerduty import LocalPagerDuty

VARIANTS = ("handwritten", "ours")
LABELS = {"handwritten": "hand-written", "ours": "durable-ir"}
PHASES = ("offered", "saturating")
EPOCH = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
NEVER = "0001-01-01T00:00:00Z"
ALERTNAMES = ("HighErrorRate", "HighLatency", "PodCrashLooping", "DiskFilling", "TargetDown")


# --------------------------------------------------------------------------- the workload


@dataclass(frozen=True)
class Webhook:
    """One Alertmanager notification: when it is due (seconds into the storm) and its body."""

    at: float
    body: dict[str, Any]

    @property
    def alerts(self) -> int:
        return len(self.body["alerts"])


@dataclass
class Workload:
    webhooks: list[Webhook]
    groups: int
    fingerprints: int
    firings: int
    """distinct (fingerprint, startsAt) pairs sent firing"""
    resolved: int
    """resolved alert objects sent"""

    @property
    def alerts(self) -> int:
        return sum(w.alerts for w in self.webhooks)


def _iso(seconds: float) -> str:
    return (EPOCH + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def build_workload(seed: int, alerts: int, groups: int, duration: float) -> Workload:
    """Webhooks in time order, delivering exactly ``alerts`` alert objects within
    ``duration`` seconds from ``groups`` Alertmanager groups (see the module doc)."""
    rng = random.Random(seed)
    members: list[list[dict[str, Any]]] = []
    meta: list[dict[str, Any]] = []
    for g in range(groups):
        name = ALERTNAMES[g % len(ALERTNAMES)]
        service = f"svc-{g:02d}"
        severity = rng.choice(("error", "warning"))
        group_labels = {"alertname": name, "service": service}
        meta.append(
            {
                "groupKey": f'{{}}/{{severity=~"error|warning"}}:{{alertname="{name}", '
                f'service="{service}"}}',
                "groupLabels": group_labels,
                "commonLabels": {**group_labels, "severity": severity},
            }
        )
        alerts_in_group = []
        for i in range(rng.randint(2, 6)):
            labels = {**group_labels, "severity": severity, "instance": f"{service}-{i}:9100"}
            fingerprint = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[
                :16
            ]
            alerts_in_group.append(
                {
                    "labels": labels,
                    "fingerprint": fingerprint,
                    "starts": -rng.uniform(30, 600),  # fired before the storm's first send
                    "state": "firing",
                }
            )
        members.append(alerts_in_group)
    mean_size = statistics.mean(len(m) for m in members)
    period = duration * groups * mean_size / alerts  # each group re-sent about this often
    # Every group's first notification within the first tenth (group_wait, staggered); then
    # one every period, jittered.
    schedule: list[tuple[float, int]] = []
    for g in range(groups):
        t = rng.uniform(0, min(period, duration / 10))
        while t < duration * 1.5:
            schedule.append((t, g))
            t += period * rng.uniform(0.8, 1.2)
    schedule.sort()
    webhooks: list[Webhook] = []
    firings: set[tuple[str, float]] = set()
    resolved = 0
    sent = 0
    for t, g in schedule:
        if sent >= alerts:
            break
        items: list[dict[str, Any]] = []
        for alert in members[g]:
            if alert["state"] == "firing" and sent > 0 and rng.random() < 0.004:
                alert["state"] = "resolving"
                alert["ends"] = t
            elif alert["state"] == "resolved" and rng.random() < 0.05:
                alert["state"] = "firing"
                alert["starts"] = t
            if alert["state"] == "resolved":
                continue  # sent once as resolved; Alertmanager then drops it from the group
            status = "firing" if alert["state"] == "firing" else "resolved"
            items.append(
                {
                    "status": status,
                    "labels": dict(alert["labels"]),
                    "annotations": {
                        "summary": f"{alert['labels']['alertname']} on "
                        f"{alert['labels']['instance']}",
                        "runbook_url": "https://runbooks.example.com/"
                        + alert["labels"]["alertname"],
                    },
                    "startsAt": _iso(alert["starts"]),
                    "endsAt": _iso(alert["ends"]) if status == "resolved" else NEVER,
                    "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
                    "fingerprint": alert["fingerprint"],
                }
            )
            if status == "firing":
                firings.add((alert["fingerprint"], alert["starts"]))
            else:
                resolved += 1
                alert["state"] = "resolved"
        items = items[: alerts - sent]
        if not items:
            continue
        sent += len(items)
        body = {
            "version": "4",
            "receiver": "durable-ir",
            "status": "firing" if any(i["status"] == "firing" for i in items) else "resolved",
            "externalURL": "http://alertmanager:9093",
            "truncatedAlerts": 0,
            **{k: dict(v) if isinstance(v, dict) else v for k, v in meta[g].items()},
            "commonAnnotations": {},
            "alerts": items,
        }
        webhooks.append(Webhook(min(t, duration), body))
    if sent < alerts:
        raise SystemExit(f"the workload delivers only {sent} of {alerts} alerts; lower --alerts")
    # Spread the sends over exactly ``duration`` seconds.
    last = webhooks[-1].at or 1.0
    webhooks = [Webhook(w.at * duration / last, w.body) for w in webhooks]
    return Workload(
        webhooks=webhooks,
        groups=groups,
        fingerprints=sum(len(m) for m in members),
        firings=len(firings),
        resolved=resolved,
    )


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (all its threads), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Service:
    url: str
    token: str
    proc: subprocess.Popen[bytes]
    log_path: Path


@contextlib.contextmanager
def run_service(
    variant: str, db: str, pagerduty: LocalPagerDuty, workdir: Path, startup_timeout: float
) -> Iterator[Service]:
    """Start the ``variant`` service on ``db`` as a child process; stop it afterwards (SIGTERM,
    then SIGKILL), also on failure."""
    port = free_port()
    token = secrets.token_urlsafe(24)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(
            None,
            [
                str(ROOT / "benchmarks"),
                str(ROOT / "tests"),
                str(ROOT / "src"),
                env.get("PYTHONPATH"),
            ],
        )
    )
    env["STORM_PD_URL"] = pagerduty.url
    env["STORM_PD_ROUTING_KEY"] = "S" * 32
    if variant == "ours":
        env["DURABLE_IR_API_TOKENS"] = json.dumps(
            [
                {
                    "identity": "alertmanager",
                    "roles": ["ingest", "viewer"],
                    "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
                }
            ]
        )
        url = db if db.startswith("postgresql://") else f"sqlite:///{db}"
        argv = [
            "-c",
            "import sys; from durable_ir.cli import main; sys.exit(main())",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database-url",
            url,
            "--graph",
            "_storm_apps:build_graph",
            "--graph-name",
            "storm",
            "--log-level",
            "warning",
        ]
    else:
        env["STORM_DB"] = db
        argv = [
            "-m",
            "uvicorn",
            "_storm_apps:baseline_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    log_path = workdir / f"{variant}-{port}.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(workdir),
            start_new_session=True,
        )
    service = Service(f"http://127.0.0.1:{port}", token, proc, log_path)
    try:
        _wait_ready(service, startup_timeout)
        yield service
    except BaseException:
        log(f"{variant} service log (last lines):\n{_tail(log_path)}")
        raise
    finally:
        _stop(proc)


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def _wait_ready(service: Service, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise RuntimeError(f"the service exited with status {service.proc.returncode}")
        try:
            if httpx.get(service.url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the service was not ready within {timeout:.0f}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# --------------------------------------------------------------------------- the storm


@dataclass
class PhaseResult:
    alerts: int = 0
    webhooks: int = 0
    incidents: int = 0
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    max_lag_s: float = 0.0
    settled: bool = False
    settle_s: float = 0.0
    left: int = 0
    pd_triggers: int = 0
    pd_pages: int = 0
    pd_429: int = 0
    pd_unretried: int = 0
    service_cpu_s: float | None = None
    other_cores: float | None = None

    @property
    def rate(self) -> float:
        return self.alerts / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99)


async def send_storm(
    service: Service, webhooks: Sequence[Webhook], *, paced: bool, concurrency: int
) -> PhaseResult:
    """Send every webhook (at its time if ``paced``), ``concurrency`` at most in flight."""
    import httpx

    result = PhaseResult()
    headers = {"authorization": f"Bearer {service.token}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(
        base_url=service.url, headers=headers, limits=limits, timeout=60
    ) as client:

        async def send(hook: Webhook) -> None:
            try:
                began = time.perf_counter()
                reply = await client.post("/alerts", json=hook.body)
                result.latencies_ms.append((time.perf_counter() - began) * 1000)
                if reply.status_code == 202:
                    result.incidents += int(reply.json().get("created", 0))
                    result.alerts += hook.alerts
                    result.webhooks += 1
                else:
                    key = str(reply.status_code)
                    result.errors[key] = result.errors.get(key, 0) + 1
            except httpx.HTTPError as exc:
                key = type(exc).__name__
                result.errors[key] = result.errors.get(key, 0) + 1
            finally:
                gate.release()

        tasks: list[asyncio.Task[None]] = []
        started = time.perf_counter()
        for hook in webhooks:
            if paced:
                delay = hook.at - (time.perf_counter() - started)
                if delay > 0:
                    await asyncio.sleep(delay)
            await gate.acquire()
            if paced:
                result.max_lag_s = max(result.max_lag_s, time.perf_counter() - started - hook.at)
            tasks.append(asyncio.create_task(send(hook)))
        await asyncio.gather(*tasks)
        result.wall_s = time.perf_counter() - started
    return result


async def remaining_work(variant: str, service: Service) -> int:
    """Incidents the service still has to run: durable-ir's open incidents (every storm
    incident escalates and closes), the hand-written intake's background runs."""
    import httpx

    headers = {"authorization": f"Bearer {service.token}"}
    async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=30) as client:
        if variant == "ours":
            reply = await client.get("/incidents", params={"status": "open", "limit": 1000})
            reply.raise_for_status()
            return int(reply.json()["count"])
        reply = await client.get("/stats")
        reply.raise_for_status()
        return int(reply.json()["in_flight"])


async def settle(variant: str, service: Service, limit_s: float) -> tuple[bool, float, int]:
    """Wait until the service has nothing left to run (bounded); (settled, seconds, left)."""
    began = time.monotonic()
    left = -1
    while time.monotonic() - began < limit_s:
        left = await remaining_work(variant, service)
        if left == 0:
            return True, time.monotonic() - began, 0
        await asyncio.sleep(0.5)
    return False, time.monotonic() - began, left


def run_phase(
    variant: str,
    store: str,
    phase: str,
    workload: Workload,
    args: argparse.Namespace,
    server: str | None,
) -> PhaseResult:
    """One variant, one store, one phase: fresh database, PagerDuty and service process."""
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="storm-")))
        if store == "postgres":
            assert server is not None
            db = stack.enter_context(fresh_database(server, prefix=f"durable_ir_storm_{variant}"))
        else:
            db = str(workdir / "incidents.db")
        pagerduty = stack.enter_context(LocalPagerDuty(rate_limit_per_minute=args.pd_limit))
        service = stack.enter_context(
            run_service(variant, db, pagerduty, workdir, args.startup_timeout)
        )
        db_cpu = store == "postgres" and server is not None and is_local_server(server)
        svc_before = process_cpu_seconds(service.proc.pid)
        host_before = host_cpu_seconds()
        pg_before = postgres_cpu_seconds() if db_cpu else None
        own_before = time.process_time()
        result = asyncio.run(
            send_storm(
                service,
                workload.webhooks,
                paced=phase == "offered",
                concurrency=args.concurrency,
            )
        )
        own = time.process_time() - own_before
        svc_after = process_cpu_seconds(service.proc.pid)
        host_after = host_cpu_seconds()
        pg_after = postgres_cpu_seconds() if db_cpu else None
        if svc_before is not None and svc_after is not None:
            result.service_cpu_s = svc_after - svc_before
        if host_before is not None and host_after is not None and result.wall_s > 0:
            busy = host_after - host_before - own - (result.service_cpu_s or 0.0)
            if pg_before is not None and pg_after is not None:
                busy -= pg_after - pg_before
            result.other_cores = max(0.0, busy) / result.wall_s
        result.settled, result.settle_s, result.left = asyncio.run(
            settle(variant, service, args.settle_timeout)
        )
        with pagerduty.lock:
            result.pd_triggers = sum(1 for e in pagerduty.events if e.action == "trigger")
            result.pd_pages = sum(1 for e in pagerduty.events if e.opened_alert)
            result.pd_429 = len(pagerduty.throttled)
        result.pd_unretried = pagerduty.unretried_throttles()
        if result.errors:
            log(f"{variant}/{store}/{phase}: refused webhooks {result.errors}")
    return result


# --------------------------------------------------------------------------- report


def report(
    results: dict[tuple[str, str, str], PhaseResult],
    workload: Workload,
    args: argparse.Namespace,
) -> list[str]:
    out = [
        f"alert_storm: {workload.alerts} alerts in {len(workload.webhooks)} webhooks over "
        f"{args.duration:g}s from {workload.groups} Alertmanager groups (seed {args.seed}): "
        f"{workload.fingerprints} fingerprints, {workload.firings} firings (fingerprint + "
        f"startsAt), {workload.resolved} resolved notices; concurrency {args.concurrency}; "
        f"local PagerDuty: {args.pd_limit} events/min per routing key, 429 + Retry-After beyond; "
        f"{os.cpu_count()} cores here",
    ]
    header = (
        f"{'variant':<14}{'store':<10}{'alerts':>7}{'hooks':>7}{'incidents':>11}"
        f"{'PD trig':>8}{'429s':>6}{'unretr':>7}{'offered a/s':>12}{'sat a/s':>9}"
        f"{'p50/p99 ms offered':>20}{'p50/p99 ms sat':>17}{'svc cpu ms/a':>13}{'settle s':>10}"
    )
    out += [header, "-" * len(header)]
    for store in args.stores:
        for variant in VARIANTS:
            off = results.get((variant, store, "offered"))
            sat = results.get((variant, store, "saturating"))
            if off is None or sat is None:
                continue
            cpu = (
                off.service_cpu_s / off.alerts * 1000
                if off.service_cpu_s is not None and off.alerts
                else None
            )
            settle_s = fmt(off.settle_s, ".0f") + ("" if off.settled else f"!{off.left}")
            out.append(
                f"{LABELS[variant]:<14}{store:<10}{off.alerts:>7}{off.webhooks:>7}"
                f"{str(off.incidents) + '/' + str(sat.incidents):>11}"
                f"{off.pd_triggers:>8}{off.pd_429:>6}{off.pd_unretried:>7}"
                f"{fmt(off.rate):>12}{fmt(sat.rate):>9}"
                f"{fmt(off.p50) + '/' + fmt(off.p99):>20}{fmt(sat.p50) + '/' + fmt(sat.p99):>17}"
                f"{fmt(cpu, '.2f'):>13}{settle_s:>10}"
            )
        ours = (results.get(("ours", store, "offered")), results.get(("ours", store, "saturating")))
        hand = (
            results.get(("handwritten", store, "offered")),
            results.get(("handwritten", store, "saturating")),
        )
        if all(ours) and all(hand):
            o_off, o_sat = ours
            h_off, h_sat = hand
            assert o_off and o_sat and h_off and h_sat
            out.append(
                f"{'ours/hand':<14}{store:<10}{'':>7}{'':>7}"
                f"{fmt(_ratio(o_off.incidents, h_off.incidents), '.3f'):>11}"
                f"{fmt(_ratio(o_off.pd_triggers, h_off.pd_triggers), '.2f'):>8}"
                f"{'':>6}{'':>7}{fmt(_ratio(o_off.rate, h_off.rate), '.2f'):>12}"
                f"{fmt(_ratio(o_sat.rate, h_sat.rate), '.2f'):>9}"
                f"{_ratios(o_off, h_off):>20}{_ratios(o_sat, h_sat):>17}"
            )
    out += [
        "incidents = opened in the offered / saturating phase (from the answers); PD trig = "
        "trigger events the local PagerDuty accepted, 429s = events it refused, unretr = 429s "
        "whose event (action + dedup_key) was never accepted later — all from the offered phase;",
        "offered a/s = alerts over the time from the first send to the last answer, sent at the "
        "workload's rate; sat a/s = the same webhooks sent as fast as the service takes them; "
        "latency = one webhook's send to answer; svc cpu = the service process's CPU per alert "
        "(offered); settle = seconds until nothing was left to run ('!N': gave up, N left).",
        f"reference: {workload.groups} groups (one incident each at best), "
        f"{workload.firings} firings (at most one incident and one page each).",
    ]
    others = [r.other_cores for r in results.values() if r.other_cores is not None]
    lag = max((r.max_lag_s for r in results.values()), default=0.0)
    out.append(f"the offered phases' sends were at most {lag:.2f}s behind schedule.")
    if others:
        out.append(
            f"other processes on this host kept {statistics.mean(others):.2f} cores busy on "
            f"average while webhooks were sent (max {max(others):.2f} in one phase; "
            f"{os.cpu_count()} cores here, shared by the service, the load generator and the "
            f"database){disturbed(statistics.mean(others))}"
        )
    return out


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _ratios(ours: PhaseResult, hand: PhaseResult) -> str:
    """p50 and p99 latency, ours over hand-written's."""
    return fmt(_ratio(ours.p50, hand.p50), ".2f") + "/" + fmt(_ratio(ours.p99, hand.p99), ".2f")


def last_line(results: dict[tuple[str, str, str], PhaseResult], args: argparse.Namespace) -> str:
    store = "postgres" if "postgres" in args.stores else args.stores[0]
    o_off, o_sat = results[("ours", store, "offered")], results[("ours", store, "saturating")]
    h_off, h_sat = (
        results[("handwritten", store, "offered")],
        results[("handwritten", store, "saturating")],
    )
    return (
        f"alert_storm store={store} incidents={o_off.incidents} pd_triggers={o_off.pd_triggers} "
        f"unretried_429={o_off.pd_unretried} intake_per_s={o_sat.rate:.1f} "
        f"baseline_incidents={h_off.incidents} alerts={o_off.alerts} "
        f"offered_per_s={o_off.rate:.1f} p99_ms={o_sat.p99:.1f} "
        f"baseline_pd_triggers={h_off.pd_triggers} baseline_unretried_429={h_off.pd_unretried} "
        f"baseline_intake_per_s={h_sat.rate:.1f}"
    )


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--store", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument("--alerts", type=int, default=10_000, help="alert objects delivered")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of the storm")
    parser.add_argument("--groups", type=int, default=30, help="Alertmanager groups")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--concurrency", type=int, default=16, help="webhooks in flight")
    parser.add_argument("--pd-limit", type=int, default=120, help="PagerDuty events/min/key")
    parser.add_argument("--settle-timeout", type=float, default=300.0)
    parser.add_argument("--startup-timeout", type=float, default=60.0)
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated: handwritten,ours"
    )
    parser.add_argument(
        "--url",
        default=None,
        help="PostgreSQL server URL (default: $DURABLE_IR_BENCH_POSTGRES_URL, else the server "
        "the tests use); a throwaway database per variant and phase is created and dropped",
    )
    parser.add_argument("--smoke", action="store_true", help="a few hundred alerts, for CI")
    args = parser.parse_args(argv)
    if args.smoke:
        args.alerts, args.duration, args.groups, args.settle_timeout = 300, 3.0, 6, 60.0
    if args.alerts < 1 or args.duration <= 0 or args.groups < 1 or args.concurrency < 1:
        parser.error("--alerts, --groups, --concurrency must be >= 1 and --duration > 0")
    args.stores = ["postgres", "sqlite"] if args.store == "both" else [args.store]
    chosen = [v for v in args.variants.split(",") if v]
    if not set(chosen) <= set(VARIANTS):
        parser.error("--variants names only handwritten and ours")
    args.chosen = chosen
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    exit_cleanly_on_sigterm()
    started = time.perf_counter()
    workload = build_workload(args.seed, args.alerts, args.groups, args.duration)
    server = server_url(args.url) if "postgres" in args.stores else None
    results: dict[tuple[str, str, str], PhaseResult] = {}
    for store in args.stores:
        for phase in PHASES:
            for variant in [v for v in VARIANTS if v in args.chosen]:
                r = run_phase(variant, store, phase, workload, args, server)
                results[(variant, store, phase)] = r
                log(
                    f"{variant}/{store}/{phase}: {r.alerts} alerts in {r.wall_s:.1f}s "
                    f"({r.rate:.0f}/s), {r.incidents} incidents, {r.pd_triggers} PD triggers, "
                    f"{r.pd_429} 429s ({r.pd_unretried} unretried), p99 {r.p99:.0f} ms, "
                    f"settled {r.settled} in {r.settle_s:.0f}s"
                )
    print("\n".join(report(results, workload, args)))
    log(f"total {time.perf_counter() - started:.1f}s")
    if set(VARIANTS) <= set(args.chosen):
        print(last_line(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

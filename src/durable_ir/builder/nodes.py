"""The built-in nodes of the incident graph, and the routes between them.

Each node is small and does one thing; what it writes is listed on
:class:`~durable_ir.builder.state.IncidentState`. Nodes that act on the world (apply,
rollback) handle one step per run, so every finished step is checkpointed before the next
starts, and a crash re-runs at most the step that was running. Nodes that notify go through
:func:`~durable_ir.notifications.send_once`, so a re-run does not notify twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig

from durable_ir.alerts import check_alert
from durable_ir.builder.planning import Planner, RollbackRule, plan_from_hypothesis
from durable_ir.builder.triage import SeverityRule, Triager, TriageResult, triage_by_rules
from durable_ir.clock import Clock
from durable_ir.decisions import ALERT_RESOLVED, ALERTMANAGER_IDENTITY
from durable_ir.errors import ConfigurationError, OwnershipLost
from durable_ir.ledger.ownership import EPOCH_CONFIG_KEY
from durable_ir.logs import log_context
from durable_ir.notifications import (
    EventKind,
    Fence,
    IncidentEvent,
    IncidentNotifier,
    send_once,
)
from durable_ir.records import ApprovalRecord
from durable_ir.remediation import (
    AllowList,
    Executor,
    RemediationPlan,
    StepAction,
    StepContext,
    VerificationContext,
    Verifier,
)
from durable_ir.services import SERVICES_CONFIG_KEY, NodeServices

__all__ = ["IncidentNodes", "check_alert"]

log = logging.getLogger("durable_ir.builder")

State = Mapping[str, Any]
Update = dict[str, Any]


def _incident_id(config: RunnableConfig) -> str:
    return str((config.get("configurable") or {}).get("thread_id", ""))


def _services(config: RunnableConfig) -> NodeServices | None:
    services = (config.get("configurable") or {}).get(SERVICES_CONFIG_KEY)
    return services if isinstance(services, NodeServices) else None


def _notified(sent: list[dict[str, Any]]) -> Update:
    """``state["notifications"]`` entries, only when there are some: an empty write would
    still store a new copy of the list in the checkpoint."""
    return {"notifications": sent} if sent else {}


def _escalate(reason: str, detail: str) -> Update:
    return {"escalation": {"reason": reason, "detail": detail}}


@dataclass
class IncidentNodes:
    """The built-in nodes, sharing the builder's parts."""

    allow_list: AllowList
    executor: Executor
    verifier: Verifier
    clock: Clock
    rules: Sequence[SeverityRule]
    triager: Triager | None
    planner: Planner | None
    rollbacks: Mapping[str, RollbackRule]
    notifiers: Sequence[IncidentNotifier]

    # -- shared -------------------------------------------------------------------------------

    def now(self, config: RunnableConfig) -> datetime:
        """The runtime's clock when run by a runtime, else the builder's."""
        services = _services(config)
        return services.clock() if services else self.clock()

    def event(self, config: RunnableConfig, stage: str, text: str) -> Update:
        """A timeline entry."""
        return {"timeline": [{"at": self.now(config).isoformat(), "stage": stage, "event": text}]}

    async def notify(
        self,
        config: RunnableConfig,
        state: State,
        kind: EventKind,
        *,
        summary: str = "",
        reason: str | None = None,
        approval: ApprovalRecord | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Tell every channel, once each; what each did, for ``state["notifications"]``."""
        if not self.notifiers:
            return []
        services = _services(config)
        if services is None:
            raise ConfigurationError(
                "notifications need the runtime's outbox: run the graph with Runtime.start(), "
                "or invoke it with Runtime.config_for(incident_id)"
            )
        alert = state.get("alert") or {}
        event = IncidentEvent(
            kind=kind,
            incident_id=_incident_id(config),
            severity=str(state.get("severity") or alert.get("severity") or "P2"),
            title=str(state.get("title") or alert.get("name") or "incident"),
            at=self.now(config),
            service=alert.get("service"),
            summary=summary,
            reason=reason,
            approval=approval,
            details=dict(details or {}),
        )
        epoch = (config.get("configurable") or {}).get(EPOCH_CONFIG_KEY)
        fence = None if epoch is None else Fence(int(epoch), services.worker)
        done = []
        for notifier in self.notifiers:
            sent = await send_once(services.ledger, notifier, event, fence=fence)
            done.append(
                {"channel": sent.channel, "kind": kind, "repeated": sent.repeated}
                | ({"error": sent.error} if sent.error else {})
            )
        return done

    async def notify_decision(self, config: RunnableConfig, state: State) -> list[dict[str, Any]]:
        """Tell channels how the approval was decided (keyed by approval: sent once)."""
        approval = state.get("approval") or {}
        services = _services(config)
        if not self.notifiers or not approval.get("approval_id") or services is None:
            return []
        record = await services.ledger.get(str(approval["approval_id"]))
        if record is None:
            return []
        return await self.notify(
            config,
            state,
            "decided",
            summary=record.describe(),
            reason=record.reason,
            approval=record,
        )

    # -- ingest and triage --------------------------------------------------------------------

    async def ingest(self, state: State, config: RunnableConfig) -> Update:
        """Normalise the alert (an :class:`~durable_ir.Alert` or the generic JSON shape)."""
        given = state.get("alert")
        alert = check_alert(given)
        normalised = alert.as_state()
        title = f"{alert.name} on {alert.service}"
        # Runtime.ingest hands over the alert normalised already: writing it again would only
        # store a second copy of it in the checkpoint.
        update: Update = {} if normalised == given else {"alert": normalised}
        if alert.links:  # shown to the approver next to the plan (runbook, dashboard, …)
            update["alert_links"] = dict(alert.links)
        return update | {
            "title": title,
            **self.event(config, "ingest", f"alert {alert.name} received for {alert.service}"),
        }

    async def triage(self, state: State, config: RunnableConfig) -> Update:
        """Severity by rules, then by the triager if there is one."""
        alert = state.get("alert") or {}
        result = triage_by_rules(alert, self.rules)
        if self.triager is not None:
            try:
                second = await self.triager(alert, result)
                if not isinstance(second, TriageResult):
                    raise TypeError(f"the triager returned {type(second).__name__}")
                result = second
            except Exception as exc:  # the rules' answer stands
                log.warning("triager failed, keeping %s by rules: %s", result.severity, exc)
        update: Update = {
            "severity": result.severity,
            "triage": {"severity": result.severity, "reason": result.reason, "by": result.by},
        }
        sent = await self.notify(config, {**state, **update}, "opened", summary=result.reason)
        return (
            update
            | _notified(sent)
            | self.event(config, "triage", f"{result.severity}: {result.reason}")
        )

    # -- planning -----------------------------------------------------------------------------

    async def plan(self, state: State, config: RunnableConfig) -> Update:
        """A remediation plan from the root cause, checked against the allow-list."""
        rca = state.get("rca") or {}
        hypothesis = rca.get("hypothesis")
        found = self.event(
            config,
            "rca",
            f"root cause at confidence {float(rca.get('confidence') or 0):.2f} after "
            f"{rca.get('attempts')} attempt(s): {(hypothesis or {}).get('root_cause')}",
        )
        return _with_timeline(found, await self._plan(state, config, rca, hypothesis))

    async def _plan(
        self, state: State, config: RunnableConfig, rca: State, hypothesis: Any
    ) -> Update:
        try:
            if self.planner is not None:
                made = await self.planner(state)
            else:
                made = plan_from_hypothesis(hypothesis, self.allow_list, rollbacks=self.rollbacks)
        except Exception as exc:  # a broken planner escalates the incident, never stalls it
            detail = f"planning failed: {type(exc).__name__}: {exc}"
            return _escalate("no_plan", detail) | self.event(config, "plan", detail)
        if made is None:
            detail = "the analysis suggested no remediation"
            return (
                {"plan": None} | _escalate("no_plan", detail) | self.event(config, "plan", detail)
            )
        try:
            plan = self.allow_list.check(made)
        except ValueError as exc:
            detail = f"the plan is outside the allow-list: {exc}"
            raw = made.model_dump(mode="json") if isinstance(made, RemediationPlan) else made
            return (
                {"plan": raw}
                | _escalate("plan_refused", detail)
                | self.event(config, "plan", detail)
            )
        confidence = float(rca.get("confidence") or 0.0)
        cause = str((hypothesis or {}).get("root_cause") or "unknown")
        steps = "; ".join(f"{s.action} {s.target}" for s in plan.steps)
        summary = (
            f"{state.get('severity', 'P2')} {state.get('title', '')}: {cause} "
            f"(confidence {confidence:.2f}). Plan: {steps}"
        )
        return {
            "plan": plan.model_dump(mode="json"),
            "summary": summary[:4_000],
            **self.event(config, "plan", f"{len(plan.steps)} step(s): {steps}"),
        }

    async def dry_run(self, state: State, config: RunnableConfig) -> Update:
        """Preview every step before anyone approves it."""
        plan = RemediationPlan.model_validate(state["plan"])
        previews = []
        for number, step in enumerate(plan.steps, start=1):
            ok, detail = await self._run_step(step, self._context(state, config, number, "dry_run"))
            previews.append({"number": number, "action": step.action, "target": step.target,
                             "ok": ok, "detail": detail})  # fmt: skip
        failed = [p for p in previews if not p["ok"]]
        update: Update = {"dry_run": previews}
        if failed:
            detail = "; ".join(f"step {p['number']}: {p['detail']}" for p in failed)
            return (
                update
                | _escalate("dry_run_failed", detail)
                | self.event(config, "dry_run", f"dry run failed: {detail}")
            )
        return update | self.event(config, "dry_run", f"{len(previews)} step(s) previewed")

    # -- apply, rollback, verify --------------------------------------------------------------

    def _context(
        self,
        state: State,
        config: RunnableConfig,
        number: int,
        phase: Literal["dry_run", "apply", "rollback"],
    ) -> StepContext:
        return StepContext(
            incident_id=_incident_id(config),
            alert=state.get("alert") or {},
            number=number,
            phase=phase,
        )

    async def _run_claimed(
        self, step: StepAction, context: StepContext, config: RunnableConfig
    ) -> tuple[bool, str]:
        """Run an apply or rollback step under a claim fenced on the run's ownership epoch.

        The claim is written before the executor runs and finished with its result after;
        either write failing means another worker took the incident over, and
        ``OwnershipLost`` stops the run. A step an earlier owner finished is not run again
        (its recorded result stands); one it claimed and left unfinished runs again with the
        same idempotency key and ``in_doubt=True``. Outside a runtime (no epoch), the step
        just runs."""
        services = _services(config)
        epoch = (config.get("configurable") or {}).get(EPOCH_CONFIG_KEY)
        if services is None or epoch is None:
            return await self._run_step(step, context)
        ledger, key, incident_id = services.ledger, context.idempotency_key, context.incident_id
        claims = await ledger.claim_step(incident_id, key, epoch, services.worker, services.clock())
        if claims is None:
            raise OwnershipLost(incident_id, epoch, f"step {key} not claimed")
        earlier = [c for c in claims if c.epoch < epoch]
        finished = [c for c in earlier if c.finished_at is not None]
        if finished:
            ok, detail = bool(finished[-1].ok), str(finished[-1].detail or "")
            detail = f"{detail} (finished by an earlier owner, epoch {finished[-1].epoch})"
        else:
            if earlier:
                log.warning(
                    "incident %s: step %s is in doubt (claimed by epoch %d, never finished): "
                    "running it again with the same idempotency key",
                    incident_id,
                    key,
                    earlier[-1].epoch,
                    extra=log_context(incident_id, event="step_in_doubt"),
                )
            claimed = replace(context, epoch=epoch, in_doubt=bool(earlier))
            ok, detail = await self._run_step(step, claimed)
        if not await ledger.finish_step(
            incident_id, key, epoch, ok, detail[:4_000], services.clock()
        ):
            raise OwnershipLost(incident_id, epoch, f"result of step {key} not recorded")
        return ok, detail

    async def _run_step(self, step: StepAction, context: StepContext) -> tuple[bool, str]:
        """One executor call for ``context.phase``, as ``(ok, detail)``: an executor that
        raises has failed the step, it has not crashed the run."""
        run = {
            "dry_run": self.executor.dry_run,
            "apply": self.executor.apply,
            "rollback": self.executor.rollback,
        }[context.phase]
        try:
            result = await run(step, context)
        except Exception as exc:
            raised = "dry run raised " if context.phase == "dry_run" else ""
            return False, f"{raised}{type(exc).__name__}: {exc}"
        return bool(result.ok), str(result.detail)

    async def apply(self, state: State, config: RunnableConfig) -> Update:
        """Apply the next step of the approved plan (one step per run)."""
        done = list(state.get("applied_steps") or [])
        update: Update = {}
        decided: Update = {}
        if not done:  # first run: the decision is news
            update |= _notified(await self.notify_decision(config, state))
            decided = self.decision_event(config, state)
        try:
            plan = self.allow_list.check(state.get("plan"))
        except ValueError as exc:  # an approved plan is checked again before it acts
            detail = f"the approved plan is outside the allow-list: {exc}"
            refused = update | _escalate("plan_refused", detail)
            return _with_timeline(decided, refused | self.event(config, "apply", detail))
        number = len(done) + 1
        step = plan.steps[number - 1]
        context = self._context(state, config, number, "apply")
        ok, detail = await self._run_claimed(step, context, config)
        record = {
            "number": number,
            "action": step.action,
            "target": step.target,
            "ok": ok,
            "detail": detail,
            "at": self.now(config).isoformat(),
        }
        update["applied_steps"] = [record]
        verb = "applied" if ok else "FAILED"
        update |= self.event(config, "apply", f"step {number}/{len(plan.steps)} {verb}: {detail}")
        if not ok:
            update |= _escalate("apply_failed", f"step {number} ({step.action} {step.target}) "
                                f"failed: {detail}")  # fmt: skip
        return _with_timeline(decided, update)

    async def rollback(self, state: State, config: RunnableConfig) -> Update:
        """Undo the next finished step, latest first (one step per run)."""
        plan = RemediationPlan.model_validate(state["plan"])
        undone = {r["number"] for r in state.get("rolled_back") or []}
        finished = [r["number"] for r in state.get("applied_steps") or [] if r["ok"]]
        remaining = [n for n in reversed(finished) if n not in undone]
        if not remaining:
            return {}
        number = remaining[0]
        step = plan.steps[number - 1]
        if step.rollback is None:
            ok, detail = True, "nothing to undo"
        else:
            context = self._context(state, config, number, "rollback")
            ok, detail = await self._run_claimed(step.rollback, context, config)
        record = {"number": number, "ok": ok, "detail": detail, "at": self.now(config).isoformat()}
        verb = "undone" if ok else "rollback FAILED"
        return {"rolled_back": [record]} | self.event(
            config, "rollback", f"step {number} {verb}: {detail}"
        )

    async def verify(self, state: State, config: RunnableConfig) -> Update:
        """Read the environment after apply: resolved, or escalate."""
        plan = RemediationPlan.model_validate(state["plan"])
        context = VerificationContext(
            incident_id=_incident_id(config),
            alert=state.get("alert") or {},
            plan=plan,
            results=list(state.get("applied_steps") or []),
        )
        try:
            result = await self.verifier.verify(context)
            ok, detail, readings = bool(result.ok), str(result.detail), dict(result.readings)
        except Exception as exc:
            ok, detail, readings = False, f"verification raised {type(exc).__name__}: {exc}", {}
        update: Update = {"verification": {"ok": ok, "detail": detail, "readings": readings}}
        update |= self.event(config, "verify", detail if ok else f"NOT healthy: {detail}")
        if not ok:
            update |= _escalate("verification_failed", detail)
        return update

    # -- endings ------------------------------------------------------------------------------

    async def resolve(self, state: State, config: RunnableConfig) -> Update:
        """The agent fixed it."""
        detail = str((state.get("verification") or {}).get("detail") or "verified healthy")
        sent = await self.notify(config, state, "resolved", summary=detail)
        return {
            "outcome": {"status": "resolved", "reason": None, "at": self.now(config).isoformat()},
            **_notified(sent),
            **self.event(config, "resolve", f"resolved: {detail}"),
        }

    def escalation_reason(self, state: State) -> tuple[str, str]:
        """Why this incident is escalated: the node that gave up said so, or the decision."""
        explicit = state.get("escalation") or {}
        if explicit.get("reason"):
            return str(explicit["reason"]), str(explicit.get("detail") or "")
        approval = state.get("approval") or {}
        if approval.get("status") in ("rejected", "expired"):
            who = approval.get("decided_by") or "?"
            return str(approval["status"]), f"{approval['status']} by {who}: " + str(
                approval.get("reason") or "no reason given"
            )
        rca = state.get("rca") or {}
        if rca.get("status") == "exhausted":
            return "rca_exhausted", (
                f"no root cause reached confidence {rca.get('threshold')} in "
                f"{rca.get('attempts')} attempt(s); best {float(rca.get('confidence') or 0):.2f}"
            )
        return "unknown", "escalated without a recorded reason"

    def decision_event(self, config: RunnableConfig, state: State) -> Update:
        """A timeline entry for the approval's decision."""
        approval = state.get("approval") or {}
        if not approval.get("status"):
            return {}
        text = f"{approval['status']} by {approval.get('decided_by')}"
        if approval.get("edited"):
            text += " with an edited plan"
        if approval.get("reason"):
            text += f": {approval['reason']}"
        at = approval.get("decided_at") or self.now(config).isoformat()
        return {"timeline": [{"at": at, "stage": "approval", "event": text}]}

    async def escalate(self, state: State, config: RunnableConfig) -> Update:
        """Hand the incident to humans: page, with the reason and the best hypothesis."""
        reason, detail = self.escalation_reason(state)
        incident_id = _incident_id(config)
        log.info(
            "escalating incident %s: %s (%s)",
            incident_id,
            reason,
            detail,
            extra=log_context(incident_id, event="escalated"),
        )
        decided = self.decision_event(config, state) if reason in ("rejected", "expired") else {}
        notifications = await self.notify_decision(config, state)
        hypothesis = (state.get("rca") or {}).get("hypothesis") or {}
        notifications += await self.notify(
            config,
            state,
            "escalated",
            summary=detail,
            reason=reason,
            details={"root_cause": hypothesis.get("root_cause"), "plan": state.get("plan")},
        )
        ending = {
            "outcome": {
                "status": "escalated",
                "reason": reason,
                "at": self.now(config).isoformat(),
            },
            "escalation": {"reason": reason, "detail": detail},
            **_notified(notifications),
            **self.event(config, "escalate", f"escalated ({reason}): {detail}"),
        }
        return _with_timeline(decided, ending)

    async def stand_down(self, state: State, config: RunnableConfig) -> Update:
        """The alert resolved while the plan waited for approval, and the approval expired
        for that (by ``system:alertmanager``, reason ``alert_resolved``): close with outcome
        ``alert_resolved`` — nothing applied, nobody paged; channels that carried the
        approval are told how it was decided."""
        incident_id = _incident_id(config)
        log.info(
            "incident %s stands down: its alert resolved before anyone decided",
            incident_id,
            extra=log_context(incident_id, event="alert_resolved"),
        )
        notifications = await self.notify_decision(config, state)
        ending = {
            "outcome": {
                "status": ALERT_RESOLVED,
                "reason": ALERT_RESOLVED,
                "at": self.now(config).isoformat(),
            },
            **_notified(notifications),
            **self.event(
                config,
                "stand_down",
                "the alert resolved before a decision: nothing applied, nobody paged",
            ),
        }
        return _with_timeline(self.decision_event(config, state), ending)

    async def summarize(self, state: State, config: RunnableConfig) -> Update:
        """The post-incident summary, on every path."""
        outcome = state.get("outcome") or {}
        rca = state.get("rca") or {}
        hypothesis = rca.get("hypothesis") or {}
        approval = state.get("approval") or {}
        timeline = list(state.get("timeline") or [])
        started = timeline[0]["at"] if timeline else None
        ended = self.now(config)
        duration = (ended - datetime.fromisoformat(started)).total_seconds() if started else None
        report = {
            "incident_id": _incident_id(config),
            "title": state.get("title"),
            "severity": state.get("severity"),
            "outcome": outcome.get("status"),
            "escalation_reason": outcome.get("reason"),
            "root_cause": hypothesis.get("root_cause"),
            "fault": hypothesis.get("fault"),
            "confidence": rca.get("confidence"),
            "rca_attempts": rca.get("attempts"),
            "plan": state.get("plan"),
            "decision": {
                k: approval.get(k)
                for k in ("status", "decided_by", "decided_at", "reason", "edited")
            }
            if approval
            else None,
            "steps_applied": [r for r in state.get("applied_steps") or [] if r["ok"]],
            "steps_failed": [r for r in state.get("applied_steps") or [] if not r["ok"]],
            "rolled_back": list(state.get("rolled_back") or []),
            "verification": state.get("verification"),
            "started_at": started,
            "ended_at": ended.isoformat(),
            "duration_s": duration,
        }
        return {"report": report} | self.event(
            config, "summarize", f"{outcome.get('status', 'ended')}; summary written"
        )

    # -- routes -------------------------------------------------------------------------------

    @staticmethod
    def alert_resolved_first(state: State) -> bool:
        """True if the approval expired because the incident's alert resolved."""
        approval = state.get("approval") or {}
        return (
            approval.get("status") == "expired"
            and approval.get("decided_by") == ALERTMANAGER_IDENTITY
            and approval.get("reason") == ALERT_RESOLVED
        )

    @staticmethod
    def after_plan(state: State) -> Literal["dry_run", "escalate"]:
        """A plan that passed the allow-list goes to its dry run."""
        return "escalate" if state.get("escalation") else "dry_run"

    @staticmethod
    def after_dry_run(state: State) -> Literal["approval", "escalate"]:
        """Only a plan whose every step previews cleanly is put to an approver."""
        return "escalate" if state.get("escalation") else "approval"

    @staticmethod
    def after_apply(state: State) -> Literal["apply", "rollback", "verify", "escalate"]:
        """Next step, undo on failure, or verify when every step is done."""
        done = state.get("applied_steps") or []
        escalation = state.get("escalation") or {}
        if escalation.get("reason") == "plan_refused":
            return "escalate"
        if done and not done[-1]["ok"]:
            return "rollback" if any(r["ok"] for r in done) else "escalate"
        steps = (state.get("plan") or {}).get("steps") or []
        return "apply" if len(done) < len(steps) else "verify"

    @staticmethod
    def after_rollback(state: State) -> Literal["rollback", "escalate"]:
        """Keep undoing until every finished step is undone."""
        undone = {r["number"] for r in state.get("rolled_back") or []}
        finished = {r["number"] for r in state.get("applied_steps") or [] if r["ok"]}
        return "rollback" if finished - undone else "escalate"

    @staticmethod
    def after_verify(state: State) -> Literal["resolve", "escalate"]:
        """Healthy again: resolved."""
        return "resolve" if (state.get("verification") or {}).get("ok") else "escalate"


def _with_timeline(first: Update, update: Update) -> Update:
    """``update`` with ``first``'s timeline entries before its own."""
    entries = list(first.get("timeline") or []) + list(update.get("timeline") or [])
    return {**update, "timeline": entries} if entries else update

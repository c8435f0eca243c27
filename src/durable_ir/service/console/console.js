// The approval console of the durable-ir incident API: plain JS, no build step, no library.
//
// Everything the API returns is rendered as text (text nodes / textContent), never as HTML.
// The bearer token lives in this tab's sessionStorage only. API paths are relative to the
// page (/console), so the console works wherever the API is mounted.
"use strict";

(() => {
  const TOKEN_KEY = "durable-ir-console-token";
  const REFRESH_MS = 15000; // re-read the list of approvals waiting
  const POLL_MS = 1000; // follow an incident after a decision

  const cards = new Map(); // approval_id -> card (one card per approval request)
  let refreshing = false;
  let cardCount = 0;

  const byId = (id) => document.getElementById(id);

  // el("p", {class: "x"}, "text", node): an element; strings become text nodes, never HTML.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function show(node, text, kind) {
    node.textContent = text;
    node.className = `message ${kind || ""}`.trim();
  }

  const token = () => sessionStorage.getItem(TOKEN_KEY) || "";
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // -- the API ------------------------------------------------------------------------------

  // {status, data}: status 0 when no answer arrived (data then holds the error's message).
  async function api(method, path, body) {
    const init = {
      method,
      cache: "no-store",
      headers: { Accept: "application/json", Authorization: `Bearer ${token()}` },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      return { status: 0, data: { error: { message: `no answer: ${err.message}` } } };
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    return { status: response.status, data };
  }

  function errorText(result) {
    const message = result.data && result.data.error ? result.data.error.message : "no details";
    return result.status === 0 ? message : `HTTP ${result.status}: ${message}`;
  }

  const incidentPath = (id) => `incidents/${encodeURIComponent(id)}`;

  // -- formatting ---------------------------------------------------------------------------

  // Milliseconds since the epoch (NaN if unreadable). The API sends microseconds; ECMAScript
  // only promises to parse milliseconds, so the extra digits are dropped first.
  const parseTime = (iso) => Date.parse(String(iso).replace(/(\.\d{3})\d+/, "$1"));

  function when(iso) {
    const ms = parseTime(iso);
    return Number.isNaN(ms) ? String(iso) : new Date(ms).toLocaleString();
  }

  function duration(ms) {
    const total = Math.floor(Math.abs(ms) / 1000);
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = total % 60;
    if (h) return `${h}h ${m}m ${s}s`;
    return m ? `${m}m ${s}s` : `${s}s`;
  }

  // Uses this computer's clock; the deadline itself is shown next to it.
  function countdownText(deadline) {
    if (Number.isNaN(deadline)) return "deadline unknown";
    const left = deadline - Date.now();
    if (left > 0) return `${duration(left)} left to decide`;
    return `deadline passed ${duration(left)} ago: it expires at the SLA monitor's next sweep`;
  }

  function conflictText(error) {
    const winner = error && error.winner;
    if (!winner || !winner.decided_by) {
      return `Conflict: ${error ? error.message : "not waiting for a decision"}`;
    }
    const at = when(winner.decided_at);
    if (winner.status === "expired") {
      return `Conflict: the approval already expired at ${at} (${winner.decided_by}): nobody decided in time.`;
    }
    return `Conflict: already ${winner.status} by ${winner.decided_by} at ${at}: someone else decided first.`;
  }

  function settledText(incident) {
    if (incident.status === "finished") {
      const why = incident.outcome_reason ? ` (${incident.outcome_reason})` : "";
      return `Finished: ${incident.outcome || "no outcome recorded"}${why}.`;
    }
    if (incident.status === "awaiting_approval") return "Waiting for a new approval: Refresh to see it.";
    return `Now ${incident.status}.`;
  }

  // -- one incident's details ---------------------------------------------------------------

  function rcaView(rca) {
    if (!rca) return [el("p", {}, "No root-cause analysis recorded.")];
    let confidence = null;
    if (typeof rca.confidence === "number") {
      const attempts = typeof rca.attempts === "number" ? `, after ${rca.attempts} attempt(s)` : "";
      confidence = `${Math.round(rca.confidence * 100)}% (${rca.status || "unknown"}${attempts})`;
    }
    const rows = [
      ["Root cause", rca.root_cause],
      ["Confidence", confidence],
      ["Fault", rca.fault],
      ["Service", rca.service],
    ];
    const list = el("dl");
    for (const [name, value] of rows) {
      if (value === null || value === undefined || value === "") continue;
      list.append(el("dt", {}, name), el("dd", {}, value));
    }
    return [list];
  }

  function stepText(step) {
    if (!step || typeof step !== "object") return String(step);
    const parts = [[step.action, step.target].filter(Boolean).join(" ") || "step"];
    if (step.parameters && Object.keys(step.parameters).length) {
      parts.push(`parameters ${JSON.stringify(step.parameters)}`);
    }
    if (step.risk) parts.push(`risk ${step.risk}`);
    return parts.join("; ");
  }

  function planView(plan) {
    if (!plan) return [el("p", {}, "No plan recorded.")];
    const out = [];
    if (plan.summary) out.push(el("p", {}, plan.summary));
    if (Array.isArray(plan.steps)) {
      out.push(el("ol", {}, ...plan.steps.map((step) => el("li", {}, stepText(step)))));
    }
    return out;
  }

  function dryRunView(entries) {
    if (!Array.isArray(entries) || entries.length === 0) return [el("p", {}, "No dry run recorded.")];
    const items = entries.map((entry) => {
      const verdict = entry.ok === true ? "OK" : entry.ok === false ? "FAILED" : "UNKNOWN";
      const what = entry.detail || stepText(entry);
      return el("li", { class: verdict.toLowerCase() }, `${verdict}: ${what}`);
    });
    return [el("ul", {}, ...items)];
  }

  // Only http(s) URLs become links (the API keeps no others; this checks again).
  function safeUrl(url) {
    return typeof url === "string" && /^https?:\/\/[^\s<>"`{}|\\^]+$/i.test(url) ? url : null;
  }

  function linksView(links) {
    const names = { runbook: "Runbook", dashboard: "Dashboard", source: "Alert source" };
    const items = Object.entries(links || {})
      .filter(([, url]) => safeUrl(url))
      .map(([name, url]) =>
        el("li", {}, el("a", { href: safeUrl(url), rel: "noopener noreferrer", target: "_blank" }, names[name] || name)),
      );
    return items.length ? [el("h4", {}, "Links"), el("ul", { class: "links" }, ...items)] : [];
  }

  function alertEventsView(events) {
    if (!Array.isArray(events) || events.length === 0) return [];
    const items = events.map((event) =>
      el(
        "li",
        { class: `alert-${event.kind}` },
        el("time", { datetime: event.at }, when(event.at)),
        ` ${event.kind} (fingerprint ${event.fingerprint}, started ${when(event.starts_at)})`,
      ),
    );
    return [el("h4", {}, "Alert timeline"), el("ul", { class: "alert-events" }, ...items)];
  }

  function resolvedNote(incident) {
    if (!incident.alert_resolved_at || !incident.pending_approval) return null;
    const text = `The alert resolved at ${when(incident.alert_resolved_at)}: this plan may no longer be needed.`;
    return el("p", { class: "alert-resolved", role: "note" }, text);
  }

  function detailView(incident) {
    return [
      resolvedNote(incident),
      incident.summary ? el("p", { class: "summary" }, incident.summary) : null,
      ...linksView(incident.links),
      el("h4", {}, "Root-cause analysis"),
      ...rcaView(incident.rca),
      el("h4", {}, "Plan"),
      ...planView(incident.plan),
      el("h4", {}, "Dry run"),
      ...dryRunView(incident.dry_run),
      el(
        "details",
        {},
        el("summary", {}, "Plan and dry run as JSON"),
        el("pre", {}, JSON.stringify({ plan: incident.plan, dry_run: incident.dry_run }, null, 2)),
      ),
      ...alertEventsView(incident.alert_events),
    ].filter(Boolean);
  }

  // -- cards --------------------------------------------------------------------------------

  function buildCard(summary) {
    const approval = summary.pending_approval;
    const n = ++cardCount;
    const card = {
      id: summary.incident_id,
      approvalId: approval.approval_id,
      deadline: parseTime(approval.deadline_at),
      acted: false,
      following: false,
    };
    card.countdown = el("span", { class: "countdown", role: "timer" }, countdownText(card.deadline));
    card.details = el("div", { class: "details" }, el("p", {}, "Loading the plan…"));
    card.reason = el("textarea", { id: `reason-${n}`, rows: "2" });
    // Each button is named by its text and described by the incident's title.
    const button = (kind, text) =>
      el("button", { type: "button", class: kind, "aria-describedby": `title-${n}` }, text);
    card.approve = button("approve", "Approve");
    card.reject = button("reject", "Reject");
    const dismiss = button("dismiss", "Dismiss");
    card.message = el("p", { class: "message", role: "status" });
    card.progress = el("p", { class: "message", role: "status" });
    card.article = el(
      "article",
      { class: "incident", "aria-labelledby": `title-${n}`, "data-incident-id": card.id },
      el("h3", { id: `title-${n}` }, summary.title),
      el(
        "p",
        { class: "meta" },
        el("span", { class: "severity" }, `Severity ${approval.severity || summary.severity || "unknown"}`),
        ` · service ${summary.service || "unknown"} · incident ${card.id}`,
      ),
      el(
        "p",
        { class: "deadline" },
        "Deadline ",
        el("time", { datetime: approval.deadline_at }, when(approval.deadline_at)),
        ": ",
        card.countdown,
      ),
      card.details,
      el(
        "div",
        { class: "decide" },
        el("label", { for: `reason-${n}` }, "Reason (required to reject)"),
        card.reason,
        el("div", { class: "buttons" }, card.approve, card.reject, dismiss),
      ),
      card.message,
      card.progress,
    );
    card.approve.addEventListener("click", () => decide(card, "approve"));
    card.reject.addEventListener("click", () => decide(card, "reject"));
    dismiss.addEventListener("click", () => {
      cards.delete(card.approvalId);
      card.article.remove();
      byId("empty").hidden = cards.size > 0;
    });
    return card;
  }

  async function addCard(summary) {
    const card = buildCard(summary);
    cards.set(card.approvalId, card);
    // Soonest deadline first.
    const later = [...cards.values()].find((other) => other !== card && other.deadline > card.deadline);
    byId("incidents").insertBefore(card.article, later ? later.article : null);
    const result = await api("GET", incidentPath(card.id));
    if (result.status === 200) card.details.replaceChildren(...detailView(result.data));
    else {
      const failed = `Could not load the plan: ${errorText(result)}`;
      card.details.replaceChildren(el("p", { class: "message error" }, failed));
    }
  }

  function setButtons(card, enabled) {
    card.approve.disabled = !enabled;
    card.reject.disabled = !enabled;
  }

  async function decide(card, kind) {
    const reason = card.reason.value.trim();
    if (kind === "reject" && !reason) {
      card.reason.setAttribute("aria-invalid", "true");
      show(card.message, "A reason is required to reject.", "error");
      card.reason.focus();
      return;
    }
    card.reason.removeAttribute("aria-invalid");
    setButtons(card, false);
    show(card.message, kind === "approve" ? "Approving…" : "Rejecting…");
    const body = { approval_id: card.approvalId };
    if (reason) body.reason = reason;
    const result = await api("POST", `${incidentPath(card.id)}/${kind}`, body);
    if (result.status === 202) {
      const decision = result.data.decision;
      card.acted = true;
      const at = when(decision.decided_at);
      show(card.message, `Recorded: ${decision.status} by ${decision.decided_by} at ${at}.`, "ok");
      follow(card);
    } else if (result.status === 409) {
      card.acted = true;
      show(card.message, conflictText(result.data && result.data.error), "conflict");
      follow(card);
    } else if (result.status === 0 || result.status >= 500) {
      const unclear =
        `No clear answer (${errorText(result)}): the decision may or may not be recorded. ` +
        "Try again: if it was, the answer says who decided.";
      show(card.message, unclear, "error");
      setButtons(card, true);
    } else {
      show(card.message, `Refused, nothing recorded (${errorText(result)}).`, "error");
      setButtons(card, true);
    }
    if (card.acted) card.countdown.textContent = "no longer counting down: decided";
  }

  // After a decision: read the incident until it is no longer resuming or running.
  async function follow(card) {
    if (card.following) return;
    card.following = true;
    while (cards.has(card.approvalId)) {
      const result = await api("GET", incidentPath(card.id));
      if (result.status === 200) {
        const incident = result.data;
        if (incident.status !== "resuming" && incident.status !== "running") {
          show(card.progress, settledText(incident), incident.outcome === "resolved" ? "ok" : "settled");
          break;
        }
        show(card.progress, `Now ${incident.status}…`);
      } else if (result.status !== 0 && result.status < 500) {
        show(card.progress, `Cannot follow the incident: ${errorText(result)}`, "error");
        break;
      } else {
        show(card.progress, `Retrying (${errorText(result)})…`, "error");
      }
      await sleep(POLL_MS);
    }
    card.following = false;
  }

  // -- the list -----------------------------------------------------------------------------

  // Adds the approvals that are new; never removes a card (the server says who decided).
  async function refresh() {
    if (!token() || refreshing) return;
    refreshing = true;
    try {
      const result = await api("GET", "incidents?status=awaiting_approval&limit=1000");
      if (result.status !== 200) {
        const refused = result.status === 401 ? "The token was refused" : "Could not list the incidents";
        show(byId("status"), `${refused} (${errorText(result)}).`, "error");
        return;
      }
      const pending = result.data.incidents.filter((incident) => incident.pending_approval);
      const waiting = new Set(pending.map((incident) => incident.pending_approval.approval_id));
      for (const incident of pending) {
        if (!token()) return; // forgotten meanwhile
        if (!cards.has(incident.pending_approval.approval_id)) await addCard(incident);
      }
      const now = new Date().toLocaleTimeString();
      for (const card of cards.values()) {
        if (!card.acted && !waiting.has(card.approvalId)) {
          const gone =
            `Not waiting any more as of ${now}: decided elsewhere or expired. ` +
            "A decision now is answered with who decided first.";
          show(card.progress, gone, "settled");
        }
      }
      byId("empty").hidden = cards.size > 0;
      byId("refreshed").textContent = `Last refreshed ${now}.`;
      show(byId("status"), `${pending.length} incident(s) awaiting approval.`);
    } finally {
      refreshing = false;
    }
  }

  function tick() {
    for (const card of cards.values()) {
      if (!card.acted) card.countdown.textContent = countdownText(card.deadline);
    }
  }

  byId("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = byId("token").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    byId("token").value = "";
    show(byId("status"), "Token set for this tab. Loading…");
    refresh();
  });
  byId("forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    cards.clear();
    byId("incidents").replaceChildren();
    byId("empty").hidden = true;
    show(byId("status"), "Token forgotten. Enter a token to load the incidents.");
  });
  byId("refresh").addEventListener("click", refresh);

  setInterval(tick, 1000);
  setInterval(refresh, REFRESH_MS);
  if (token()) {
    show(byId("status"), "Using the token kept in this tab. Loading…");
    refresh();
  }
})();

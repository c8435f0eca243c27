"""An analyzer over any LangChain chat model that supports structured output.

The model gets the same system prompt and attempt prompt as
:class:`~durable_ir.rca.analyzers.anthropic.AnthropicAnalyzer` and answers through
``model.with_structured_output(RootCauseReport, include_raw=True)`` (a forced tool call for
models that implement ``bind_tools``). The answer is validated and then checked with
:func:`~durable_ir.rca.analyzers.validation.check_hypothesis`.

Every failure is an :class:`~durable_ir.rca.AnalyzerError`. Output that does not fit the schema,
or no tool call at all, is retryable. An exception from the model is retryable when it looks
transient: an HTTP status (``status_code``, or ``response.status_code``) of 408, 409, 429 or
5xx, a ``TimeoutError`` or ``ConnectionError``, or a class name saying rate limit, timeout,
connection, overloaded or unavailable. Other HTTP statuses (400, 401, 403, 404 …), class names
saying authentication, permission, bad or invalid request or not found, and ``ValueError``,
``TypeError`` and ``NotImplementedError`` are not retryable; anything else is (the loop bounds
the retries). Give the model ``max_retries=0`` where it has one, so that the RCA loop alone owns
retries.

Example:
    >>> import asyncio
    >>> from datetime import UTC, datetime
    >>> from langchain_core.language_models import GenericFakeChatModel
    >>> from langchain_core.messages import AIMessage
    >>> from durable_ir.rca import AnalysisRequest, EventEvidence, EvidenceWindow
    >>> class ToolCallingFake(GenericFakeChatModel):  # its scripted answers are tool calls
    ...     def bind_tools(self, tools, *, tool_choice=None, **kwargs):
    ...         return self
    >>> answer = {"root_cause": "api leaks memory", "fault": "memory_leak", "service": "api",
    ...           "confidence": 0.8, "cited_evidence": ["ev-1"]}
    >>> model = ToolCallingFake(messages=iter([AIMessage("", tool_calls=[
    ...     {"name": "report_root_cause", "args": answer, "id": "call-1"}])]))
    >>> at = datetime(2026, 1, 1, tzinfo=UTC)
    >>> request = AnalysisRequest(alert={}, attempt=1, window=EvidenceWindow(start=at, end=at),
    ...     evidence=[EventEvidence(id="ev-1", service="api", at=at, summary="OOM", reason="OOM")])
    >>> asyncio.run(ChatModelAnalyzer(model).analyze(request)).fault
    'memory_leak'
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import ValidationError

from durable_ir.errors import ConfigurationError
from durable_ir.rca.analysis import AnalysisRequest, AnalyzerError, Hypothesis
from durable_ir.rca.analyzers.validation import (
    REPORT_TOOL_NAME,
    SYSTEM_PROMPT,
    RootCauseReport,
    check_hypothesis,
    render_prompt,
)

__all__ = ["ChatModelAnalyzer"]

_RETRYABLE_STATUS = frozenset({408, 409, 429})
_TRANSIENT_NAMES = ("ratelimit", "timeout", "connection", "overloaded", "unavailable")
_PERMANENT_NAMES = ("authentication", "permission", "badrequest", "invalidrequest", "notfound")


class ChatModelAnalyzer:
    """Asks a LangChain chat model for a root cause as structured output.

    ``ConfigurationError`` at construction if the model has no structured output
    (``with_structured_output`` raises ``NotImplementedError``, e.g. no ``bind_tools``).
    """

    def __init__(self, model: BaseChatModel) -> None:
        if not isinstance(model, BaseChatModel):
            raise TypeError(
                "ChatModelAnalyzer needs a LangChain BaseChatModel instance, "
                f"got {type(model).__name__}"
            )
        self.model = model
        try:
            self._structured = model.with_structured_output(RootCauseReport, include_raw=True)
        except NotImplementedError as exc:
            raise ConfigurationError(
                f"{type(model).__name__} does not support structured output "
                f"(with_structured_output): {exc}"
            ) from exc

    async def analyze(self, request: AnalysisRequest) -> Hypothesis:
        """The model's checked hypothesis for ``request``; :class:`AnalyzerError` on failure."""
        messages = [SystemMessage(SYSTEM_PROMPT), HumanMessage(render_prompt(request))]
        try:
            result = await self._structured.ainvoke(messages)
        except Exception as exc:
            raise AnalyzerError(
                f"chat model failed: {type(exc).__name__}: {exc}", retryable=_transient(exc)
            ) from exc
        return check_hypothesis(_parse(result), request)


def _parse(result: Any) -> Hypothesis:
    if not isinstance(result, dict):
        raise AnalyzerError(
            f"malformed structured output: expected raw/parsed, got {type(result).__name__}"
        )
    error = result.get("parsing_error")
    parsed = result.get("parsed")
    try:
        if error is not None:
            raise error
        if parsed is None:
            raise AnalyzerError(
                f"malformed structured output: the model did not call {REPORT_TOOL_NAME}"
            )
        report = (
            parsed
            if isinstance(parsed, RootCauseReport)
            else RootCauseReport.model_validate(parsed)
        )
        return report.to_hypothesis()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise AnalyzerError(f"malformed structured output: {problems}") from exc
    except AnalyzerError:
        raise
    except Exception as exc:  # the output parser's own errors (bad JSON, unknown tool …)
        raise AnalyzerError(f"malformed structured output: {type(exc).__name__}: {exc}") from exc


def _transient(exc: BaseException) -> bool:
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return status in _RETRYABLE_STATUS or status >= 500
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    names = " ".join(cls.__name__.lower() for cls in type(exc).__mro__)
    if any(word in names for word in _TRANSIENT_NAMES):
        return True
    if any(word in names for word in _PERMANENT_NAMES):
        return False
    return not isinstance(exc, ValueError | TypeError | NotImplementedError)

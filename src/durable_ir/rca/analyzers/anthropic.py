"""An analyzer on Claude through the official ``anthropic`` SDK (the ``anthropic`` extra).

Each attempt is one Messages API call that must answer through the ``report_root_cause`` tool
(``tool_choice`` forces it), so the answer is structured: root cause, fault category, service,
confidence, cited evidence ids and remediation. The answer is validated and then checked with
:func:`~durable_ir.rca.analyzers.validation.check_hypothesis`.

Every failure is an :class:`~durable_ir.rca.AnalyzerError`. Rate limits (429), server errors
(5xx, 529 overloaded), 408/409, time-outs, connection errors and malformed tool calls are
``retryable``; 400, 401, 403, 404 and other client errors are not. The SDK's own retries are off
in the default client (``max_retries=0``): the RCA loop owns retries and their backoff, so pass
``max_retries=0`` to a client you build yourself as well.

Example:
    >>> import anthropic
    >>> analyzer = AnthropicAnalyzer(anthropic.AsyncAnthropic(api_key="sk-test", max_retries=0))
    >>> analyzer.model
    'claude-sonnet-5-5'
    >>> analyzer.tool_choice
    {'type': 'tool', 'name': 'report_root_cause', 'disable_parallel_tool_use': True}
"""

from __future__ import annotations

import anthropic
from anthropic.types import Message, ToolChoiceToolParam, ToolParam
from pydantic import ValidationError

from durable_ir.errors import ConfigurationError
from durable_ir.rca.analysis import AnalysisRequest, AnalyzerError, Hypothesis
from durable_ir.rca.analyzers.validation import (
    REPORT_TOOL_DESCRIPTION,
    REPORT_TOOL_NAME,
    SYSTEM_PROMPT,
    RootCauseReport,
    check_hypothesis,
    render_prompt,
    report_json_schema,
)

__all__ = ["DEFAULT_MODEL", "AnthropicAnalyzer"]

DEFAULT_MODEL = "claude-sonnet-5-5"
"""The newest Claude Sonnet the SDK (anthropic 2.12) lists."""

_RETRYABLE_STATUS = frozenset({408, 409, 429})


class AnthropicAnalyzer:
    """Asks Claude for a root cause through a forced tool call.

    ``client`` defaults to ``anthropic.AsyncAnthropic(max_retries=0)``, which reads
    ``ANTHROPIC_API_KEY`` (close it with :meth:`aclose`; a client you pass is yours to close).
    ``timeout`` (seconds) bounds each request, ``max_tokens`` the answer.

    Example:
        >>> import anthropic
        >>> client = anthropic.AsyncAnthropic(api_key="sk-test", max_retries=0)
        >>> tool = AnthropicAnalyzer(client, model="claude-opus-5-5", timeout=30).tool
        >>> tool["name"], tool["input_schema"]["required"]
        ('report_root_cause', ['root_cause', 'fault', 'confidence', 'cited_evidence'])
    """

    def __init__(
        self,
        client: anthropic.AsyncAnthropic | None = None,
        *,
        model: str = DEFAULT_MODEL,
        max_tokens: int = 2_048,
        timeout: float = 60.0,
    ) -> None:
        if max_tokens < 1:
            raise ConfigurationError(f"max_tokens must be positive, got {max_tokens}")
        if timeout <= 0:
            raise ConfigurationError(f"timeout must be positive seconds, got {timeout}")
        self._owns_client = client is None
        self.client = client if client is not None else anthropic.AsyncAnthropic(max_retries=0)
        self.model = model
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.tool: ToolParam = {
            "name": REPORT_TOOL_NAME,
            "description": REPORT_TOOL_DESCRIPTION,
            "input_schema": report_json_schema(),
        }
        self.tool_choice: ToolChoiceToolParam = {
            "type": "tool",
            "name": REPORT_TOOL_NAME,
            "disable_parallel_tool_use": True,
        }

    async def analyze(self, request: AnalysisRequest) -> Hypothesis:
        """Claude's checked hypothesis for ``request``; :class:`AnalyzerError` on any failure."""
        prompt = render_prompt(request)
        try:
            message = await self.client.messages.create(
                model=self.model,
                max_tokens=self.max_tokens,
                system=SYSTEM_PROMPT,
                messages=[{"role": "user", "content": prompt}],
                tools=[self.tool],
                tool_choice=self.tool_choice,
                timeout=self.timeout,
            )
        except anthropic.AnthropicError as exc:
            raise _analyzer_error(exc, self.timeout) from exc
        except TypeError as exc:  # the SDK's way of saying it has no credentials
            raise AnalyzerError(f"Anthropic client misconfigured: {exc}", retryable=False) from exc
        return check_hypothesis(_parse(message), request)

    async def aclose(self) -> None:
        """Close the client if this analyzer created it."""
        if self._owns_client:
            await self.client.close()


def _parse(message: Message) -> Hypothesis:
    calls = [
        block
        for block in message.content
        if block.type == "tool_use" and block.name == REPORT_TOOL_NAME
    ]
    cut = " (the answer was cut off at max_tokens)" if message.stop_reason == "max_tokens" else ""
    if not calls:
        raise AnalyzerError(
            f"malformed tool call: the model did not call {REPORT_TOOL_NAME} "
            f"(stop_reason {message.stop_reason}){cut}",
            retryable=True,
        )
    try:
        return RootCauseReport.model_validate(calls[0].input).to_hypothesis()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'input'}: {error['msg']}"
            for error in exc.errors()[:5]
        )
        raise AnalyzerError(f"malformed tool call: {problems}{cut}", retryable=True) from exc


def _analyzer_error(exc: anthropic.AnthropicError, timeout: float) -> AnalyzerError:
    if isinstance(exc, anthropic.APITimeoutError):
        return AnalyzerError(f"Anthropic API timed out after {timeout}s", retryable=True)
    if isinstance(exc, anthropic.APIConnectionError):
        return AnalyzerError(f"cannot reach the Anthropic API: {exc}", retryable=True)
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        kind = exc.type or type(exc).__name__
        text = f"Anthropic API {status} {kind}: {exc.api_message or exc.message}"
        retry_after = exc.response.headers.get("retry-after")
        if retry_after:
            text += f" (retry after {retry_after}s)"
        return AnalyzerError(text, retryable=status in _RETRYABLE_STATUS or status >= 500)
    if isinstance(exc, anthropic.APIResponseValidationError | anthropic.RetryableError):
        return AnalyzerError(f"Anthropic API: {exc}", retryable=True)
    return AnalyzerError(f"Anthropic client error: {type(exc).__name__}: {exc}", retryable=False)

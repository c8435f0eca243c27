"""ChatModelAnalyzer over a real LangChain chat model written for the test: a ``BaseChatModel``
subclass that binds tools the way provider models do and answers from a script with tool
calls, plain text, or exceptions, recording every call it gets."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

from durable_ir.errors import ConfigurationError
from durable_ir.rca import (
    FAULTS,
    AnalysisRequest,
    AnalyzerError,
    ChangeEvidence,
    EventEvidence,
    EvidenceWindow,
    Hypothesis,
    LogEvidence,
    MetricEvidence,
    PriorAttempt,
)
from durable_ir.rca.analyzers.langchain import ChatModelAnalyzer

END = datetime(2026, 3, 1, 12, tzinfo=UTC)
WINDOW = EvidenceWindow.ending_at(END, timedelta(hours=1))
EVIDENCE: list[LogEvidence | MetricEvidence | ChangeEvidence | EventEvidence] = [
    LogEvidence(
        id="log-pool",
        service="orders",
        at=END - timedelta(minutes=8),
        summary="pool timeouts",
        signature="HikariPool-1 - Connection is not available, request timed out",
        count=340,
    ),
    ChangeEvidence(
        id="chg-cfg-7",
        service="orders",
        at=END - timedelta(minutes=12),
        summary="maxPoolSize 50 -> 5",
        change="config",
    ),
]
GOOD = {
    "root_cause": "a config change shrank the orders DB pool from 50 to 5 connections",
    "fault": "config_error",
    "service": "orders",
    "confidence": 0.82,
    "cited_evidence": ["chg-cfg-7", "log-pool"],
    "remediation": [{"action": "revert_config", "target": "orders", "parameters": {}}],
}


class RateLimited(Exception):
    status_code = 429


class Unauthorized(Exception):
    status_code = 401


class ServiceUnavailableError(Exception):
    pass


class ScriptedChatModel(BaseChatModel):
    """Answers each call with the next script entry: a dict becomes a call of the bound tool
    with those arguments, a string a plain text answer, an exception is raised."""

    script: list[Any] = Field(default_factory=list)
    calls: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted-test-model"

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Any],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self.bind(
            tools=[convert_to_openai_tool(tool) for tool in tools],
            tool_choice=tool_choice,
            **kwargs,
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls.append({"messages": messages, **kwargs})
        step = self.script.pop(0) if self.script else GOOD
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, str):
            message = AIMessage(content=step)
        else:
            [tool] = kwargs["tools"]
            name = tool["function"]["name"]
            message = AIMessage(
                content="",
                tool_calls=[{"name": name, "args": step, "id": f"call_{len(self.calls)}"}],
            )
        return ChatResult(generations=[ChatGeneration(message=message)])


def request(attempt: int = 1, previous: list[PriorAttempt] | None = None) -> AnalysisRequest:
    return AnalysisRequest(
        alert={"name": "OrdersLatency", "service": "orders"},
        attempt=attempt,
        window=WINDOW,
        evidence=EVIDENCE,
        previous=previous or [],
    )


async def failure(model: ScriptedChatModel) -> AnalyzerError:
    with pytest.raises(AnalyzerError) as caught:
        await ChatModelAnalyzer(model).analyze(request())
    return caught.value


async def test_a_good_answer_becomes_a_checked_hypothesis() -> None:
    model = ScriptedChatModel()
    hypothesis = await ChatModelAnalyzer(model).analyze(request())

    assert hypothesis == Hypothesis.model_validate(GOOD)
    [call] = model.calls
    [tool] = call["tools"]
    assert tool["function"]["name"] == "report_root_cause"
    assert tool["function"]["parameters"]["properties"]["fault"]["enum"] == list(FAULTS)
    assert call["tool_choice"] == "any"  # with_structured_output forces a tool call
    system, human = call["messages"]
    assert system.type == "system" and "report_root_cause" in system.content
    assert human.type == "human"
    for item in EVIDENCE:
        assert f"[{item.id}]" in human.content
    assert "OrdersLatency" in human.content


async def test_previous_hypotheses_reach_the_model() -> None:
    earlier = Hypothesis(
        root_cause="the orders database is overloaded", fault="unknown", confidence=0.3
    )
    previous = [
        PriorAttempt(
            attempt=1,
            window=EvidenceWindow.ending_at(END, timedelta(minutes=15)),
            hypothesis=earlier,
        )
    ]
    model = ScriptedChatModel()
    await ChatModelAnalyzer(model).analyze(request(attempt=2, previous=previous))
    prompt = model.calls[0]["messages"][1].content
    assert "the orders database is overloaded" in prompt and "confidence 0.30" in prompt
    assert "Consider a different cause" in prompt


async def test_a_low_confidence_answer_stays_low() -> None:
    model = ScriptedChatModel(script=[GOOD | {"confidence": 0.2}])
    assert (await ChatModelAnalyzer(model).analyze(request())).confidence == 0.2


async def test_unknown_citations_lower_or_reject() -> None:
    model = ScriptedChatModel(
        script=[
            GOOD | {"confidence": 0.9, "cited_evidence": ["log-pool", "m-1", "m-2"]},
            GOOD | {"cited_evidence": ["m-1"]},
        ]
    )
    analyzer = ChatModelAnalyzer(model)
    lowered = await analyzer.analyze(request())
    assert (lowered.cited_evidence, lowered.confidence) == (["log-pool"], 0.3)
    with pytest.raises(AnalyzerError, match="m-1") as caught:
        await analyzer.analyze(request())
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({k: v for k, v in GOOD.items() if k != "confidence"}, "confidence: Field required"),
        (GOOD | {"confidence": "sure"}, "confidence"),
        (GOOD | {"cited_evidence": {"id": "log-pool"}}, "cited_evidence"),
        ("It was probably the config change.", "did not call report_root_cause"),
    ],
    ids=["missing-field", "wrong-type", "object-not-list", "no-tool-call"],
)
async def test_malformed_output_is_a_retryable_error(answer: Any, problem: str) -> None:
    error = await failure(ScriptedChatModel(script=[answer]))
    assert error.retryable
    assert str(error).startswith("malformed structured output")
    assert problem in str(error)


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (RateLimited("too many requests"), True),
        (ServiceUnavailableError("upstream down"), True),
        (TimeoutError("read timed out"), True),
        (ConnectionRefusedError("refused"), True),
        (RuntimeError("something odd"), True),
        (Unauthorized("bad key"), False),
        (ValueError("model does not support tools"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
async def test_exceptions_from_the_model_become_analyzer_errors(
    exc: BaseException, retryable: bool
) -> None:
    model = ScriptedChatModel(script=[exc, GOOD])
    analyzer = ChatModelAnalyzer(model)
    with pytest.raises(AnalyzerError) as caught:
        await analyzer.analyze(request())
    assert caught.value.retryable is retryable
    assert str(caught.value) == f"chat model failed: {type(exc).__name__}: {exc}"
    # (asyncio re-creates a TimeoutError that crosses the executor the model runs in)
    assert type(caught.value.__cause__) is type(exc) and str(caught.value.__cause__) == str(exc)
    assert (await analyzer.analyze(request())).fault == "config_error"  # the next call works


def test_a_model_without_tool_calling_is_refused() -> None:
    class TextOnly(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "text-only"

        def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
            return ChatResult(generations=[ChatGeneration(message=AIMessage("hello"))])

    with pytest.raises(ConfigurationError, match="TextOnly does not support structured output"):
        ChatModelAnalyzer(TextOnly())
    with pytest.raises(TypeError, match="BaseChatModel instance"):
        ChatModelAnalyzer("claude")  # type: ignore[arg-type]

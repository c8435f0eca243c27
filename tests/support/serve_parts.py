"""Factories a serve config file names in tests (``module:attribute`` with options): they
keep the options they were called with, so a test can see what the config passed."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel

from durable_ir.remediation import SuggestOnlyExecutor


def chat_model(**options: Any) -> BaseChatModel:
    """A tool-calling chat model (the scripted one of the analyzer's tests), ``options`` kept
    in its ``metadata``."""
    from test_chat_model_analyzer import ScriptedChatModel

    return ScriptedChatModel(metadata=dict(options))


class OptionsExecutor(SuggestOnlyExecutor):
    """A suggest-only executor that keeps the options it was made with."""

    def __init__(self, **options: Any) -> None:
        self.options = options

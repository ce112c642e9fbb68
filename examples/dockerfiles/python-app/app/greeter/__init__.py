"""Greeting text, configured from the environment."""

import os


def greeting(name: str) -> str:
    """The greeting for ``name`` in the configured style."""
    word = os.environ.get("APP_GREETING", "hello")
    return f"{word}, {name}!"

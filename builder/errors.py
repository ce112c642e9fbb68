"""Errors raised while building an image; each prints as one readable line."""

from __future__ import annotations


class BuildError(Exception):
    """Base class of every error the builder reports to the user."""


class DockerfileError(BuildError):
    """A problem in a Dockerfile, located by file name and line number."""

    def __init__(self, message: str, line: int | None = None, file: str = "Dockerfile") -> None:
        self.message = message
        self.line = line
        self.file = file
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"


class ContextError(BuildError):
    """A problem with the build context or its .dockerignore file."""


class ExpansionError(BuildError):
    """A word could not be expanded (bad substitution, unmatched quote, ``${V:?msg}``)."""


class ImageNotFound(BuildError):
    """No image answers to a reference."""


class LimitError(BuildError):
    """A resource limit (``--memory``, ``--pids-limit``, …) cannot be applied on this host."""


class ExecError(BuildError):
    """A RUN command exited with a non-zero status; ``tail`` is the end of its output and
    ``reason``, when set, the resource limit that made it fail (``was killed by the
    kernel's OOM killer: …``)."""

    def __init__(self, exit_code: int, command: str, tail: bytes = b"",
                 reason: str | None = None) -> None:
        self.exit_code = exit_code
        self.command = command
        self.tail = tail
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.reason:
            return f"process {self.command!r} {self.reason} (exit code {self.exit_code})"
        return f"process {self.command!r} did not complete successfully: exit code {self.exit_code}"

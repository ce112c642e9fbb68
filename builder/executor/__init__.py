"""Running RUN commands in a sandbox on a prepared root filesystem."""

from builder.executor.protocol import (
    BindMount,
    Executor,
    ExtraHost,
    RunResult,
    RunSpec,
    TmpfsMount,
)
from builder.executor.sandbox import NamespaceExecutor

__all__ = ["BindMount", "Executor", "ExtraHost", "NamespaceExecutor", "RunResult", "RunSpec",
           "TmpfsMount"]

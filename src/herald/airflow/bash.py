"""`BashOperator`: run a bash command; its last line of output is the task's result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from herald.airflow.baseoperator import BaseOperator
from herald.airflow.runtime import run_bash

__all__ = ["BashOperator"]


class BashOperator(BaseOperator):
    """Run a bash command in a temporary directory (or `cwd`).

    Args:
        bash_command: the command (templated; a name ending in .sh or .bash is read as a template file).
        env: the command's environment instead of the worker's (templated).
        append_env: add `env` to the worker's environment instead of replacing it.
        cwd: the working directory (templated).
        skip_on_exit_code: exit code(s) that skip the task (99 by default).
        output_encoding: how the output is decoded.
        output_processor: applied to the last line before it becomes the result.
    """

    template_fields: ClassVar[Sequence[str]] = ("bash_command", "env", "cwd")
    template_fields_renderers: ClassVar[dict[str, str]] = {"bash_command": "bash", "env": "json"}
    template_ext: ClassVar[Sequence[str]] = (".sh", ".bash")
    ui_color: ClassVar[str] = "#f0ede4"

    def __init__(
        self,
        *,
        bash_command: str,
        env: dict[str, str] | None = None,
        append_env: bool = False,
        output_encoding: str = "utf-8",
        skip_on_exit_code: int | Sequence[int] | None = 99,
        cwd: str | None = None,
        output_processor: Callable[[str], Any] = lambda result: result,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bash_command = bash_command
        self.env = env
        self.append_env = append_env
        self.output_encoding = output_encoding
        self.skip_on_exit_code = skip_on_exit_code
        self.cwd = cwd
        self.output_processor = output_processor

    def execute(self, context: dict[str, Any]) -> Any:
        """Run the command; exit 99 skips, another non-zero exit fails with the output in the log."""
        last = run_bash(
            self.bash_command,
            context,
            env=self.env,
            append_env=self.append_env,
            cwd=self.cwd,
            skip_on_exit_code=self.skip_on_exit_code,
            output_encoding=self.output_encoding,
        )
        return self.output_processor(last)

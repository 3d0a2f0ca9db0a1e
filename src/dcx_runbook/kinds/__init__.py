"""The registry of step kinds: adding a kind is adding a module and a dict entry."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from dcx_runbook.kinds import command, env_file, file, shell, sql
from dcx_runbook.kinds.base import Kind

KINDS: dict[str, Kind] = {
    "sql": sql.KIND,
    "shell": shell.KIND,
    "env_file": env_file.KIND,
    "file": file.KIND,
    "command": command.KIND,  # type: ignore[dict-item]
}

Check = Annotated[
    sql.SqlCheck | shell.ShellCheck | env_file.EnvFileCheck | file.FileCheck | command.CommandCheck,
    Field(discriminator="kind"),
]
Operation = Annotated[
    sql.SqlOp | shell.ShellOp | env_file.EnvFileOp | file.FileOp,
    Field(discriminator="kind"),
]

CHECK_KINDS = sorted(k for k, v in KINDS.items() if v.check_model is not None)
OPERATION_KINDS = sorted(k for k, v in KINDS.items() if v.op_model is not None)

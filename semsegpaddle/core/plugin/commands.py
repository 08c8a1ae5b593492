"""Plugins' command-line commands: each plugin's ``semseg_register_commands`` gets the root group."""
from __future__ import annotations

from typing import Any

from semsegpaddle.core.common.errors import DuplicateComponentError
from semsegpaddle.core.plugin.failures import function_location
from semsegpaddle.core.plugin.manager import call_each, load_plugins


def add_plugin_commands(group: Any, owner: str = "semsegpaddle") -> None:
    """Let each plugin add commands to the click ``group``, one plugin at a time. A name already
    taken (by ``owner`` or an earlier plugin) stays with its first owner; a failing plugin is
    reported like any plugin failure, not fatal."""
    owners = {name: owner for name in group.commands}
    before: dict[str, Any] = {}

    def kwargs_for(call: Any) -> dict[str, Any]:
        before.clear()
        before.update(group.commands)
        return {"cli": group}

    def after(call: Any) -> None:
        for name, command in list(group.commands.items()):
            if name in before and before[name] is not command:
                group.commands[name] = before[name]
                call.refuse(f"command '{name}'", DuplicateComponentError(
                    f"command '{name}' belongs to {owners[name]}; plugin '{call.plugin}' cannot replace it"),
                    location=function_location(command.callback))
            owners.setdefault(name, f"plugin '{call.plugin}'")

    call_each(load_plugins(), "semseg_register_commands", kwargs_for, after)

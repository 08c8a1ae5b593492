"""What went wrong with a plugin, in one line: which plugin, which component, where in its code.

The plugin manager records a :class:`PluginFailure` for every plugin (or component of a plugin)
it had to leave out, instead of letting one broken package take the command line down.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import linecache
import sys
import traceback
import types
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pluggy

from semsegpaddle.core.plugin import hookspecs
from semsegpaddle.core.common.errors import did_you_mean

#: where a traceback frame is the framework's, not the plugin's
_FRAMEWORK_DIRS = tuple(str(Path(m.__file__).parent) for m in (pluggy, importlib)) + (str(Path(__file__).parent.parent),)  # the whole core


@dataclass(frozen=True)
class PluginFailure:
    """A plugin, or one component of it, that was left out, and why.

    ``stage`` is ``import`` (the module did not import), ``validation`` (an unknown hook or a hook
    asking for arguments it is not given: the whole plugin is skipped), ``entry point`` (its name is
    taken), ``register`` (one component's declaration was refused), ``duplicate`` (one component's
    name was taken by an earlier plugin) or ``hook`` (a hook raised part-way; what it registered
    before that stays).
    """

    plugin: str
    distribution: str = "-"
    version: str = "-"
    stage: str = "hook"
    error: str = ""
    hook: str | None = None
    component: str | None = None
    location: str | None = None
    traceback: str | None = None

    @property
    def origin(self) -> str:
        """``plugin 'name' (distribution version)``, without the part in brackets for in-memory plugins."""
        if self.distribution in ("-", "?"):
            return f"plugin '{self.plugin}'"
        return f"plugin '{self.plugin}' ({self.distribution} {self.version})"

    def message(self) -> str:
        """The one-line warning: the plugin, its distribution, what was lost, the error and where."""
        at = f" (at {self.location})" if self.location else ""
        if self.stage == "import":
            return f"{self.origin} failed to import and was skipped: {self.error}{at}"
        if self.stage in ("validation", "entry point"):
            return f"{self.origin} was skipped: {self.error}{at}"
        if self.stage == "duplicate":
            return f"{self.origin}: {self.error}{at}"
        if self.stage == "register":
            return f"{self.origin}: {self.component} was not registered: {self.error}{at}"
        after = f" after registering {self.component}" if self.component else ""
        return f"{self.origin} failed in {self.hook}{after}: {self.error}{at}"

    def to_json(self) -> dict[str, Any]:
        """The failure as a JSON-ready mapping (``semseg plugins --json``), message included."""
        return {"name": self.plugin, **{k: v for k, v in asdict(self).items() if k != "plugin"},
                "message": self.message()}


def describe(error: BaseException) -> str:
    """``TypeName: message`` on one line."""
    text = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def format_traceback(error: BaseException) -> str:
    """The full traceback of ``error`` as text (printed with ``semseg --debug``)."""
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


# -------------------------------------------------------------------------------------------------
# where in the plugin's code
# -------------------------------------------------------------------------------------------------


def module_roots(module_name: str) -> tuple[str, ...]:
    """Folders (or the file) of the top-level package of ``module_name``, found without importing it."""
    top = module_name.split(":")[0].strip().split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return ()
    if spec is None:
        return ()
    if spec.submodule_search_locations:
        return tuple(str(Path(p).resolve()) for p in spec.submodule_search_locations)
    return (str(Path(spec.origin).resolve()),) if spec.origin else ()


def plugin_module(plugin: Any) -> types.ModuleType | None:
    """The module a plugin is (a module plugin) or was defined in (an object plugin)."""
    if isinstance(plugin, types.ModuleType):
        return plugin
    cls = plugin if inspect.isclass(plugin) else type(plugin)
    return sys.modules.get(cls.__module__)


def plugin_roots(plugin: Any) -> tuple[str, ...]:
    """The code that belongs to ``plugin``: its top-level package, or the file of its module."""
    module = plugin_module(plugin)
    if module is None:
        return ()
    roots = module_roots(module.__name__)
    file = getattr(module, "__file__", None)
    return roots or ((str(Path(file).resolve()),) if file else ())


def _inside(filename: str, roots: tuple[str, ...]) -> bool:
    if filename.startswith("<"):
        return False
    path = Path(filename).resolve()
    return any(path.is_relative_to(root) for root in roots)


def _framework(filename: str) -> bool:
    return filename.startswith("<") or any(filename.startswith(d) for d in _FRAMEWORK_DIRS)


def _pick(frames: list[traceback.FrameSummary], roots: tuple[str, ...]) -> str | None:
    own = [f for f in frames if _inside(f.filename, roots)]
    outside = [f for f in frames if not _framework(f.filename)]
    frame = (own or outside or [None])[-1]
    return f"{frame.filename}:{frame.lineno}" if frame is not None else None


def error_location(error: BaseException, roots: tuple[str, ...]) -> str | None:
    """``file:line`` where ``error`` was raised: the deepest frame in the plugin's own code if any."""
    if isinstance(error, SyntaxError) and error.filename:
        return f"{error.filename}:{error.lineno}"
    return _pick(traceback.extract_tb(error.__traceback__), roots)


def caller_location(frame: types.FrameType | None, roots: tuple[str, ...]) -> str | None:
    """``file:line`` of the plugin code that led to ``frame`` (e.g. the line calling ``register``)."""
    return _pick(traceback.extract_stack(frame), roots) if frame is not None else None


def function_location(function: Any) -> str | None:
    """``file:line`` of the ``def`` line of ``function`` (after its decorators), if known."""
    try:
        code = inspect.unwrap(function).__code__
    except AttributeError:
        return None
    line = code.co_firstlineno
    while linecache.getline(code.co_filename, line).lstrip().startswith("@"):
        line += 1
    return f"{code.co_filename}:{line}"


# -------------------------------------------------------------------------------------------------
# hook implementations that do not fit a spec
# -------------------------------------------------------------------------------------------------


def hook_arguments() -> dict[str, tuple[str, ...]]:
    """Every hook name -> the arguments it passes to implementations."""
    return {
        name: tuple(inspect.signature(function).parameters)
        for name, function in vars(hookspecs).items()
        if name.startswith("semseg_") and callable(function)
    }


def hook_problems(manager: pluggy.PluginManager, plugin: Any) -> list[tuple[str, str | None]]:
    """(problem, ``file:line``) for each hook implementation of ``plugin`` that no spec accepts:
    an unknown hook name (with the closest valid one), or arguments the hook does not pass."""
    specs = hook_arguments()
    problems = []
    for attr in dir(plugin):
        try:
            opts = manager.parse_hookimpl_opts(plugin, attr)
            function = getattr(plugin, attr) if opts is not None else None
        except Exception:  # an attribute that cannot be read is not a hook
            continue
        if opts is None:
            continue
        hook = opts.get("specname") or attr
        where = function_location(function)
        if hook not in specs:
            if not opts.get("optionalhook"):
                problems.append((f"unknown hook '{hook}'{did_you_mean(hook, specs)}", where))
            continue
        try:
            params = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            continue
        wanted = [p.name for p in params
                  if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        extra = [a for a in wanted if a not in specs[hook]]
        if extra:
            problems.append((f"hook '{hook}' asks for argument(s) {', '.join(repr(a) for a in extra)} "
                             f"it is not given (it is given: {', '.join(specs[hook])})", where))
    return problems

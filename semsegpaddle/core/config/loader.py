"""Load, merge, override and validate YAML configs.

- ``_base_``: a file or list of files (paths relative to the including file, or names of packaged
  configs) merged in order, then the file itself on top. Mappings merge key by key; lists and
  scalars replace. When a component section (``model.backbone``, ``model.decoder``, ``dataset``)
  changes its ``name``, the section is replaced rather than merged: the old component's options
  would not fit the new one.
- Overrides ``a.b=value`` (value parsed as YAML) apply last, with the same rule.
- Validation checks every key against the engine schema and the chosen components' declared
  options, fills in defaults and requires the options a component declares without a default.
  Errors name the file, the key and the closest valid key.
- Path options (annotated ``pathlib.Path``, and ``model.backbone.pretrained``) that are relative
  resolve against the folder of the config file that set them (the current folder for the command
  line and defaults) and reach the factory as absolute ``str`` paths.
- YAML is read with safe_load semantics, except that ``1e-3`` is a float (YAML 1.1 reads it as a
  string) and a key given twice in one mapping is an error. Floats must be finite.
"""
from __future__ import annotations

import copy
import inspect
import os
import re
import typing
from pathlib import Path
from typing import Any, Iterable

import yaml

from semsegpaddle.core.common.errors import ConfigError, SemsegError, did_you_mean
from semsegpaddle.core.config.schema import SCHEMA, ComponentList, ComponentSection, Key, schema_defaults
from semsegpaddle.core.common.typecheck import (choices_of, first_non_finite, is_path_annotation, type_matches,
                                                type_name)

COMMAND_LINE = "command line"


class Config(dict):
    """A nested config mapping that remembers which file (or the command line) set each key."""

    def __init__(self, data: dict[str, Any] | None = None, sources: dict[str, str] | None = None) -> None:
        super().__init__(data or {})
        self.sources: dict[str, str] = dict(sources or {})

    def source_of(self, dotted: str) -> str:
        """The file that set ``dotted`` (or its closest parent), else 'defaults'."""
        parts = dotted.split(".")
        while parts:
            found = self.sources.get(".".join(parts))
            if found:
                return found
            parts.pop()
        return "defaults"

    def select(self, dotted: str) -> Any:
        """The value at ``a.b.c``."""
        node: Any = self
        for part in dotted.split("."):
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node

    def to_yaml(self) -> str:
        """The config as YAML text (plain types only)."""
        return yaml.safe_dump(_plain(self), sort_keys=False)


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    return node


def packaged_configs() -> list[str]:
    """Names of the packaged configs: semsegpaddle's own and those plugins register."""
    from semsegpaddle.core.plugin.manager import load_plugins

    return load_plugins().configs.names()


def resolve_config_path(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    """A config file from a path (relative to ``relative_to`` if given) or a packaged config name."""
    from semsegpaddle.core.plugin.manager import load_plugins

    text = str(name_or_path)
    candidates = [relative_to / text] if relative_to is not None else []
    for candidate in [*candidates, Path(text)]:
        if candidate.is_file():
            return candidate
    packaged = load_plugins().configs
    entry = packaged.find(text)
    if entry is not None:
        return entry.path
    raise ConfigError(
        f"config '{text}' is neither a file nor a packaged config{did_you_mean(Path(text).stem, packaged.names())}; "
        f"packaged: {', '.join(packaged.names())}"
    )


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one YAML mapping (plain YAML would silently keep the last)."""


class ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (safe_load semantics) that reads ``1e-3``, ``5E4``, ``1.0e3`` as floats and
    refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        """Build the mapping after checking its keys are unique (``<<`` merge keys excepted)."""
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise DuplicateKeyError(None, None, f"key '{key_node.value}' is given twice in one mapping "
                                            f"(first on line {seen[key]})", key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


# copy the class-level table so adding a resolver does not change yaml.SafeLoader itself
ConfigLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse YAML text with :class:`ConfigLoader`."""
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506  # ConfigLoader is a SafeLoader


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = load_yaml(path.read_bytes().decode("utf-8-sig"))
    except DuplicateKeyError as exc:
        raise ConfigError(f"{path} line {exc.problem_mark.line + 1}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                          f"save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _component_paths(node: Any = SCHEMA, prefix: str = "") -> set[str]:
    paths = set()
    for key, child in node.items():
        dotted = f"{prefix}{key}"
        if isinstance(child, ComponentSection):
            paths.add(dotted)
        elif isinstance(child, dict):
            paths |= _component_paths(child, dotted + ".")
    return paths


COMPONENT_PATHS = _component_paths()


def merge_into(target: Config, update: dict[str, Any], source: str, prefix: str = "") -> None:
    """Merge ``update`` into ``target`` in place, recording ``source`` for every key it sets."""
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        node = target.select(prefix[:-1]) if prefix else target
        replace_section = (
            dotted in COMPONENT_PATHS and isinstance(value, dict) and isinstance(node.get(key), dict)
            and "name" in value and value["name"] != node[key].get("name")
        )
        if isinstance(value, dict) and isinstance(node.get(key), dict) and not replace_section:
            merge_into(target, value, source, dotted + ".")
        else:
            node[key] = copy.deepcopy(value)
            for known in [k for k in target.sources if k.startswith(dotted + ".")]:
                del target.sources[known]
            _record(target.sources, value, dotted, source)


def _record(sources: dict[str, str], value: Any, dotted: str, source: str) -> None:
    sources[dotted] = source
    if isinstance(value, dict):
        for key, child in value.items():
            _record(sources, child, f"{dotted}.{key}", source)


def _load_file(path: Path, chain: tuple[Path, ...] = ()) -> Config:
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{path}: _base_ inherits from itself ({' -> '.join(str(p) for p in chain + (path,))})")
    data = _read_yaml(path)
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a config name or a list of config names")
    merged = Config()
    for base in bases:
        base_config = _load_file(resolve_config_path(base, path.parent), chain + (path,))
        _merge_config(merged, base_config)
    merge_into(merged, data, str(path))
    return merged


def _merge_config(target: Config, other: Config) -> None:
    """Merge another loaded config, keeping the files it recorded as sources."""
    merge_into(target, other, "?")
    target.sources.update(other.sources)


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b=value`` and parse the value as YAML (numbers, booleans, null, lists)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' must look like key.sub=value")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except DuplicateKeyError as exc:
        raise ConfigError(f"{COMMAND_LINE}: override '{text}': {exc.problem}") from None
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(config: Config, overrides: Iterable[str]) -> None:
    """Apply ``key.sub=value`` overrides in place (recorded as coming from the command line)."""
    for text in overrides:
        key, value = parse_override(text)
        update: Any = value
        for part in reversed(key.split(".")):
            update = {part: update}
        merge_into(config, update, COMMAND_LINE)


def load_config(name_or_path: str | Path | None = None, overrides: Iterable[str] = (), *, validate: bool = True) -> Config:
    """Load a config file or packaged config (default: ``synthetic_deeplabv3``), apply overrides, validate."""
    path = resolve_config_path(name_or_path or "synthetic_deeplabv3")
    config = _load_file(path)
    apply_overrides(config, overrides)
    return validate_config(config) if validate else config


def config_from_dict(data: dict[str, Any], overrides: Iterable[str] = (), source: str = "<dict>") -> Config:
    """Build and validate a config from a Python mapping (the Python API's entry point)."""
    config = Config()
    merge_into(config, data, source)
    apply_overrides(config, overrides)
    return validate_config(config)


# -------------------------------------------------------------------------------------------------
# validation
# -------------------------------------------------------------------------------------------------


def validate_config(config: Config) -> Config:
    """Check every key and type; return a new Config with all defaults filled in."""
    resolved = Config(schema_defaults(), config.sources)
    _validate_node(config, SCHEMA, "", resolved, config)
    resolved.sources = dict(config.sources)
    _check_band_statistics(resolved)
    return resolved


def _check_band_statistics(config: Config) -> None:
    """``model.mean`` and ``model.std`` hold one entry per band of ``model.in_channels``; photometric
    distortion (RGB colours) is for 3 bands only."""
    model = config["model"]
    bands = model["in_channels"]
    for key in ("mean", "std"):
        count = len(model[key])
        if count != bands:
            dotted = f"model.{key}"
            blamed = dotted if dotted in config.sources else "model.in_channels"
            default = "" if dotted in config.sources else " (the default, ImageNet RGB)"
            _fail(config, blamed, f"'{dotted}' has {count} entries{default}, model.in_channels is {bands}: "
                                  f"give one {key} per input band")
    if bands != 3 and config["train"].get("photometric"):
        _fail(config, "train.photometric", f"'train.photometric' distorts RGB colours: it needs 3-band images, "
                                           f"model.in_channels is {bands}; set train.photometric: false")


def _fail(config: Config, dotted: str, message: str) -> None:
    raise ConfigError(f"{config.source_of(dotted)}: {message}")


def _validate_node(node: Any, schema: dict[str, Any], prefix: str, out: dict[str, Any], config: Config) -> None:
    node = {} if node is None else node  # an empty YAML section
    if not isinstance(node, dict):
        _fail(config, prefix[:-1], f"'{prefix[:-1]}' must be a mapping, got {type(node).__name__}")
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            _fail(config, dotted, f"unknown key '{dotted}'{did_you_mean(key, schema)}; "
                                  f"valid keys here: {', '.join(schema)}")
        spec = schema[key]
        if isinstance(spec, Key):
            _check_value(config, dotted, value, spec.type)
            if spec.check is not None and value is not None and not spec.check(value):
                _fail(config, dotted, f"'{dotted}' expects {spec.expect}, got {value!r}")
            out[key] = _resolve_path(config, dotted, value) if is_path_annotation(spec.type) else copy.deepcopy(value)
        elif isinstance(spec, ComponentSection):
            out[key] = _validate_component(config, dotted, value, spec)
        elif isinstance(spec, ComponentList):
            out[key] = _validate_component_list(config, dotted, value, spec)
        else:
            _validate_node(value, spec, dotted + ".", out[key], config)
    for key, spec in schema.items():  # absent sections still get their components' defaults
        if key in node:
            continue
        if isinstance(spec, ComponentSection):
            out[key] = _validate_component(config, f"{prefix}{key}", {}, spec)
        elif isinstance(spec, ComponentList):
            out[key] = _validate_component_list(config, f"{prefix}{key}", list(spec.default), spec)
        elif isinstance(spec, dict):
            _validate_node({}, spec, f"{prefix}{key}.", out[key], config)


def _validate_component_list(config: Config, dotted: str, value: Any, spec: ComponentList) -> list[dict[str, Any]]:
    if value is None:
        value = []
    if isinstance(value, (dict, str)):  # one component given without the list brackets
        value = [value]
    if not isinstance(value, list):
        _fail(config, dotted, f"'{dotted}' must be a list of {{name: ..., ...}} {spec.kind} sections, "
                              f"got {type(value).__name__} {value!r}")
    section = ComponentSection(spec.kind, "", spec.extra)
    out = []
    for index, item in enumerate(value):
        if isinstance(item, str):  # a bare name
            item = {"name": item}
        if not isinstance(item, dict) or "name" not in item:
            _fail(config, dotted, f"'{dotted}[{index}]' must be a {spec.kind} name or a mapping with a 'name', "
                                  f"got {item!r}")
        out.append(_validate_component(config, f"{dotted}.{index}", item, section))
    return out


def _check_value(config: Config, dotted: str, value: Any, annotation: Any) -> None:
    if not type_matches(value, annotation):
        choices = [str(a) for a in typing.get_args(annotation)] if typing.get_origin(annotation) is typing.Literal else []
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        _fail(config, dotted, f"'{dotted}' expects {type_name(annotation)}, got {type(value).__name__} {value!r}{hint}")
    typed = annotation not in (inspect.Parameter.empty, Any) and not isinstance(annotation, str)
    bad = first_non_finite(value) if typed else None
    if bad is not None:
        _fail(config, dotted, f"'{dotted}' expects finite numbers, got {bad} (.inf and .nan are not allowed)")


def _resolve_path(config: Config, dotted: str, value: Any) -> Any:
    """An absolute str path: relative to the folder of the file that set ``dotted``, else to the
    current folder (command line, defaults, Python dicts, and packaged configs, whose paths such as
    ``dataset.root: data/cityscapes`` are templates for the user's working folder)."""
    if not isinstance(value, (str, os.PathLike)):
        return value
    source = config.source_of(dotted)
    in_file = os.path.isabs(source) and not _is_packaged(Path(source))
    base = Path(source).parent if in_file else Path.cwd()
    return os.path.abspath(base / Path(value).expanduser())


def _is_packaged(path: Path) -> bool:
    from semsegpaddle.core.plugin.manager import load_plugins

    registry = load_plugins().configs
    return any(Path(registry.find(name).path).resolve() == path.resolve() for name in registry.names())


def _validate_component(config: Config, dotted: str, section: Any, spec: ComponentSection) -> dict[str, Any]:
    from semsegpaddle.core.plugin.manager import get_registry

    section = {} if section is None else section
    if not isinstance(section, dict):
        _fail(config, dotted, f"'{dotted}' must be a mapping with a 'name', got {type(section).__name__}")
    name = section.get("name", spec.default_name)
    if not isinstance(name, str):
        _fail(config, f"{dotted}.name", f"'{dotted}.name' expects str, got {type(name).__name__} {name!r}")
    try:
        component = get_registry(spec.kind).get(name)
    except SemsegError as exc:
        _fail(config, f"{dotted}.name", f"'{dotted}.name': {exc}")
    resolved: dict[str, Any] = {"name": name}
    resolved.update({k: v.default for k, v in spec.extra.items()})
    resolved.update(component.defaults())
    valid = ["name", *spec.extra, *(o.name for o in component.options)]
    for key, value in section.items():
        if key == "name":
            continue
        key_path = f"{dotted}.{key}"
        if key in spec.extra:
            _check_value(config, key_path, value, spec.extra[key].type)
        elif (option := component.option(key)) is not None:
            _check_value(config, key_path, value, option.annotation)
            choices = choices_of(option.annotation)
            if choices is not None and value not in choices:
                _fail(config, key_path, f"{key_path} ({spec.kind} '{name}'): {key}={value!r} is not one of "
                                        f"{', '.join(repr(c) for c in choices)}"
                                        f"{did_you_mean(value, [str(c) for c in choices]) if isinstance(value, str) else ''}")
        else:
            _fail(config, key_path, f"unknown key '{key_path}': {spec.kind} '{name}' has no option '{key}'"
                                    f"{did_you_mean(key, valid)}; valid: {', '.join(valid)}")
        resolved[key] = copy.deepcopy(value)
    missing = [o for o in component.options if o.required and o.name not in resolved]
    if missing:
        option = missing[0]
        _fail(config, f"{dotted}.name", f"{dotted}.{option.name} is required by {spec.kind} '{name}' "
                                        f"({option.description}); set it in the config or as "
                                        f"{dotted}.{option.name}=...")
    paths = {k for k, v in spec.extra.items() if is_path_annotation(v.type)}
    paths |= {o.name for o in component.options if is_path_annotation(o.annotation)}
    for key in paths & set(resolved):
        resolved[key] = _resolve_path(config, f"{dotted}.{key}", resolved[key])
    return resolved

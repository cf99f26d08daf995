"""BasicSR-format YAML options parsed into typed, validated dataclasses.

Every key is checked: an unknown key, a wrong type or a missing required setting is an OptionsError whose
one-line message names the file, the key path and what was expected. Test options are covered here;
the same mechanism carries the training schema.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class OptionsError(ValueError):
    """Invalid options; the message is one line: '<file>: <key path>: <problem>'."""


@dataclass
class NetworkOptions:
    """`network_g`: the family name in `type`, everything else passed to its constructor."""

    type: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class DatasetOptions:
    name: str
    type: str = "PairedImageDataset"
    dataroot_gt: str | None = None
    dataroot_lq: str | None = None
    filename_tmpl: str = "{}"
    io_backend: dict[str, Any] = field(default_factory=lambda: {"type": "disk"})
    meta_info_file: str | None = None
    phase: str | None = None
    scale: int | None = None
    color: str | None = None
    mean: list[float] | None = None
    std: list[float] | None = None


@dataclass
class PathOptions:
    pretrain_network_g: str | None = None
    strict_load_g: bool = True
    param_key_g: str | None = None
    results_root: str | None = None


@dataclass
class MetricOptions:
    type: str
    crop_border: int | None = None
    test_y_channel: bool = False
    better: str | None = None


@dataclass
class ValOptions:
    save_img: bool = False
    suffix: str | None = None
    metrics: dict[str, MetricOptions] = field(default_factory=dict)
    pbar: bool | None = None


@dataclass
class TileOptions:
    tile_size: int
    tile_pad: int = 32


@dataclass
class TestOptions:
    name: str
    scale: int
    network_g: NetworkOptions
    datasets: dict[str, DatasetOptions]
    model_type: str = "SRModel"
    num_gpu: int | str = 1
    manual_seed: int | None = None
    suffix: str | None = None
    crop_border: int | None = None
    path: PathOptions = field(default_factory=PathOptions)
    val: ValOptions = field(default_factory=ValOptions)
    tile: TileOptions | None = None


def read_yaml(path: str | Path) -> dict:
    """The mapping at the top of a YAML file, or an OptionsError naming the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise OptionsError(f"{path}: cannot read ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise OptionsError(f"{path}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise OptionsError(f"{path}: expected a mapping of options at the top level")
    return data


def load_test_options(path: str | Path) -> TestOptions:
    return parse(TestOptions, read_yaml(path), Path(path))


def parse(cls: type, data: Any, source: Path, where: str = "") -> Any:
    """Build dataclass `cls` from `data`, checking every key and type against its annotations."""
    if not isinstance(data, dict):
        raise OptionsError(f"{source}: {where or 'options'}: expected a mapping, got {_describe(data)}")
    if cls is NetworkOptions:
        data = {"type": data.get("type"), "args": {k: v for k, v in data.items() if k != "type"}}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            known = ", ".join(fields)
            raise OptionsError(f"{source}: {_join(where, key)}: unknown option (known here: {known})")
    values = {}
    for name, spec in fields.items():
        if name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise OptionsError(f"{source}: {_join(where, name)}: required option missing")
            continue
        values[name] = _convert(hints[name], data[name], source, _join(where, name))
    return cls(**values)


def _convert(hint: Any, value: Any, source: Path, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, source, where)
            except OptionsError as error:
                problems.append(error)
        raise problems[0]
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, source, where)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise OptionsError(f"{source}: {where}: expected a mapping, got {_describe(value)}")
        item = args[1] if args else Any
        return {str(k): _convert(item, v, source, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise OptionsError(f"{source}: {where}: expected a list, got {_describe(value)}")
        return [_convert(args[0], v, source, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise OptionsError(f"{source}: {where}: expected {hint.__name__}, got {_describe(value)}")
    return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) < 40 else text[:37] + '...'}"

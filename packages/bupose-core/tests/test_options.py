"""Declared test-time options: coercion, one-line errors, describe rows, class checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import pytest

from bupose.core.options import (
    OptionError,
    build_options,
    check_options_class,
    describe,
    option_names,
    options_as_dict,
    split_option_items,
)


@dataclass(frozen=True)
class Opts:
    layout_defaults: ClassVar[dict[str, dict[str, object]]] = {"coco17": {"nms_num": 8}, "crowdpose14": {"nms_num": 7}}

    flip: bool = field(default=True, metadata={"help": "flip test"})
    scales: tuple[float, ...] = field(default=(1.0,), metadata={"help": "test scales"})
    size: int | None = field(default=None, metadata={"help": "input size"})
    thre: float = field(default=0.05, metadata={"help": "a threshold"})
    nms_num: int | None = field(default=None, metadata={"help": "per layout"})
    mode: Literal["group", "pad"] = field(default="group", metadata={"help": "batching"})
    name: str = field(default="x", metadata={"help": "a name"})
    weights: Path | None = field(default=None, metadata={"help": "a file"})

    def __post_init__(self) -> None:
        if 1.0 not in self.scales:
            raise ValueError(f"scales must contain 1.0, got {self.scales}")


def test_strings_are_coerced_to_the_declared_types(tmp_path: Path) -> None:
    f = tmp_path / "w.pth"
    f.write_bytes(b"x")
    o = build_options(Opts, {
        "flip": "false", "scales": "0.5,1,2", "size": "320", "thre": "0.15", "nms_num": "none",
        "mode": "pad", "name": '"quoted"', "weights": str(f),
    })  # fmt: skip
    assert o == Opts(False, (0.5, 1.0, 2.0), 320, 0.15, None, "pad", "quoted", f)
    assert build_options(Opts, {"scales": "[1, 2]", "flip": "YES", "size": "null"}).scales == (1.0, 2.0)
    assert build_options(Opts, {}) == Opts()


def test_python_values_are_checked_too() -> None:
    o = build_options(Opts, {"flip": False, "scales": (1, 0.5), "size": 64, "thre": 1, "nms_num": 5})
    assert (o.flip, o.scales, o.size, o.thre, o.nms_num) == (False, (1.0, 0.5), 64, 1.0, 5)
    assert isinstance(o.thre, float) and all(isinstance(s, float) for s in o.scales)
    with pytest.raises(OptionError, match=r"size=2\.5: expected an integer"):
        build_options(Opts, {"size": 2.5})
    with pytest.raises(OptionError, match="flip=3: expected true or false"):
        build_options(Opts, {"flip": 3})
    with pytest.raises(OptionError, match="name=1: expected a string"):
        build_options(Opts, {"name": 1})


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("flip", "maybe", "expected true or false (bool)"),
        ("size", "big", "expected an integer (or none) (int | None)"),
        ("thre", "abc", "expected a number (float)"),
        ("thre", "nan", "expected a number (float)"),
        ("scales", "1,x", "expected comma-separated float values"),
        ("mode", "tile", "expected one of 'group', 'pad'"),
        ("weights", "/no/such/file.pth", "expected the path of an existing file"),
        ("nms_num", "1.5", "expected an integer"),
    ],
)
def test_bad_value_names_key_value_and_type(key: str, value: str, expected: str) -> None:
    with pytest.raises(OptionError) as info:
        build_options(Opts, {key: value}, context="head 'h'")
    msg = str(info.value)
    assert msg.startswith(f"--option {key}={value}: ") and expected in msg and "head 'h'" in msg
    assert "\n" not in msg


def test_unknown_key_lists_known_and_closest() -> None:
    with pytest.raises(OptionError) as info:
        build_options(Opts, {"thres": "0.1"}, context="head 'h'")
    msg = str(info.value)
    assert msg.startswith("--option thres: not accepted by head 'h' (unknown option;")
    assert "known options: flip, scales, size, thre, nms_num, mode, name, weights" in msg
    assert "did you mean 'thre'?" in msg
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


def test_class_check_failure_is_an_option_error() -> None:
    with pytest.raises(OptionError, match=r"head 'h': scales must contain 1\.0"):
        build_options(Opts, {"scales": "0.5"}, context="head 'h'")


def test_describe_rows_and_layout_defaults() -> None:
    rows = {r.name: r for r in describe(Opts)}
    assert list(rows) == option_names(Opts)
    assert (rows["flip"].type, rows["flip"].default, rows["flip"].help) == ("bool", "true", "flip test")
    assert (rows["scales"].type, rows["scales"].default) == ("tuple[float, ...]", "1.0")
    assert (rows["size"].type, rows["size"].default) == ("int | None", "none")
    assert rows["nms_num"].default == "8 (coco17), 7 (crowdpose14)"
    assert rows["mode"].type == "'group' | 'pad'" and rows["weights"].type == "path | None"
    assert options_as_dict(Opts())["thre"] == 0.05


def test_malformed_classes_are_rejected() -> None:
    @dataclass
    class NoDefault:
        a: int = field(metadata={"help": "x"})

    @dataclass
    class NoHelp:
        a: int = 1

    @dataclass
    class BadType:
        a: list[int] = field(default_factory=list, metadata={"help": "x"})

    @dataclass
    class BadLayout:
        layout_defaults: ClassVar[dict[str, dict[str, int]]] = {"coco17": {"b": 1}}
        a: int = field(default=1, metadata={"help": "x"})

    for cls, text in ((NoDefault, "needs a default"), (NoHelp, "metadata"), (BadType, "unsupported option type"),
                      (BadLayout, "unknown field")):  # fmt: skip
        with pytest.raises(OptionError, match=text):
            check_options_class(cls)
    with pytest.raises(OptionError, match="must be a dataclass"):
        check_options_class(int)


def test_split_option_items() -> None:
    assert split_option_items(["a=1", " b = x=y ", "a=2"]) == {"a": "2", "b": "x=y"}
    for bad in ("a", "=1", "a b=1"):
        with pytest.raises(OptionError, match="expected KEY=VALUE"):
            split_option_items([bad])

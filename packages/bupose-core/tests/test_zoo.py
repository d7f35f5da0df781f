"""The model zoo: provenance fields, ``bupose list weights --json``, and digest checks of known files."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from bupose.core.cli import build_cli
from bupose.core.plugins import Registry, get_registry
from bupose.core.specs import InvalidSpecError, WeightsSpec
from bupose.core.weights import read_checkpoint
from bupose.core.zoo import (
    UNKNOWN,
    WeightsDigestWarning,
    check_known_file,
    model_zoo,
    models_markdown,
    provenance,
    zoo_entry,
)

OFFICIAL_BYTES = b"the official file's bytes"
OFFICIAL_SHA = hashlib.sha256(OFFICIAL_BYTES).hexdigest()


def _spec(**kw: object) -> WeightsSpec:
    base: dict = {"name": "zoo_test_model", "factory": "bupose.core.weights:unwrap_checkpoint", "head": "h",
                  "backbone": "b", "layout": "coco17", "file_names": ("zoo_test_model.pth",)}
    base.update(kw)
    return WeightsSpec(**base)


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.add("weights", _spec(sha256=OFFICIAL_SHA, size_bytes=len(OFFICIAL_BYTES), licence="MIT",
                             source="https://example.org/zoo_test_model.pth", source_page="https://example.org",
                             paper_ap=(("COCO val2017, single scale", 68.0),)))
    reg.add("weights", _spec(name="zoo_test_hub", file_names=("net-0123abcd.pth",), hash_in_name=True,
                             role="backbone"))
    reg.add("weights", _spec(name="zoo_test_nodigest", file_names=("nodigest.pth",)))
    return reg


def test_spec_fields_are_validated() -> None:
    with pytest.raises(InvalidSpecError, match="sha256 must be 64"):
        _spec(sha256="abc")
    with pytest.raises(InvalidSpecError, match=r"carry no '-<hex>\.' digest prefix"):
        _spec(hash_in_name=True)
    with pytest.raises(InvalidSpecError, match="size_bytes"):
        _spec(size_bytes=0)
    with pytest.raises(InvalidSpecError, match="paper_ap entries"):
        _spec(paper_ap=(("COCO", 680.0),))
    spec = _spec(name="x", file_names=("a-deadbeef.pth", "b-0badf00d1.pth"), hash_in_name=True)
    assert spec.expected_sha256("a-deadbeef.pth") == "deadbeef"
    assert spec.expected_sha256("b-0badf00d1.pth") == "0badf00d1"
    assert spec.expected_sha256("other.pth") is None


def test_zoo_entries_say_unknown_honestly(registry: Registry) -> None:
    entries = {e["name"]: e for e in model_zoo(registry)}
    known = entries["zoo_test_model"]
    assert known["sha256"] == OFFICIAL_SHA and known["size_bytes"] == len(OFFICIAL_BYTES)
    assert known["licence"] == "MIT" and known["paper_ap"] == [{"setting": "COCO val2017, single scale", "AP": 68.0}]
    bare = entries["zoo_test_nodigest"]
    assert bare["sha256"] == UNKNOWN and bare["size_bytes"] == UNKNOWN and bare["licence"] == UNKNOWN
    assert bare["paper_ap"] == [] and "sha256_prefix" not in bare
    assert entries["zoo_test_hub"]["sha256_prefix"] == {"net-0123abcd.pth": "0123abcd"}
    json.dumps(entries)  # JSON-ready
    assert provenance(registry.components["weights"]["zoo_test_model"])["licence"] == "MIT"


def test_known_name_with_wrong_digest_warns_with_both_digests(registry: Registry, tmp_path: Path) -> None:
    good = tmp_path / "good" / "zoo_test_model.pth"
    good.parent.mkdir()
    good.write_bytes(OFFICIAL_BYTES)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check = check_known_file(good, registry)
    assert check is not None and check.ok is True

    bad = tmp_path / "zoo_test_model.pth"
    bad.write_bytes(b"something else")
    actual = hashlib.sha256(b"something else").hexdigest()
    with pytest.warns(WeightsDigestWarning) as rec:
        check = check_known_file(bad, registry)
    assert check is not None and check.ok is False
    msg = str(rec[0].message)
    assert OFFICIAL_SHA in msg and actual in msg and "zoo_test_model" in msg

    hub = tmp_path / "net-0123abcd.pth"
    hub.write_bytes(b"not the hub file")
    with pytest.warns(WeightsDigestWarning, match="sha256 prefix \\(from its name\\) is 0123abcd"):
        check_known_file(hub, registry)

    unknown = tmp_path / "nodigest.pth"
    unknown.write_bytes(b"anything")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check = check_known_file(unknown, registry)
    assert check is not None and check.ok is None and not check.known
    assert check_known_file(tmp_path / "not_registered.pth", registry) is None


@pytest.fixture
def registered() -> Iterator[WeightsSpec]:
    """A spec with a known digest in the process-wide registry, removed afterwards."""
    spec = _spec(name="zoo_test_global", file_names=("zoo_test_global.pth",), sha256=OFFICIAL_SHA)
    reg = get_registry()
    reg.add("weights", spec)
    try:
        yield spec
    finally:
        del reg.components["weights"][spec.name]


def test_reading_a_known_file_checks_its_digest(registered: WeightsSpec, tmp_path: Path) -> None:
    path = tmp_path / "zoo_test_global.pth"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.warns(WeightsDigestWarning, match=OFFICIAL_SHA):
        raw, meta = read_checkpoint(path)
    assert set(raw) == {"w"} and meta == {}


def test_list_weights_json_and_markdown(registered: WeightsSpec) -> None:
    runner = CliRunner()
    res = runner.invoke(build_cli(), ["list", "weights", "--json"])
    assert res.exit_code == 0, res.output
    entries = {e["name"]: e for e in json.loads(res.output)}
    assert entries["zoo_test_global"]["sha256"] == OFFICIAL_SHA
    assert all({"sha256", "licence", "source", "paper_ap", "size_bytes"} <= set(e) for e in entries.values())
    res = runner.invoke(build_cli(), ["list", "weights"])
    assert res.exit_code == 0 and f"sha256: {OFFICIAL_SHA}" in res.output
    res = runner.invoke(build_cli(), ["list", "weights", "--markdown"])
    assert res.exit_code == 0 and res.output.startswith("# Model zoo") and "| zoo_test_global |" in res.output
    res = runner.invoke(build_cli(), ["list", "heads", "--markdown"])
    assert res.exit_code != 0 and "weights only" in res.output
    res = runner.invoke(build_cli(), ["list", "--json"])
    assert res.exit_code == 0 and {"heads", "weights", "backbones"} <= set(json.loads(res.output))


def test_markdown_rows(registry: Registry) -> None:
    text = models_markdown(registry)
    assert "## Pose models" in text and "## Backbone initialisations (ImageNet)" in text
    row = next(line for line in text.splitlines() if line.startswith("| zoo_test_model |"))
    assert OFFICIAL_SHA in row and "MIT" in row and "68.0 (COCO val2017, single scale)" in row
    hub = next(line for line in text.splitlines() if line.startswith("| zoo_test_hub |"))
    assert "prefix `0123abcd`" in hub
    assert zoo_entry(registry.components["weights"]["zoo_test_nodigest"])["source_page"] == UNKNOWN


def test_cli_prints_the_digest_warning_as_one_line(registered: WeightsSpec, tmp_path: Path) -> None:
    path = tmp_path / "zoo_test_global.pth"
    torch.save({"w": torch.zeros(2)}, path)
    res = CliRunner().invoke(build_cli(), ["convert", str(path), str(tmp_path / "o.safetensors")])
    lines = [x for x in res.output.splitlines() if x.startswith("warning: ")]
    assert len(lines) == 1 and OFFICIAL_SHA in lines[0] and hashlib.sha256(path.read_bytes()).hexdigest() in lines[0]

"""The model zoo: every registered checkpoint with its provenance, and checking a user's file against it.

Each installed method package registers its official files as :class:`~bupose.core.specs.WeightsSpec`
(file names, where to get them, sha256 / size where known, licence status, reported AP).
:func:`model_zoo` lists them (``bupose list weights [--json]``), :func:`models_markdown` renders
``docs/models.md``, :func:`check_known_file` verifies a file whose name is a known official name (a
digest mismatch is a :class:`WeightsDigestWarning` naming both digests) and :func:`provenance` is what
``bupose convert`` writes into the safetensors metadata.

Unknown facts stay unknown: ``sha256`` is ``"unknown"`` unless the registering package knows the real
digest; a file name carrying a digest prefix (``hrnet_w32-36af842e.pth``, the torch.hub / OpenMMLab
convention) is checked against that prefix and listed as ``sha256_prefix``.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .plugins import Registry, get_registry
from .specs import WeightsSpec

__all__ = [
    "UNKNOWN",
    "DigestCheck",
    "WeightsDigestWarning",
    "check_known_file",
    "file_sha256",
    "model_zoo",
    "models_markdown",
    "provenance",
    "zoo_entry",
]

UNKNOWN = "unknown"


class WeightsDigestWarning(UserWarning):
    """A file named like an official checkpoint whose sha256 is not the official file's."""


@dataclass(frozen=True)
class DigestCheck:
    """The result of checking a file against the registered official file of the same name."""

    path: Path
    spec: WeightsSpec
    expected: str | None
    actual: str | None

    @property
    def known(self) -> bool:
        """Whether the official digest (or a prefix of it) is known."""
        return self.expected is not None

    @property
    def ok(self) -> bool | None:
        """``True`` / ``False`` when the digest is known, ``None`` when it is not."""
        if self.expected is None or self.actual is None:
            return None
        return self.actual.startswith(self.expected)


def _weights(registry: Registry) -> list[WeightsSpec]:
    return sorted(
        (s for s in registry.components["weights"].values() if isinstance(s, WeightsSpec)), key=lambda s: s.name
    )


def zoo_entry(spec: WeightsSpec) -> dict[str, Any]:
    """One checkpoint's provenance as JSON-ready values (``"unknown"`` for what is not known)."""
    prefixes = {f: spec.expected_sha256(f) for f in spec.file_names} if spec.hash_in_name and not spec.sha256 else {}
    return {
        "name": spec.name,
        "role": spec.role,
        "head": spec.head or None,
        "backbone": spec.backbone or None,
        "layout": spec.layout or None,
        "file_names": list(spec.file_names),
        "size_bytes": spec.size_bytes if spec.size_bytes is not None else UNKNOWN,
        "sha256": spec.sha256 or UNKNOWN,
        **({"sha256_prefix": prefixes} if prefixes else {}),
        "source": spec.source or UNKNOWN,
        "source_page": spec.source_page or UNKNOWN,
        "licence": spec.licence or UNKNOWN,
        "paper_ap": [{"setting": s, "AP": ap} for s, ap in spec.paper_ap],
        "summary": spec.summary,
        "distribution": spec.distribution,
        "version": spec.version,
    }


def model_zoo(registry: Registry | None = None) -> list[dict[str, Any]]:
    """Every registered checkpoint of every installed package, sorted by name (:func:`zoo_entry`)."""
    return [zoo_entry(s) for s in _weights(registry or get_registry())]


def provenance(spec: WeightsSpec) -> dict[str, Any]:
    """What ``bupose convert`` records about the official file a checkpoint came from."""
    entry = zoo_entry(spec)
    keys = ("sha256", "sha256_prefix", "size_bytes", "source", "source_page", "licence", "paper_ap")
    return {k: entry[k] for k in keys if k in entry}


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file (remembered per path, size and modification time)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def check_known_file(
    path: str | os.PathLike[str], registry: Registry | None = None, *, warn: bool = True
) -> DigestCheck | None:
    """Check a file whose name is a registered official file name against that file's known sha256.

    Returns ``None`` for names no package registers; otherwise a :class:`DigestCheck` (its file is
    hashed only when the digest is known). With ``warn``, a mismatch issues a
    :class:`WeightsDigestWarning` naming the file, the official checkpoint and both digests.
    """
    p = Path(path)
    specs = [s for s in _weights(registry or get_registry()) if p.name in s.file_names]
    if not specs:
        return None
    spec = next((s for s in specs if s.expected_sha256(p.name)), specs[0])
    expected = spec.expected_sha256(p.name)
    actual = file_sha256(p) if expected is not None else None
    check = DigestCheck(p, spec, expected, actual)
    if warn and check.ok is False:
        what = "sha256" if expected is not None and len(expected) == 64 else "sha256 prefix (from its name)"
        warnings.warn(
            f"{p}: named like the official {spec.name} file, but its sha256 is {actual}; the official "
            f"file's {what} is {expected}. The file may be corrupt, truncated or a different file "
            f"(get it from: {spec.source or spec.source_page or 'its official page'})",
            WeightsDigestWarning,
            stacklevel=2,
        )
    return check


def _ap_text(spec: WeightsSpec) -> str:
    return "; ".join(f"{ap:.1f} ({s})" for s, ap in spec.paper_ap) or "—"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def models_markdown(registry: Registry | None = None, packages: Iterable[str] | None = None) -> str:
    """``docs/models.md``: the zoo as Markdown tables, one per role (models, other model parts,
    backbone initialisations), from the installed packages' registrations."""
    specs = _weights(registry or get_registry())
    if packages is not None:
        wanted = set(packages)
        specs = [s for s in specs if s.distribution in wanted]
    lines = [
        "# Model zoo",
        "",
        "Every official checkpoint the installed bupose packages know (generated from their",
        "`WeightsSpec` registrations: `bupose list weights --markdown > docs/models.md`; a test checks this",
        "page is current). `bupose list weights --json` gives the same as JSON. bupose downloads nothing:",
        "get each file from its source, then `bupose run --weights FILE` or `bupose convert FILE OUT.safetensors`",
        "(which records the provenance below in the safetensors metadata).",
        "",
        "- **sha256**: the official file's digest where it is known; \"unknown\" otherwise (never guessed). A",
        "  file name ending in `-<hex>.pth` carries the first hex digits of its sha256 (torch.hub / OpenMMLab",
        "  convention): that prefix is checked. A file with a known name and another digest gets a warning",
        "  naming both digests.",
        "- **licence**: the status of the weights as distributed. \"none stated\" means the official repository",
        "  has no licence file: no reuse terms are granted, ask the authors before redistributing.",
        "- **paper AP**: as reported by the authors (COCO-style AP in percent, the setting in brackets).",
        "",
    ]
    roles = (
        ("model", "Pose models"),
        ("rescore", "Other model parts"),
        ("backbone", "Backbone initialisations (ImageNet)"),
    )
    seen = set()
    for role, title in [*roles, *[(r, f"Role: {r}") for r in sorted({s.role for s in specs} - {r for r, _ in roles})]]:
        rows = [s for s in specs if s.role == role]
        if not rows:
            continue
        seen.update(s.name for s in rows)
        lines += [f"## {title}", "", "| name | file | for | size | sha256 | licence | paper AP | source |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for s in rows:
            target = "+".join(x for x in (s.head, s.backbone) if x) + (f" {s.layout}" if s.layout else "")
            digest = s.sha256 or (
                "prefix " + ", ".join(f"`{s.expected_sha256(f)}`" for f in s.file_names) if s.hash_in_name else UNKNOWN
            )
            size = f"{s.size_bytes:,} B" if s.size_bytes else UNKNOWN
            source = s.source or UNKNOWN
            if s.source_page and s.source_page not in source:
                source += f" ({s.source_page})"
            lines.append(
                f"| {s.name} | {', '.join(f'`{f}`' for f in s.file_names)} | {_md(target)} | {size} | {digest} | "
                f"{_md(s.licence or UNKNOWN)} | {_md(_ap_text(s))} | {_md(source)} |"
            )
        lines.append("")
    lines += [
        "## Registering a checkpoint (package authors)",
        "",
        "A method package registers its official files in its plugin module; every provenance field is",
        "optional and stays \"unknown\" until filled with a fact (never a guess):",
        "",
        "```python",
        "WeightsSpec(",
        '    name="mymethod_hrnetw32_coco", factory="my_pkg.convert:W32_COCO", head="mymethod",',
        '    backbone="hrnet_w32", layout="coco17", file_names=("mymethod_w32_coco.pth",), role="model",',
        '    source="where exactly to download it", source_page="https://github.com/org/repo",',
        '    sha256=None,            # the full 64-hex digest once the real file has been hashed',
        "    hash_in_name=False,     # True when the names end in -<first sha256 hex digits>.pth",
        "    size_bytes=None,        # the official file's size in bytes",
        '    licence="none stated (no licence file in org/repo)",',
        '    paper_ap=(("COCO val2017, single scale", 69.0),),',
        ")",
        "```",
        "",
        "Methods whose package is not installed where this page was generated are not listed.",
    ]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":  # pragma: no cover - `python -m bupose.core.zoo > docs/models.md`
    print(models_markdown(), end="")

"""Plugin discovery and the component registry.

Plugins are found through the ``bupose`` entry-point group and loaded one at a time. Every hook
implementation is called through pluggy (so ``@hookimpl(tryfirst=True)`` / ``trylast=True`` order
the calls across plugins), one plugin's implementation per call: a plugin that fails to import, or
whose hook raises, is recorded (with its traceback) against that plugin and skipped; everything
else keeps working. Without ordering markers, plugins are called in load order: core's built-ins,
then entry points by name. Environment variables:

- ``BUPOSE_LOAD_PLUGINS=a,b``: load only these entry points (core's built-ins always load);
- ``BUPOSE_DISABLE_PLUGINS=a,b``: skip these entry points;
- ``BUPOSE_TRACE_PLUGINS=1``: print every hook call and registration to stderr.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .specs import SPEC_TYPES, ComponentSpec

__all__ = [
    "DuplicateComponentError",
    "FIRST_PARTY",
    "PluginError",
    "PluginInfo",
    "Registry",
    "UnknownComponentError",
    "get_registry",
    "reset_registry",
]

ENTRY_POINT_GROUP = "bupose"
CORE_DISTRIBUTION = "bupose-core"

BUILTIN_PLUGINS: tuple[str, ...] = (
    "bupose.core.builtins.layouts",
    "bupose.core.builtins.groupers",
    "bupose.core.builtins.ops",
    "bupose.core.builtins.commands",
    "bupose.core.builtins.convert",
    "bupose.core.builtins.data",
    "bupose.core.builtins.run",
    "bupose.core.builtins.train",
)
"""Core's own plugins, registered through the same hooks as third-party ones."""

FIRST_PARTY: dict[str, dict[str, str]] = {
    "heads": {
        "dekr": "bupose-dekr",
        "logocap": "bupose-logocap",
        "centergroup": "bupose-centergroup",
        "grouppose": "bupose-grouppose",
        "simplepose": "bupose-simplepose",
    },
    "backbones": {
        "hrnet_w18": "bupose-hrnet",
        "hrnet_w18_small": "bupose-hrnet",
        "hrnet_w32": "bupose-hrnet",
        "hrnet_w48": "bupose-hrnet",
        "higherhrnet_w32": "bupose-hrnet",
        "higherhrnet_w48": "bupose-hrnet",
        "swin_t": "bupose-swin",
        "swin_l": "bupose-swin",
        "resnet50": "bupose-resnet",
    },
    "ops": {
        "deform_conv2d": "bupose-cuda-ops",
        "ms_deform_attn": "bupose-cuda-ops",
    },
}
"""Names our own packages provide, so an unknown name can say which package to install."""

KIND_SINGULAR = {
    "backbones": "backbone",
    "heads": "head",
    "groupers": "grouper",
    "layouts": "layout",
    "datasets": "dataset",
    "ops": "op",
    "weights": "weights",
}


class UnknownComponentError(LookupError):
    """A component name is not registered; the message says what is and what to install."""


class DuplicateComponentError(RuntimeError):
    """Two distributions registered the same name for the same kind."""


@dataclass
class PluginError:
    """A plugin that failed to import or whose hook raised."""

    plugin: str
    distribution: str
    version: str
    stage: str
    error: str
    traceback: str

    def as_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


@dataclass
class PluginInfo:
    """One loaded (or failed) plugin: entry point name, module, distribution and what it gave."""

    name: str
    module: str
    distribution: str
    version: str
    builtin: bool = False
    components: dict[str, list[str]] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    errors: list[PluginError] = field(default_factory=list)
    module_obj: ModuleType | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "components": {k: sorted(v) for k, v in sorted(self.components.items()) if v},
            "commands": sorted(self.commands),
            "errors": [e.as_dict() for e in self.errors],
        }


def _trace(msg: str) -> None:
    if os.environ.get("BUPOSE_TRACE_PLUGINS", "").strip() not in ("", "0", "false", "no"):
        print(f"[bupose plugins] {msg}", file=sys.stderr)


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {item.strip() for item in raw.split(",") if item.strip()}


def _core_version() -> str:
    try:
        return md.version(CORE_DISTRIBUTION)
    except md.PackageNotFoundError:
        return "0+unknown"


class Registry:
    """All registered components by kind, where they came from, and the plugins' load errors."""

    def __init__(self) -> None:
        self.components: dict[str, dict[str, ComponentSpec]] = {k: {} for k in SPEC_TYPES}
        self.plugins: list[PluginInfo] = []
        self.errors: list[PluginError] = []
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)

    # ----------------------------------------------------------------- loading
    def load(self, entry_points: Iterable[md.EntryPoint] | None = None) -> Registry:
        """Load core's built-ins and every entry-point plugin, then call the register hooks."""
        version = _core_version()
        for module_name in BUILTIN_PLUGINS:
            info = PluginInfo(
                name=module_name.rsplit(".", 1)[-1],
                module=module_name,
                distribution=CORE_DISTRIBUTION,
                version=version,
                builtin=True,
            )
            self._load_module(info, lambda m=module_name: importlib.import_module(m))
        eps = list(entry_points if entry_points is not None else md.entry_points(group=ENTRY_POINT_GROUP))
        only = _env_list("BUPOSE_LOAD_PLUGINS")
        disabled = _env_list("BUPOSE_DISABLE_PLUGINS") or set()
        for ep in sorted(eps, key=lambda e: e.name):
            if only is not None and ep.name not in only:
                _trace(f"skip {ep.name} (not in BUPOSE_LOAD_PLUGINS)")
                continue
            if ep.name in disabled:
                _trace(f"skip {ep.name} (BUPOSE_DISABLE_PLUGINS)")
                continue
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                distribution=dist.metadata["Name"] if dist is not None else "unknown",
                version=dist.version if dist is not None else "unknown",
            )
            self._load_module(info, ep.load)
        self._register_with_pluggy()
        for hook_name, kind in hookspecs.REGISTER_HOOKS.items():
            self._call_hook(hook_name, lambda info, h=hook_name, k=kind: {"register": self._register_fn(info, h, k)})
        return self

    def _record(self, info: PluginInfo, stage: str, exc: BaseException) -> None:
        err = PluginError(
            plugin=info.name,
            distribution=info.distribution,
            version=info.version,
            stage=stage,
            error=f"{type(exc).__name__}: {exc}",
            traceback="".join(traceback.format_exception(exc)),
        )
        info.errors.append(err)
        self.errors.append(err)
        _trace(f"{info.name}: {stage} failed: {err.error}")

    @staticmethod
    def _plugin_key(info: PluginInfo) -> str:
        return f"{info.distribution}:{info.name}"

    def _load_module(self, info: PluginInfo, loader: Callable[[], Any]) -> None:
        """Import one plugin module (pluggy registration happens once all are imported)."""
        self.plugins.append(info)
        _trace(f"load {info.name} ({info.module}) from {info.distribution} {info.version}")
        try:
            module = loader()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the host
            self._record(info, "import", exc)
            return
        twin = next((p for p in self.plugins if p is not info and p.module_obj is module), None)
        if twin is not None:
            self._record(info, "import", RuntimeError(f"module {info.module} is already loaded as plugin {twin.name!r}"))
            return
        info.module_obj = module

    def _register_with_pluggy(self) -> None:
        """Register the imported modules with pluggy, last-loaded first.

        pluggy calls unmarked implementations last-registered first, so registering in reverse load
        order makes the call order the load order; ``tryfirst``/``trylast`` still move a call.
        """
        loaded = [info for info in self.plugins if info.module_obj is not None]
        for info in reversed(loaded):
            try:
                self.pm.register(info.module_obj, name=self._plugin_key(info))
            except Exception as exc:  # noqa: BLE001 - e.g. a hookimpl whose arguments match no hookspec
                self._record(info, "import", exc)
                info.module_obj = None
        for info in loaded:
            if info.module_obj is None:
                continue
            stray = sorted(hc.name for hc in self.pm.get_hookcallers(info.module_obj) or () if hc.spec is None)
            for name in stray:  # an implementation of a hook that does not exist would never be called
                self._record(
                    info, name,
                    LookupError(f"{name} is not a bupose hook (it is ignored); hooks are: {', '.join(hookspecs.HOOK_NAMES)}"),
                )  # fmt: skip

    def _call_hook(
        self,
        hook_name: str,
        kwargs_for: Callable[[PluginInfo], dict[str, Any]],
        after: Callable[[PluginInfo], None] | None = None,
    ) -> None:
        """Call ``hook_name`` through pluggy, one plugin's implementation per call, in pluggy's
        order (``tryfirst`` first, ``trylast`` last); a raise is recorded against that plugin.
        ``after(info)`` runs after each plugin's call, whether it raised or not."""
        caller = getattr(self.pm.hook, hook_name)
        by_key = {self._plugin_key(info): info for info in self.plugins if info.module_obj is not None}
        for impl in reversed(caller.get_hookimpls()):  # pluggy calls its list back to front
            info = by_key.get(impl.plugin_name)
            if info is None:  # pragma: no cover - only modules registered by this registry take part
                continue
            _trace(f"call {info.name}.{hook_name}")
            try:
                # pluggy's own call machinery (argument selection, wrappers) on this one implementation
                self.pm._hookexec(hook_name, [impl], kwargs_for(info), False)
            except Exception as exc:  # noqa: BLE001
                self._record(info, hook_name, exc)
            if after is not None:
                after(info)

    def _register_fn(self, info: PluginInfo, hook_name: str, kind: str) -> Callable[[ComponentSpec], None]:
        spec_type = SPEC_TYPES[kind]

        def register(spec: ComponentSpec) -> None:
            if not isinstance(spec, spec_type):
                raise TypeError(
                    f"{hook_name} expects {spec_type.__name__} instances, got {type(spec).__name__}"
                )
            self.add(kind, spec.with_provenance(info.distribution, info.version), info)

        return register

    def add(self, kind: str, spec: ComponentSpec, info: PluginInfo | None = None) -> None:
        """Register one spec; a second registration of a name is an error unless it overrides."""
        table = self.components[kind]
        existing = table.get(spec.key)
        if existing is not None and not spec.overrides:
            raise DuplicateComponentError(
                f"{KIND_SINGULAR[kind]} {spec.key!r} is registered twice: by "
                f"{existing.distribution} {existing.version} and by {spec.distribution} "
                f"{spec.version}; uninstall one, or mark the later spec overrides=True"
            )
        table[spec.key] = spec
        _trace(f"  {KIND_SINGULAR[kind]} {spec.key} <- {spec.distribution}")
        if info is not None:
            info.components.setdefault(kind, []).append(spec.key)

    def add_commands(self, cli: Any) -> None:
        """Let every loaded plugin add its CLI commands (through pluggy; errors are recorded)."""
        before: set[str] = set()

        def kwargs_for(info: PluginInfo) -> dict[str, Any]:
            before.clear()
            before.update(getattr(cli, "commands", {}))
            return {"cli": cli}

        def after(info: PluginInfo) -> None:
            info.commands.extend(sorted(set(getattr(cli, "commands", {})) - before))

        self._call_hook("bupose_register_commands", kwargs_for, after)

    # ----------------------------------------------------------------- lookup
    def names(self, kind: str) -> list[str]:
        """Registered names of one kind, sorted."""
        self._check_kind(kind)
        return sorted(self.components[kind])

    def get(self, kind: str, name: str) -> ComponentSpec:
        """The spec registered as ``name``; :class:`UnknownComponentError` otherwise."""
        self._check_kind(kind)
        try:
            return self.components[kind][name]
        except KeyError:
            raise UnknownComponentError(self.unknown_message(kind, name)) from None

    def _check_kind(self, kind: str) -> None:
        if kind not in self.components:
            raise UnknownComponentError(
                f"unknown component kind {kind!r}; kinds are: {', '.join(self.components)}"
            )

    def unknown_message(self, kind: str, name: str) -> str:
        """Explain that ``name`` is not registered: what is, the closest name, what to install."""
        singular = KIND_SINGULAR[kind]
        installed = self.names(kind)
        first_party = FIRST_PARTY.get(kind, {})
        lines = [f"unknown {singular} {name!r}."]
        if installed:
            lines.append(f"Installed {kind}: {', '.join(installed)}.")
        else:
            lines.append(f"No {kind} are installed.")
        candidates = sorted(set(installed) | set(first_party))
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
        suggestion = close[0] if close else None
        if name in first_party:
            suggestion = name
        if suggestion is not None and suggestion != name:
            lines.append(f"Did you mean {suggestion!r}?")
        if suggestion is not None and suggestion not in installed and suggestion in first_party:
            package = first_party[suggestion]
            lines.append(
                f"{suggestion!r} is provided by {package}, which is not installed: "
                f"{sys.executable} -m pip install {package}"
            )
        elif not installed and first_party:
            packages = sorted(set(first_party.values()))
            lines.append(
                f"Install one of: {', '.join(packages)} "
                f"(e.g. {sys.executable} -m pip install {packages[0]})."
            )
        failed = [e for e in self.errors if e.stage != "bupose_register_commands"]
        if failed:
            lines.append(
                "Some plugins failed to load (see `bupose plugins`): "
                + ", ".join(sorted({e.plugin for e in failed}))
            )
        return " ".join(lines)

    def describe(self) -> dict[str, Any]:
        """Distributions, versions, components by kind and load errors (for ``bupose plugins``)."""
        dists: dict[str, dict[str, Any]] = {}
        for info in self.plugins:
            d = dists.setdefault(
                info.distribution,
                {"distribution": info.distribution, "version": info.version, "plugins": []},
            )
            d["plugins"].append(info.as_dict())
        return {
            "distributions": sorted(dists.values(), key=lambda d: d["distribution"]),
            "errors": [e.as_dict() for e in self.errors],
        }


_REGISTRY: Registry | None = None
_LOCK = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _REGISTRY
    with _LOCK:
        if _REGISTRY is None:
            _REGISTRY = Registry().load()
        return _REGISTRY


def reset_registry() -> None:
    """Forget the registry so the next :func:`get_registry` reloads plugins (tests, env changes)."""
    global _REGISTRY
    with _LOCK:
        _REGISTRY = None

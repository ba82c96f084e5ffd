"""`load_config`: the sources in their order of precedence, and one-sentence errors."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import (
    ValidationError,
)
from pydantic_settings import (
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsError,
)

from brokerline.config.sections import DEFAULT_CONFIG, ConfigError, ServiceConfig
from brokerline.config.sources import (
    ENVIRONMENT,
    PrefixedEnvironment,
    WellKnownEnvironment,
    YamlFile,
)
from brokerline.core.urls import redact_text

#: set by `serve --workers N` for each worker it starts: JSON of the settings that worker must
#: run with whatever else says (the shared listen addresses with reuse_port, its own metrics
#: port); applied like `overrides`, under the caller's own
WORKER_SETTINGS = "BROKERLINE_WORKER_SETTINGS"

#: settings whose value is never repeated in an error message
SECRET_WORDS = ("token", "password", "seed", "credentials", "url")


def _describe(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    loc = [str(p) for p in first["loc"] if not isinstance(p, int)]  # list indexes add nothing
    where = ".".join(loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown setting {where!r}; check its spelling against the README table"
    names = [name for name, path in ENVIRONMENT.items() if path == where]
    setting = f"{where!r} ({', '.join(names)})" if names else repr(where)
    message = str(first["msg"]).removeprefix("Value error, ")
    value = first.get("input")
    shown = ""
    if isinstance(value, str | int | float) and not any(w in where for w in SECRET_WORDS):
        shown = f" (got {value!r})"
    return redact_text(f"{source}: setting {setting} is invalid{shown}: {message}")


def _config_file(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path:
    """The file to read: `path`, else CONFIG_FILE, else the default; checked if named."""
    chosen = path or environ.get("CONFIG_FILE") or DEFAULT_CONFIG
    config_path = Path(chosen).expanduser()
    if config_path.is_dir():
        raise ConfigError(f"config file {config_path} is a directory; pass a YAML file")
    # pydantic-settings skips a missing file, right for a CONFIG_FILE or default that is not
    # there (the environment alone configures); a file named by the caller must exist
    if path and not config_path.exists():
        raise ConfigError(f"config file {config_path} does not exist; pass an existing file")
    return config_path


Config = TypeVar("Config", bound=ServiceConfig)


def load_config(
    model: type[Config],
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    env_prefix: str,
) -> Config:
    """Read the YAML file (if it exists), apply the environment, then `overrides`.

    Precedence, highest first: `overrides`, the generic `<env_prefix>SECTION__KEY` names,
    the well-known names of `ENVIRONMENT`, the file, the model's defaults. `environ` defaults
    to os.environ; its CONFIG_FILE names the file when `path` does not.
    """
    environ = os.environ if environ is None else environ
    config_path = _config_file(path, environ)
    given = _merged(json.loads(environ.get(WORKER_SETTINGS) or "{}"), dict(overrides or {}))
    sources: tuple[PydanticBaseSettingsSource, ...] = (
        InitSettingsSource(model, init_kwargs=given),
        PrefixedEnvironment(model, environ, env_prefix),
        WellKnownEnvironment(model, environ),
        YamlFile(model, config_path),
    )
    source = f"configuration ({config_path} + environment)"
    try:
        # sources chosen per call (environ, file, prefix), which the class-level
        # settings_customise_sources cannot see; `_build_sources` is BaseSettings' parameter
        # for that (pydantic-settings 2.13+), merged by it in the order given, strongest first
        return model(_build_sources=(sources, {}))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    except SettingsError as exc:  # names the field and the source, never the value
        raise ConfigError(f"{source}: {exc}; check that setting's value") from None


def _merged(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, section by section (nested mappings merged, not replaced)."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged

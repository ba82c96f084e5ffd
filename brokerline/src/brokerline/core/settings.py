"""What every broker plugin's settings share: case-insensitive enums, TLS, checked ranges.

Plain pydantic models with no client imports, so the configuration layer can validate every
broker's section even when that broker's client is not installed. Secrets are `SecretStr`:
they print as '**********' and are read with `.get_secret_value()` only where they are used.

Every number has its meaningful range and every enumerated string its accepted values
(case-insensitive), so a bad value is refused when the configuration is loaded, with the
setting's name, not later as a puzzling connection failure.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _lowercase(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


#: an enumerated setting: `Annotated[Literal[...], LOWERCASE]` accepts any case
LOWERCASE = BeforeValidator(_lowercase)
Seconds = Annotated[float, Field(gt=0)]
Name = Annotated[str, Field(min_length=1, pattern=r"^[^\s/]+$")]  # a path segment, no spaces


class PluginSettings(BaseModel):
    """A settings section: unknown keys are refused, so a misspelt setting is an error."""

    model_config = ConfigDict(extra="forbid")


class TLSSettings(PluginSettings):
    """TLS for the broker connection; files are PEM paths."""

    ca_file: str | None = None  # trust this CA (a self-signed cluster's CA)
    cert_file: str | None = None  # client certificate, for mutual TLS
    key_file: str | None = None
    verify_hostname: bool = True

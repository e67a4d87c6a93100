"""Run configs: YAML with sections sae, train and data, plus --set overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vsae.config import ConfigError, SAEConfig, TrainConfig, _unknown_key_error, from_dict
from vsae.data.synthetic import SyntheticConfig

SECTIONS = ("sae", "train", "data")
DATA_KEYS = ("synthetic", "path")


@dataclass(frozen=True)
class RunConfig:
    """A parsed run config: the SAE, the training settings and where the data comes from."""

    sae_fields: dict[str, Any]
    train: TrainConfig
    synthetic: SyntheticConfig | None
    path: str | None
    where: str = "config"

    def sae_for(self, d_in: int) -> SAEConfig:
        """The SAE config for data of width ``d_in`` (unless the file fixes ``d_in``)."""
        fields = {"d_in": d_in, **self.sae_fields}
        if fields["d_in"] != d_in:
            raise ConfigError(
                f"{self.where}: sae.d_in={fields['d_in']} but the data has width {d_in}"
            )
        return from_dict(SAEConfig, fields, where=f"{self.where} [sae]")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=value`` to (["section", "key"], value); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. sae.k=16")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if parts[0] not in SECTIONS or len(parts) < 2:
        raise ConfigError(f"--set {text!r}: the key must start with one of {', '.join(SECTIONS)}")
    return parts, yaml.safe_load(raw)


def load_run_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read a run config file (or none) and apply ``--set`` overrides.

    Parameters
    ----------
    path : str or Path, optional
        YAML file with the sections ``sae``, ``train`` and ``data``.
    overrides : list of str
        ``section.key=value`` strings.

    Returns
    -------
    RunConfig
    """
    raw: dict[str, Any] = {}
    where = str(path) if path else "config"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: no such config file")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{p}: not valid YAML ({err})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: expected a mapping with sections {', '.join(SECTIONS)}")
    for key in raw:
        if key not in SECTIONS:
            raise ConfigError(
                f"{where}: unknown section {key!r}; valid sections: {', '.join(SECTIONS)}"
            )
    for text in overrides:
        parts, value = parse_override(text)
        node = raw.setdefault(parts[0], {}) or {}
        raw[parts[0]] = node
        for part in parts[1:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    data = raw.get("data") or {}
    for key in data:
        if key not in DATA_KEYS:
            raise ConfigError(
                f"{where}: unknown data key {key!r}; valid keys: {', '.join(DATA_KEYS)}"
            )
    synthetic = None
    if "synthetic" in data:
        synthetic = from_dict(
            SyntheticConfig, data["synthetic"] or {}, where=f"{where} [data.synthetic]"
        )
    sae_raw = dict(raw.get("sae") or {})
    names = {f.name for f in dataclasses.fields(SAEConfig)}
    for key in sae_raw:
        if key not in names:
            raise _unknown_key_error(SAEConfig, key, f"{where} [sae]")
    run = RunConfig(
        sae_fields=sae_raw,
        train=from_dict(TrainConfig, raw.get("train") or {}, where=f"{where} [train]"),
        synthetic=synthetic,
        path=data.get("path"),
        where=where,
    )
    if synthetic is not None:
        run.sae_for(synthetic.d)  # validate now rather than after generating data
    return run

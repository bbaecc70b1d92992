"""Scenario files for the simulator: which appliance sits on which circuit, and what happens when.

YAML or TOML, validated once into frozen models; an error names the file and the key path.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from device.protocol import BOARD_CIRCUITS

APPLIANCES = (
    "none",
    "heater",
    "toaster",
    "refrigerator",
    "pool_pump",
    "washer",
    "dryer",
    "computer",
    "capacitive",
    "custom",
)


class ScenarioError(Exception):
    """A scenario file cannot be used; the message names the file and the key."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Mains(_Frozen):
    voltage: float = Field(230.0, gt=0, le=400, description="declared rms voltage, V")
    frequency: float = Field(50.0, ge=40, le=70, description="nominal frequency, Hz")
    drift_hz: float = Field(0.02, ge=0, le=1, description="amplitude of the slow frequency wander, Hz")
    drift_period_s: float = Field(120.0, gt=0, description="period of the frequency wander, s")
    harmonics_pct: dict[int, float] = Field(
        default_factory=lambda: {3: 1.0, 5: 1.5}, description="voltage harmonics, % of fundamental"
    )


class Circuit(_Frozen):
    appliance: Literal[APPLIANCES] = "none"  # type: ignore[valid-type]
    power_w: float = Field(0.0, ge=0, le=20000, description="rated active power of the appliance")
    pf: float = Field(1.0, gt=0, le=1, description="displacement power factor (custom appliance)")
    leading: bool = False
    harmonics_pct: dict[int, float] = Field(default_factory=dict, description="current harmonics (custom)")
    wiring: Literal["NO", "NC"] = "NO"
    on: bool = True
    v_gain_error: float = Field(1.0, gt=0.5, lt=2, description="the voltage channel reads this much too high")
    i_gain_error: float = Field(1.0, gt=0.5, lt=2, description="the current channel reads this much too high")


class Event(_Frozen):
    at: float = Field(ge=0, description="seconds after simulator start")
    kind: Literal["sag", "swell", "interruption", "frequency_step", "overcurrent", "fault", "relay_stuck", "no_ack"]
    duration: float = Field(0.0, ge=0)
    depth: float = Field(1.0, ge=0, le=2, description="sag/swell: voltage as a share of the declared voltage")
    delta_hz: float = 0.0
    circuit: int | None = Field(None, ge=1, le=BOARD_CIRCUITS)
    factor: float = Field(1.0, ge=0, le=20)
    code: str = ""
    block: str = ""
    text: str = ""


class Scenario(_Frozen):
    name: str = "default"
    sample_rate_hz: float = Field(7812.5, ge=1000, le=8000)
    block_samples: int = Field(625, ge=16, le=8192)
    mains: Mains = Mains()
    noise_lsb: float = Field(2.0, ge=0, le=1000, description="rms ADC noise per channel, LSB")
    circuits: dict[Annotated[int, Field(ge=1, le=BOARD_CIRCUITS)], Circuit] = Field(default_factory=dict)
    events: tuple[Event, ...] = ()

    @field_validator("events")
    @classmethod
    def _events_sorted(cls, v: tuple[Event, ...]) -> tuple[Event, ...]:
        return tuple(sorted(v, key=lambda e: e.at))

    def circuit(self, n: int) -> Circuit:
        return self.circuits.get(n, Circuit())


def _loc(err: dict[str, object]) -> str:
    return ".".join(str(p) for p in err["loc"])  # type: ignore[attr-defined]


def parse_scenario(data: object, *, source: str = "<scenario>") -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: key '{_loc(e)}': {e['msg']}" for e in exc.errors()]  # type: ignore[arg-type]
        raise ScenarioError("invalid scenario\n  " + "\n  ".join(lines)) from None


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read scenario file: {exc.strerror}") from None
    try:
        data = tomllib.loads(text) if p.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{p}: not valid {'TOML' if p.suffix == '.toml' else 'YAML'}: {exc}") from None
    return parse_scenario(data or {}, source=str(p))


def default_scenario() -> Scenario:
    """A household board: one appliance of each kind from the seed's list."""
    return load_scenario(Path(__file__).with_name("scenarios") / "household.yaml")

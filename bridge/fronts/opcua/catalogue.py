"""What the OPC UA address space contains: one table per object type, shared by the address space,
the value projection, the NodeSet export and docs/opcua.md. No asyncua here: plain data."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.model.quantities import HARMONIC_ORDERS as HARMONIC_ORDERS  # the spectra's array length

NAMESPACE = "urn:openstrom:bridge"


@dataclass(frozen=True, slots=True)
class Unit:
    """UNECE Rec. 20 common code (UnitId = code packed as in OPC UA Part 8), or -1 when none is used."""

    code: str
    symbol: str
    name: str

    @property
    def unit_id(self) -> int:
        if not self.code:
            return -1
        n = 0
        for ch in self.code:
            n = (n << 8) | ord(ch)
        return n


UNITS = {
    "V": Unit("VLT", "V", "volt"),
    "A": Unit("AMP", "A", "ampere"),
    "W": Unit("WTT", "W", "watt"),
    "VA": Unit("D46", "VA", "volt ampere"),
    "var": Unit("", "var", "volt ampere reactive"),
    "Hz": Unit("HTZ", "Hz", "hertz"),
    "deg": Unit("DD", "°", "degree (angle)"),
    "%": Unit("P1", "%", "percent"),
    "": Unit("C62", "", "one"),
    "Wh": Unit("WHR", "Wh", "watt hour"),
    "varh": Unit("", "varh", "volt ampere reactive hour"),
    "VAh": Unit("", "VAh", "volt ampere hour"),
}


@dataclass(frozen=True, slots=True)
class Measurement:
    browse_name: str
    field: str  # CircuitValues attribute
    unit: str
    low: float
    high: float
    description: str


CIRCUIT_MEASUREMENTS = (
    Measurement("Voltage", "v_rms", "V", 0.0, 400.0, "RMS voltage, 10/12-cycle window"),
    Measurement("Current", "i_rms", "A", 0.0, 70.0, "RMS current"),
    Measurement("ActivePower", "p_w", "W", -16000.0, 16000.0, "active power, + import"),
    Measurement("ReactivePower", "q_var", "var", -16000.0, 16000.0, "fundamental reactive power Q1, + inductive"),
    Measurement("ApparentPower", "s_va", "VA", 0.0, 16000.0, "apparent power"),
    Measurement("PowerFactor", "pf", "", -1.0, 1.0, "P/S, signed like P"),
    Measurement("PhaseAngle", "angle_deg", "deg", -180.0, 180.0, "atan2(Q1, P1), + current lags"),
    Measurement("ThdVoltage", "thd_v", "%", 0.0, 100.0, "voltage THD, orders 2..40"),
    Measurement("ThdCurrent", "thd_i", "%", 0.0, 1000.0, "current THD, orders 2..40"),
    Measurement("ActiveEnergyImport", "import_wh", "Wh", 0.0, 1e12, "active energy imported"),
    Measurement("ActiveEnergyExport", "export_wh", "Wh", 0.0, 1e12, "active energy exported"),
    Measurement("ReactiveEnergyInductive", "q_ind_varh", "varh", 0.0, 1e12, "reactive energy, inductive"),
    Measurement("ReactiveEnergyCapacitive", "q_cap_varh", "varh", 0.0, 1e12, "reactive energy, capacitive"),
)
# aggregated values (IEC 61000-4-30): `field` names the quantity in bridge/quantities.py
CIRCUIT_AGGREGATES = (
    Measurement("Voltage3s", "circuit.v_rms_3s", "V", 0.0, 400.0, "RMS voltage over 150/180 cycles"),
    Measurement("ActivePower3s", "circuit.p_w_3s", "W", -16000.0, 16000.0, "active power over 150/180 cycles"),
    Measurement("Voltage10min", "circuit.v_rms_10min", "V", 0.0, 400.0, "RMS voltage, last clock-aligned 10 min"),
    Measurement("VoltageMin10min", "circuit.v_min_10min", "V", 0.0, 400.0, "lowest window voltage, last 10 min"),
    Measurement("VoltageMax10min", "circuit.v_max_10min", "V", 0.0, 400.0, "highest window voltage, last 10 min"),
    Measurement("ActivePower10min", "circuit.p_w_10min", "W", -16000.0, 16000.0, "active power, last 10 min"),
    Measurement("ActivePowerDemand15min", "circuit.p_demand_w", "W", -16000.0, 16000.0, "15 min block demand"),
)
# harmonic spectra: Double[HARMONIC_ORDERS], element k = order k + 1 (IEC 61000-4-7 subgroups; NaN
# above the Nyquist limit)
CIRCUIT_SPECTRA = (
    Measurement("HarmonicsVoltage", "harmonics_v", "V", 0.0, 400.0, "voltage harmonic subgroups 1..40, RMS"),
    Measurement("HarmonicsCurrent", "harmonics_i", "A", 0.0, 70.0, "current harmonic subgroups 1..40, RMS"),
)
# Frequency is per device but also shown per circuit, as the browse path asks
FREQUENCY = Measurement("Frequency", "freq_hz", "Hz", 40.0, 70.0, "mains frequency of the window")

# device object: properties from HELLO (SerialNumber from the configuration) -> Hello attribute
DEVICE_PROPERTIES = (
    ("SerialNumber", "serial_number"),
    ("PartNumber", "part_number"),
    ("WifiMac", "wifi_mac"),
    ("LanMac", "lan_mac"),
    ("FirmwareVersion", "firmware_version"),
)
# device object: health variables (browse name, OPC UA built-in type name)
DEVICE_VARIABLES = (
    ("Connected", "Boolean"),
    ("LastSampleTime", "DateTime"),
    ("Gaps", "UInt32"),
    ("LostBlocks", "UInt32"),
    ("SramFill", "Double"),
    ("AuxOutput", "Boolean"),
    ("StreamRestarts", "UInt32"),
    ("SramDroppedBlocks", "UInt32"),
    ("ClockOffset", "Double"),
    ("Frequency", "Double"),
)
# device object: faults as parallel String arrays (element k of each is fault k): the active ones
# (from STATUS, described by the fault dictionary) and those the last self-test found
DEVICE_FAULT_ARRAYS = ("FaultCodes", "FaultBlocks", "FaultTexts", "SelfTestCodes", "SelfTestBlocks", "SelfTestTexts")
# device object: its COMTRADE waveform records as parallel arrays (element k of each is record k, oldest
# first): the .cfg file's path (the .dat beside it), trigger time, kind (dip/swell/interruption/manual),
# circuit (0 for the device); ReadRecord returns a record's two files
DEVICE_RECORD_ARRAYS = (
    ("RecordFiles", "String"),
    ("RecordTimes", "DateTime"),
    ("RecordKinds", "String"),
    ("RecordCircuits", "UInt32"),
)
MAX_RECORD_BYTES = 32 * 1024 * 1024  # ReadRecord refuses more (a record of minutes: fetch the files)
# circuit object: the relay's wiring ("NO"/"NC", String) and its coil (Boolean), as the device reports
CIRCUIT_RELAY_STATE = (("RelayWiring", "String"), ("RelayCoil", "Boolean"))
# circuit object: counters (browse name -> CircuitState attribute), all UInt32
CIRCUIT_COUNTERS = (
    ("RelayOperations", "relay_operations"),
    ("Dips", "dips"),
    ("Swells", "swells"),
    ("Interruptions", "interruptions"),
)


@dataclass(frozen=True, slots=True)
class Method:
    """A method of an object type: browse name, input and output argument types (built-in type names)."""

    name: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    description: str = ""


CIRCUIT_METHODS = (
    Method("SwitchOn", description="switch the relay on (answered after the device confirms)"),
    Method("SwitchOff", description="switch the relay off"),
    Method("Select", ("Boolean",), description="select-before-operate: arm the state for the next operation"),
)
DEVICE_METHODS = (
    Method("RunSelfTest", (), ("String",), "run the device self-test; returns the faults found"),
    Method("Calibrate", ("UInt32", "String", "Double", "Double"), ("String",), "circuit, channel v/i, gain, offset"),
    Method(
        "CalibrateToReference",
        ("UInt32", "Double", "Double"),
        ("String",),
        "circuit, reference volts, reference amperes: gains from 25 windows against a known reference",
    ),
    Method("SwitchAuxOn", description="switch the auxiliary output on"),
    Method("SwitchAuxOff", description="switch the auxiliary output off"),
    Method("SetMaintenanceLock", ("UInt32", "Boolean"), description="circuit, locked"),
    Method(
        "ReadRecord",
        ("String",),
        ("String", "ByteString"),
        "a waveform record's name (the file stem of an element of RecordFiles): its COMTRADE .cfg text and .dat bytes",
    ),
)

# <Device>/AlarmLimits: writable (admin) properties -> [pq] key; written through the command path,
# persisted and applied at once. Voltage limits are shares of the declared voltage.
LIMIT_PROPERTIES = (
    ("Dip", "dip", "a dip starts below this share of the declared voltage"),
    ("Swell", "swell", "a swell starts above this share"),
    ("Interruption", "interruption", "an interruption starts below this share"),
    ("Hysteresis", "hysteresis", "an event ends this share inside its threshold"),
    ("FrequencyLow", "freq_low_hz", "under-frequency alarm limit (Hz)"),
    ("FrequencyHigh", "freq_high_hz", "over-frequency alarm limit (Hz)"),
)
OVERCURRENT_LIMIT = "OvercurrentLimit"  # a circuit's writable overcurrent alarm limit (A)

# a dip, swell or interruption that ended, as an event of its circuit (VoltageEventType, a BaseEventType)
VOLTAGE_EVENT_FIELDS = (
    ("Kind", "String"),  # dip, swell or interruption
    ("StartTime", "DateTime"),  # device clock
    ("Duration", "Double"),  # seconds
    ("ExtremeVoltage", "Double"),  # residual voltage of a dip or interruption, peak of a swell (V)
)


@dataclass(frozen=True, slots=True)
class ConditionKind:
    """How an alarm is modelled as an OPC UA Part 9 condition instance.

    ``limit`` is the ExclusiveLimitAlarmType state it is in while active ("Low", "LowLow", "High";
    "band" for the frequency alarm: Low or High by the measured value); None makes it an
    OffNormalAlarmType (a state that is not normal). ``input`` is the browse name of the variable it
    watches (on the circuit, or on the device for device alarms); ``condition_class`` the standard
    ConditionClass: process (the mains), system (the link) or maintenance (the relay)."""

    limit: str | None
    input: str
    condition_class: str


# alarms with a condition instance: per device, and per circuit
CONDITION_KINDS = {
    "offline": ConditionKind(None, "Connected", "system"),
    "sram_loss": ConditionKind(None, "SramDroppedBlocks", "system"),
    "stream_restart": ConditionKind(None, "StreamRestarts", "system"),
    "fault": ConditionKind(None, "FaultCodes", "system"),
    "frequency": ConditionKind("band", "Frequency", "process"),
    "dip": ConditionKind("Low", "Voltage", "process"),
    "interruption": ConditionKind("LowLow", "Voltage", "process"),
    "swell": ConditionKind("High", "Voltage", "process"),
    "overcurrent": ConditionKind("High", "Current", "process"),
    "relay_mismatch": ConditionKind(None, "Relay", "maintenance"),
    "relay_wear": ConditionKind(None, "RelayOperations", "maintenance"),
}
DEVICE_CONDITIONS = ("offline", "sram_loss", "stream_restart", "fault", "frequency")
CIRCUIT_CONDITIONS = ("dip", "swell", "interruption", "overcurrent", "relay_mismatch", "relay_wear")

ALARM_SEVERITY = {
    "dip": 600,
    "swell": 600,
    "interruption": 800,
    "overcurrent": 700,
    "offline": 900,
    "relay_mismatch": 700,
    "relay_wear": 400,
    "clipped": 300,
    "sram_loss": 500,
    "stream_restart": 500,
    "frequency": 700,
    "fault": 700,
}


# OPC 34100 (ECM) measurements of every circuit's Energy object: the standard's MeasurementID and
# BrowseName, where the value comes from, its unit and DataType
@dataclass(frozen=True, slots=True)
class EcmMeasurement:
    measurement_id: int
    browse_name: str
    source: str  # CircuitValues field, or "freq_hz" for the window's frequency
    unit: str  # key of catalogue.UNITS
    vtype: str  # OPC UA built-in type: "Float" or "Double"
    statistic: bool = False  # a counter (HasStatisticComponent)
    e2: bool = False  # a member of IEnergyProfileE2Type


ECM_MEASUREMENTS = (
    EcmMeasurement(1412, "AcActivePowerTotal", "p_w", "W", "Float", e2=True),
    EcmMeasurement(1001, "AcActiveEnergyTotalImportLp", "import_wh", "Wh", "Float", statistic=True, e2=True),
    EcmMeasurement(1004, "AcActiveEnergyTotalExportLp", "export_wh", "Wh", "Float", statistic=True, e2=True),
    EcmMeasurement(1002, "AcActiveEnergyTotalImportHp", "import_wh", "Wh", "Double", statistic=True),
    EcmMeasurement(1005, "AcActiveEnergyTotalExportHp", "export_wh", "Wh", "Double", statistic=True),
    EcmMeasurement(1011, "AcReactiveEnergyTotalImportHp", "q_ind_varh", "varh", "Double", statistic=True),
    EcmMeasurement(1014, "AcReactiveEnergyTotalExportHp", "q_cap_varh", "varh", "Double", statistic=True),
    EcmMeasurement(1020, "AcApparentEnergyTotalHp", "s_vah", "VAh", "Double", statistic=True),
    EcmMeasurement(1100, "AcVoltageL1N", "v_rms", "V", "Float"),
    EcmMeasurement(1200, "AcCurrentL1", "i_rms", "A", "Float"),
    EcmMeasurement(1400, "AcActivePowerL1", "p_w", "W", "Float"),
    EcmMeasurement(1500, "AcApparentPowerL1", "s_va", "VA", "Float"),
    EcmMeasurement(1700, "AcPowerFactorL1", "pf", "", "Float"),
    EcmMeasurement(1300, "AcFrequency", "freq_hz", "Hz", "Float"),
    EcmMeasurement(1715, "AcTHDVoltageL1", "thd_v", "%", "Float"),
    EcmMeasurement(1721, "AcTHDCurrentL1", "thd_i", "%", "Float"),
)

"""The device's fault dictionary: every fault code a STATUS or a SELF_TEST_RESULT may carry, the block
it belongs to and what it means. The seed's self-test checks the device's main blocks (watchdog,
input sensors and their calibration, Wi-Fi transfer, relays, the test points of every functional
circuit); each failed check reports one of these codes. A code not listed here is passed on as it
came, with the number UNKNOWN_FAULT."""

from __future__ import annotations

from dataclasses import dataclass

from .messages import BOARD_CIRCUITS


@dataclass(frozen=True, slots=True)
class FaultCode:
    number: int  # the code's number on register-based fronts (Modbus)
    code: str
    block: str
    text: str


BLOCKS = {"mcu": 1, "inputs": 2, "wifi": 3, "lan": 4, "memory": 5, "clock": 6, "testpoint": 7, "relay": 8, "aux": 9}
UNKNOWN_FAULT = 0xFFFE  # a code the dictionary does not list (newer firmware): its text is the device's
FAULT_DICTIONARY: tuple[FaultCode, ...] = (
    FaultCode(1, "WATCHDOG_RESET", "mcu", "the watchdog timer restarted the firmware"),
    FaultCode(2, "ADC_CALIBRATION", "inputs", "an input channel failed its calibration check"),
    FaultCode(3, "SENSOR_RANGE", "inputs", "an input sensor reads outside its range at its test point"),
    FaultCode(4, "WIFI_TIMEOUT", "wifi", "the Wi-Fi module did not answer"),
    FaultCode(5, "WIFI_TRANSFER", "wifi", "the Wi-Fi transfer check failed"),
    FaultCode(6, "LAN_LINK", "lan", "no Ethernet link"),
    FaultCode(7, "SRAM_ERROR", "memory", "the SRAM buffer test failed"),
    FaultCode(8, "RTC_INVALID", "clock", "the real-time clock lost its time"),
    FaultCode(9, "TEST_POINT", "testpoint", "a functional circuit's test point is out of range"),
    FaultCode(10, "AUX_NO_ANSWER", "aux", "the ZigBee auxiliary module does not answer"),
    *(
        FaultCode(100 + c, f"RELAY{c:02d}_STUCK", "relay", f"relay {c} contact does not follow its coil")
        for c in range(1, BOARD_CIRCUITS + 1)
    ),
)
BY_CODE = {f.code: f for f in FAULT_DICTIONARY}


def describe(code: str, block: str = "", text: str = "") -> FaultCode:
    """A fault with its dictionary number; the device's own block and text where it gave them (a
    self-test result's text says more than the dictionary's), else the dictionary's."""
    known = BY_CODE.get(code)
    if known is None:
        return FaultCode(UNKNOWN_FAULT, code, block or "unknown", text or "a fault code this bridge does not know")
    return FaultCode(known.number, code, block or known.block, text or known.text)

"""The console script as a user runs it: exit codes, messages, exports."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bridge.fronts.modbus.register_map import export_map, load_map

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_map_export_matches_the_docs() -> None:
    for name in ("openstrom", "sunspec"):
        out = run("map", "export", name, "--format", "md")
        assert out.returncode == 0, out.stderr
        assert out.stdout == export_map(load_map(name), "md")
        docs = (ROOT / "docs" / "register-maps.md").read_text()
        assert out.stdout in docs, f"docs/register-maps.md is stale for '{name}': run `make docs`"


def test_check_config_reports_file_key_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bridge.toml"
    bad.write_text('[bridge]\nname = "x"\n\n[[devices]]\nname = "a"\nserial_number = "S1"\nunit_id = 300\n')
    out = run("check-config", str(bad))
    assert out.returncode == 2
    assert f"{bad}:7: key 'devices.0.unit_id'" in out.stderr
    assert "less than or equal to 247" in out.stderr

    dup = tmp_path / "dup.yaml"
    dup.write_text(
        "devices:\n  - {name: a, serial_number: S1, unit_id: 1}\n  - {name: b, serial_number: S1, unit_id: 2}\n"
    )
    out = run("check-config", str(dup))
    assert out.returncode == 2 and "serial_number 'S1' is already used by devices[0]" in out.stderr

    typo = tmp_path / "typo.yaml"
    typo.write_text("bridge:\n  comit_interval_s: 2\n")
    out = run("check-config", str(typo))
    assert out.returncode == 2 and f"{typo}:2: key 'bridge.comit_interval_s': unknown key" in out.stderr

    units = tmp_path / "units.yaml"
    units.write_text(
        "devices:\n  - {name: a, serial_number: S1, unit_id: 1}\n  - {name: b, serial_number: S2, unit_id: 1}\n"
    )
    out = run("check-config", str(units))
    assert out.returncode == 2 and f"{units}:3: key 'devices.1.unit_id': devices[1].unit_id 1 is already" in out.stderr


@pytest.mark.parametrize(
    ("text", "line", "key", "says"),
    [
        # a Modbus server on the device-link port: found before anything binds
        (
            "links:\n  listen: 0.0.0.0:7700\nmodbus:\n  servers:\n    - {map: openstrom, port: 7700}\n",
            5,
            "modbus.servers.0",
            "port 7700 is taken already by links.listen",
        ),
        ("metrics:\n  listen: 127.0.0.1:4840\n", 2, "metrics.listen", "taken already by opcua.endpoint"),
        (
            'devices:\n  - {name: a, serial_number: "OS 1\\n", unit_id: 1}\n',
            2,
            "devices.0.serial_number",
            "should match pattern",
        ),
        (
            "modbus:\n  servers:\n    - {map: nosuchmap, port: 5020}\n",
            3,
            "modbus.servers.0.map",
            "register map 'nosuchmap' not found",
        ),
        ("bridge:\n  state_dir: afile/state\n", 2, "bridge.state_dir", "is not a folder"),
    ],
    ids=["port-clash", "port-clash-opcua", "serial-format", "unknown-map", "state-dir"],
)
def test_check_config_catches_mistakes_with_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, says: str
) -> None:
    (tmp_path / "afile").write_text("not a folder")
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text(text)
    out = run("check-config", str(cfg))
    assert out.returncode == 2, out.stdout
    assert f"{cfg}:{line}: key '{key}'" in out.stderr and says in out.stderr, out.stderr


@pytest.mark.parametrize("example", sorted((ROOT / "deploy").glob("*.toml")) + sorted((ROOT / "deploy").glob("*.yaml")))
def test_shipped_examples_are_valid(example: Path) -> None:
    out = run("check-config", str(example))
    assert out.returncode == 0, out.stderr


def test_bad_register_map_names_the_point(tmp_path: Path) -> None:
    m = tmp_path / "mine.yaml"
    m.write_text(
        "name: mine\npoints:\n"
        "  - {name: a, address: 0, type: float32, quantity: device.freq_hz}\n"
        "  - {name: b, address: 1, type: uint16, quantity: device.gaps}\n"
    )
    out = run("map", "export", str(m))
    assert out.returncode == 2
    assert "'b' at input 1 overlaps 'a' (0..1)" in out.stderr
    m.write_text("name: mine\npoints:\n  - {name: a, address: 0, type: float32, quantity: circuit.v_rmss}\n")
    out = run("map", "export", str(m))
    assert (
        out.returncode == 2 and ":3: key 'points.0'" in out.stderr and "unknown quantity 'circuit.v_rmss'" in out.stderr
    )


def test_relative_map_dirs_are_found_from_the_config_file_not_the_working_folder(tmp_path: Path) -> None:
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "hall.yaml").write_text(
        "name: hall\npoints:\n  - {name: f, address: 0, type: float32, quantity: device.freq_hz}\n"
    )
    cfg = tmp_path / "bridge.toml"
    cfg.write_text('[modbus]\nmap_dirs = ["maps"]\nservers = [{ map = "hall", host = "127.0.0.1", port = 5020 }]\n')
    out = run("check-config", str(cfg))  # run() works in the repository's folder, not tmp_path
    assert out.returncode == 0 and "map 'hall' (1 points" in out.stdout, out.stdout + out.stderr


def test_nodeset_export(tmp_path: Path) -> None:
    out = run("opcua", "export-nodeset", str(tmp_path / "ns.xml"))
    assert out.returncode == 0, out.stderr
    root = ET.parse(tmp_path / "ns.xml").getroot()
    ns = {"u": "http://opcfoundation.org/UA/2011/03/UANodeSet.xsd"}
    uris = [u.text for u in root.findall("u:NamespaceUris/u:Uri", ns)]
    # ours first; the energy model's instances use the OPC 34100 (ECM) and OPC 10000-200 (IA) types
    assert uris[0] == "urn:openstrom:bridge"
    assert set(uris) <= {"urn:openstrom:bridge", "http://opcfoundation.org/UA/ECM/", "http://opcfoundation.org/UA/IA/"}
    names = {n.get("BrowseName") for n in root.iter() if n.get("BrowseName")}
    assert {"1:OpenStromDeviceType", "1:OpenStromCircuitType", "1:Circuit01", "1:ActivePower", "1:Relay"} <= names
    # a copied circuit (made when first looked up) is exported whole, as the one built
    ids = [n.get("NodeId", "") for n in root if n.get("NodeId")]
    built = sorted(i.split(".Circuit01", 1)[1] for i in ids if ".Circuit01" in i)
    copied = sorted(i.split(".Circuit10", 1)[1] for i in ids if ".Circuit10" in i)
    assert len(built) > 400 and copied == built


def test_generated_docs_are_current() -> None:
    from bridge import docs_gen

    assert docs_gen.main(check=True) == 0, "docs tables drifted from the code: run `make docs`"


def _run_config(tmp_path: Path, ports: dict[str, int]) -> Path:
    cfg = tmp_path / "bridge.toml"
    cfg.write_text(
        f"""
[bridge]
state_dir = "state"
[links]
listen = "127.0.0.1:{ports["device"]}"
[modbus]
servers = [{{ map = "openstrom", host = "127.0.0.1", port = {ports["modbus"]} }}]
[opcua]
enabled = false
[metrics]
listen = "127.0.0.1:{ports["http"]}"
[[devices]]
name = "board1"
serial_number = "OS-SIM-0001"
unit_id = 1
"""
    )
    return cfg


def test_run_serves_health_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    import signal
    import time
    import urllib.error
    import urllib.request

    from tests.harness import free_port

    ports = {k: free_port() for k in ("device", "modbus", "http")}
    cfg = _run_config(tmp_path, ports)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "run", "--config", str(cfg), "--json-logs"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and status is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/health", timeout=2) as r:
                    status = r.status
            except urllib.error.HTTPError as exc:
                status = exc.code  # 503: the configured device is not connected
            except OSError:
                time.sleep(0.2)
        assert status == 503
        # a second bridge on the same ports fails with a message, not a traceback
        second = run("run", "--config", str(cfg))
        assert second.returncode == 1 and "cannot run" in second.stderr and "Traceback" not in second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "counters committed" in err
    assert (tmp_path / "state" / "bridge.sqlite").exists()


def test_docs_cite_only_files_in_the_repository() -> None:
    """Every file path the docs and the README name exists here: the docs stand on their own."""
    ext = "py|md|yaml|yml|toml|proto|service|json|sysusers|conf"
    paths = re.compile(rf"(?<![\w/.-])((?:[\w.-]+/)+[\w.-]+\.(?:{ext}))\b")
    missing = []
    for doc in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]:
        for m in paths.finditer(doc.read_text()):
            if not any((base / m.group(1)).exists() for base in (ROOT, ROOT / "docs")):
                missing.append(f"{doc.name}: {m.group(1)}")
    assert not missing, missing

"""The deployment artefacts, checked by the tools made for them and against the bridge's own schema:
the Kubernetes manifests by kubernetes-validate (strict), and their parts that must agree with each
other and with the configuration (replicas = shard.count, a Service per ordinal, container ports =
the configured listeners, probes on paths the bridge answers, certificate names a client can use)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography import x509

from bridge.config import load_config
from bridge.fronts.opcua.certificate import ensure_certificate
from bridge.fronts.opcua.security import application_uri
from bridge.shard import ShardPlan
from tests.harness import bridge_config, running_bridge

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.33.0"  # a Kubernetes release plants run now; the manifests use nothing newer


def _docs() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for f in sorted(K8S.glob("*.yaml")):
        out += [(f, d) for d in yaml.safe_load_all(f.read_text()) if d]
    return out


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for _, d in _docs() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_every_manifest_validates_strictly(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _config(tmp: Path) -> Any:
    f = tmp / "bridge.yaml"
    f.write_text(_one("ConfigMap", "openstrom-bridge")["data"]["bridge.yaml"])
    return load_config(f)


def test_the_statefulset_services_and_config_agree(tmp_path: Path) -> None:
    config = _config(tmp_path)
    sts = _one("StatefulSet", "openstrom-bridge")
    replicas = sts["spec"]["replicas"]
    assert config.shard.count == replicas and config.shard.ordinal == "hostname"
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    # every listener of the configuration is a container port, and nothing else is
    ports = {p["containerPort"] for p in container["ports"]}
    assert ports == {port for _, _, port in config.listeners()}
    # each ordinal has its own Service selecting exactly its pod, with the device and client ports
    for k in range(replicas):
        svc = _one("Service", f"openstrom-bridge-{k}")
        assert svc["spec"]["selector"] == {"statefulset.kubernetes.io/pod-name": f"openstrom-bridge-{k}"}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} >= {"devices", "modbus", "opcua"}
        plan = ShardPlan(config, hostname=f"openstrom-bridge-{k}")
        assert plan.ordinal == k and plan.replica(config).devices, f"shard {k} serves no board"
    assert sts["spec"]["serviceName"] == _one("Service", "openstrom-bridge")["metadata"]["name"]
    # the files the configuration names are the mounts the pod has
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    for path in (config.links.pki_dir, config.mqtt.password_file, config.mqtt.tls_ca, config.bridge.state_dir):
        assert path is not None and any(path == m or path.startswith(m + "/") for m in mounts), path
    claim = sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    assert {"name": claim, "mountPath": config.bridge.state_dir} in container["volumeMounts"]
    # probes: liveness must not be /health (503 while a board is offline restarts a good bridge)
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


async def test_the_probe_paths_answer_as_the_manifest_expects(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path)
    base = f"http://127.0.0.1:{ports['http']}"

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    async with running_bridge(config, tmp_path):
        assert await asyncio.to_thread(status, "/health/live") == 200
        assert await asyncio.to_thread(status, "/health/ready") == 200
        # its board is not connected: /health says so, and that is no reason to restart the pod
        assert await asyncio.to_thread(status, "/health") == 503


async def test_the_opc_ua_certificate_names_the_pods_service_and_renews_for_a_new_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ShardPlan(_config(tmp_path), hostname="openstrom-bridge-2").replica(_config(tmp_path))
    monkeypatch.setattr(socket, "gethostname", lambda: "openstrom-bridge-2")
    uri = application_uri(config)
    assert uri == "urn:openstrom:bridge:server:shard-2"
    cert_file, _ = await ensure_certificate(tmp_path, config.opcua.endpoint, uri, config.opcua.hostnames)
    cert = x509.load_der_x509_certificate(cert_file.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = san.get_values_for_type(x509.DNSName)
    assert "openstrom-bridge-2.openstrom.svc.cluster.local" in dns
    assert "openstrom-bridge-2.openstrom-bridge.openstrom.svc.cluster.local" in dns
    assert "0.0.0.0" not in dns and san.get_values_for_type(x509.UniformResourceIdentifier) == [uri]
    first = cert_file.read_bytes()
    await ensure_certificate(tmp_path, config.opcua.endpoint, uri, config.opcua.hostnames)
    assert cert_file.read_bytes() == first  # the same names: the same certificate, clients keep trusting it
    await ensure_certificate(tmp_path, config.opcua.endpoint, uri, (*config.opcua.hostnames, "scada-gw.plant.example"))
    renewed = x509.load_der_x509_certificate(cert_file.read_bytes())
    assert cert_file.read_bytes() != first
    assert "scada-gw.plant.example" in renewed.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)


# ---------------------------------------------------------------------------------------------- image


def _tool(name: str) -> str:
    exe = shutil.which(name, path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    assert exe is not None, f"{name} is a test dependency (pyproject's test extra installs it)"
    return exe


def test_the_dockerfile_passes_hadolint_and_runs_unprivileged() -> None:
    dockerfile = ROOT / "deploy" / "Dockerfile"
    run = subprocess.run([_tool("hadolint"), str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    text = dockerfile.read_text()
    final = text[text.rindex("\nFROM ") :]  # the image that runs
    user = re.search(r"^USER (\S+)", final, re.M)
    assert user is not None and not user.group(1).startswith(("0", "root"))
    assert "/health/live" in final and "HEALTHCHECK" in final
    exposed = {int(p) for p in re.search(r"^EXPOSE (.+)$", final, re.M).group(1).split()}  # type: ignore[union-attr]
    assert exposed == {7700, 5020, 5021, 4840, 9840}
    assert 'VOLUME ["/var/lib/openstrom-bridge"]' in final


def test_the_compose_file_follows_the_compose_spec_and_its_config_validates(tmp_path: Path) -> None:
    compose = ROOT / "deploy" / "compose" / "compose.yaml"
    run = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    doc = yaml.safe_load(compose.read_text())
    assert set(doc["services"]) == {"bridge", "board", "broker"}
    config = load_config(compose.parent / "bridge.yaml")
    board = doc["services"]["board"]["command"]
    assert config.devices[0].serial_number == board[board.index("--serial-number") + 1]
    assert config.mqtt.enabled and config.links.listen is not None and config.links.listen.startswith("127.")


def test_the_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    unit = (ROOT / "deploy" / "openstrom-bridge.service").read_text()
    fields = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert fields["Type"] == "notify" and int(fields["WatchdogSec"]) > 0 and fields["NotifyAccess"] == "main"
    assert fields["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE" == fields["CapabilityBoundingSet"]
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert fields[key] == "yes", key
    assert fields["ProtectSystem"] == "strict" and fields["StateDirectory"] == "openstrom-bridge"
    assert "-HUP" in fields["ExecReload"]
    sysusers = (ROOT / "deploy" / "openstrom-bridge.sysusers").read_text()
    assert re.search(rf"^u {fields['User']} ", sysusers, re.M), "the unit's user is made by the sysusers.d entry"
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not on this machine (the unit's fields were checked above)")
    copy = tmp_path / "openstrom-bridge.service"  # the binaries where this checkout has them
    copy.write_text(unit.replace("/opt/openstrom-bridge/venv/bin/", f"{Path(sys.executable).parent}/"))
    run = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "openstrom-bridge.service" not in run.stderr, run.stderr


async def test_the_bridge_tells_systemd_ready_feeds_the_watchdog_and_says_stopping(tmp_path: Path) -> None:
    """What Type=notify and WatchdogSec expect, with a datagram socket standing in for systemd."""
    config, _ = bridge_config(tmp_path)
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge.cli", "run", "--config", str(cfg), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    got: list[str] = []
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(30):
            while sum("WATCHDOG=1" in m for m in got) < 3:
                got.append((await loop.sock_recv(sock, 4096)).decode())
        assert got[0].startswith("READY=1") and "STATUS=" in got[0]  # ready before the first ping
        proc.terminate()
        async with asyncio.timeout(20):
            while "STOPPING=1" not in got[-1]:
                got.append((await loop.sock_recv(sock, 4096)).decode())
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        sock.close()

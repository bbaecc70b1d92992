"""NodeSet2 XML export of the OpenStrom types and instances, for engineering tools."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bridge.config import Config
from bridge.model import Model

from .server import OpcUaFront


async def export_nodeset(config: Config, path: Path) -> None:
    """Build the address space without starting a server and export our namespace as NodeSet2."""
    front = OpcUaFront(config, Model(config), None, Path(tempfile.mkdtemp(prefix="openstrom-nodeset-")))
    await front.build()
    await front.server.export_xml_by_ns(str(path), [front.idx])

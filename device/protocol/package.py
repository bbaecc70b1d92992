"""The web-service package: protocol messages batched in one HTTP body, for devices that can only
speak HTTP(S) (the seed's prototype firmware posts its data package to a web service and takes relay
commands from the response).

JSON (ECMA-404)::

    {"messages": [{"type": "hello", ...}, {"type": "samples", ...}, {"type": "status", ...}]}

XML::

    <package><openstrom type="hello">...</openstrom><openstrom type="samples">...</openstrom></package>

Each message is exactly its JSON or XML payload of the stream links (docs/protocol.md) with its type
named: in JSON a ``type`` member, in XML the ``<openstrom type=...>`` element the XML payload already
is. Either may be gzip'd (HTTP ``Content-Encoding: gzip``). Sans-IO: bytes in, messages out.
"""

from __future__ import annotations

import json
from typing import Literal
from xml.etree import ElementTree as ET

from .encoding import decode_payload, encode_payload, gunzip
from .errors import RemoteProtocolError
from .framing import Encoding
from .messages import MessageType

Format = Literal["json", "xml"]
MAX_PACKAGE_BYTES = 16 * 1024 * 1024  # decompressed: a gzip bomb inflates no further
MAX_MESSAGES = 4096


def _type_of(name: object, where: str) -> MessageType:
    try:
        return MessageType[str(name).upper()]
    except KeyError:
        raise RemoteProtocolError(f"{where}: unknown message type {name!r}", code="type") from None


def decode_package(body: bytes, fmt: Format, *, gzipped: bool = False) -> list[object]:
    """The messages of a package, in order. Errors name the message (``messages[3] (samples): ...``)
    and, for a body that does not parse, the line and column."""
    if gzipped:
        body = gunzip(body, MAX_PACKAGE_BYTES, "body")
    if len(body) > MAX_PACKAGE_BYTES:
        raise RemoteProtocolError(f"package of {len(body)} bytes, at most {MAX_PACKAGE_BYTES}", code="too-large")
    items: list[tuple[MessageType, bytes, Encoding, str]] = []
    if fmt == "json":
        try:
            doc = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise RemoteProtocolError(f"JSON body is not UTF-8 (byte {exc.start})", code="json") from None
        except json.JSONDecodeError as exc:
            raise RemoteProtocolError(
                f"JSON body does not parse at line {exc.lineno}, column {exc.colno}: {exc.msg}", code="json"
            ) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("messages"), list):
            raise RemoteProtocolError('JSON body must be {"messages": [...]}', code="package")
        for k, item in enumerate(doc["messages"]):
            where = f"messages[{k}]"
            if not isinstance(item, dict) or "type" not in item:
                raise RemoteProtocolError(f'{where}: a message is an object with a "type"', code="package")
            fields = {key: v for key, v in item.items() if key != "type"}
            items.append((_type_of(item["type"], where), json.dumps(fields).encode(), Encoding.JSON, where))
    else:
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            line, col = exc.position
            raise RemoteProtocolError(f"XML body does not parse at line {line}, column {col}", code="xml") from None
        if root.tag != "package":
            raise RemoteProtocolError("XML body must be <package> of <openstrom type=...> elements", code="package")
        for k, el in enumerate(root):
            where = f"messages[{k}]"
            if el.tag != "openstrom":
                raise RemoteProtocolError(f"{where}: <{el.tag}> is not an <openstrom> message", code="package")
            items.append((_type_of(el.get("type"), where), ET.tostring(el, encoding="utf-8"), Encoding.XML, where))
    if len(items) > MAX_MESSAGES:
        raise RemoteProtocolError(f"{len(items)} messages in one package, at most {MAX_MESSAGES}", code="too-large")
    out: list[object] = []
    for msg_type, payload, enc, where in items:
        try:
            out.append(decode_payload(int(msg_type), int(enc), payload))
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(f"{where} ({msg_type.name.lower()}): {exc}", code=exc.code) from None
    return out


def encode_package(messages: list[object], fmt: Format) -> bytes:
    """A package of messages (the response, or a device's request)."""
    if fmt == "json":
        tree = []
        for msg in messages:
            _, payload = encode_payload(msg, Encoding.JSON)  # type: ignore[arg-type]
            tree.append({"type": msg.TYPE.name.lower(), **json.loads(payload)})  # type: ignore[attr-defined]
        return json.dumps({"messages": tree}, separators=(",", ":")).encode()
    root = ET.Element("package")
    for msg in messages:
        _, payload = encode_payload(msg, Encoding.XML)  # type: ignore[arg-type]
        root.append(ET.fromstring(payload))
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))

"""The measuring process: requests in on standard input, answers out on standard output, each a
length-prefixed pickle (see :mod:`.process`). It ends at the end of its input, i.e. when the bridge
closes it or is gone."""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys

from .jobs import Flush
from .meters import Meters

HEAD = struct.Struct("<I")


def serve(requests: int, answers: int) -> None:
    source = os.fdopen(requests, "rb", buffering=1 << 20)
    sink = os.fdopen(answers, "wb", buffering=1 << 16)
    meters = Meters()
    while True:
        head = source.read(HEAD.size)
        if len(head) < HEAD.size:
            return
        (size,) = HEAD.unpack(head)
        body = source.read(size)
        if len(body) < size:
            return
        req = pickle.loads(body)
        answer = meters.handle(req)
        ticket = req.ticket if isinstance(req, Flush) else 0
        if answer is None and not ticket:
            continue
        data = pickle.dumps((ticket, answer), protocol=pickle.HIGHEST_PROTOCOL)
        sink.write(HEAD.pack(len(data)))
        sink.write(data)
        sink.flush()


def main() -> None:
    # Ctrl-C on a terminal and a service manager's stop reach the whole process group: the bridge
    # stops this process itself (it closes its input), once it has measured what it holds
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    answers = os.dup(1)
    os.dup2(2, 1)  # anything printed goes to the log, never into the answers
    sys.stdout = sys.stderr
    serve(0, answers)


if __name__ == "__main__":
    main()

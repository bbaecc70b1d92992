"""The measuring process: requests in on standard input, answers out on standard output, each message
a length-prefixed pickle of a list (the requests of one turn of the bridge's event loop, and their
answers; see :mod:`.process`). It ends at the end of its input, i.e. when the bridge
closes it or is gone."""

from __future__ import annotations

import os
import pickle
import signal
import sys

from .jobs import HEAD, Flush, Measured
from .meters import Meters


def serve(requests_fd: int, answers_fd: int) -> None:
    source = os.fdopen(requests_fd, "rb", buffering=1 << 20)
    sink = os.fdopen(answers_fd, "wb", buffering=1 << 16)
    meters = Meters()
    while True:
        head = source.read(HEAD.size)
        if len(head) < HEAD.size:
            return
        (size,) = HEAD.unpack(head)
        body = source.read(size)
        if len(body) < size:
            return
        answers: list[tuple[int, Measured | None]] = []
        for req in pickle.loads(body):  # the requests of one turn of the bridge's event loop, in order
            answer = meters.handle(req)
            ticket = req.ticket if isinstance(req, Flush) else 0
            if answer is not None or ticket:
                answers.append((ticket, answer))
        if not answers:
            continue
        data = pickle.dumps(answers, protocol=pickle.HIGHEST_PROTOCOL)
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

"""One reconnecting participant in its own process, so a fault scenario can freeze it with SIGSTOP (a network
partition: no FIN, no RST, nothing at all) and thaw it with SIGCONT.

    python bench/participant_proc.py BASE_URL ROOM_ID   (the invite token comes on stdin, never in argv)

Prints one JSON line per welcome (``{"participant_id", "resumed"}``); exits when stdin closes, when its
socket closes for good, or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ClinicApi
from bench.participants import Participant


async def run(args: argparse.Namespace, invite: str) -> None:
    api = ClinicApi(args.base_url, timeout=10)
    person = Participant("frozen", api.ticket_source(invite, args.room_id), args.base_url, ping_seconds=1.0)
    try:
        await person.join()
        reported = 0
        loop = asyncio.get_running_loop()
        stdin_closed = asyncio.Event()

        def watch_stdin() -> None:  # a daemon thread: a pending read never holds up the exit
            sys.stdin.readline()
            loop.call_soon_threadsafe(stdin_closed.set)

        threading.Thread(target=watch_stdin, daemon=True).start()
        loop_deadline = loop.time() + args.max_seconds
        while loop.time() < loop_deadline and not stdin_closed.is_set():
            while reported < len(person.welcomes):
                welcome = person.welcomes[reported]
                print(
                    json.dumps({"participant_id": welcome.participant_id, "resumed": welcome.resumed}),
                    flush=True,
                )
                reported += 1
            if person.given_up:
                return
            await asyncio.sleep(0.05)
    finally:
        await person.stop()
        await api.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("room_id")
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args()
    invite = sys.stdin.readline().strip()
    asyncio.run(run(args, invite))
    return 0


if __name__ == "__main__":
    sys.exit(main())

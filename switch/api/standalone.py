"""The merchant API alone (core + gRPC, no ISO listener) in its own process.

``python -m switch.api.standalone --state-dir DIR [--port 0] [--no-fsync] [--uvloop]`` prints
``LISTENING <port>`` once serving and stops on SIGTERM/SIGINT or when stdin closes. Used by
the benchmark and the CLI tests, which need the server in another process than the client.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from switch.api.server import start_grpc_server
from switch.core.service import SwitchCore


async def serve(state_dir: Path, host: str, port: int, durable: bool) -> None:
    core = await SwitchCore.open(state_dir, durable=durable)
    try:
        server = await start_grpc_server(core, host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def on_stdin() -> None:
            if not sys.stdin.read(1):  # EOF: the parent closed our stdin
                stop.set()

        loop.add_reader(sys.stdin.fileno(), on_stdin)
        print(f"LISTENING {server.bound_port}", flush=True)
        await stop.wait()
        await server.stop(1.0)
    finally:
        await core.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m switch.api.standalone")
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--no-fsync", action="store_true")
    p.add_argument("--uvloop", action="store_true")
    args = p.parse_args(argv)
    coro = serve(args.state_dir, args.host, args.port, not args.no_fsync)
    if args.uvloop:
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

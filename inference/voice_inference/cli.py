"""The ``voice-inference`` command: ``serve`` runs the HTTP server.

Settings come from ``VOICE_*`` environment variables; ``--host``/``--port`` override them.
A bad setting is reported as one readable line per field and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from voice_inference import logs, serving
from voice_inference.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voice-inference", description="voice-service inference server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="address to listen on (VOICE_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (VOICE_PORT)")
    checkpoint = commands.add_parser(
        "make-checkpoint", help="write a random-weight S1 Mini checkpoint (needs the [s1] extra)"
    )
    checkpoint.add_argument("out", help="directory to write model.pth, codec.pth, config.json, tokenizer files")
    checkpoint.add_argument(
        "--size", choices=["tiny", "s1-mini"], default="tiny", help="tiny: for CPU tests; s1-mini: the real shape"
    )
    checkpoint.add_argument("--seed", type=int, default=0, help="the same seed writes the same weights")
    args = parser.parse_args(argv)

    if args.command == "serve":
        return _serve(args)
    if args.command == "make-checkpoint":
        return _make_checkpoint(args)
    return 2


def _make_checkpoint(args: argparse.Namespace) -> int:
    from pathlib import Path

    try:  # imported here: torch / fish-speech may be missing
        from voice_inference.engines import s1_random_checkpoint

        out = s1_random_checkpoint.make_checkpoint(Path(args.out), args.size, args.seed)
    except ImportError as exc:  # torch / fish-speech missing
        print(f"voice-inference: make-checkpoint needs the [s1] extra: {exc}", file=sys.stderr)
        return 2
    print(f"wrote a random-weight {args.size} checkpoint to {out}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    overrides = {key: value for key in ("host", "port") if (value := getattr(args, key)) is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            name = f"VOICE_{field.upper()}" if field else "settings"
            print(f"voice-inference: invalid setting {name}: {error['msg']}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    from voice_inference.app import build_app  # after settings: a bad setting fails fast

    try:
        app = build_app(settings)
    except Exception as exc:
        print(f"voice-inference: cannot start: {exc}", file=sys.stderr)
        return 2
    serving.run(app, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())

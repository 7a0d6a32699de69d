"""`ratchet-worker`: tiny | train | serve. Heavy imports happen inside each command."""

from __future__ import annotations

import argparse
import os
import sys
import traceback


def _cmd_tiny(args: argparse.Namespace) -> int:
    import dataclasses

    from .events import claim_stdout
    from .tiny import PRESETS, build_tiny

    emit = claim_stdout()
    spec = dataclasses.replace(PRESETS[args.preset], seed=args.seed)
    build_tiny(args.out, spec, progress=emit, force=args.force)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .events import Emitter, claim_stdout

    emit = claim_stdout()
    if int(os.environ.get("RANK", "0")) != 0:
        # Under `accelerate launch` every rank runs this; only rank 0 speaks for the job.
        emit = Emitter(open(os.devnull, "w"))
    try:
        from .data import DataError
        from .spec import SpecError, load_spec

        spec = load_spec(args.spec)
        from .train.runner import run_job

        run_job(spec, emit)
        return 0
    except (SpecError, DataError) as err:
        emit({"type": "error", "message": str(err), "kind": "invalid_input"})
        return 2
    except KeyboardInterrupt:
        emit({"type": "error", "message": "interrupted", "kind": "interrupted"})
        return 130
    except Exception as err:  # noqa: BLE001 - report anything as an error event
        traceback.print_exc(file=sys.stderr)
        emit({"type": "error", "message": f"{type(err).__name__}: {err}", "kind": "internal"})
        return 1


def _cmd_serve(args: argparse.Namespace) -> int:
    from .serve import run_server

    run_server(
        base=args.base,
        adapters=args.adapters,
        host=args.host,
        port=args.port,
        base_name=args.base_name,
        max_batch=args.max_batch,
        batch_window_ms=args.batch_window_ms,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ratchet-worker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    tiny = sub.add_parser("tiny", help="build the tiny local policy (cached by seed and config)")
    tiny.add_argument("--out", default=".ratchet/models/tiny-support")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--preset", choices=["default", "test"], default="default")
    tiny.add_argument("--force", action="store_true", help="rebuild even if cached")
    tiny.set_defaults(func=_cmd_tiny)

    train = sub.add_parser("train", help="run a training job spec; JSON lines on stdout")
    train.add_argument("--spec", required=True, help="path to the job spec JSON")
    train.set_defaults(func=_cmd_train)

    serve = sub.add_parser("serve", help="OpenAI-compatible server for a base model and adapters")
    serve.add_argument("--base", required=True, help="local Hugging Face model folder")
    serve.add_argument(
        "--adapters",
        default="",
        help="name=path,... (LoRA folders; reward-model adapters are served at /v1/score)",
    )
    serve.add_argument("--base-name", default=None, help="model name of the base (default: folder name)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8400)
    serve.add_argument("--max-batch", type=int, default=16, help="most sequences generated together per model")
    serve.add_argument(
        "--batch-window-ms",
        type=float,
        default=4.0,
        help="when idle, how long the first request waits for others to prefill with it",
    )
    serve.set_defaults(func=_cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""The pilot's training job: a fixed number of steps, a checkpoint every K steps, resume from the newest one.

Writes one JSON object per line to stdout, flushed at once, so whoever watches it (``pilot_run.py``) sees each
step as it happens and can kill the job mid-run:

  {"event": "start", "backend": {...}, "resumed_from": null | {"step", "path", "skipped"}, "first_step": 1}
  {"event": "step", "step": 7, "loss": 4.1, "time_s": 0.012}
  {"event": "checkpoint", "step": 10, "path": "...", "bytes": 123, "write_s": 0.004}
  {"event": "end", "last_step": 60}

Step time covers fetching the batch, forward, backward and the optimizer step (on a GPU up to the loss
being read back, i.e. the work has finished); checkpoint writes are timed on their own.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import pilot_model as pm


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def config_from_args(args: argparse.Namespace) -> pm.Config:
    return pm.Config(vocab=args.vocab, context=args.context, dim=args.dim, hidden=args.hidden, batch=args.batch,
                     positions=args.positions, lr=args.lr, seed=args.seed)


def add_model_args(p: argparse.ArgumentParser) -> None:
    d = pm.Config()
    for name in ("vocab", "context", "dim", "hidden", "batch", "positions", "seed"):
        p.add_argument(f"--{name}", type=int, default=getattr(d, name))
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--backend", choices=["auto", "numpy", "torch"], default="auto")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(p)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--checkpoint-dir", required=True)
    p.add_argument("--checkpoint-every", type=int, default=10, help="0: never")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the directory")
    args = p.parse_args(argv)

    cfg = config_from_args(args)
    model = pm.select_backend(args.backend, cfg)
    table = pm.transition_table(cfg)
    resumed = pm.load_latest(model, args.checkpoint_dir) if args.resume else None
    first = resumed["step"] + 1 if resumed else 1
    emit({"event": "start", "backend": pm.backend_info(model), "config": cfg.as_dict(), "resumed_from": resumed,
          "first_step": first})
    for step in range(first, args.steps + 1):
        t0 = time.perf_counter()
        windows, targets = pm.batch_for_step(cfg, table, step)
        loss = model.train_step(windows, targets)
        emit({"event": "step", "step": step, "loss": loss, "time_s": time.perf_counter() - t0})
        if args.checkpoint_every and step % args.checkpoint_every == 0:
            emit({"event": "checkpoint", **pm.save_checkpoint(model, args.checkpoint_dir, step)})
    emit({"event": "end", "last_step": args.steps})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The pilot's tiny language model, its synthetic data and its checkpoints (stdlib + numpy, torch optional).

Backends (``select_backend``):

* ``torch-cuda``: PyTorch on the first CUDA device, used when torch is importable and sees a GPU.
* ``cpu-numpy``: a numpy implementation with hand-written backward pass and Adam, so the loss really falls.
  It says so in every result: a tiny model on CPU is not representative of GPU throughput.

The model is a fixed-window MLP language model (Bengio et al. 2003): the embeddings of the last ``context``
tokens, concatenated, feed one tanh hidden layer that predicts the next token. Every step trains on
``batch * positions`` next-token predictions; that product is the "tokens" of tokens/s.

Data: sequences from a first-order Markov chain over ``vocab`` tokens whose transition table is drawn from a
fixed seed; each row has four likely successors (0.7/0.15/0.1/0.05), so the best possible loss is about
0.92 nats against ln(vocab) for an untrained model. The batch of step ``s`` depends only on (seed, s), never on
what ran before, so a resumed job sees exactly the batches the killed one would have seen.

Nothing is downloaded; weights start random (seeded).
"""

from __future__ import annotations

import glob
import os
import re
import time

import numpy as np

CPU_NOTE = "cpu-numpy, tiny model: not representative of GPU throughput"
_SUCCESSOR_P = np.array([0.7, 0.15, 0.1, 0.05])
_CKPT_RE = re.compile(r"^ckpt-(\d{8})\.(npz|pt)$")


class Config:
    """Model and data sizes; ``as_dict`` goes into the result so two results can be checked comparable."""

    def __init__(self, vocab: int = 128, context: int = 8, dim: int = 32, hidden: int = 256, batch: int = 16,
                 positions: int = 32, lr: float = 0.01, seed: int = 1234) -> None:
        self.vocab, self.context, self.dim, self.hidden = vocab, context, dim, hidden
        self.batch, self.positions, self.lr, self.seed = batch, positions, lr, seed

    def as_dict(self) -> dict:
        return dict(vars(self))

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.positions


# --- data -------------------------------------------------------------------------------------------------

def transition_table(cfg: Config) -> np.ndarray:
    """(vocab, 4) successor tokens of each token; fixed by the seed."""
    rng = np.random.default_rng(cfg.seed)
    return np.stack([rng.choice(cfg.vocab, size=4, replace=False) for _ in range(cfg.vocab)])


def batch_for_step(cfg: Config, table: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows (batch*positions, context) and targets (batch*positions,) of ``step``; depend on (seed, step) only."""
    rng = np.random.default_rng([cfg.seed, step])
    length = cfg.context + cfg.positions
    seq = np.empty((cfg.batch, length), dtype=np.int64)
    seq[:, 0] = rng.integers(0, cfg.vocab, size=cfg.batch)
    cum = np.cumsum(_SUCCESSOR_P)
    for t in range(1, length):
        pick = np.searchsorted(cum, rng.random(cfg.batch))
        seq[:, t] = table[seq[:, t - 1], np.minimum(pick, 3)]
    idx = np.arange(cfg.positions)[:, None] + np.arange(cfg.context)[None, :]
    windows = seq[:, idx].reshape(-1, cfg.context)
    targets = seq[:, cfg.context:].reshape(-1)
    return windows, targets


def initial_params(cfg: Config) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([cfg.seed, 0xC0FFEE])
    fan_in = cfg.context * cfg.dim
    return {
        "emb": (rng.standard_normal((cfg.vocab, cfg.dim)) * 0.1).astype(np.float32),
        "w1": (rng.standard_normal((fan_in, cfg.hidden)) / np.sqrt(fan_in)).astype(np.float32),
        "b1": np.zeros(cfg.hidden, dtype=np.float32),
        "w2": (rng.standard_normal((cfg.hidden, cfg.vocab)) / np.sqrt(cfg.hidden)).astype(np.float32),
        "b2": np.zeros(cfg.vocab, dtype=np.float32),
    }


# --- numpy backend ----------------------------------------------------------------------------------------

class NumpyModel:
    name = "cpu-numpy"
    device = "cpu"

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.p = initial_params(cfg)
        self.m = {k: np.zeros_like(v) for k, v in self.p.items()}
        self.v = {k: np.zeros_like(v) for k, v in self.p.items()}
        self.t = 0  # Adam's step counter

    def _forward(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = self.p["emb"][windows].reshape(windows.shape[0], -1)
        h = np.tanh(x @ self.p["w1"] + self.p["b1"])
        logits = h @ self.p["w2"] + self.p["b2"]
        return x, h, logits

    def train_step(self, windows: np.ndarray, targets: np.ndarray) -> float:
        n = windows.shape[0]
        x, h, logits = self._forward(windows)
        logits = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        probs = exp / exp.sum(axis=1, keepdims=True)
        loss = float(-np.log(probs[np.arange(n), targets] + 1e-12).mean())
        d = probs
        d[np.arange(n), targets] -= 1.0
        d /= n
        grads = {"w2": h.T @ d, "b2": d.sum(axis=0)}
        dh = (d @ self.p["w2"].T) * (1.0 - h * h)
        grads["w1"] = x.T @ dh
        grads["b1"] = dh.sum(axis=0)
        dx = (dh @ self.p["w1"].T).reshape(n * self.cfg.context, self.cfg.dim)
        demb = np.zeros_like(self.p["emb"])
        np.add.at(demb, windows.reshape(-1), dx)
        grads["emb"] = demb
        self._adam(grads)
        return loss

    def _adam(self, grads: dict[str, np.ndarray], b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> None:
        self.t += 1
        lr = self.cfg.lr * np.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        for k, g in grads.items():
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            self.p[k] = (self.p[k] - lr * self.m[k] / (np.sqrt(self.v[k]) + eps)).astype(np.float32)

    def next_token(self, context: list[int]) -> int:
        _, _, logits = self._forward(np.asarray([context[-self.cfg.context:]], dtype=np.int64))
        return int(np.argmax(logits[0]))

    def state(self) -> dict[str, np.ndarray]:
        out = {f"p_{k}": v for k, v in self.p.items()}
        out.update({f"m_{k}": v for k, v in self.m.items()})
        out.update({f"v_{k}": v for k, v in self.v.items()})
        out["adam_t"] = np.asarray(self.t)
        return out

    def load_state(self, st: dict) -> None:
        for k in self.p:
            self.p[k], self.m[k], self.v[k] = st[f"p_{k}"], st[f"m_{k}"], st[f"v_{k}"]
        self.t = int(st["adam_t"])

    suffix = "npz"

    def save(self, path: str, step: int) -> None:
        with open(path, "wb") as f:
            np.savez(f, step=np.asarray(step), **self.state())
            f.flush()
            os.fsync(f.fileno())

    def load(self, path: str) -> int:
        with np.load(path) as st:
            self.load_state({k: st[k] for k in st.files})
            return int(st["step"])


# --- torch backend ----------------------------------------------------------------------------------------

class TorchModel:
    """The same model in PyTorch (float32) on ``device``; used on GPU nodes."""

    suffix = "pt"

    def __init__(self, cfg: Config, device: str) -> None:
        import torch

        self.torch, self.cfg = torch, cfg
        self.device = device
        self.name = "torch-cuda" if device.startswith("cuda") else "torch-cpu"
        p = initial_params(cfg)
        self.params = {k: torch.nn.Parameter(torch.from_numpy(v).to(device)) for k, v in p.items()}
        self.opt = torch.optim.Adam(self.params.values(), lr=cfg.lr)

    def _logits(self, windows):
        p = self.params
        x = p["emb"][windows].reshape(windows.shape[0], -1)
        return self.torch.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    def train_step(self, windows: np.ndarray, targets: np.ndarray) -> float:
        torch = self.torch
        w = torch.from_numpy(windows).to(self.device, non_blocking=True)
        t = torch.from_numpy(targets).to(self.device, non_blocking=True)
        self.opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(self._logits(w), t)
        loss.backward()
        self.opt.step()
        return float(loss.item())  # .item() waits for the GPU: the step time includes the work

    def next_token(self, context: list[int]) -> int:
        torch = self.torch
        with torch.no_grad():
            w = torch.tensor([context[-self.cfg.context:]], dtype=torch.int64, device=self.device)
            return int(self._logits(w).argmax(dim=1).item())

    def save(self, path: str, step: int) -> None:
        with open(path, "wb") as f:
            self.torch.save({"step": step, "params": {k: v.detach().cpu() for k, v in self.params.items()},
                             "opt": self.opt.state_dict()}, f)
            f.flush()
            os.fsync(f.fileno())

    def load(self, path: str) -> int:
        st = self.torch.load(path, map_location=self.device)
        with self.torch.no_grad():
            for k, v in st["params"].items():
                self.params[k].copy_(v.to(self.device))
        self.opt.load_state_dict(st["opt"])
        return int(st["step"])


def select_backend(requested: str, cfg: Config):
    """``auto``: torch on CUDA when torch imports and sees a GPU, else numpy. ``torch`` without CUDA runs on CPU."""
    if requested in ("auto", "torch"):
        try:
            import torch
        except ImportError:
            if requested == "torch":
                raise SystemExit("backend torch requested but torch is not importable by this python") from None
        else:
            if torch.cuda.is_available():
                return TorchModel(cfg, "cuda:0")
            if requested == "torch":
                return TorchModel(cfg, "cpu")
    return NumpyModel(cfg)


def loaded_blas() -> list[str]:
    """The BLAS libraries mapped into this process (Debian's numpy uses whichever libblas.so.3 is selected)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in line.lower() or "mkl" in line.lower()}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/"))


def backend_info(model) -> dict:
    info = {"name": model.name, "device": model.device, "numpy_version": np.__version__}
    if model.name == "cpu-numpy":
        info["note"] = CPU_NOTE
        info["blas"] = loaded_blas()
    else:
        torch = model.torch
        info["torch_version"] = torch.__version__
        if model.device.startswith("cuda"):
            info["cuda_version"] = torch.version.cuda
            info["device_name"] = torch.cuda.get_device_name(0)
    return info


# --- checkpoints ------------------------------------------------------------------------------------------

def save_checkpoint(model, directory: str, step: int, keep: int = 2) -> dict:
    """Atomic: write a temporary file, fsync, rename, fsync the directory; a SIGKILL never leaves half a file."""
    os.makedirs(directory, exist_ok=True)
    final = os.path.join(directory, f"ckpt-{step:08d}.{model.suffix}")
    tmp = final + ".tmp"
    t0 = time.perf_counter()
    model.save(tmp, step)
    os.replace(tmp, final)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    write_s = time.perf_counter() - t0
    for old in list_checkpoints(directory)[:-keep]:
        os.unlink(old[1])
    return {"step": step, "path": final, "bytes": os.path.getsize(final), "write_s": write_s}


def list_checkpoints(directory: str) -> list[tuple[int, str]]:
    found = []
    for path in glob.glob(os.path.join(directory, "ckpt-*")):
        m = _CKPT_RE.match(os.path.basename(path))
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


def load_latest(model, directory: str) -> dict | None:
    """Load the newest checkpoint that loads; returns {"step", "path", "skipped"} or None when there is none."""
    skipped = []
    for step, path in reversed(list_checkpoints(directory)):
        try:
            loaded = model.load(path)
        except Exception as exc:  # a damaged file: fall back to the previous one, and say so
            skipped.append(f"{path}: {exc}")
            continue
        if loaded != step:
            skipped.append(f"{path}: holds step {loaded}, name says {step}")
            continue
        return {"step": step, "path": path, "skipped": skipped}
    return None

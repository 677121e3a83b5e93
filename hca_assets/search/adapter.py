"""A retrieval adapter: a small MLP (Linear → GELU → LayerNorm → Linear) on frozen embeddings, trained with a
supervised contrastive loss on class labels, in numpy on CPU (no Dagster, no torch).

Patients are split into train and held-out sets (never images: a patient's images are all on one side), the
adapter trains on the train patients only, and :func:`heldout_rows` evaluates base and adapted vectors on the
held-out patients, so the two figures compare like with like. The adapter file is an ``.npz`` of its weights with a
JSON sidecar (metadata, sha256 of the ``.npz``); the adapted vectors' code_version is
``<base version>+adapter-<sha8>``.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hca_assets._infra.files import atomic_write
from hca_assets.evaluation.retrieval import RetrievalMetrics, evaluate_retrieval

__all__ = ["DEFAULT_CONFIG", "HELDOUT_TARGETS", "Adapter", "AdapterConfig", "Split", "adapted_version", "config_dict", "heldout_metrics", "lesion_labels",
           "load_adapter", "patient_split", "save_adapter", "supcon_loss", "train_adapter"]

_PARAMS = ("w1", "b1", "gamma", "beta", "w2", "b2")


@dataclass(frozen=True)
class AdapterConfig:
    """Hyper-parameters (part of the adapter's metadata; a change gives another file, hence another version)."""

    hidden: int = 256
    out_dim: int = 128
    epochs: int = 60
    batch: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    heldout_fraction: float = 0.3
    seed: int = 0


DEFAULT_CONFIG = AdapterConfig()


@dataclass(frozen=True)
class Split:
    """Which patients train the adapter and which are held out for its evaluation (disjoint by construction)."""

    train: frozenset[str]
    heldout: frozenset[str]


def patient_split(patients: list[str], fraction: float, seed: int = 0) -> Split:
    """Hold out ``fraction`` of the distinct patients (at least one, when there are two or more), chosen by a
    keyed hash of the pseudonym so the split is stable as batches arrive."""
    distinct = sorted(set(patients))
    ranked = sorted(distinct, key=lambda p: hashlib.sha256(f"{seed}\x1f{p}".encode()).hexdigest())
    n_held = min(len(distinct) - 1, max(1, round(fraction * len(distinct)))) if len(distinct) > 1 else 0
    return Split(train=frozenset(ranked[n_held:]), heldout=frozenset(ranked[:n_held]))


def _gelu(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GELU (tanh form) and its derivative."""
    c = np.sqrt(2 / np.pi)
    inner = c * (x + 0.044715 * x**3)
    t = np.tanh(inner)
    y = 0.5 * x * (1 + t)
    dy = 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * c * (1 + 3 * 0.044715 * x**2)
    return y, dy


@dataclass
class Adapter:
    """The MLP's weights; :meth:`apply` maps base vectors to L2-normalised adapted vectors."""

    w1: np.ndarray
    b1: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    @classmethod
    def init(cls, dim: int, config: AdapterConfig, rng: np.random.Generator) -> Adapter:
        return cls(rng.normal(0, 1 / np.sqrt(dim), (dim, config.hidden)), np.zeros(config.hidden),
                   np.ones(config.hidden), np.zeros(config.hidden),
                   rng.normal(0, 1 / np.sqrt(config.hidden), (config.hidden, config.out_dim)), np.zeros(config.out_dim))

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        h = x @ self.w1 + self.b1
        g, dg = _gelu(h)
        mu, var = g.mean(1, keepdims=True), g.var(1, keepdims=True)
        inv = 1 / np.sqrt(var + 1e-5)
        xhat = (g - mu) * inv
        ln = xhat * self.gamma + self.beta
        z = ln @ self.w2 + self.b2
        r = np.linalg.norm(z, axis=1, keepdims=True) + 1e-12
        return z / r, {"x": x, "dg": dg, "inv": inv, "xhat": xhat, "ln": ln, "r": r}

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Adapted, L2-normalised float32 vectors."""
        return self._forward(np.asarray(vectors, dtype=np.float64))[0].astype(np.float32)

    def _backward(self, u: np.ndarray, du: np.ndarray, c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        dz = (du - u * (u * du).sum(1, keepdims=True)) / c["r"]
        grads = {"w2": c["ln"].T @ dz, "b2": dz.sum(0)}
        dln = dz @ self.w2.T
        grads["gamma"], grads["beta"] = (dln * c["xhat"]).sum(0), dln.sum(0)
        dxhat = dln * self.gamma
        dg = c["inv"] * (dxhat - dxhat.mean(1, keepdims=True) - c["xhat"] * (dxhat * c["xhat"]).mean(1, keepdims=True))
        dh = dg * c["dg"]
        grads["w1"], grads["b1"] = c["x"].T @ dh, dh.sum(0)
        return grads


def supcon_loss(u: np.ndarray, labels: np.ndarray, temperature: float) -> tuple[float, np.ndarray]:
    """Supervised contrastive loss (Khosla et al. 2020) of unit vectors ``u`` and its gradient with respect to ``u``;
    anchors without a positive in the batch do not count."""
    logits = (u @ u.T) / temperature
    np.fill_diagonal(logits, -np.inf)
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(1, keepdims=True)
    pos = (labels[:, None] == labels[None, :]) & ~np.eye(len(labels), dtype=bool)
    n_pos = pos.sum(1)
    valid = n_pos > 0
    if not valid.any():
        return 0.0, np.zeros_like(u)
    w = np.where(valid[:, None], pos / np.maximum(n_pos, 1)[:, None], 0.0)
    log_p = np.log(np.where(pos, p, 1.0))
    loss = float(-(w * log_p).sum() / valid.sum())
    g = np.where(valid[:, None], p - w, 0.0) / valid.sum()
    return loss, (g + g.T) @ u / temperature


def train_adapter(vectors: np.ndarray, labels: list[str], config: AdapterConfig) -> tuple[Adapter, list[float]]:
    """Train on ``vectors`` (rows of train patients only) with Adam; returns the adapter and the loss per epoch."""
    rng = np.random.default_rng(config.seed)
    x = np.asarray(vectors, dtype=np.float64)
    y = np.asarray(labels)
    model = Adapter.init(x.shape[1], config, rng)
    m = {k: np.zeros_like(getattr(model, k)) for k in _PARAMS}
    v = {k: np.zeros_like(getattr(model, k)) for k in _PARAMS}
    step, history = 0, []
    for _ in range(config.epochs):
        order = rng.permutation(len(x))
        losses = []
        for start in range(0, len(x), config.batch):
            pick = order[start:start + config.batch]
            u, cache = model._forward(x[pick])
            loss, du = supcon_loss(u, y[pick], config.temperature)
            grads = model._backward(u, du, cache)
            step += 1
            for k in _PARAMS:
                param = getattr(model, k)
                gk = grads[k] + (config.weight_decay * param if k in ("w1", "w2") else 0.0)
                m[k] = 0.9 * m[k] + 0.1 * gk
                v[k] = 0.999 * v[k] + 0.001 * gk**2
                param -= config.lr * (m[k] / (1 - 0.9**step)) / (np.sqrt(v[k] / (1 - 0.999**step)) + 1e-8)
            losses.append(loss)
        history.append(float(np.mean(losses)))
    return model, history


def save_adapter(model: Adapter, folder: Path, metadata: dict[str, object]) -> tuple[Path, dict[str, object]]:
    """Write ``adapter-<sha8>.npz`` and its ``.json`` sidecar (``metadata`` + sha256) into ``folder``; the same
    weights give the same file name. Returns the ``.npz`` path and the sidecar's content."""
    buf = io.BytesIO()
    np.savez(buf, **{k: getattr(model, k).astype(np.float32) for k in _PARAMS})
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"adapter-{sha[:8]}.npz"
    atomic_write(path, lambda p: p.write_bytes(data))
    meta = {**metadata, "sha256": sha, "file": path.name}
    atomic_write(path.with_suffix(".json"), lambda p: p.write_text(json.dumps(meta, indent=1, sort_keys=True)))
    return path, meta


def load_adapter(path: Path) -> tuple[Adapter, dict[str, object]]:
    """The adapter at ``path`` and its metadata; refuses a file whose sha256 differs from its sidecar's."""
    meta = json.loads(path.with_suffix(".json").read_text())
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise ValueError(f"{path.name} does not match the sha256 of its metadata")
    arrays = np.load(io.BytesIO(data))
    return Adapter(**{k: arrays[k].astype(np.float64) for k in _PARAMS}), meta


def adapted_version(base_version: str, sha256: str) -> str:
    """The code_version of vectors a given adapter produced from ``base_version`` vectors."""
    return f"{base_version}+adapter-{sha256[:8]}"


def config_dict(config: AdapterConfig) -> dict[str, object]:
    """The hyper-parameters as plain values (for metadata)."""
    return asdict(config)


HELDOUT_TARGETS = {"class_label": "class_label_heldout", "lesion": "lesion_heldout"}  # evaluations.target names


def heldout_metrics(base: np.ndarray, adapted: np.ndarray, classes: list[str | None], lesion: list[str | None],
                    patients: list[str], series: list[str], split: Split) -> dict[tuple[str, str], RetrievalMetrics]:
    """Leave-one-out kNN metrics among the held-out patients' images, of the base and the adapted vectors:
    (``"base"`` | ``"adapted"``, target) → metrics; the lesion target covers classes that have lesions, labelled
    ``<class>:lesion`` / ``<class>:none`` (None: not in that target)."""
    pick = [i for i, p in enumerate(patients) if p in split.heldout]
    out: dict[tuple[str, str], RetrievalMetrics] = {}
    for name, vectors in (("base", base), ("adapted", adapted)):
        for target, labels in (("class_label", classes), ("lesion", lesion)):
            rows = [i for i in pick if labels[i] is not None]
            if len({patients[i] for i in rows}) < 2:
                continue
            m = evaluate_retrieval(vectors[rows], [str(labels[i]) for i in rows], [patients[i] for i in rows],
                                   [series[i] for i in rows])
            if m.overall:
                out[(name, target)] = m
    return out


def lesion_labels(classes: list[str], present: list[bool]) -> list[str | None]:
    """The lesion target as :func:`hca_assets.evaluation.report.retrieval_rows` defines it: ``<class>:lesion`` or
    ``<class>:none`` for images of classes where some image has a lesion, None for the others."""
    with_lesions = {c for c, p in zip(classes, present, strict=True) if p}
    return [f"{c}:{'lesion' if p else 'none'}" if c in with_lesions else None for c, p in zip(classes, present, strict=True)]

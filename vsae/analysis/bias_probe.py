"""A linear probe on an embedding: L2-regularised logistic regression trained by vsae, or
weights a user gives, saved as ``probe.safetensors`` (``weight`` [D], ``bias`` [1]) plus
``probe.json`` (its settings).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from vsae.analysis.bias_labels import BiasError

PROBE_WEIGHTS = "probe.safetensors"
PROBE_SETTINGS = "probe.json"


@dataclass(frozen=True)
class ProbeConfig:
    """How vsae trains its probe.

    The features are standardised (training mean and standard deviation; folded back into
    the weights afterwards), the loss is the mean binary cross-entropy plus
    ``l2 * ||w||^2`` on the standardised weights, minimised by L-BFGS.

    Parameters
    ----------
    l2 : float
        L2 penalty on the standardised weights (>= 0).
    balanced : bool
        Weight the two classes equally in the loss (each class's weights sum to one half).
    max_iter : int
        L-BFGS iterations.
    """

    l2: float = 0.01
    balanced: bool = True
    max_iter: int = 200

    def __post_init__(self) -> None:
        if self.l2 < 0:
            raise BiasError(f"ProbeConfig.l2 must be >= 0, got {self.l2}")
        if self.max_iter < 1:
            raise BiasError(f"ProbeConfig.max_iter must be >= 1, got {self.max_iter}")


@dataclass(frozen=True)
class LinearProbe:
    """``logit(x) = x @ weight + bias``: positive means the target is predicted.

    Attributes
    ----------
    weight_D : Tensor [D]
        Weights on the raw embedding.
    bias : float
        Intercept.
    settings : dict
        How it was made (``ProbeConfig`` fields and the training-set size, or its file).
    """

    weight_D: torch.Tensor
    bias: float
    settings: dict

    @property
    def dim(self) -> int:
        """The embedding width ``D`` the probe reads."""
        return int(self.weight_D.shape[0])

    def check_dim(self, x_ND: torch.Tensor, what: str = "the embedding") -> None:
        """Raise when ``x_ND`` is not ``[N, D]`` with the probe's ``D``.

        Parameters
        ----------
        x_ND : Tensor
        what : str
            The inputs' name for the message.

        Raises
        ------
        BiasError
            A width other than the probe's.
        """
        if x_ND.ndim != 2 or x_ND.shape[1] != self.dim:
            src = self.settings.get("file", "the probe")
            raise BiasError(
                f"{src} reads {self.dim}-d vectors but {what} is {tuple(x_ND.shape)}; "
                f"expected [N, {self.dim}] (was the probe trained on another model?)"
            )

    def logits(self, x_ND: torch.Tensor) -> torch.Tensor:
        """The probe's logits.

        Parameters
        ----------
        x_ND : Tensor [N, D]

        Returns
        -------
        Tensor [N]

        Raises
        ------
        BiasError
            A width other than the probe's.
        """
        self.check_dim(x_ND)
        return x_ND.float() @ self.weight_D + self.bias

    def save(self, folder: str | Path) -> Path:
        """Write ``probe.safetensors`` and ``probe.json`` into ``folder``.

        Parameters
        ----------
        folder : str or Path

        Returns
        -------
        Path
            The weights file.
        """
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / PROBE_WEIGHTS
        save_file(
            {
                "weight": self.weight_D.float().contiguous(),
                "bias": torch.tensor([self.bias], dtype=torch.float32),
            },
            str(path),
        )
        (folder / PROBE_SETTINGS).write_text(json.dumps(self.settings, indent=1) + "\n")
        return path


def load_probe(path: str | Path) -> LinearProbe:
    """Read a probe from safetensors: ``weight`` ([D] or [1, D]) and optional ``bias``.

    Parameters
    ----------
    path : str or Path
        A ``.safetensors`` file (``probe.json`` beside it, when there, gives its settings).

    Returns
    -------
    LinearProbe

    Raises
    ------
    BiasError
        A missing file, no ``weight`` tensor, or a weight that is not one row.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise BiasError(f"probe file {path} does not exist")
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise BiasError(f"{path}: not a safetensors file ({err})") from err
    if "weight" not in tensors:
        raise BiasError(f"{path}: expected a 'weight' tensor ([D]), found {sorted(tensors)}")
    w = tensors["weight"].float()
    if w.ndim == 2 and w.shape[0] == 1:
        w = w[0]
    if w.ndim != 1:
        raise BiasError(
            f"{path}: 'weight' has shape {tuple(w.shape)}; expected [D] or [1, D] "
            "(a binary linear probe)"
        )
    b = tensors.get("bias", torch.zeros(1)).float().reshape(-1)
    if b.numel() != 1:
        raise BiasError(f"{path}: 'bias' has {b.numel()} values; expected one")
    settings = {"file": str(path)}
    side = path.with_name(PROBE_SETTINGS)
    if side.is_file():
        settings.update(json.loads(side.read_text()))
        settings["file"] = str(path)
    return LinearProbe(w.contiguous(), float(b[0]), settings)


def fit_probe(
    x_ND: torch.Tensor, y_N: np.ndarray | torch.Tensor, cfg: ProbeConfig = ProbeConfig()
) -> LinearProbe:
    """Train an L2-regularised logistic-regression probe.

    Parameters
    ----------
    x_ND : Tensor [N, D]
        Embeddings.
    y_N : array of bool [N]
        Whether each image has the target.
    cfg : ProbeConfig

    Returns
    -------
    LinearProbe
        Weights on the raw (not standardised) embedding.

    Raises
    ------
    BiasError
        Shapes that do not match, or a single class.
    """
    y = torch.as_tensor(np.asarray(y_N), dtype=torch.bool)
    if x_ND.ndim != 2 or y.shape != (x_ND.shape[0],):
        raise BiasError(
            f"fit_probe: expected x [N, D] and y [N], got {tuple(x_ND.shape)} and {tuple(y.shape)}"
        )
    pos = float(y.float().mean())
    if pos in (0.0, 1.0):
        raise BiasError("fit_probe: the training labels hold one class only")
    x = x_ND.detach().float()
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    xs = (x - mu) / sd
    yf = y.float()
    if cfg.balanced:
        wt = torch.where(y, 0.5 / pos, 0.5 / (1.0 - pos))
    else:
        wt = torch.ones_like(yf)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=cfg.max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        bce = torch.nn.functional.binary_cross_entropy_with_logits(xs @ w + b, yf, reduction="none")
        loss = (bce * wt).sum() / wt.sum() + cfg.l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w_raw = (w / sd).detach()
    b_raw = float((b - (mu / sd * w).sum()).detach())
    settings = {**asdict(cfg), "n_train": int(len(y)), "positive_fraction": pos}
    return LinearProbe(w_raw.contiguous(), b_raw, settings)

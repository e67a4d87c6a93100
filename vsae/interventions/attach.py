"""Attach SAEs to ``Transformer2DModel`` blocks of a running U-Net, with edits, as a context.

Under classifier-free guidance the U-Net batch is [unconditional; conditional]. ``cfg`` says
where an edit's change goes: ``"both"`` halves (the default: the edit then changes the model
itself and enters the guided prediction ``eps_u + g (eps_c - eps_u)`` once, whatever the
guidance scale ``g``; SAeUron edits both halves too), ``"cond"`` (the conditional half only:
the change is amplified by ``g``), or ``"signed"`` (the SDXL-Turbo study: subtracted on the
unconditional half, added on the conditional one, amplified by ``2 g - 1``).
The step of each U-Net call is the index of its timestep in ``scheduler.timesteps``.
Hooks are always removed on exit, also when generation raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch

from vsae.encoders.hooks import BlockError, WriteHook, resolve_blocks

from .block_sae import BlockSAE
from .edits import Edit, EditState, check_edit
from .errors import InterventionError
from .stats import LatentStats

CFG_MODES = ("both", "cond", "signed")
Recorder = Callable[[int, int, torch.Tensor], None]


@dataclass
class Attached:
    """What a context reports.

    Attributes
    ----------
    calls : int
        U-Net calls seen.
    steps : list of int
        The denoising step of each call.
    edited : list of int
        Per attached SAE, the block calls where an edit was active.
    step : int
        The current step (-1 before the first call).
    """

    calls: int = 0
    steps: list[int] = field(default_factory=list)
    edited: list[int] = field(default_factory=list)
    step: int = -1


def _step_of(scheduler, t) -> int:
    ts = torch.as_tensor(scheduler.timesteps).float()
    hit = torch.nonzero(torch.isclose(ts, torch.as_tensor(t).float().flatten()[0])).flatten()
    return int(hit[0]) if len(hit) else -1


def _directions(sae) -> torch.Tensor:
    """Raw-space atoms [N, D]: ``decode(e_f) - decode(0)`` (normalisation is shift + scale)."""
    return sae.dictionary().detach() / sae.norm_scale


class _BlockHook:
    def __init__(self, i, bsae, edits, stats, cfg, guided, state, record):
        self.i, self.b, self.edits, self.stats = i, bsae, edits, stats
        self.cfg, self.guided, self.state, self.record = cfg, guided, state, record
        self.dir_ND = _directions(bsae.sae)

    @torch.no_grad()
    def __call__(self, x_in: torch.Tensor, x_out: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x_out.shape
        step = self.state.step
        target = x_out - x_in if self.b.output == "update" else x_out
        rows_RD = target.flatten(2).transpose(1, 2).reshape(-1, C).float()
        codes_RN = self.b.sae.encode(rows_RD)
        codes_BPN = codes_RN.view(B, H * W, -1)
        if self.record is not None:
            self.record(self.i, step, codes_BPN)
        active = [e for e in self.edits if e.active(step)]
        if not active:
            return x_out
        self.state.edited[self.i] += 1
        mean_N = None if self.stats is None else self.stats.mean_act_N
        n = B // 2 if self.guided else B
        st = EditState(
            codes_BPN.clone(), torch.zeros(B, H * W, C), self.dir_ND, mean_N, (H, W), n, self.guided
        )
        st.step = step
        for e in active:
            e.apply(st)
        dec = self.b.sae.decode
        delta_RD = dec(st.codes_BPN.reshape(-1, codes_RN.shape[1])) - dec(codes_RN)
        delta_BPD = delta_RD.view(B, H * W, C) + st.add_BPD
        new = x_out + delta_BPD.transpose(1, 2).reshape(B, C, H, W).to(x_out)
        if st.replace_B.any():  # icons: the update (or output) replaced on their rows
            rep = st.replace_BPD.transpose(1, 2).reshape(B, C, H, W).to(x_out)
            rep = x_in + rep if self.b.output == "update" else rep
            new = torch.where(st.replace_B[:, None, None, None], rep, new)
        if st.ablate_B.any():  # the whole block update removed: the block returns its input
            new = torch.where(st.ablate_B[:, None, None, None], x_in, new)
        return self._halves(x_out, new)

    def _halves(self, x_out, new):
        if not self.guided or self.cfg == "both":
            return new
        n = x_out.shape[0] // 2
        sign = torch.ones(x_out.shape[0], 1, 1, 1, dtype=x_out.dtype)
        sign[:n] = 0.0 if self.cfg == "cond" else -1.0
        return x_out + sign * (new - x_out)


@contextmanager
def attach(
    unet: torch.nn.Module,
    scheduler,
    saes: Sequence[BlockSAE],
    edits: Sequence[Edit] = (),
    stats: Sequence[LatentStats | None] | None = None,
    cfg: str = "both",
    guided: bool = False,
    num_steps: int | None = None,
    image_hw: tuple[int, int] | None = None,
    record: Recorder | None = None,
    n_prompts: int | None = None,
) -> Iterator[Attached]:
    """Attach SAEs (and edits) to U-Net blocks for the duration of the ``with`` block.

    Parameters
    ----------
    unet : UNet2DConditionModel
        ``pipe.unet`` of the tiny world, SD 1.x or SDXL / SDXL-Turbo pipelines.
    scheduler : diffusers scheduler
        The pipeline's (its ``timesteps`` give each call's step index).
    saes : list of BlockSAE
        One SAE per entry, each on its block; with no edit each reconstructs (output unchanged).
    edits : list of Edit
        Steer / Clamp / Icon / AblateBlock; ``edit.sae`` indexes ``saes``.
    stats : list of LatentStats or None
        Per SAE; needed by Steer and Icon (strengths are in units of the mean activation).
    cfg : str
        ``both`` (default), ``cond`` or ``signed``; see the module docstring.
    guided : bool
        The pipeline runs classifier-free guidance (U-Net batch [uncond; cond]).
    num_steps : int, optional
        Steps of the run, to check edit schedules against.
    image_hw : (int, int), optional
        Image size, to check masks against.
    record : callable, optional
        ``record(sae_index, step, codes_BPN)`` at every block call (heatmaps).
    n_prompts : int, optional
        Prompts of the run, to check edits' ``rows`` against.

    Yields
    ------
    Attached
        Counters of the run.

    Raises
    ------
    InterventionError
        A block that is not a Transformer2DModel (the valid ones listed), an SAE whose d_in is
        not the block's channels, a bad edit (see :func:`check_edit`), an unknown cfg mode.
    """
    if cfg not in CFG_MODES:
        raise InterventionError(f"cfg={cfg!r}; expected one of {CFG_MODES}")
    stats = list(stats) if stats is not None else [None] * len(saes)
    if len(stats) != len(saes):
        raise InterventionError(f"{len(stats)} statistics for {len(saes)} SAEs")
    try:
        blocks = resolve_blocks(unet, [b.block for b in saes], "U-Net")
    except BlockError as exn:
        raise InterventionError(str(exn)) from None
    for b in saes:
        ch = int(blocks[b.block].config.in_channels)
        if b.sae.d_in != ch:
            raise InterventionError(f"{b.name}: SAE d_in {b.sae.d_in}; block {b.block} has {ch}")
    for e in edits:
        check_edit(e, len(saes), [b.sae.n_latents for b in saes], image_hw, num_steps, n_prompts)
        if e.needs_mean and stats[e.sae] is None:
            raise InterventionError(
                f"{e.describe()['kind']} needs the latent statistics of SAE {saes[e.sae].name}"
            )
    state = Attached(edited=[0] * len(saes))

    def on_call(_m, args, kwargs):
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        state.step = _step_of(scheduler, t)
        state.calls += 1
        state.steps.append(state.step)

    with ExitStack() as stack:
        handle = unet.register_forward_pre_hook(on_call, with_kwargs=True)
        stack.callback(handle.remove)
        for i, b in enumerate(saes):
            mine = [e for e in edits if e.sae == i]
            fn = _BlockHook(i, b, mine, stats[i], cfg, guided, state, record)
            stack.enter_context(WriteHook(blocks[b.block], fn))
        yield state

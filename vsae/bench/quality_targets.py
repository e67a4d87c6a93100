"""The issue's targets, checked against measured numbers (never the other way round).

Each target is a dict in the benchmark contract's form (``name``, ``target``, ``values``,
``passed``; see ``vsae.bench.harness``) that keeps the older keys too: ``claim`` (the same text
as ``target``), ``measured`` (the numbers by name), ``pass`` (the same as ``passed``) and -
when it fails - the measured shortfall as its ``reason``. A target whose suite did not run is
reported with ``passed: None``.
"""

from __future__ import annotations

from typing import Any

COS_MIN, FVU_MAX, SPARSITY_MIN = 0.99, 0.10, 0.80
STABILITY_MIN, STABILITY_MARGIN = 0.90, 0.25
IDENT_MIN = 0.93
MMCS_MIN = 0.95
ZERO_SHOT_KEPT_MIN = 0.97
MSAES = ("msae_uw", "msae_rw")


def _target(
    name: str,
    claim: str,
    measured: dict[str, Any],
    ok: bool | None,
    why: str,
    values: list[float],
) -> dict:
    """One target: the contract's four keys, then the older ``claim/measured/pass/reason``."""
    return {
        "name": name,
        "target": claim,
        "values": [float(v) for v in values],
        "passed": ok,
        "claim": claim,
        "measured": measured,
        "pass": ok,
        "reason": None if ok else why,
    }


def _missing(name: str, claim: str, what: str) -> dict:
    return _target(name, claim, {}, None, f"not measured: {what} did not run", [])


def _msae_at_target(world: dict, name: str) -> dict | None:
    points = world["variants"][name]["points"]
    return next((p for p in points if p.get("k") == world["k_target"]), None)


def world_targets(world: dict | None) -> list[dict]:
    """MSAE reconstruction at 80% sparsity, its Pareto front against TopK, zero-shot kept."""
    out = []
    for name in MSAES:
        label = "MSAE-" + name.removeprefix("msae_").upper()
        claim = f"{label}: cos >= {COS_MIN} and FVU <= {FVU_MAX} at sparsity >= {SPARSITY_MIN}"
        if world is None or name not in world["variants"]:
            out.append(_missing(f"{name}_recon_at_0.8", claim, "the tiny-world suite"))
            continue
        p = _msae_at_target(world, name)
        m = {"k": p["k"], "sparsity": p["sparsity"], "cos": p["cos"], "fvu": p["fvu"]}
        ok = p["sparsity"] >= SPARSITY_MIN and p["cos"] >= COS_MIN and p["fvu"] <= FVU_MAX
        why = (
            f"at sparsity {p['sparsity']:.3f}: cos {p['cos']:.4f} (need >= {COS_MIN}), "
            f"FVU {p['fvu']:.4f} (need <= {FVU_MAX})"
        )
        values = [p["cos"], p["fvu"], p["sparsity"]]
        out.append(_target(f"{name}_recon_at_0.8", claim, m, ok, why, values))

        claim = f"{label} curve at or above TopK's at every matched L0 (FVU <= and cos >=)"
        if "topk" not in world["variants"]:
            out.append(_missing(f"{name}_pareto_vs_topk", claim, "TopK on the tiny world"))
        else:
            out.append(_pareto_target(world, name, claim))

        claim = f"{label} at sparsity 0.8 keeps >= {ZERO_SHOT_KEPT_MIN:.0%} of zero-shot accuracy"
        ok = p["zero_shot_kept"] >= ZERO_SHOT_KEPT_MIN
        why = f"kept {p['zero_shot_kept']:.4f} of the original mean zero-shot accuracy"
        out.append(
            _target(
                f"{name}_zero_shot_kept",
                claim,
                {"zero_shot_kept": p["zero_shot_kept"]},
                ok,
                why,
                [p["zero_shot_kept"]],
            )
        )
    return out


def _pareto_target(world: dict, name: str, claim: str) -> dict:
    msae = {p["k"]: p for p in world["variants"][name]["points"] if p["k"]}
    rows, fails = [], []
    for t in world["variants"]["topk"]["points"]:
        m = msae.get(t["k"])
        if m is None:
            continue
        row = {
            "k": t["k"],
            "fvu": m["fvu"],
            "topk_fvu": t["fvu"],
            "cos": m["cos"],
            "topk_cos": t["cos"],
        }
        rows.append(row)
        if not (m["fvu"] <= t["fvu"] and m["cos"] >= t["cos"]):
            fails.append(
                f"k={t['k']}: FVU {m['fvu']:.4f} vs TopK {t['fvu']:.4f}, "
                f"cos {m['cos']:.4f} vs {t['cos']:.4f}"
            )
    return _target(
        f"{name}_pareto_vs_topk",
        claim,
        {"points": rows},
        bool(rows) and not fails,
        "; ".join(fails) or "no matched L0",
        [r["fvu"] - r["topk_fvu"] for r in rows],  # FVU margin to TopK per matched L0
    )


def stability_target(stab: dict | None) -> dict:
    """RA-SAE stability >= 0.90 and >= TopK + 0.25."""
    claim = f"RA-SAE stability >= {STABILITY_MIN} and >= TopK + {STABILITY_MARGIN}"
    name = "ra_sae_stability"
    if stab is None or not {"ra_sae", "topk"} <= set(stab["variants"]):
        return _missing(name, claim, "the stability suite (RA-SAE and TopK)")
    ra, tk = stab["variants"]["ra_sae"]["stability"], stab["variants"]["topk"]["stability"]
    ok = ra >= STABILITY_MIN and ra >= tk + STABILITY_MARGIN
    why = f"RA-SAE {ra:.4f}, TopK {tk:.4f} (margin {ra - tk:+.4f})"
    return _target(name, claim, {"ra_sae": ra, "topk": tk}, ok, why, [ra, tk])


def identifiability_target(ident: dict | None) -> dict:
    """RA-SAE identifiability >= 0.93 and above TopK."""
    claim = f"RA-SAE identifiability >= {IDENT_MIN} and above TopK"
    name = "ra_sae_identifiability"
    if ident is None or not {"ra_sae", "topk"} <= set(ident["variants"]):
        return _missing(name, claim, "the identifiability suite (RA-SAE and TopK)")
    ra = ident["variants"]["ra_sae"]["identifiability"]
    tk = ident["variants"]["topk"]["identifiability"]
    ok = ra >= IDENT_MIN and ra > tk
    why = f"RA-SAE {ra:.4f}, TopK {tk:.4f} (chance {ident['chance']:.4f})"
    measured = {"ra_sae": ra, "topk": tk, "chance": ident["chance"]}
    return _target(name, claim, measured, ok, why, [ra, tk])


def flat_target(flat: dict | None) -> dict:
    """The best architecture's MMCS on the flat synthetic suite >= 0.95."""
    claim = f"best architecture on the flat synthetic suite: MMCS >= {MMCS_MIN}"
    if flat is None:
        return _missing("flat_best_mmcs", claim, "the flat suite")
    best = flat["best_mmcs"]
    ok = best["mmcs"] >= MMCS_MIN
    why = f"best is {best['variant']} with MMCS {best['mmcs']:.4f}"
    return _target("flat_best_mmcs", claim, dict(best), ok, why, [best["mmcs"]])


def all_targets(results: dict) -> list[dict]:
    """Every target of the issue, in its order."""
    suites = results["suites"]
    return [
        *world_targets(suites.get("world")),
        stability_target(suites.get("stability")),
        identifiability_target(suites.get("identifiability")),
        flat_target(suites.get("flat")),
    ]

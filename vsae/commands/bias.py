"""``vsae bias``: which named SAE concepts a linear probe leans on, by intervention, and the
probe's per-group accuracy with the top spurious concepts removed (docs/bias.md)."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``bias``.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The ``vsae`` command's sub-parsers.
    """
    p = sub.add_parser(
        "bias",
        help="bias analysis: the concepts a classifier leans on, by intervention",
        description=(
            "Bias analysis with SAE concepts. Embeds the images with the SAE's model, trains "
            "a logistic-regression probe for the target (or reads --probe), switches every "
            "named concept of the SAE's concepts.json off (and on) with the SAE's error term "
            "kept, re-runs the probe, ranks the concepts by the accuracy gain of switching "
            "them off (the logit change and flips beside it), flags the spurious ones by "
            "bootstrap intervals, and evaluates the probe per group with the top spurious "
            "concepts removed. Writes report.md, bias.json, effects.png, accuracy.png and "
            "the probe into --out. Example (CelebA): vsae bias --sae runs/sae --data "
            "img_align_celeba/ --labels list_attr_celeba.txt --target Blond_Hair=1 "
            "--group Male --out runs/bias"
        ),
    )
    p.add_argument(
        "--sae",
        required=True,
        metavar="DIR",
        help="SAE folder with concepts.json (run `vsae concepts name DIR` first)",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="IMAGES|SHARDS",
        help="the analysed images: world:N:SEED, an image folder, .tar image shards, or an "
        "activation-shard folder of `vsae extract` (its stored vectors are the embeddings)",
    )
    p.add_argument(
        "--labels",
        default=None,
        metavar="FILE",
        help="per-image attributes of --data: labels.jsonl (vsae world export), CelebA's "
        "list_attr_celeba.txt, or a CSV with a header whose first column is the file name "
        "(default: the labels the data carries, e.g. world renders or a folder's labels.jsonl)",
    )
    p.add_argument(
        "--target",
        required=True,
        metavar="ATTR=VALUE",
        help="what the probe predicts, e.g. shape=circle or Blond_Hair=1",
    )
    p.add_argument(
        "--group",
        default=None,
        metavar="ATTR",
        help="group attribute; evaluation groups are its values x target or not (e.g. colour)",
    )
    p.add_argument(
        "--probe",
        default=None,
        metavar="FILE",
        help="a probe to analyse instead of training one: safetensors with 'weight' [D] (or "
        "[1, D]) and optional 'bias' [1]",
    )
    p.add_argument(
        "--train-data",
        default=None,
        metavar="IMAGES|SHARDS",
        help="the probe's training images (default: without --probe, --data is split in "
        "halves: the probe trains on one, the analysis uses the other)",
    )
    p.add_argument("--train-labels", default=None, metavar="FILE", help="labels of --train-data")
    p.add_argument(
        "--remove",
        nargs="+",
        default=None,
        metavar="NAME",
        help="concepts to remove for debiasing (default: the top --n-remove spurious ones)",
    )
    p.add_argument(
        "--n-remove",
        type=int,
        default=1,
        help="how many top spurious concepts to remove without --remove (default: %(default)s)",
    )
    p.add_argument(
        "--l2",
        type=float,
        default=0.01,
        help="L2 penalty of the trained probe on standardised features (default: %(default)s)",
    )
    p.add_argument(
        "--unbalanced",
        action="store_true",
        help="train the probe without weighting the two classes equally",
    )
    p.add_argument(
        "--n-boot", type=int, default=200, help="bootstrap replicates (default: %(default)s)"
    )
    p.add_argument(
        "--level", type=float, default=0.95, help="interval coverage (default: %(default)s)"
    )
    p.add_argument(
        "--min-group",
        type=int,
        default=30,
        help="smaller groups are warned about and get intervals over the whole range "
        "(default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap and split seed")
    p.add_argument(
        "--model", default=None, help="the SAE's model spec (default: the SAE's provenance)"
    )
    p.add_argument("--pretrained", default=None, help="weights tag or path of --model")
    p.add_argument(
        "--hookpoint", default=None, help="the SAE's hookpoint (default: provenance, or image)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="report folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the analysis, write the report and print a summary.

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    int
        0.
    """
    import vsae
    from vsae.analysis import load_concepts, sae_model_spec
    from vsae.analysis.bias import BiasConfig, analyse_bias
    from vsae.analysis.bias_data import load_embeddings
    from vsae.analysis.bias_labels import BiasError
    from vsae.analysis.bias_probe import ProbeConfig, load_probe

    if args.train_labels and not args.train_data:
        raise BiasError("--train-labels needs --train-data")
    if args.probe and args.train_data:
        raise BiasError("give --probe or --train-data, not both (a given probe is not trained)")
    table = load_concepts(args.sae)
    sae = vsae.load(args.sae)
    spec = sae_model_spec(args.sae, args.model, args.pretrained, args.hookpoint)
    progress = not args.no_progress
    probe = load_probe(args.probe) if args.probe else None
    x, _, labels = load_embeddings(args.data, spec, args.labels, progress)
    train_x = train_labels = None
    if args.train_data:
        train_x, _, train_labels = load_embeddings(
            args.train_data, spec, args.train_labels, progress
        )
    cfg = BiasConfig(
        n_boot=args.n_boot,
        level=args.level,
        min_group=args.min_group,
        n_remove=args.n_remove,
        probe=ProbeConfig(l2=args.l2, balanced=not args.unbalanced),
        split_seed=args.seed,
        seed=args.seed,
    )
    res = analyse_bias(
        sae,
        x,
        labels,
        args.target,
        group=args.group,
        concepts=table,
        probe=probe,
        train_x=train_x,
        train_labels=train_labels,
        remove=args.remove,
        cfg=cfg,
        progress=progress,
    )
    report = res.write(args.out)
    summary = {
        "report": str(report),
        "target": res.target,
        "group": res.group,
        "n_images": res.n_images,
        "n_train": res.n_train,
        "top_concepts": [
            {"name": e.name, "gain": e.off.gain, "logit": e.off.logit, "flagged": e.flagged}
            for e in res.effects[:5]
        ],
        "spurious": res.spurious,
        "removed": res.removed,
        "accuracy": {
            "before": {"overall": res.before.overall, "worst": res.before.worst},
            "after": {"overall": res.after.overall, "worst": res.after.worst},
            "worst_group_before": res.before.worst_group,
            "worst_group_after": res.after.worst_group,
        },
        "warnings": res.warnings,
    }
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"spurious concepts: {', '.join(res.spurious) or 'none'}")
    print(
        f"accuracy {res.before.overall:.3f} -> {res.after.overall:.3f}, worst group "
        f"{res.before.worst_group} {res.before.worst:.3f} -> {res.after.worst_group} "
        f"{res.after.worst:.3f} (removed: {', '.join(res.removed) or 'nothing'})"
    )
    print(f"report: {report}")
    return 0

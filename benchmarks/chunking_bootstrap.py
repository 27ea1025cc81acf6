"""Paired bootstrap over questions: is one matched row of chunking_eval.py ahead of another?

Run from the repository root after ``chunking_eval.py`` has found the matched knobs:

    python benchmarks/chunking_bootstrap.py ours:517 recursive:561
    python benchmarks/chunking_bootstrap.py ours:517 ours:489:paragraph_weight=8
    python benchmarks/chunking_bootstrap.py ours:252 recursive:263 --embeddings minilm \\
        --corpora state_of_the_union chatlogs wikitexts

A spec is ``ours:<max_tokens>[:field=JSON...]`` or ``recursive:<chunk_size>``. Each side is
scored exactly as a matched row of ``chunking_eval.py`` (per-question recall and IoU
averaged over the knob values within +-spread); the questions are then resampled with
replacement and the 95% interval of the mean difference (first minus second) printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._splitter_common import DATA, CachedEmbeddings, SplitFn, ours, recursive
from benchmarks.chunking_eval import chunk_all, eval_inputs, question_scores


def splitter(spec: str, emb: CachedEmbeddings, knob: int) -> SplitFn:
    name, _, *options = spec.split(":")
    if name == "recursive" and not options:
        return recursive(knob, 0, tokens=True)
    if name == "ours":
        extra = {k: json.loads(v) for k, v in (o.split("=", 1) for o in options)}
        return ours(emb, max_tokens=knob, **extra)
    raise SystemExit(f"spec: expected ours:<max_tokens>[:field=JSON] or recursive:<n>: {spec}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--embeddings", choices=["offline", "minilm"], default="offline")
    parser.add_argument("--corpora", nargs="*", default=None)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--spread", type=int, default=2)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    inputs = eval_inputs(args.data, args.embeddings, args.corpora)
    if inputs is None:
        return
    emb, texts, questions = inputs

    def side(spec: str) -> dict[str, np.ndarray]:
        knob = int(spec.split(":")[1])
        runs = [
            question_scores(
                chunk_all(splitter(spec, emb, knob + d), texts), texts, questions, emb, args.budget
            )
            for d in range(-args.spread, args.spread + 1)
        ]
        emb.save()
        return {k: 100 * np.mean([r[k] for r in runs], axis=0) for k in ("recall", "iou")}

    a, b = side(args.first), side(args.second)
    rng = np.random.default_rng(args.seed)
    picks = rng.integers(0, len(questions), size=(args.resamples, len(questions)))
    print(f"{args.first} minus {args.second}, {len(questions)} questions, {args.embeddings}:")
    for metric in ("recall", "iou"):
        diff = a[metric] - b[metric]
        lo, hi = np.percentile(diff[picks].mean(axis=1), [2.5, 97.5])
        print(
            f"  {metric:<6} {a[metric].mean():6.2f} vs {b[metric].mean():6.2f}  "
            f"diff {diff.mean():+.2f}  95% CI [{lo:+.2f}, {hi:+.2f}]"
        )


if __name__ == "__main__":
    main()

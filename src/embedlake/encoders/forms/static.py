"""Making the ``static`` form: model2vec distillation of the source (build time, needs torch).

Each token of the source's vocabulary goes through the transformer alone; its mean-pooled state is
its static vector. PCA to ``PCA_DIMS`` dimensions and Zipf (SIF) weighting follow, as model2vec does
by default. ``distill_from_model`` is called with a locally loaded model and tokenizer, so nothing
is looked up on the hub.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, cast

from embedlake.encoders.hub import offline
from embedlake.encoders.static import SERVING
from embedlake.errors import InputError

# model2vec's default: halves the vectors of a 384-dimensional MiniLM at no measured loss in
# top-10 overlap with the source (see docs/decisions/0012-serving-forms.md)
PCA_DIMS = 256


def make(
    source: Path, out: Path, *, form: str, max_seq_length: int, pca_dims: int = PCA_DIMS
) -> dict[str, Any]:
    offline()
    from model2vec.distill import distill_from_model
    from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerFast

    model = AutoModel.from_pretrained(str(source), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # model2vec and skeletoken deprecations, not ours
        try:
            static = distill_from_model(
                model,
                cast(PreTrainedTokenizerFast, tokenizer),
                pca_dims=pca_dims,
                device="cpu",
                quantize_to="float32",
            )
        except (ValueError, RuntimeError) as exc:
            raise InputError(f"{source}: model2vec distillation failed: {exc}") from exc
    static.save_pretrained(out)
    details = {
        "form": form,
        "precision": "fp32",
        "method": "model2vec.distill",
        "pca_dims": pca_dims,
    }
    (out / SERVING).write_text(json.dumps(details, indent=2) + "\n", encoding="utf-8")
    return {"dim": int(static.dim), **details}

"""CEandKLLosses reference for tests/test_ce_kl.c, computed by SPD's own metric class.

Writes tests/refs/eval/ce_kl_ref.safetensors: a small random LlamaSimple ComponentModel
(the spd-ref-v1 tensor names: target_model.*, _components.*, input.tokens), the CI of one
batch (input.ci.<dashed> [B, S, C]), the random draws SPD's metric took (recorded from
torch.rand_like / torch.rand in call order: draws.stoch.<dashed> [B, S, C] stochastic
sources, draws.delta.<dashed> [B, S] delta masks, draws.random.<dashed> [B, S, C] random
masks) and what CEandKLLosses._calc_ce_and_kl_losses returned (expected.ce_kl [16], in
its loss_keys order), plus expected.ce_target. Float64 throughout.

    PYTHONPATH=.peer/spd .torch/bin/python tests/refgen/make_ce_kl_refs.py
"""

import json
import os
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import wandb_standins  # noqa: E402,F401  (before SPD is imported)
import make_refs  # noqa: E402

OUT = HERE.parent / "refs" / "eval" / "ce_kl_ref.safetensors"

TC = {
    "model_type": "LlamaSimple",
    "vocab_size": 13,
    "n_layer": 1,
    "n_head": 2,
    "n_key_value_heads": 1,
    "n_embd": 8,
    "n_intermediate": 12,
    "n_ctx": 8,
    "rotary_base": 10000.0,
    "rms_norm_eps": 1e-6,
    "rotary_adjacent_pairs": False,
}
PATTERNS = [("h.0.mlp.up_proj", 3), ("h.0.attn.q_proj", 4)]
B, S = 2, 5
ROUNDING = 0.3


def main() -> None:
    torch.set_default_dtype(torch.float64)
    # SPD from PYTHONPATH's first entry, else the repository's .peer/spd.
    pp = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0]
    spd_path = Path(pp).resolve() if pp else make_refs.DEFAULT_SPD_PATH.resolve()
    spd = make_refs.import_spd(spd_path)
    commit = make_refs.spd_commit(spd_path)
    from spd.metrics.ce_and_kl_losses import CEandKLLosses

    gen = torch.Generator().manual_seed(2024)
    model = make_refs.build_target(spd, TC)
    make_refs.randomize_target(model, gen)
    tokens = torch.randint(0, TC["vocab_size"], (B, S), generator=gen, dtype=torch.int64)
    torch.manual_seed(5)
    cm = make_refs.build_component_model(spd, model, PATTERNS)
    paths = make_refs.execution_order(model, tokens, list(cm.components))
    C = {p: cm.components[p].C for p in paths}
    ci = {}
    for p in paths:
        v = torch.rand((B, S, C[p]), generator=gen, dtype=torch.float64)
        v[v < 0.25] = 0.0
        ci[p] = v

    # Record SPD's random draws, in call order (stochastic sources, delta masks, random masks).
    drawn = []
    real_rand_like, real_rand = torch.rand_like, torch.rand

    def rec_rand_like(t, *a, **k):
        out = real_rand_like(t, *a, **k)
        drawn.append(("rand_like", out.clone()))
        return out

    def rec_rand(*a, **k):
        out = real_rand(*a, **k)
        drawn.append(("rand", out.clone()))
        return out

    metric = CEandKLLosses(model=cm, device="cpu", sampling="continuous", rounding_threshold=ROUNDING)
    with torch.no_grad():
        target_out = cm(tokens)
        weight_deltas = cm.calc_weight_deltas()
        torch.rand_like, torch.rand = rec_rand_like, rec_rand
        try:
            out = metric._calc_ce_and_kl_losses(batch=tokens, target_out=target_out, ci=ci, weight_deltas=weight_deltas)
        finally:
            torch.rand_like, torch.rand = real_rand_like, real_rand
    L = len(paths)
    kinds = [k for k, _ in drawn]
    assert kinds == ["rand_like"] * L + ["rand"] * L + ["rand_like"] * L, kinds
    # Which module each draw belongs to: SPD iterates the ci dict, i.e. `paths` order.
    stoch = {p: drawn[i][1] for i, p in enumerate(paths)}
    delta = {p: drawn[L + i][1] for i, p in enumerate(paths)}
    rnd = {p: drawn[2 * L + i][1] for i, p in enumerate(paths)}

    flat = tokens.clone()
    flat[:, 0] = -100
    ce_target = torch.nn.functional.cross_entropy(target_out.flatten(0, 1)[:-1], flat.flatten()[1:], ignore_index=-100)

    tensors = {}
    for k, v in cm.state_dict().items():
        if k.startswith("_ci_fns.") or k == "target_model.lm_head.weight":
            continue
        tensors[k] = v.detach().clone().contiguous()
    tensors["input.tokens"] = tokens.clone()
    for p in paths:
        d = p.replace(".", "-")
        tensors[f"input.ci.{d}"] = ci[p].contiguous()
        tensors[f"draws.stoch.{d}"] = stoch[p].contiguous()
        tensors[f"draws.delta.{d}"] = delta[p].contiguous()
        tensors[f"draws.random.{d}"] = rnd[p].contiguous()
    tensors["expected.ce_kl"] = torch.tensor([out[k] for k in CEandKLLosses.loss_keys], dtype=torch.float64)
    tensors["expected.ce_target"] = ce_target.reshape(())
    metadata = {
        "format": "spd-ce-kl-ref-v1",
        "target_config": json.dumps(TC),
        "modules": json.dumps([{"path": p, "C": C[p]} for p in paths]),
        "rounding_threshold": repr(ROUNDING),
        "sampling": "continuous",
        "keys": json.dumps(CEandKLLosses.loss_keys),
        "generator": f"goodfire-ai/spd@{commit[:12]} CEandKLLosses._calc_ce_and_kl_losses, float64",
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    make_refs.save_deterministic(tensors, OUT, metadata)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes): modules {paths}")
    for k in CEandKLLosses.loss_keys:
        print(f"  {k:32s} {out[k]: .12e}")


if __name__ == "__main__":
    main()

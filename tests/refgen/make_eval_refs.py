"""Expected eval-metric values from SPD's own metric classes, for tests/test_eval.c.

Writes tests/refs/eval/eval_metrics_ref.json: fixed CI arrays (two modules, three eval
batches, float64) and what SPD's CI_L0 (with groups), ComponentActivationDensity,
CIMeanPerComponent (their accumulators: the figures are not compared),
ImportanceMinimalityLoss (eval: sums over all batches, annealed p) and IdentityCIError's
compute_target_metrics make of them. SPD's code is imported, not copied; wandb and
wandb_workspaces (only used for charts) are replaced by inert stand-ins (wandb_standins.py).

    cd /work/main   # or a worktree
    PYTHONPATH=.peer/spd .torch/bin/python tests/refgen/make_eval_refs.py
"""

import json
import os
import sys
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wandb_standins  # noqa: E402,F401

from spd.metrics.ci_l0 import CI_L0  # noqa: E402
from spd.metrics.ci_mean_per_component import CIMeanPerComponent  # noqa: E402
from spd.metrics.component_activation_density import ComponentActivationDensity  # noqa: E402
from spd.metrics.importance_minimality_loss import ImportanceMinimalityLoss  # noqa: E402
from spd.models.component_model import CIOutputs  # noqa: E402
from spd.utils.target_ci_solutions import compute_target_metrics, make_target_ci_solution  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "refs", "eval", "eval_metrics_ref.json")

torch.manual_seed(7)
names = ["h.0.mlp.up_proj", "h.1.attn.q_proj"]
Cs = {"h.0.mlp.up_proj": 4, "h.1.attn.q_proj": 3}
N, n_batches, thr = 6, 3, 0.1
groups = {"total": ["*"], "layer_0": ["h.0.*"], "attn": ["h.*.attn.*"], "none": ["x.*"]}
imp = dict(pnorm=1.5, beta=0.7, p_anneal_start_frac=0.2, p_anneal_final_p=0.8, p_anneal_end_frac=0.9)
frac = 0.5


def draw(shape):
    v = torch.rand(shape, dtype=torch.float64)
    v[v < 0.3] = 0.0  # exact zeros, as leaky-hard CI has
    return v


batches = []
for _ in range(n_batches):
    lower = {n: draw((N, Cs[n])) for n in names}
    upper = {n: lower[n] + 0.01 * torch.rand((N, Cs[n]), dtype=torch.float64) for n in names}
    pre = {n: torch.randn((N, Cs[n]), dtype=torch.float64) for n in names}
    batches.append(CIOutputs(lower_leaky=lower, upper_leaky=upper, pre_sigmoid=pre))

model = types.SimpleNamespace(target_module_paths=list(names), module_to_c=dict(Cs), components={n: None for n in names})
l0 = CI_L0(model=model, device="cpu", ci_alive_threshold=thr, groups=groups)
dens = ComponentActivationDensity(model=model, device="cpu", ci_alive_threshold=thr)
mean = CIMeanPerComponent(model=model, device="cpu")
imin = ImportanceMinimalityLoss(model=model, device="cpu", **imp)
for ci in batches:
    for m in (l0, dens, mean):
        m.update(ci=ci)
    imin.update(ci=ci, current_frac_of_training=frac)

l0_out = {k: float(v) for k, v in l0.compute().items() if k != "bar_chart"}
density = {n: (dens.component_activation_counts[n] / dens.n_examples).tolist() for n in names}
ci_mean = {n: (mean.component_ci_sums[n] / mean.examples_seen[n]).tolist() for n in names}
imp_value = float(imin.compute())

# IdentityCIError: CI of one-hot inputs [F, C] per module (identity on one, dense on the other).
F = 4
ident_ci = {}
g = torch.Generator().manual_seed(11)
a = torch.rand((F, 6), generator=g, dtype=torch.float64) * 0.15
for f in range(F):
    a[f, (2 * f + 1) % 6] = 0.85 + 0.15 * torch.rand((), generator=g, dtype=torch.float64)
a[1, 0] = 0.5  # off-diagonal entries above 0.1 and 0.2
a[3, 4] = 0.15
b = torch.rand((F, 5), generator=g, dtype=torch.float64) * 0.12
b[:, 2] = 0.95
b[0, 4] = 0.3
ident_ci = {"layers.0.mlp_in": a, "layers.0.mlp_out": b}
sol = make_target_ci_solution(identity_ci=[{"layer_pattern": "layers.*.mlp_in", "n_features": F}],
                              dense_ci=[{"layer_pattern": "layers.*.mlp_out", "k": 1}])
target = {k: int(v) for k, v in compute_target_metrics(causal_importances=ident_ci, target_solution=sol).items()}

ref = {
    "format": "spd-eval-metrics-ref-v1",
    "spd_commit": open(os.path.join(os.environ.get("PYTHONPATH", ".peer/spd").split(":")[0], "COMMIT")).read().strip()
    if os.path.exists(os.path.join(os.environ.get("PYTHONPATH", ".peer/spd").split(":")[0], "COMMIT")) else "unknown",
    "names": names,
    "C": [Cs[n] for n in names],
    "N": N,
    "threshold": thr,
    "groups": groups,
    "batches": [
        {"ci_lower": [ci.lower_leaky[n].flatten().tolist() for n in names],
         "ci_upper": [ci.upper_leaky[n].flatten().tolist() for n in names]}
        for ci in batches
    ],
    "importance_minimality": dict(imp, frac=frac, value=imp_value),
    "l0": l0_out,
    "density": [density[n] for n in names],
    "ci_mean": [ci_mean[n] for n in names],
    "identity": {
        "F": F,
        "names": list(ident_ci.keys()),
        "C": [ident_ci[k].shape[1] for k in ident_ci],
        "ci": [ident_ci[k].flatten().tolist() for k in ident_ci],
        "patterns": [["layers.*.mlp_in", "identity", F], ["layers.*.mlp_out", "dense", 1]],
        "want": target,
    },
}
os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, "w") as f:
    json.dump(ref, f, indent=1)
    f.write("\n")
print(f"wrote {os.path.normpath(OUT)}: l0 {l0_out}, importance {imp_value}, target {target}")

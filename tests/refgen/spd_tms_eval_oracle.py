#!/usr/bin/env python3
"""PyTorch SPD's own training and evaluation of a TMS 5-2 decomposition: the oracle for
`spd import` + `spd eval` (tests/cli_eval_oracle.sh).

    PYTHONPATH=.peer/spd .torch/bin/python tests/refgen/spd_tms_eval_oracle.py \
        --target TARGET.safetensors --out DIR [--steps 2000] [--batch-size 1024] [--n-eval-steps 20]

1. Training, all SPD's code: the TMS 5-2 target (a state dict written by `spd train-target
   --experiment tms_5-2`) loaded into SPD's TMSModel (tied), SPD's tms_5-2 config
   (configs/tms_5-2.yaml, SPD's own values) with a shorter schedule (--steps, --batch-size;
   evaluation at the last step only, metrics CI_L0 and IdentityCIError), SPD's data
   (SparseFeatureDataset, DatasetGeneratedDataLoader, as tms_decomposition.py builds them),
   SPD's save_pre_run_info (final_config.yaml, tms.pth) and spd.run_spd.optimize (seed, tied
   components, faithfulness warm-up, the loop, model_<steps>.pth). float32, CPU.
2. SPD's evaluation of that checkpoint, in float64 (the float32 checkpoint widened, as spd eval
   reads it): the ComponentModel rebuilt as ComponentModel.from_run_info does (target, module
   patterns, torch.load, handle_deprecated_state_dict_keys_, load_state_dict), then
     * spd.eval.evaluate with the config's IdentityCIError and CI_L0 (slow step) on
       --n-eval-steps fresh batches of eval_batch_size from SPD's dataset;
     * per-position L0 counts on the same batches (their mean is CI_L0; their standard error
       is the statistical tolerance: spd eval draws its own eval batches);
     * TMSAnalyzer (spd/experiments/tms/plotting.py): mean max cosine similarity (MMCS), mean
       L2 ratio (ML2R: its get_analysis_summary's formula; that method itself calls .item() on
       a per-feature tensor and fails at this SPD commit) and filter_significant_subnets'
       count with PlotConfig's subnet_norm_threshold (0.017).
   The deterministic metrics are also computed in float32 (SPD as it runs) to show how far
   float32 and float64 evaluations of the same checkpoint differ.
Writes DIR/oracle.json. wandb / wandb_workspaces / datasets are replaced by inert stand-ins
(wandb_standins.py; they play no part in the numbers).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import wandb_standins  # noqa: E402

wandb_standins.STUBS.add("datasets")  # spd.data imports it at module level (LM data only)


# wandb.plot.CustomChart must be a class (spd.eval and local_log test isinstance against it): a
# minimal one that holds CI_L0's bar-chart table, as local_log reads it (table.columns, table.data).
class CustomChart:
    def __init__(self, table=None, **_):
        self.table = table


class Table:
    def __init__(self, columns=None, data=None, **_):
        self.columns, self.data = columns, data


import wandb  # noqa: E402  (the stand-in)

_plot = types.ModuleType("wandb.plot")
_plot.CustomChart, _plot.bar = CustomChart, (lambda table, *a, **k: CustomChart(table))
_chart = types.ModuleType("wandb.plot.custom_chart")
_chart.CustomChart = CustomChart
sys.modules["wandb.plot"], sys.modules["wandb.plot.custom_chart"] = _plot, _chart
wandb.plot, wandb.Table = _plot, Table

import torch  # noqa: E402
import yaml  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from spd.configs import CI_L0Config, Config, IdentityCIErrorConfig  # noqa: E402
from spd.eval import evaluate  # noqa: E402
from spd.experiments.tms.configs import TMSModelConfig  # noqa: E402
from spd.experiments.tms.models import TMSModel  # noqa: E402
from spd.experiments.tms.plotting import PlotConfig, TMSAnalyzer  # noqa: E402
from spd.models.component_model import ComponentModel, handle_deprecated_state_dict_keys_  # noqa: E402
from spd.run_spd import optimize  # noqa: E402
from spd.utils.data_utils import DatasetGeneratedDataLoader, SparseFeatureDataset  # noqa: E402
from spd.utils.general_utils import save_pre_run_info, set_seed  # noqa: E402
from spd.utils.module_utils import expand_module_patterns  # noqa: E402


def make_config(target: Path, steps: int, batch: int, n_eval: int) -> Config:
    d = yaml.safe_load((REPO / "configs" / "tms_5-2.yaml").read_text())
    d.update(
        wandb_project=None,
        steps=steps,
        batch_size=batch,
        eval_batch_size=4096,
        eval_freq=steps,
        slow_eval_freq=steps,
        slow_eval_on_first_step=False,
        n_eval_steps=n_eval,
        train_log_freq=max(steps // 4, 1),
        pretrained_model_path=str(target),
        eval_metric_configs=[c for c in d["eval_metric_configs"] if c["classname"] in ("IdentityCIError", "CI_L0")],
    )
    return Config.model_validate(d)


def load_target(target: Path) -> TMSModel:
    sd = load_file(str(target))
    n_hidden, n_features = sd["linear1.weight"].shape
    cfg = TMSModelConfig(n_features=n_features, n_hidden=n_hidden, n_hidden_layers=0, tied_weights=True,
                         init_bias_to_zero=False, device="cpu")
    model = TMSModel(cfg)
    model.load_state_dict(sd)
    model.tie_weights_()
    return model


def dataset(model: TMSModel, config: Config) -> SparseFeatureDataset:
    return SparseFeatureDataset(n_features=model.config.n_features,
                                feature_probability=config.task_config.feature_probability, device="cpu",
                                data_generation_type=config.task_config.data_generation_type, value_range=(0.0, 1.0),
                                synced_inputs=None)


def train(target: Path, out: Path, config: Config) -> None:
    """tms_decomposition.main + run_spd.run_experiment, without wandb and the run-id directory."""
    set_seed(config.seed)
    model = load_target(target)
    model.eval()
    ds = dataset(model, config)
    train_loader = DatasetGeneratedDataLoader(ds, batch_size=config.batch_size, shuffle=False)
    eval_loader = DatasetGeneratedDataLoader(ds, batch_size=config.eval_batch_size, shuffle=False)
    save_pre_run_info(save_to_wandb=False, out_dir=out, spd_config=config, sweep_params=None, target_model=model,
                      train_config=model.config, task_name="tms")
    optimize(target_model=model, config=config, device="cpu", train_loader=train_loader, eval_loader=eval_loader,
             n_eval_steps=config.n_eval_steps, out_dir=out, tied_weights=[("linear1", "linear2")])


def load_checkpoint(target: Path, ckpt: Path, config: Config) -> ComponentModel:
    """ComponentModel.from_run_info's steps, in the current default dtype."""
    model = load_target(target)
    model.eval()
    model.requires_grad_(False)
    cm = ComponentModel(target_model=model, module_path_info=expand_module_patterns(model, config.all_module_info),
                        ci_fn_hidden_dims=config.ci_fn_hidden_dims, ci_fn_type=config.ci_fn_type,
                        pretrained_model_output_attr=config.pretrained_model_output_attr,
                        sigmoid_type=config.sigmoid_type)
    sd = torch.load(ckpt, map_location="cpu", weights_only=True)
    handle_deprecated_state_dict_keys_(sd)
    cm.load_state_dict(sd)
    return cm


def tms_metrics(cm: ComponentModel) -> dict:
    an = TMSAnalyzer(model=cm.target_model, components=cm.components, config=PlotConfig())
    _, max_cos, at_max = an.compute_cosine_similarities()
    w = cm.target_model.linear1.weight.T.detach()  # get_analysis_summary's L2 ratio
    ratio = torch.norm(at_max, dim=-1, keepdim=True) / torch.norm(w, dim=-1, keepdim=True)
    _, _, n_sig = an.filter_significant_subnets(an.extract_subnets())
    return {"mmcs/linear1": max_cos.mean().item(), "ml2r/linear1": ratio.mean().item(),
            "n_significant/linear1": int(n_sig)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--n-eval-steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    config = make_config(a.target.resolve(), a.steps, a.batch_size, 1)
    t0 = time.time()
    train(a.target, a.out, config)
    t_train = time.time() - t0
    ckpt = a.out / f"model_{config.steps}.pth"

    res: dict = {"step": config.steps, "checkpoint": ckpt.name, "train_s": round(t_train, 1)}
    res["float32"] = tms_metrics(load_checkpoint(a.target, ckpt, config))
    torch.set_default_dtype(torch.float64)  # SPD's eval helpers (torch.eye, the dataset) follow it
    cm = load_checkpoint(a.target, ckpt, config)
    assert cm.components["linear1"].V.dtype == torch.float64
    res.update(tms_metrics(cm))
    set_seed(1234)
    ds = dataset(cm.target_model, config)
    batches = [ds.generate_batch(config.eval_batch_size) for _ in range(a.n_eval_steps)]
    cfgs = [c for c in config.eval_metric_configs if isinstance(c, (CI_L0Config, IdentityCIErrorConfig))]
    with torch.no_grad():
        ev = evaluate(eval_metric_configs=cfgs, model=cm, eval_iterator=iter(batches), device="cpu", run_config=config,
                      slow_step=True, n_eval_steps=a.n_eval_steps, current_frac_of_training=1.0)
        counts: dict[str, list[torch.Tensor]] = {}
        for x, _ in batches:
            out = cm(x, cache_type="input")
            ci = cm.calc_causal_importances(pre_weight_acts=out.cache, sampling=config.sampling)
            for k, v in ci.lower_leaky.items():
                counts.setdefault(k, []).append((v > config.ci_alive_threshold).sum(-1).to(torch.float64))
    for k, v in ev.items():
        if isinstance(v, (int, float)):
            res[k] = v
    thr = config.ci_alive_threshold
    for k, c in counts.items():
        c = torch.cat(c)
        res[f"l0_mean/{k}"] = c.mean().item()
        res[f"l0_se/{k}"] = (c.std() / math.sqrt(c.numel())).item()
        assert abs(res[f"l0_mean/{k}"] - res[f"l0/{thr}_{k}"]) <= 1e-12 * max(1.0, res[f"l0_mean/{k}"])
    res["n_eval_positions"] = a.n_eval_steps * config.eval_batch_size
    (a.out / "oracle.json").write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

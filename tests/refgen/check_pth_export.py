#!/usr/bin/env python3
"""Checks `spd export --format pth` against PyTorch SPD itself (run by tests/cli_pth.sh where the
.torch venv and SPD's source at .peer/spd exist; see README.md here for the setup).

    check_pth_export.py [--spd-path DIR] RUN_DIR STEP OUT_DIR

RUN_DIR holds a tied-TMS run of `spd train` (ci_fn_type mlp, no hidden layers) with model_STEP.pth
written by `spd export`. Prints TAP-style "ok - ..." / "not ok - ..." lines:
  * torch.load(weights_only=True) reads it, Python's zipfile finds every CRC right, and the tied
    weights share one storage as SPD's tie_weights_ / optimize leave them (and the component bias
    the target's bias, as SPD registers it);
  * SPD's Config validates the run's final_config.yaml, and the ComponentModel SPD builds from it
    (TMSModel target, float64) accepts the state dict with load_state_dict(strict=True), every
    tensor bit for bit;
  * FaithfulnessLoss over SPD's weight deltas of the loaded model equals the C run's logged value
    at STEP (float64; SPD's own function within float32 rounding, its accumulator being float32);
then writes for the C side (tests/test_pth_outputs.c and `spd import`):
  * OUT_DIR/io.safetensors: an input batch x and what SPD's loaded model computes from it: the
    target output, the CI functions' outputs and the causal importances (lower leaky) per module, the output with all
    components (masks of ones) and with the CI as masks;
  * OUT_DIR/model_STEP.pth: SPD's own torch.save of the loaded model's state_dict() (components
    tied as optimize ties them), with final_config.yaml beside it, for `spd import`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_train_refs as mtr  # noqa: E402  (SPD import with stubs, build_component_model, tie_components)

fails = 0


def report(ok: bool, name: str, why: str = "") -> None:
    global fails
    print(("ok - " if ok else "not ok - ") + name + ("" if ok or not why else f": {why}"), flush=True)
    fails += not ok


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spd-path", default=str(mtr.DEFAULT_SPD_PATH))
    ap.add_argument("run_dir")
    ap.add_argument("step", type=int)
    ap.add_argument("out_dir")
    a = ap.parse_args()
    run, out = Path(a.run_dir), Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    spd = mtr.import_spd(Path(a.spd_path))
    import torch
    import yaml
    from safetensors.torch import save_file

    pth = run / f"model_{a.step}.pth"
    sd = torch.load(pth, weights_only=True)
    report(isinstance(sd, dict) and len(sd) > 0, "torch.load(weights_only=True) reads the export")
    with zipfile.ZipFile(pth) as z:
        report(z.testzip() is None, "Python's zipfile: every entry's CRC-32 is right")
    w1, w2 = sd["target_model.linear1.weight"], sd["target_model.linear2.weight"]
    v1, u1 = sd["_components.linear1.V"], sd["_components.linear1.U"]
    v2, u2 = sd["_components.linear2.V"], sd["_components.linear2.U"]
    b2, cb2 = sd["target_model.linear2.bias"], sd["_components.linear2.bias"]

    def shares(a_, b_):
        return a_.untyped_storage().data_ptr() == b_.untyped_storage().data_ptr()

    report(
        shares(w1, w2) and torch.equal(w2, w1.T) and shares(u2, v1) and shares(v2, u1) and not w2.is_contiguous()
        and shares(b2, cb2),
        "tied target weights and tied components share one storage (transposed views), the component bias the "
        "target's, as in SPD",
    )

    cfg_dict = yaml.safe_load((run / "final_config.yaml").read_text())
    config = mtr.parse_config(spd, cfg_dict)
    report(True, "SPD's Config validates the run's final_config.yaml")

    n_hidden, n_features = w1.shape
    n_hl = len({k.split(".")[2] for k in sd if k.startswith("target_model.hidden_layers.")})
    tc = dict(model_type="TMSModel", n_features=n_features, n_hidden=n_hidden, n_hidden_layers=n_hl,
              tied_weights=True, init_bias_to_zero=False)
    target = mtr.build_target(spd, tc)
    cm = mtr.build_component_model(spd, target, config).to(torch.float64)
    try:
        res = cm.load_state_dict(sd, strict=True)
        report(not res.missing_keys and not res.unexpected_keys, "ComponentModel.load_state_dict(strict=True) accepts it")
    except RuntimeError as e:
        report(False, "ComponentModel.load_state_dict(strict=True) accepts it", str(e).replace("\n", " ")[:400])
        return 1
    loaded = cm.state_dict()
    same = all(torch.equal(loaded[k], sd[k].to(loaded[k].dtype)) for k in sd) and set(loaded) == set(sd)
    report(same, "the loaded model holds every exported tensor bit for bit")

    # SPD's faithfulness_loss accumulates into a float32 zero (torch.tensor(0.0)), so it is compared at
    # float32's rounding; the same sum over SPD's weight deltas in float64 must match to 1e-12.
    import importlib

    deltas = cm.calc_weight_deltas()
    faith32 = importlib.import_module("spd.metrics.faithfulness_loss").faithfulness_loss(deltas).item()
    faith64 = (sum((d**2).sum() for d in deltas.values()) / sum(d.numel() for d in deltas.values())).item()
    logged = None
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("step") == a.step and "train/loss/FaithfulnessLoss" in rec:
            logged = rec["train/loss/FaithfulnessLoss"]
    if logged is None:
        report(False, "C run logged FaithfulnessLoss at the step", f"no train/loss/FaithfulnessLoss at step {a.step}")
    else:
        r64 = abs(faith64 - logged) / max(abs(logged), 1e-300)
        r32 = abs(faith32 - logged) / max(abs(logged), 1e-300)
        report(r64 < 1e-12, f"FaithfulnessLoss over SPD's weight deltas of the loaded model (float64) = the C run's logged value (rel {r64:.1e})")
        report(r32 < 2.0**-22, f"SPD's faithfulness_loss (float32 accumulator) = the C run's within float32 rounding (rel {r32:.1e})")

    # Outputs of SPD's loaded model on a fixed sparse batch, for the C side.
    g = torch.Generator().manual_seed(1234)
    x = torch.rand(64, n_features, generator=g, dtype=torch.float64)
    x = x * (torch.rand(64, n_features, generator=g, dtype=torch.float64) < 0.3)
    with torch.no_grad():
        o = cm(x, cache_type="input")
        ci_out = cm.calc_causal_importances(o.cache, sampling="continuous")
        ci = ci_out.lower_leaky
        make = importlib.import_module("spd.models.components").make_mask_infos
        ones = {k: torch.ones_like(v) for k, v in ci.items()}
        comp_ones = cm(x, mask_infos=make(ones))
        comp_ci = cm(x, mask_infos=make(ci))
    io = {"x": x, "target_out": o.output, "comp_ones": comp_ones, "comp_ci": comp_ci}
    for k, v in ci.items():
        io[f"ci.{k}"] = v
        io[f"pre_sigmoid.{k}"] = ci_out.pre_sigmoid[k]
    save_file({k: v.contiguous() for k, v in io.items()}, out / "io.safetensors", metadata={"format": "pt"})

    # SPD's own checkpoint of the loaded model, tied as optimize ties (shared storages).
    mtr.tie_components(cm, [("linear1", "linear2")])
    torch.save(cm.state_dict(), out / f"model_{a.step}.pth")
    shutil.copy(run / "final_config.yaml", out / "final_config.yaml")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())

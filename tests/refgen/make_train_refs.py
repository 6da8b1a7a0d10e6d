#!/usr/bin/env python3
"""Generate spd-ref-train-v1 reference files (one SPD training step, or a short run) with the
real PyTorch SPD code (goodfire-ai/spd), for `spd check` against the C trainer.

Format: docs/spd-ref-train-v1.md. Setup (SPD at .peer/spd, the .torch venv): README.md here.

The maths is SPD's own. One training step is the body of `spd.run_spd.optimize`'s loop, written
out here with SPD's functions: `get_scheduled_value` (lr), `ComponentModel.calc_weight_deltas`,
the clean forward with `cache_type="input"`, `ComponentModel.calc_causal_importances`,
`spd.losses.compute_total_loss`, `backward`, torch's `clip_grad_norm_` per group and
`optim.AdamW(weight_decay=0)` as `optimize` builds them; the faithfulness warm-up is SPD's
`run_faithfulness_warmup`. Tied TMS components are tied as `optimize` ties them.

Because C and torch random streams differ, every random draw the step consumes is supplied.
SPD's code calls torch.rand / rand_like / randint in four modules; each of those modules'
global name `torch` is replaced by a proxy that forwards everything to torch except those three
functions, which return named, pre-drawn tensors (recorded from a seeded generator when a file
is made, read back from the file when it is checked). Which draw a call is (loss term, mask
sample, module) is known from thin wrappers around SPD's functions that only count calls:
the loss functions as `compute_total_loss` calls them, `calc_stochastic_component_mask_info`,
`pgd_masked_recon_loss_update`, the subset routers' `get_masks` and
`calc_causal_importances`. A guard checks that the global torch RNG is untouched by a step
(so no draw escaped the proxies).

Usage:
    make_train_refs.py [--spd-path DIR] [--out-dir DIR] [CASE ...]   # generate (default: all)
    make_train_refs.py --list
    make_train_refs.py --reproduce FILE ...  # rebuild from FILE alone, rerun twice, compare
    make_train_refs.py --selftest            # SPD_SPEC.md section 12 golden values
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import math
import os
import sys
import types
from collections import OrderedDict
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
DEFAULT_SPD_PATH = REPO_ROOT / ".peer" / "spd"
DEFAULT_OUT_DIR = REPO_ROOT / "tests" / "refs" / "train"
sys.path.insert(0, str(HERE))

import make_refs  # noqa: E402  (our spd-ref-v1 generator: SPD import, LlamaSimple float64 widening)

FORMAT = "spd-ref-train-v1"

# ============================================================================================
# Importing SPD
# ============================================================================================


class _StubMeta(type):
    """Any attribute of a stubbed module is a class; any attribute of that is a class too
    (so `float | wandb.plot.CustomChart` in an annotation works). Calling one fails."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _StubMeta(name, (), {})

    def __call__(cls, *a, **k):
        raise RuntimeError(f"stubbed {cls.__name__} used")


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _StubMeta(name, (), {})


class _StubLoader(importlib.abc.Loader):
    def create_module(self, spec):
        m = _StubModule(spec.name)
        m.__path__ = []
        return m

    def exec_module(self, module):
        pass


class _StubFinder(importlib.abc.MetaPathFinder):
    def __init__(self, tops):
        self.tops = set(tops)

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.tops:
            return importlib.machinery.ModuleSpec(fullname, _StubLoader(), is_package=True)
        return None


# Imported by SPD's training/metrics modules at module level, no part of the maths.
STUB_IF_MISSING = ["wandb", "wandb_workspaces", "datasets"]


def import_spd(spd_path: Path) -> types.SimpleNamespace:
    missing = [t for t in STUB_IF_MISSING if importlib.util.find_spec(t) is None]
    if missing:
        sys.meta_path.append(_StubFinder(missing))
    base = make_refs.import_spd(spd_path)  # sys.path, SPD_OUT_DIR, LlamaSimple
    ns = types.SimpleNamespace(**base)
    ns.stubbed = missing
    for name in [
        "spd.configs",
        "spd.losses",
        "spd.routing",
        "spd.run_spd",
        "spd.utils.component_utils",
        "spd.utils.general_utils",
        "spd.utils.module_utils",
        "spd.metrics.pgd_utils",
        "spd.metrics.stochastic_recon_loss",
        "spd.metrics.stochastic_recon_layerwise_loss",
        "spd.metrics.stochastic_recon_subset_loss",
        "spd.metrics.stochastic_hidden_acts_recon_loss",
        "spd.metrics.pgd_masked_recon_loss",
        "spd.metrics.pgd_masked_recon_subset_loss",
        "spd.metrics.pgd_masked_recon_layerwise_loss",
        "spd.metrics.importance_minimality_loss",
        "spd.models.component_model",
        "spd.identity_insertion",
        "spd.experiments.tms.models",
        "spd.experiments.tms.configs",
        "spd.experiments.resid_mlp.models",
        "spd.experiments.resid_mlp.configs",
        "spd.utils.data_utils",
    ]:
        setattr(ns, name.replace(".", "_"), importlib.import_module(name))
    return ns


# ============================================================================================
# Draw injection
# ============================================================================================


def dashed(path: str) -> str:
    return path.replace(".", "-")


class DrawSource:
    """Named random draws for SPD's sampling calls.

    mode "record": each draw is made from `gen` (float32 uniforms widened to float64, so that the
    C side's float32 draw tensors can hold them exactly) and stored under its name;
    mode "replay": each draw is read from `store` by name (missing or mis-shaped: error).
    """

    def __init__(self, mode: str, store: dict | None = None, gen=None):
        assert mode in ("record", "replay")
        self.mode = mode
        self.store: OrderedDict = OrderedDict() if store is None else store
        self.gen = gen
        self.prefix = "draws."
        self.used: list[str] = []
        self.reset_step()

    def reset_step(self):
        self.loss_index = -1
        self.sample = -1
        self.mask_layers: list[str] = []
        self.n_r = 0
        self.n_delta = 0
        self.ci_layers: list[str] = []
        self.n_jitter = 0
        self.pgd_modules: list[str] = []
        self.n_pgd = 0
        self.router = None  # ("uniform_k" | "static", module_names)
        self.n_static = 0
        self.term_values: dict[int, object] = {}
        self.pgd_margin = math.inf
        self.active = False

    # -- names ------------------------------------------------------------------------------
    def name(self, *parts: str) -> str:
        return self.prefix + ".".join(parts)

    def loss_sample(self) -> tuple[str, str]:
        assert self.loss_index >= 0, "draw outside a loss term"
        return str(self.loss_index), str(max(self.sample, 0))

    # -- drawing ----------------------------------------------------------------------------
    def take(self, name: str, shape, kind: str):
        import torch

        shape = tuple(int(s) for s in shape)
        if not self.active:
            raise RuntimeError(f"unexpected draw {name} outside an injected step")
        if self.mode == "record":
            if name in self.store:
                raise RuntimeError(f"draw {name} made twice")
            if kind == "uniform":
                t = torch.rand(shape, generator=self.gen, dtype=torch.float32).to(torch.float64)
            elif kind == "bit":
                t = torch.randint(0, 2, shape, generator=self.gen).to(torch.float64)
            elif kind.startswith("k:"):
                L = int(kind[2:])
                t = torch.randint(1, L + 1, shape, generator=self.gen, dtype=torch.int64)
            else:
                raise ValueError(kind)
            self.store[name] = t
        else:
            if name not in self.store:
                raise KeyError(f"draw {name} not supplied")
            t = self.store[name]
            if tuple(t.shape) != shape:
                raise ValueError(f"draw {name}: shape {tuple(t.shape)}, SPD asks for {shape}")
        self.used.append(name)
        return t.clone()

    def put_derived(self, name: str, t):
        """Store a value derived from draws (routing decisions); in replay mode check it."""
        if self.mode == "record":
            self.store[name] = t.clone()
        else:
            ref = self.store.get(name)
            if ref is None or not bool((ref == t).all()) or ref.shape != t.shape:
                raise RuntimeError(f"derived {name} differs from the file")
        self.used.append(name)


def _shape_arg(args, kwargs, key="size"):
    if key in kwargs:
        s = kwargs[key]
    elif len(args) == 1 and isinstance(args[0], (tuple, list)):  # torch.Size is a tuple
        s = args[0]
    else:
        s = args
    return tuple(int(x) for x in s)


class TorchProxy:
    """Stands in for the module `torch` inside one SPD module; overrides a few functions."""

    def __init__(self, real, **overrides):
        self.__dict__["_real"] = real
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(self._real, name)


INSTALLED: dict = {}


def install_draw_hooks(spd) -> None:
    """Patch SPD's sampling call sites (once per process); the current DrawSource is
    INSTALLED["src"]."""
    import torch

    if INSTALLED.get("done"):
        return
    INSTALLED["done"] = True

    def src() -> DrawSource:
        s = INSTALLED.get("src")
        if s is None or not s.active:
            raise RuntimeError("SPD drew a random number outside an injected step")
        return s

    # --- spd.models.component_model: binomial CI jitter, torch.rand_like(ci_fn_output)
    def cm_rand_like(x, *a, **k):
        s = src()
        layer = s.ci_layers[s.n_jitter]
        s.n_jitter += 1
        t = s.take(s.prefix + f"ci_jitter.{dashed(layer)}", x.shape, "uniform")
        return t.to(dtype=x.dtype)

    spd.spd_models_component_model.torch = TorchProxy(torch, rand_like=cm_rand_like)

    CM = spd.spd_models_component_model.ComponentModel
    orig_calc_ci = CM.calc_causal_importances

    def calc_ci(self, pre_weight_acts, sampling, detach_inputs=False):
        s = INSTALLED.get("src")
        if s is not None and s.active:
            s.ci_layers = list(pre_weight_acts.keys())
            s.n_jitter = 0
        out = orig_calc_ci(self, pre_weight_acts=pre_weight_acts, sampling=sampling, detach_inputs=detach_inputs)
        if s is not None and s.active:
            assert s.n_jitter in (0, len(s.ci_layers))
        return out

    CM.calc_causal_importances = calc_ci

    # --- spd.utils.component_utils: masks r (rand_like / randint(0, 2)), delta masks (rand)
    def cu_rand_like(ci, *a, **k):
        s = src()
        i, smp = s.loss_sample()
        layer = s.mask_layers[s.n_r]
        s.n_r += 1
        return s.take(s.name(i, smp, dashed(layer), "r"), ci.shape, "uniform").to(ci.dtype)

    def cu_randint(low, high, size, *a, **k):
        assert (low, high) == (0, 2), (low, high)
        s = src()
        i, smp = s.loss_sample()
        layer = s.mask_layers[s.n_r]
        s.n_r += 1
        return s.take(s.name(i, smp, dashed(layer), "r"), size, "bit").to(torch.int64)

    def cu_rand(*args, **kwargs):
        s = src()
        i, smp = s.loss_sample()
        layer = s.mask_layers[s.n_delta]
        s.n_delta += 1
        shape = _shape_arg(args, kwargs)
        dtype = kwargs.get("dtype") or torch.get_default_dtype()
        return s.take(s.name(i, smp, dashed(layer), "delta"), shape, "uniform").to(dtype)

    cu = spd.spd_utils_component_utils
    cu.torch = TorchProxy(torch, rand_like=cu_rand_like, randint=cu_randint, rand=cu_rand)
    orig_mask_info = cu.calc_stochastic_component_mask_info

    def mask_info(causal_importances, component_mask_sampling, weight_deltas, router):
        s = src()
        s.sample += 1
        s.mask_layers = list(causal_importances.keys())
        s.n_r = 0
        s.n_delta = 0
        out = orig_mask_info(
            causal_importances=causal_importances,
            component_mask_sampling=component_mask_sampling,
            weight_deltas=weight_deltas,
            router=router,
        )
        assert s.n_r == len(s.mask_layers) and s.n_delta in (0, len(s.mask_layers))
        return out

    for mod in [
        spd.spd_metrics_stochastic_recon_loss,
        spd.spd_metrics_stochastic_recon_layerwise_loss,
        spd.spd_metrics_stochastic_recon_subset_loss,
        spd.spd_metrics_stochastic_hidden_acts_recon_loss,
    ]:
        assert mod.calc_stochastic_component_mask_info is orig_mask_info
        mod.calc_stochastic_component_mask_info = mask_info

    # --- spd.routing: uniform_k (randint k, rand noise [L, ...]), static_probability (rand)
    def rt_randint(*args, **kwargs):
        s = src()
        kind, modules = s.router
        assert kind == "uniform_k"
        low, high = kwargs.get("low", args[0] if args else None), kwargs.get("high")
        assert low == 1 and high == len(modules) + 1, (low, high)
        i, smp = s.loss_sample()
        return s.take(s.name(i, smp, "routing", "k"), kwargs["size"], f"k:{len(modules)}")

    def rt_rand(*args, **kwargs):
        s = src()
        kind, modules = s.router
        i, smp = s.loss_sample()
        shape = _shape_arg(args, kwargs)
        if kind == "uniform_k":
            # rand_perm's noise [L, ...]: one tensor per module (order-free names)
            assert shape[0] == len(modules)
            if s.mode == "record":
                for _ in range(100):  # no rank ties (torch's argsort would break them arbitrarily)
                    rows = [torch.rand(shape[1:], generator=s.gen, dtype=torch.float32) for _ in modules]
                    st = torch.stack(rows)
                    srt = st.sort(dim=0).values
                    if not bool((srt[1:] == srt[:-1]).any()):
                        break
                for m, row in zip(modules, rows):
                    s.store[s.name(i, smp, dashed(m), "route_noise")] = row.to(torch.float64)
            parts = []
            for m in modules:
                parts.append(s.take(s.name(i, smp, dashed(m), "route_noise"), shape[1:], "uniform"))
            return torch.stack(parts).to(torch.get_default_dtype())
        assert kind == "static"
        m = modules[s.n_static]
        s.n_static += 1
        return s.take(s.name(i, smp, dashed(m), "route_u"), shape, "uniform").to(torch.get_default_dtype())

    rt = spd.spd_routing
    rt.torch = TorchProxy(torch, randint=rt_randint, rand=rt_rand)

    def wrap_router(cls, kind):
        orig = cls.get_masks

        def get_masks(self, module_names, mask_shape):
            s = src()
            s.router = (kind, list(module_names))
            s.n_static = 0
            out = orig(self, module_names=module_names, mask_shape=mask_shape)
            i, smp = s.loss_sample()
            for m in module_names:
                s.put_derived(s.name(i, smp, dashed(m), "routed"), out[m].to(torch.uint8))
            s.router = None
            return out

        cls.get_masks = get_masks

    # Record mode takes the per-module noise itself (above); take() must then not redraw.
    wrap_router(rt.UniformKSubsetRouter, "uniform_k")
    wrap_router(rt.StaticProbabilityRouter, "static")

    # --- spd.metrics.pgd_utils: random source init, torch.rand(shape)
    def pgd_rand(*args, **kwargs):
        s = src()
        i, smp = s.loss_sample()
        m = s.pgd_modules[s.n_pgd]
        s.n_pgd += 1
        shape = _shape_arg(args, kwargs)
        return s.take(s.name(i, smp, dashed(m), "pgd_init"), shape, "uniform").to(torch.get_default_dtype())

    def pgd_grad(outputs, inputs, *a, **k):
        # torch.autograd.grad of the PGD source update: note how close a nonzero component is to
        # 0 relative to its tensor (sign(g) decides the step, so a near-zero g is fragile)
        gs = torch.autograd.grad(outputs, inputs, *a, **k)
        s = src()
        for g in gs:
            scale = g.abs().max().item()
            nz = g[g != 0].abs()
            if scale > 0 and nz.numel():
                s.pgd_margin = min(s.pgd_margin, nz.min().item() / scale)
        return gs

    pu = spd.spd_metrics_pgd_utils
    pu.torch = TorchProxy(torch, rand=pgd_rand,
                          autograd=types.SimpleNamespace(grad=pgd_grad))
    orig_pgd = pu.pgd_masked_recon_loss_update

    def pgd_update(*, model, **kw):
        s = src()
        s.sample += 1
        s.pgd_modules = list(model.target_module_paths)
        s.n_pgd = 0
        return orig_pgd(model=model, **kw)

    for mod in [
        spd.spd_metrics_pgd_masked_recon_loss,
        spd.spd_metrics_pgd_masked_recon_subset_loss,
        spd.spd_metrics_pgd_masked_recon_layerwise_loss,
    ]:
        assert mod.pgd_masked_recon_loss_update is orig_pgd
        mod.pgd_masked_recon_loss_update = pgd_update

    # --- spd.losses: which term compute_total_loss is evaluating, and its raw value
    lo = spd.spd_losses
    for fname in [
        "faithfulness_loss",
        "importance_minimality_loss",
        "unmasked_recon_loss",
        "ci_masked_recon_subset_loss",
        "ci_masked_recon_layerwise_loss",
        "ci_masked_recon_loss",
        "stochastic_recon_layerwise_loss",
        "stochastic_recon_loss",
        "stochastic_recon_subset_loss",
        "pgd_recon_loss",
        "pgd_recon_subset_loss",
        "pgd_recon_layerwise_loss",
        "stochastic_hidden_acts_recon_loss",
    ]:
        orig = getattr(lo, fname)

        def wrapped(*a, __orig=orig, **k):
            s = src()
            s.loss_index += 1
            s.sample = -1
            v = __orig(*a, **k)
            s.term_values[s.loss_index] = v.detach().clone()
            return v

        setattr(lo, fname, wrapped)


# In record mode the uniform_k noise is stored by rt_rand before take() reads it back; take()
# would refuse a name made twice, so route_noise goes through replay-style reading.
_orig_take = DrawSource.take


def _take(self, name, shape, kind):
    if self.mode == "record" and name.endswith(".route_noise") and name in self.store:
        self.used.append(name)
        return self.store[name].clone()
    return _orig_take(self, name, shape, kind)


DrawSource.take = _take


# ============================================================================================
# Targets
# ============================================================================================


def build_target(spd, tc: dict):
    import torch

    kind = tc["model_type"]
    if kind == "TMSModel":
        cfg = spd.spd_experiments_tms_configs.TMSModelConfig(
            n_features=tc["n_features"],
            n_hidden=tc["n_hidden"],
            n_hidden_layers=tc["n_hidden_layers"],
            tied_weights=tc["tied_weights"],
            init_bias_to_zero=tc["init_bias_to_zero"],
            device="cpu",
        )
        model = spd.spd_experiments_tms_models.TMSModel(cfg)
        model = model.to(torch.float64)  # TMSModel.to re-ties linear2.weight = linear1.weight.T
    elif kind == "ResidMLP":
        cfg = spd.spd_experiments_resid_mlp_configs.ResidMLPModelConfig(
            n_features=tc["n_features"],
            d_embed=tc["d_embed"],
            d_mlp=tc["d_mlp"],
            n_layers=tc["n_layers"],
            act_fn_name=tc["act_fn_name"],
            in_bias=tc["in_bias"],
            out_bias=tc["out_bias"],
        )
        model = spd.spd_experiments_resid_mlp_models.ResidMLP(cfg).to(torch.float64)
    elif kind == "LlamaSimple":
        model = make_refs.build_target(vars(spd), tc)
    elif kind == "Linear2":  # the SPD_SPEC.md section 12 toy (self-test only)
        model = Linear2Toy()
    else:
        raise ValueError(kind)
    model.eval()
    model.requires_grad_(False)
    return model


def Linear2Toy():
    import torch.nn as nn

    class Linear2(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(2, 3, bias=False)
            self.fc2 = nn.Linear(3, 2, bias=False)

        def forward(self, x):
            return self.fc2(self.fc1(x))

    return Linear2()


def target_state(model, tc: dict) -> dict:
    out = {}
    for k, v in model.state_dict().items():
        if tc["model_type"] == "LlamaSimple" and k == "lm_head.weight":
            continue  # tied to wte.weight (spd-ref-v1 convention)
        out[k] = v
    return out


def make_batch(spd, tc: dict, task: dict, B: int, T: int | None, gen_seed: int):
    import torch

    if tc["model_type"] == "LlamaSimple":
        g = torch.Generator().manual_seed(gen_seed)
        return torch.randint(0, tc["vocab_size"], (B, T), generator=g, dtype=torch.int64)
    # SPD's own toy data (SparseFeatureDataset, global RNG), rounded to float32 values
    torch.manual_seed(gen_seed)
    ds = spd.spd_utils_data_utils.SparseFeatureDataset(
        n_features=tc["n_features"],
        feature_probability=task["feature_probability"],
        device="cpu",
        data_generation_type=task.get("data_generation_type", "at_least_zero_active"),
        value_range=(0.0, 1.0),
    )
    x, _ = ds.generate_batch(B)
    return x.to(torch.float32).to(torch.float64)


# ============================================================================================
# Component model and one step
# ============================================================================================


def parse_config(spd, cfg_dict: dict):
    return spd.spd_configs.Config.model_validate(cfg_dict)


def config_yaml(config) -> str:
    import yaml

    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, default_flow_style=False)


def build_component_model(spd, target, config):
    """As spd.run_spd.optimize builds it (identity insertion, freeze, expand, ComponentModel)."""
    if config.identity_module_info is not None:
        spd.spd_identity_insertion.insert_identity_operations_(
            target, identity_module_info=config.identity_module_info
        )
    target.requires_grad_(False)
    infos = spd.spd_utils_module_utils.expand_module_patterns(target, config.all_module_info)
    cm = spd.spd_models_component_model.ComponentModel(
        target_model=target,
        module_path_info=infos,
        ci_fn_type=config.ci_fn_type,
        ci_fn_hidden_dims=config.ci_fn_hidden_dims,
        pretrained_model_output_attr=config.pretrained_model_output_attr,
        sigmoid_type=config.sigmoid_type,
    )
    return cm


def tie_components(cm, tied):
    """spd.run_spd.optimize's tying: tgt.U aliases src.V^T, tgt.V aliases src.U^T."""
    for src_name, tgt_name in tied or []:
        tgt = cm.components[tgt_name]
        src = cm.components[src_name]
        tgt.U.data = src.V.data.T
        tgt.V.data = src.U.data.T


def param_groups(cm):
    component_params, ci_fn_params = [], []
    for name in cm.target_module_paths:
        component_params.extend(cm.components[name].parameters())
        ci_fn_params.extend(cm.ci_fns[name].parameters())
    return component_params, ci_fn_params


def named_trainable(cm) -> "OrderedDict[str, object]":
    """State-dict name -> Parameter, for V, U and CI-fn parameters (module order)."""
    ids = {}
    for k, p in cm.named_parameters(remove_duplicate=False):
        if k.startswith(("_components.", "_ci_fns.")):
            ids[id(p)] = k
    out = OrderedDict()
    cp, fp = param_groups(cm)
    for p in cp + fp:
        out[ids[id(p)]] = p
    return out


def perturb_ci_fns(cm, gen):
    """Spread the CI functions' outputs over every region of the sigmoids (SPD inits biases 0)."""
    import torch

    with torch.no_grad():
        for name in cm.target_module_paths:
            layers = [m for m in cm.ci_fns[name].modules() if hasattr(m, "b") and hasattr(m, "W")]
            for j, lin in enumerate(layers):
                last = j == len(layers) - 1
                lin.b.copy_(0.5 * torch.randn(lin.b.shape, generator=gen) + (0.5 if last else 0.0))


def run_step(spd, cm, config, batch, step: int, draws: DrawSource, optimizer=None, groups=None,
             do_update=False):
    """One iteration of spd.run_spd.optimize's loop. Returns a dict of results."""
    import torch
    from torch.nn.utils import clip_grad_norm_

    gu = spd.spd_utils_general_utils
    trainable = named_trainable(cm)
    for p in trainable.values():
        p.grad = None
    if optimizer is not None:
        optimizer.zero_grad()
    lr = gu.get_scheduled_value(step=step, total_steps=config.steps, config=config.lr_schedule)
    if optimizer is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr

    rng_before = torch.random.get_rng_state()
    draws.reset_step()
    draws.active = True
    INSTALLED["src"] = draws
    try:
        weight_deltas = cm.calc_weight_deltas()
        with gu.bf16_autocast(enabled=config.autocast_bf16):
            out = cm(batch, cache_type="input")
            ci = cm.calc_causal_importances(
                pre_weight_acts=out.cache, detach_inputs=False, sampling=config.sampling
            )
            total, terms = spd.spd_losses.compute_total_loss(
                loss_metric_configs=config.loss_metric_configs,
                model=cm,
                batch=batch,
                ci=ci,
                target_out=out.output,
                weight_deltas=weight_deltas,
                pre_weight_acts=out.cache,
                current_frac_of_training=step / config.steps,
                sampling=config.sampling,
                use_delta_component=config.use_delta_component,
                n_mask_samples=config.n_mask_samples,
                output_loss_type=config.output_loss_type,
            )
        total.backward()
    finally:
        draws.active = False
        INSTALLED["src"] = None
    if not torch.equal(rng_before, torch.random.get_rng_state()):
        raise RuntimeError("SPD's step consumed the global torch RNG: a draw escaped injection")
    assert len(draws.term_values) == len(config.loss_metric_configs)

    kinks = []
    for k, pre in ci.pre_sigmoid.items():
        raw = pre.detach()
        if config.sampling == "binomial":
            raw = torch.cat([raw.flatten(), (1.05 * raw - 0.05 * draws.store[draws.prefix + f"ci_jitter.{dashed(k)}"]).flatten()])
        kinks.append(torch.minimum(raw.abs(), (raw - 1).abs()).min().item())
    res = {
        "kink_margin": min(kinks),
        "pgd_margin": draws.pgd_margin,
        "lr": float(lr),
        "total": total.detach().clone(),
        "terms": [draws.term_values[i] for i in range(len(config.loss_metric_configs))],
        "ci_lower": {k: v.detach().clone() for k, v in ci.lower_leaky.items()},
        "ci_upper": {k: v.detach().clone() for k, v in ci.upper_leaky.items()},
        "pre_sigmoid": {k: v.detach().clone() for k, v in ci.pre_sigmoid.items()},
        "target_out": out.output.detach().clone(),
        "grads": OrderedDict(),
    }
    for k, p in trainable.items():
        res["grads"][k] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)

    cp, fp = param_groups(cm)

    def gnorm(ps):
        gs = [p.grad for p in ps if p.grad is not None]
        if not gs:
            return torch.tensor(0.0)
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in gs]))

    res["grad_norm_components"] = gnorm(cp).detach().clone()
    res["grad_norm_ci_fns"] = gnorm(fp).detach().clone()
    if do_update:
        if config.grad_clip_norm_components is not None:
            clip_grad_norm_(cp, config.grad_clip_norm_components)
        if config.grad_clip_norm_ci_fns is not None:
            clip_grad_norm_(fp, config.grad_clip_norm_ci_fns)
        optimizer.step()
    return res


def make_optimizer(cm, config):
    import torch.optim as optim

    cp, fp = param_groups(cm)
    return optim.AdamW(cp + fp, lr=config.lr_schedule.start_val, weight_decay=0)


# ============================================================================================
# Cases
# ============================================================================================

TMS_52 = {
    "model_type": "TMSModel",
    "n_features": 5,
    "n_hidden": 2,
    "n_hidden_layers": 0,
    "tied_weights": True,
    "init_bias_to_zero": False,
}
RESID_1L = {
    "model_type": "ResidMLP",
    "n_features": 6,
    "d_embed": 4,
    "d_mlp": 5,
    "n_layers": 1,
    "act_fn_name": "relu",
    "in_bias": False,
    "out_bias": False,
}
RESID_2L_BIAS = dict(RESID_1L, n_layers=2, in_bias=True, out_bias=True)
LLAMA_2L = make_refs._cfg(
    vocab_size=29, n_layer=2, n_head=2, n_key_value_heads=1, n_embd=8, n_intermediate=12, n_ctx=8
)
LLAMA_ALL = make_refs.all_layer_modules(2)


def base_config(tc: dict, **kw) -> dict:
    d = {
        "wandb_project": None,
        "seed": 0,
        "autocast_bf16": False,
        "n_mask_samples": 1,
        "ci_fn_type": "mlp",
        "ci_fn_hidden_dims": [4],
        "sampling": "continuous",
        "sigmoid_type": "leaky_hard",
        "use_delta_component": True,
        "loss_metric_configs": [],
        "lr_schedule": {"start_val": 1e-3, "fn_type": "constant", "warmup_pct": 0.0, "final_val_frac": 1.0},
        "steps": 10,
        "train_log_freq": 1,
        "eval_freq": 10,
        "n_eval_steps": 1,
        "slow_eval_on_first_step": False,
        "eval_metric_configs": [],
        "ci_alive_threshold": 0.1,
    }
    if tc["model_type"] == "TMSModel":
        d.update(
            output_loss_type="mse",
            pretrained_model_class="spd.experiments.tms.models.TMSModel",
            task_config={"task_name": "tms", "feature_probability": 0.3,
                         "data_generation_type": "at_least_zero_active"},
            module_info=[{"module_pattern": "linear1", "C": 6}, {"module_pattern": "linear2", "C": 6}],
            batch_size=8,
        )
    elif tc["model_type"] == "ResidMLP":
        d.update(
            output_loss_type="mse",
            pretrained_model_class="spd.experiments.resid_mlp.models.ResidMLP",
            task_config={"task_name": "resid_mlp", "feature_probability": 0.3,
                         "data_generation_type": "at_least_zero_active"},
            module_info=[{"module_pattern": "layers.*.mlp_in", "C": 7},
                         {"module_pattern": "layers.*.mlp_out", "C": 5}],
            batch_size=8,
        )
    elif tc["model_type"] == "LlamaSimple":
        d.update(
            output_loss_type="kl",
            pretrained_model_class="spd.pretrain.models.llama_simple.LlamaSimple",
            pretrained_model_output_attr="idx_0",
            task_config={"task_name": "lm", "max_seq_len": 6},
            module_info=[{"module_pattern": p, "C": 3 + (k % 3)} for k, p in enumerate(LLAMA_ALL)],
            batch_size=2,
        )
    d.update(kw)
    return d


def IM(coeff, pnorm, beta=0.0, **kw):
    return {"classname": "ImportanceMinimalityLoss", "coeff": coeff, "pnorm": pnorm, "beta": beta, **kw}


def L(name, coeff=1.0, **kw):
    return {"classname": name, "coeff": coeff, **kw}


def PGD(name, init, n_steps, step_size, scope, coeff=1.0, **kw):
    return {"classname": name, "coeff": coeff, "init": init, "n_steps": n_steps,
            "step_size": step_size, "mask_scope": scope, **kw}


UK = {"type": "uniform_k_subset"}


def SP(p):
    return {"type": "static_probability", "p": p}


CASES: dict[str, dict] = {
    # TMS 5-2 as the reference config trains it (mlp CI, leaky_hard, delta, 1 sample).
    "train_tms_basic": {
        "target": TMS_52,
        "config": base_config(
            TMS_52,
            loss_metric_configs=[
                L("FaithfulnessLoss", 0.5),
                IM(3e-3, 1.0),
                L("StochasticReconLoss"),
                L("StochasticReconLayerwiseLoss"),
            ],
        ),
        "step": 0,
        "seed": 11,
    },
    # Binomial sampling (CI jitter + 0/1 masks), hard sigmoid, vector_mlp, 2 samples, every
    # stochastic loss, both subset routers (the class repeats), p annealing mid-way, beta > 0.
    "train_tms_stochastic": {
        "target": TMS_52,
        "config": base_config(
            TMS_52,
            ci_fn_type="vector_mlp",
            ci_fn_hidden_dims=[3],
            sampling="binomial",
            sigmoid_type="hard",
            n_mask_samples=2,
            loss_metric_configs=[
                IM(1e-2, 2.0, beta=0.5, p_anneal_start_frac=0.0, p_anneal_final_p=0.5,
                   p_anneal_end_frac=0.8),
                L("StochasticReconLoss"),
                L("StochasticReconLayerwiseLoss", 0.7),
                L("StochasticReconSubsetLoss", 0.9, routing=UK),
                L("StochasticReconSubsetLoss", 1.1, routing=SP(0.5)),
                L("StochasticHiddenActsReconLoss", 0.3),
            ],
        ),
        "step": 3,
        "seed": 12,
    },
    # PGD in all forms, CI-masked losses, unmasked; shared_mlp CI, upper_leaky_hard.
    "train_tms_pgd": {
        "target": TMS_52,
        "config": base_config(
            TMS_52,
            ci_fn_type="shared_mlp",
            ci_fn_hidden_dims=[5],
            sigmoid_type="upper_leaky_hard",
            loss_metric_configs=[
                PGD("PGDReconLoss", "random", 2, 0.1, "shared_across_batch"),
                # Not "ones": with the delta component, all-one sources reproduce the target exactly,
                # so the source gradient is rounding noise (~1e-18) and its sign is not reproducible.
                PGD("PGDReconLayerwiseLoss", "zeroes", 1, 0.2, "unique_per_datapoint", 0.5),
                PGD("PGDReconSubsetLoss", "zeroes", 2, 0.15, "unique_per_datapoint", 0.8, routing=UK),
                L("CIMaskedReconLoss", 0.4),
                L("CIMaskedReconLayerwiseLoss", 0.6),
                L("CIMaskedReconSubsetLoss", 0.7, routing=SP(0.5)),
                L("UnmaskedReconLoss", 0.2),
                IM(1e-3, 1.0, eps=1e-12),
            ],
        ),
        "step": 5,
        "seed": 13,
    },
    # ResidMLP (1 layer): no delta component, normal sigmoid, 2 samples, PGD without delta.
    "train_resid_mlp": {
        "target": RESID_1L,
        "config": base_config(
            RESID_1L,
            ci_fn_type="mlp",
            ci_fn_hidden_dims=[3, 2],
            sigmoid_type="normal",
            use_delta_component=False,
            n_mask_samples=2,
            loss_metric_configs=[
                L("FaithfulnessLoss", 0.1),
                IM(1e-3, 2.0),
                L("StochasticReconLoss"),
                L("StochasticReconLayerwiseLoss"),
                L("StochasticReconSubsetLoss", routing=UK),
                PGD("PGDReconSubsetLoss", "random", 1, 0.1, "shared_across_batch", routing=SP(0.6)),
                PGD("PGDReconLayerwiseLoss", "random", 1, 0.1, "unique_per_datapoint", 0.5),
                L("CIMaskedReconSubsetLoss", routing=UK),
                L("StochasticHiddenActsReconLoss", 0.5),
            ],
        ),
        "step": 7,
        "seed": 14,
    },
    # LlamaSimple, KL: swish_hard, shared_mlp, delta, PGD unique random init, beta > 0.
    "train_llama_kl": {
        "target": LLAMA_2L,
        "config": base_config(
            LLAMA_2L,
            ci_fn_type="shared_mlp",
            ci_fn_hidden_dims=[6],
            sigmoid_type="swish_hard",
            loss_metric_configs=[
                L("FaithfulnessLoss", 0.2),
                # p stays 1: swish_hard's ci_upper dips below 0 (to about -5e-5), where a
                # fractional p gives NaN in SPD
                IM(1e-2, 1.0, beta=0.25),
                L("StochasticReconLoss"),
                L("StochasticReconSubsetLoss", routing=UK),
                L("CIMaskedReconLoss", 0.5),
                L("UnmaskedReconLoss", 0.25),
                PGD("PGDReconLoss", "random", 1, 0.1, "unique_per_datapoint", 0.5),
                L("StochasticHiddenActsReconLoss", 0.1),
            ],
        ),
        "B": 2,
        "T": 6,
        "step": 4,
        "seed": 15,
    },
    # LlamaSimple, binomial sampling without delta, 2 samples, vector_mlp, layerwise losses.
    "train_llama_binomial": {
        "target": LLAMA_2L,
        "config": base_config(
            LLAMA_2L,
            ci_fn_type="vector_mlp",
            ci_fn_hidden_dims=[2],
            sampling="binomial",
            sigmoid_type="leaky_hard",
            use_delta_component=False,
            n_mask_samples=2,
            loss_metric_configs=[
                IM(1e-2, 1.5),
                L("StochasticReconLayerwiseLoss"),
                L("CIMaskedReconLayerwiseLoss", 0.5),
                L("CIMaskedReconSubsetLoss", 0.5, routing=UK),
                PGD("PGDReconLayerwiseLoss", "random", 1, 0.2, "shared_across_batch", 0.5),
                L("StochasticReconSubsetLoss", routing=SP(0.3)),
            ],
        ),
        "B": 2,
        "T": 5,
        "step": 9,
        "seed": 16,
    },
    # An inserted identity (linear1.pre_identity, SPD order after linear2, runs first), 3-module
    # subset routing; vector_mlp on the identity.
    "train_tms_identity": {
        "target": TMS_52,
        "config": base_config(
            TMS_52,
            ci_fn_type="vector_mlp",
            ci_fn_hidden_dims=[3],
            identity_module_info=[{"module_pattern": "linear1", "C": 4}],
            loss_metric_configs=[
                L("FaithfulnessLoss", 0.3),
                IM(2e-3, 1.0),
                L("StochasticReconLoss"),
                L("StochasticReconSubsetLoss", routing=UK),
                PGD("PGDReconLayerwiseLoss", "random", 1, 0.1, "unique_per_datapoint", 0.5),
            ],
        ),
        "step": 2,
        "seed": 18,
    },
    # Identities before both (biased) mlp_in of a 2-layer ResidMLP, owners decomposed too: the
    # owner's cached input is the identity's output (hidden-acts, mlp CI from x V), a layerwise
    # forward replaces the identity alone, PGD-layerwise runs on it, 2 mask samples.
    "train_resid_mlp_identity": {
        "target": RESID_2L_BIAS,
        "config": base_config(
            RESID_2L_BIAS,
            ci_fn_type="mlp",
            ci_fn_hidden_dims=[3],
            n_mask_samples=2,
            identity_module_info=[{"module_pattern": "layers.*.mlp_in", "C": 3}],
            loss_metric_configs=[
                L("FaithfulnessLoss", 0.2),
                IM(3e-3, 1.0, beta=0.5),
                L("StochasticReconLayerwiseLoss"),
                L("StochasticHiddenActsReconLoss", 0.4),
                L("CIMaskedReconLayerwiseLoss", 0.6),
                PGD("PGDReconLayerwiseLoss", "random", 1, 0.1, "unique_per_datapoint", 0.5),
            ],
        ),
        "step": 4,
        "seed": 20,
    },
    # LlamaSimple with identities before q_proj (k_proj and v_proj read the same normed input
    # untouched) and before the tied LM head; kl, shared_mlp on every module.
    "train_llama_identity": {
        "target": LLAMA_2L,
        "config": base_config(
            LLAMA_2L,
            ci_fn_type="shared_mlp",
            ci_fn_hidden_dims=[3],
            module_info=[{"module_pattern": "h.0.attn.[qk]_proj", "C": 3}, {"module_pattern": "lm_head", "C": 4}],
            identity_module_info=[{"module_pattern": "h.*.attn.q_proj", "C": 2},
                                  {"module_pattern": "lm_head", "C": 3}],
            loss_metric_configs=[
                L("FaithfulnessLoss", 0.5),
                IM(1e-2, 1.0),
                L("StochasticReconLoss"),
                L("StochasticReconLayerwiseLoss"),
                L("StochasticReconSubsetLoss", 0.5, routing=UK),
                L("StochasticHiddenActsReconLoss", 0.2),
            ],
        ),
        "B": 2,
        "T": 5,
        "step": 3,
        "seed": 21,
    },
    # LlamaSimple with the embedding (EmbeddingComponents, mlp CI) and the tied LM head decomposed.
    "train_llama_embed": {
        "target": LLAMA_2L,
        "config": base_config(
            LLAMA_2L,
            ci_fn_type="mlp",
            ci_fn_hidden_dims=[3],
            module_info=[{"module_pattern": "wte", "C": 5}, {"module_pattern": "h.0.mlp.down_proj", "C": 3},
                         {"module_pattern": "lm_head", "C": 4}],
            loss_metric_configs=[
                L("FaithfulnessLoss", 0.5),
                IM(1e-2, 1.0),
                L("StochasticReconLoss"),
                L("StochasticReconLayerwiseLoss"),
                L("CIMaskedReconSubsetLoss", 0.5, routing=UK),
                PGD("PGDReconLoss", "random", 1, 0.1, "shared_across_batch", 0.5),
            ],
        ),
        "B": 2,
        "T": 6,
        "step": 1,
        "seed": 19,
    },
    # Ten optimizer steps of TMS 5-2: cosine lr with warm-up, clipping of both groups,
    # a 3-step faithfulness warm-up, p annealing, several losses; draws and batches per step.
    "train_tms_10steps": {
        "target": TMS_52,
        "config": base_config(
            TMS_52,
            batch_size=16,
            lr_schedule={"start_val": 0.01, "fn_type": "cosine", "warmup_pct": 0.2, "final_val_frac": 0.1},
            grad_clip_norm_components=0.01,  # clips steps 0-5 (norms 0.007-0.016)
            grad_clip_norm_ci_fns=0.011,  # clips steps 0-5 (norms 0.010-0.014)
            faithfulness_warmup_steps=3,
            faithfulness_warmup_lr=0.01,
            faithfulness_warmup_weight_decay=0.1,
            loss_metric_configs=[
                IM(3e-3, 2.0, p_anneal_start_frac=0.0, p_anneal_final_p=1.0, p_anneal_end_frac=1.0),
                L("StochasticReconLoss"),
                L("StochasticReconLayerwiseLoss"),
                L("StochasticReconSubsetLoss", 0.5, routing=UK),
                L("FaithfulnessLoss", 0.1),
            ],
        ),
        "n_steps": 10,
        "seed": 17,
    },
}


# ============================================================================================
# Generating a file
# ============================================================================================


def term_keys(config) -> list[str]:
    names = [c.classname for c in config.loss_metric_configs]
    out = []
    for i, n in enumerate(names):
        out.append(n if names.count(n) == 1 else f"{n}.{i}")
    return out


def modules_meta(cm) -> list[dict]:
    return [{"path": p, "C": cm.module_to_c[p]} for p in cm.target_module_paths]


def build_case_model(spd, case: dict, config):
    """Target (random weights from a seed), component model with SPD's init, perturbed CI fns."""
    import torch

    seed = case["seed"]
    tc = case["target"]
    torch.manual_seed(seed)
    target = build_target(spd, tc)
    if tc["model_type"] == "LlamaSimple":
        make_refs.randomize_target(target, torch.Generator().manual_seed(seed))
    torch.manual_seed(seed + 1000)  # SPD's init_param_ draws V, U, then CI fns, from the global RNG
    cm = build_component_model(spd, target, config)
    perturb_ci_fns(cm, torch.Generator().manual_seed(seed + 2000))
    tied = [["linear1", "linear2"]] if tc.get("tied_weights") else None
    tie_components(cm, tied)
    return target, cm, tied


def state_tensors(cm, tc) -> dict:
    out = {}
    for k, v in cm.state_dict().items():
        if tc["model_type"] == "LlamaSimple" and k == "target_model.lm_head.weight":
            continue
        out[k] = v.detach().clone().contiguous()
    return out


def step_expected(res, config, pre: str) -> dict:
    """expected.* tensors of one step, under prefix pre ("expected." or "expected.step<k>.")."""
    out = {}
    for key, v in zip(term_keys(config), res["terms"]):
        out[f"{pre}loss.{key}"] = v.reshape(())
    out[f"{pre}loss.total"] = res["total"].reshape(())
    return out


def make_case(spd, name: str, case: dict, generator_str: str):
    import torch

    config = parse_config(spd, case["config"])
    assert config.autocast_bf16 is False
    tc = case["target"]
    target, cm, tied = build_case_model(spd, case, config)
    B = config.batch_size
    T = case.get("T")
    seed = case["seed"]
    multi = "n_steps" in case
    n_steps = case.get("n_steps", 1)

    # the order the modules run in (SPD's order is the config's: identities last)
    probe = make_batch(spd, tc, case["config"]["task_config"], B, T, seed + 3000)
    exec_order = make_refs.execution_order(target, probe, list(cm.target_module_paths))

    tensors = OrderedDict()
    init_state = state_tensors(cm, tc)
    tensors.update(init_state)

    gen = torch.Generator().manual_seed(seed + 4000)
    draws = DrawSource("record", gen=gen)
    summary = [f"{name}: {tc['model_type']} B={B}" + (f" T={T}" if T else "") +
               f" modules={[(p, cm.module_to_c[p]) for p in cm.target_module_paths]}"]

    if not multi:
        step = case["step"]
        batch = make_batch(spd, tc, case["config"]["task_config"], B, T, seed + 5000)
        tensors["input.batch"] = batch
        res = run_step(spd, cm, config, batch, step, draws)
        for k, v in draws.store.items():
            tensors[k] = v
        tensors.update(step_expected(res, config, "expected."))
        tensors["expected.lr"] = torch.tensor(res["lr"], dtype=torch.float64)
        tensors["expected.target_output"] = res["target_out"]
        for p in cm.target_module_paths:
            tensors[f"expected.pre_sigmoid.{dashed(p)}"] = res["pre_sigmoid"][p]
            tensors[f"expected.ci_lower.{dashed(p)}"] = res["ci_lower"][p]
            tensors[f"expected.ci_upper.{dashed(p)}"] = res["ci_upper"][p]
        for k, g in res["grads"].items():
            tensors[f"expected.grad.{k}"] = g
        tensors["expected.grad_norm.components"] = res["grad_norm_components"]
        tensors["expected.grad_norm.ci_fns"] = res["grad_norm_ci_fns"]
        summary.append(
            f"  step {step}/{config.steps}: total={res['total'].item():.10g} "
            + " ".join(f"{k}={v.item():.6g}" for k, v in zip(term_keys(config), res["terms"]))
        )
        summary.append(f"  {len(draws.store)} draw tensors; |grad| comps={res['grad_norm_components'].item():.4g}"
                       f" ci_fns={res['grad_norm_ci_fns'].item():.4g}; margins: sigmoid kinks "
                       f"{res['kink_margin']:.2e}, PGD |g|/max|g| {res['pgd_margin']:.2e}")
        step_meta = {"step": str(step)}
    else:
        assert config.steps == n_steps
        cp, _ = param_groups(cm)
        if config.faithfulness_warmup_steps > 0:
            spd.spd_run_spd.run_faithfulness_warmup(cm, cp, config)
            for k, p in named_trainable(cm).items():
                if k.startswith("_components."):
                    tensors[f"expected.warmup.{k}"] = p.detach().clone().contiguous()
        opt = make_optimizer(cm, config)
        for k in range(n_steps):
            batch = make_batch(spd, tc, case["config"]["task_config"], B, T, seed + 5000 + k)
            tensors[f"input.step{k}.batch"] = batch
            draws.prefix = f"draws.step{k}."
            res = run_step(spd, cm, config, batch, k, draws, optimizer=opt, do_update=True)
            tensors.update(step_expected(res, config, f"expected.step{k}."))
            tensors[f"expected.step{k}.lr"] = torch.tensor(res["lr"], dtype=torch.float64)
            tensors[f"expected.step{k}.grad_norm.components"] = res["grad_norm_components"]
            tensors[f"expected.step{k}.grad_norm.ci_fns"] = res["grad_norm_ci_fns"]
            if k == 0:
                for kk, g in res["grads"].items():
                    tensors[f"expected.step0.grad.{kk}"] = g
            summary.append(
                f"  step {k}: lr={res['lr']:.6g} total={res['total'].item():.10g} "
                f"kinks {res['kink_margin']:.1e} "
                f"|g_comp|={res['grad_norm_components'].item():.4g} |g_ci|={res['grad_norm_ci_fns'].item():.4g}"
            )
        for k, v in draws.store.items():
            tensors[k] = v
        for k, p in named_trainable(cm).items():
            tensors[f"expected.final.{k}"] = p.detach().clone().contiguous()
        step_meta = {"steps_run": str(n_steps)}

    metadata = OrderedDict()
    metadata["format"] = FORMAT
    metadata["config"] = config_yaml(config)
    metadata["target_config"] = json.dumps(tc)
    metadata["modules"] = json.dumps(modules_meta(cm))
    metadata["execution_order"] = json.dumps(exec_order)
    metadata["tied_weights"] = json.dumps(tied)
    metadata.update(step_meta)
    metadata["loss_terms"] = json.dumps(term_keys(config))
    metadata["dtype"] = "float64"
    metadata["generator"] = generator_str
    tensors = OrderedDict((k, v.contiguous()) for k, v in tensors.items())
    return tensors, metadata, "\n".join(summary)


# ============================================================================================
# Reproducing a file from its contents alone
# ============================================================================================


def load_file(path: Path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        t = OrderedDict((k, f.get_tensor(k)) for k in f.keys())
    return meta, t


def rebuild_from_file(spd, meta: dict, t: dict):
    import yaml

    config = parse_config(spd, yaml.safe_load(meta["config"]))
    tc = json.loads(meta["target_config"])
    tied = json.loads(meta["tied_weights"])
    target = build_target(spd, tc)
    cm = build_component_model(spd, target, config)
    sd = {k: v for k, v in t.items() if k.startswith(("target_model.", "_components.", "_ci_fns."))}
    missing, unexpected = cm.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k != "target_model.lm_head.weight"]
    assert not missing and not unexpected, (missing, unexpected)
    if tc["model_type"] == "TMSModel" and tc["tied_weights"]:
        target.tie_weights_()
        assert cm.target_model.linear2.weight.data_ptr() == cm.target_model.linear1.weight.data_ptr()
    if tc["model_type"] == "LlamaSimple":
        assert target.lm_head.weight is target.wte.weight
        make_refs.widen_to_float64(vars(spd), target)
    tie_components(cm, tied)
    if tied:
        for s, g in tied:
            assert cm.components[g].U.data_ptr() == cm.components[s].V.data_ptr()
    assert [m["path"] for m in json.loads(meta["modules"])] == cm.target_module_paths
    return config, cm


def recompute(spd, meta, t) -> dict:
    """Everything expected.* from the file's inputs; returns name -> tensor."""
    import torch

    config, cm = rebuild_from_file(spd, meta, t)
    store = OrderedDict((k, v) for k, v in t.items() if k.startswith("draws."))
    got = OrderedDict()
    if "steps_run" not in meta:
        step = int(meta["step"])
        draws = DrawSource("replay", store=store)
        res = run_step(spd, cm, config, t["input.batch"], step, draws)
        unused = set(store) - set(draws.used)
        assert not unused, f"draws in the file that SPD did not consume: {sorted(unused)[:5]}"
        got.update(step_expected(res, config, "expected."))
        got["expected.lr"] = torch.tensor(res["lr"], dtype=torch.float64)
        got["expected.target_output"] = res["target_out"]
        for p in cm.target_module_paths:
            got[f"expected.pre_sigmoid.{dashed(p)}"] = res["pre_sigmoid"][p]
            got[f"expected.ci_lower.{dashed(p)}"] = res["ci_lower"][p]
            got[f"expected.ci_upper.{dashed(p)}"] = res["ci_upper"][p]
        for k, g in res["grads"].items():
            got[f"expected.grad.{k}"] = g
        got["expected.grad_norm.components"] = res["grad_norm_components"]
        got["expected.grad_norm.ci_fns"] = res["grad_norm_ci_fns"]
    else:
        n = int(meta["steps_run"])
        cp, _ = param_groups(cm)
        if config.faithfulness_warmup_steps > 0:
            spd.spd_run_spd.run_faithfulness_warmup(cm, cp, config)
            for k, p in named_trainable(cm).items():
                if k.startswith("_components."):
                    got[f"expected.warmup.{k}"] = p.detach().clone()
        opt = make_optimizer(cm, config)
        draws = DrawSource("replay", store=store)
        for k in range(n):
            draws.prefix = f"draws.step{k}."
            res = run_step(spd, cm, config, t[f"input.step{k}.batch"], k, draws, optimizer=opt, do_update=True)
            got.update(step_expected(res, config, f"expected.step{k}."))
            got[f"expected.step{k}.lr"] = torch.tensor(res["lr"], dtype=torch.float64)
            got[f"expected.step{k}.grad_norm.components"] = res["grad_norm_components"]
            got[f"expected.step{k}.grad_norm.ci_fns"] = res["grad_norm_ci_fns"]
            if k == 0:
                for kk, g in res["grads"].items():
                    got[f"expected.step0.grad.{kk}"] = g
        unused = set(store) - set(draws.used)
        assert not unused, f"draws in the file that SPD did not consume: {sorted(unused)[:5]}"
        for k, p in named_trainable(cm).items():
            got[f"expected.final.{k}"] = p.detach().clone()
    return got


def reproduce(spd, path: Path) -> bool:
    """Rebuild from the file alone, run twice; both runs must equal the file bitwise."""
    import torch

    meta, t = load_file(path)
    assert meta["format"] == FORMAT, meta.get("format")
    runs = [recompute(spd, meta, t) for _ in range(2)]
    exp = {k: v for k, v in t.items() if k.startswith("expected.")}
    ok = True
    if set(runs[0]) != set(exp):
        print(f"  key mismatch: missing {sorted(set(exp) - set(runs[0]))[:5]} extra {sorted(set(runs[0]) - set(exp))[:5]}")
        ok = False
    worst = 0.0
    nbit = 0
    for k in sorted(exp):
        if k not in runs[0]:
            continue
        a, b, e = runs[0][k], runs[1][k], exp[k]
        if not torch.equal(a, b):
            print(f"  {k}: the two runs differ")
            ok = False
        if torch.equal(a, e):
            nbit += 1
        else:
            err = (a - e).abs().max().item() / max(e.abs().max().item(), 1e-300)
            worst = max(worst, err)
            ok = False
            print(f"  {k}: differs from the file (rel {err:.3e})")
    print(f"reproduce {path.name}: {nbit}/{len(exp)} expected tensors bitwise equal, both runs identical: "
          f"{'yes' if ok else 'NO'}")
    return ok


# ============================================================================================
# SPD_SPEC.md section 12 self-test
# ============================================================================================


def selftest(spd) -> bool:
    import torch

    results = []

    def check(name, got, want, tol=5e-10):
        got_t = torch.as_tensor(got, dtype=torch.float64)
        want_t = torch.as_tensor(want, dtype=torch.float64)
        err = (got_t - want_t).abs().max().item()
        ok = err <= tol * max(1.0, want_t.abs().max().item())
        results.append(ok)
        print(f"  {'ok ' if ok else 'BAD'} {name:<44} max abs err {err:.2e}")

    tc = {"model_type": "Linear2"}
    W1 = [[0.5, -1], [1.5, 0.25], [-0.75, 1]]
    W2 = [[1, 0.5, -0.5], [-0.25, 0.75, 1.25]]
    V1 = [[0.3, -0.8], [0.6, 0.4]]
    U1 = [[0.7, 0.9, -0.2], [-0.5, 0.1, 0.6]]
    V2 = [[0.2, -0.4], [0.5, 0.3], [-0.6, 0.8]]
    U2 = [[0.9, -0.3], [0.4, 0.7]]
    ci_p = {
        "fc1": ([[[1, -2]], [[0.5, 1.5]]], [[0.1, 0.2], [-0.3, 0]], [[[0.8], [-0.6]], [[1.2], [0.4]]], [[0.05], [0.3]]),
        "fc2": ([[[-1, 0.7]], [[2, -0.5]]], [[0, 0.1], [0.2, -0.2]], [[[0.9], [0.3]], [[-0.7], [1.1]]], [[0.4], [-0.1]]),
    }
    x = torch.tensor([[1, -0.5], [0.2, 0.8]], dtype=torch.float64)
    r = {"fc1": [[0.25, 0.6], [0.9, 0.1]], "fc2": [[0.5, 0.33], [0.05, 0.75]]}
    md = {"fc1": [0.4, 0.7], "fc2": [0.2, 0.95]}

    def cfg(losses, **kw):
        d = {
            "autocast_bf16": False, "n_mask_samples": 1, "ci_fn_type": "mlp", "ci_fn_hidden_dims": [2],
            "sigmoid_type": "leaky_hard", "use_delta_component": True,
            "module_info": [{"module_pattern": "fc1", "C": 2}, {"module_pattern": "fc2", "C": 2}],
            "loss_metric_configs": losses, "output_loss_type": "mse",
            "lr_schedule": {"start_val": 1e-3}, "steps": 10, "batch_size": 2, "eval_freq": 10,
            "n_eval_steps": 1, "pretrained_model_class": "x.Linear2",
            "task_config": {"task_name": "tms", "feature_probability": 0.5},
        }
        d.update(kw)
        return parse_config(spd, d)

    def model(config):
        target = build_target(spd, tc)
        with torch.no_grad():
            target.fc1.weight.copy_(torch.tensor(W1))
            target.fc2.weight.copy_(torch.tensor(W2))
        cm = build_component_model(spd, target, config)
        with torch.no_grad():
            for n, (V, U) in {"fc1": (V1, U1), "fc2": (V2, U2)}.items():
                cm.components[n].V.copy_(torch.tensor(V))
                cm.components[n].U.copy_(torch.tensor(U))
                W0, b0, W2_, b2 = ci_p[n]
                f = cm.ci_fns[n]
                f.layers[0].W.copy_(torch.tensor(W0)); f.layers[0].b.copy_(torch.tensor(b0))
                f.layers[2].W.copy_(torch.tensor(W2_)); f.layers[2].b.copy_(torch.tensor(b2))
        return cm

    def draws_for(n_terms, extra=None):
        store = OrderedDict()
        for i in range(n_terms):
            for m in ("fc1", "fc2"):
                store[f"draws.{i}.0.{m}.r"] = torch.tensor(r[m], dtype=torch.float64)
                store[f"draws.{i}.0.{m}.delta"] = torch.tensor(md[m], dtype=torch.float64)
        store.update(extra or {})
        return DrawSource("replay", store=store)

    def run(losses, extra=None, **kw):
        config = cfg(losses, **kw)
        cm = model(config)
        res = run_step(spd, cm, config, x, 0, draws_for(len(losses), extra))
        return cm, res

    print("SPD_SPEC.md section 12 golden values, recomputed with SPD's own code:")
    _, res = run([L("FaithfulnessLoss")])
    check("target output", res["target_out"], [[2.3125, -0.78125], [-0.775, 1.3625]])
    check("pre_sigmoid fc1", res["pre_sigmoid"]["fc1"], [[0.0236750618, 0.0565344966], [0.5283426723, 0.2480891553]], 1e-9)
    check("pre_sigmoid fc2", res["pre_sigmoid"]["fc2"], [[0.6593065107, 0.1460432486], [0.5404871381, -1.7292439295]], 1e-9)
    check("ci_lower fc2 (= pre, but [1,1] = 0)", res["ci_lower"]["fc2"], [[0.6593065107, 0.1460432486], [0.5404871381, 0]], 1e-9)
    check("faithfulness", res["terms"][0], 0.4943333333, 1e-9)
    _, res = run([IM(1, 2.0, eps=0.0)]);                check("importance min. p=2", res["terms"][0], 0.5462954591, 1e-9)
    _, res = run([IM(1, 1.0, beta=0.5, eps=0.0)]);      check("importance min. p=1 beta=0.5", res["terms"][0], 1.5663019988, 1e-9)
    _, res = run([L("CIMaskedReconLoss")]);             check("CI-masked recon", res["terms"][0], 2.1451999576, 1e-9)
    _, res = run([L("CIMaskedReconLayerwiseLoss")]);    check("CI-masked layerwise", res["terms"][0], 1.5867096251, 1e-9)
    _, res = run([L("UnmaskedReconLoss")]);             check("unmasked recon", res["terms"][0], 2.0532846341, 1e-9)
    _, res = run([L("StochasticReconLoss")]);           check("stochastic recon, with delta", res["terms"][0], 0.9214624894, 1e-9)
    config = cfg([L("StochasticReconLoss")], use_delta_component=False)
    st = draws_for(1).store
    st = OrderedDict((k, v) for k, v in st.items() if not k.endswith(".delta"))
    res = run_step(spd, model(config), config, x, 0, DrawSource("replay", store=st))
    check("stochastic recon, without delta", res["terms"][0], 2.0348468591, 1e-9)
    _, res = run([L("StochasticReconLayerwiseLoss")]);  check("stochastic layerwise, with delta", res["terms"][0], 0.3813634279, 1e-9)
    _, res = run([L("StochasticHiddenActsReconLoss")]); check("hidden-acts recon, with delta", res["terms"][0], 0.1517267634, 1e-9)
    # routing fc1 = [F, T], fc2 = [T, T]: k = [1, 2], noise ranks fc2 before fc1 at position 0
    route = {"draws.0.0.routing.k": torch.tensor([1, 2]),
             "draws.0.0.fc1.route_noise": torch.tensor([0.9, 0.1], dtype=torch.float64),
             "draws.0.0.fc2.route_noise": torch.tensor([0.1, 0.5], dtype=torch.float64),
             "draws.0.0.fc1.routed": torch.tensor([0, 1], dtype=torch.uint8),
             "draws.0.0.fc2.routed": torch.tensor([1, 1], dtype=torch.uint8)}
    _, res = run([L("StochasticReconSubsetLoss", routing=UK)], route)
    check("stochastic subset, with delta", res["terms"][0], 0.3927792607, 1e-9)

    cm, res = run([L("StochasticReconLoss"), L("StochasticReconLayerwiseLoss"), IM(0.01, 2.0, eps=0.0)])
    check("total = stoch + layerwise + 0.01 imp", res["total"], 1.3082888718, 1e-9)
    g = res["grads"]
    check("d total / d V1", g["_components.fc1.V"], [[0.1382809528, 0.1988272312], [-0.0066627667, 0.0426682951]], 1e-9)
    check("d total / d U1", g["_components.fc1.U"], [[0.0527299442, -0.0234222250, -0.0752612060], [0.1088318894, 0.1071164159, -0.1134223057]], 1e-9)
    check("d total / d V2", g["_components.fc2.V"], [[-0.5555024515, -0.0815937151], [-0.7762810730, -0.0723987876], [0.6982780808, 0.0986789230]], 1e-9)
    check("d total / d U2", g["_components.fc2.U"], [[-0.6573674105, 0.1313356412], [0.1360289891, 0.0082126141]], 1e-9)
    check("d total / d fc1 CI W0", g["_ci_fns.fc1.layers.0.W"], [[[0.0071582433, 0.0002774086]], [[-0.0109196715, -0.0165179631]]], 1e-9)
    check("d total / d fc1 CI b2", g["_ci_fns.fc1.layers.2.b"], [[0.0177349772], [-0.3342621514]], 1e-9)
    check("d total / d fc2 CI W2", g["_ci_fns.fc2.layers.2.W"], [[[0.0379417212], [-0.5599336062]], [[-0.0085763623], [0.0216823348]]], 1e-9)

    _, res = run([PGD("PGDReconLoss", "zeroes", 1, 0.1, "shared_across_batch")])
    check("PGD shared zeroes 1 step 0.1", res["terms"][0], 2.1572671532, 1e-9)
    _, res = run([PGD("PGDReconLoss", "zeroes", 2, 0.25, "unique_per_datapoint")])
    check("PGD unique zeroes 2 steps 0.25", res["terms"][0], 2.2251269819, 1e-9)
    _, res = run([PGD("PGDReconLoss", "ones", 0, 0.1, "shared_across_batch")])
    check("PGD shared ones 0 steps (exact target)", res["terms"][0], 0.0, 1e-12)
    _, res = run([PGD("PGDReconLayerwiseLoss", "zeroes", 1, 0.1, "shared_across_batch")])
    check("PGD layerwise shared zeroes 1 step", res["terms"][0], 1.5936160206, 1e-9)
    _, res = run([PGD("PGDReconSubsetLoss", "zeroes", 1, 0.1, "shared_across_batch", routing=UK)], route)
    check("PGD subset (fixed routing) shared zeroes", res["terms"][0], 1.2138318831, 1e-9)

    gu = spd.spd_utils_general_utils
    kl = gu.calc_kl_divergence_lm(
        pred=torch.tensor([[1.0, 0, -1], [0.5, 0.5, 0]]), target=torch.tensor([[0.0, 1, 0], [2, -1, 0.5]]), reduce=False
    )
    check("KL per position", kl, [0.4322781353, 0.4240806793], 1e-9)
    sc = spd.spd_configs.ScheduleConfig(start_val=1e-3, fn_type="cosine", warmup_pct=0.2, final_val_frac=0.1)
    lrs = [gu.get_scheduled_value(step=s, total_steps=10, config=sc) for s in range(11)]
    check("cosine schedule T=10", lrs, [0, 5e-4, 1e-3, 9.55436e-4, 8.305704e-4, 6.501344e-4, 4.498656e-4,
                                        2.694296e-4, 1.44564e-4, 1e-4, 1.44564e-4], 1e-6)
    sc = spd.spd_configs.ScheduleConfig(start_val=1.0, fn_type="linear", warmup_pct=0.0, final_val_frac=0.0)
    check("linear schedule T=5", [gu.get_scheduled_value(step=s, total_steps=5, config=sc) for s in range(6)],
          [1, 0.75, 0.5, 0.25, 0, -0.25])
    ap = spd.spd_metrics_importance_minimality_loss._get_linear_annealed_p
    check("p annealing 2 -> 0.3", [ap(f, 2.0, 0.0, 0.3, 1.0) for f in (0, 0.25, 0.5, 1)], [2.0, 1.575, 1.15, 0.3])
    n_ok = sum(results)
    print(f"selftest: {n_ok}/{len(results)} golden values reproduced")
    return n_ok == len(results)


# ============================================================================================


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*", help="case names (default: all)")
    ap.add_argument("--spd-path", type=Path, default=DEFAULT_SPD_PATH)
    ap.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    ap.add_argument("--reproduce", type=Path, action="append", default=[])
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--no-verify", action="store_true", help="skip reproducing each file after writing it")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()

    if args.list:
        for k, c in CASES.items():
            losses = [lc["classname"] for lc in c["config"]["loss_metric_configs"]]
            print(f"{k}: {c['target']['model_type']} ci={c['config']['ci_fn_type']} "
                  f"sigmoid={c['config']['sigmoid_type']} sampling={c['config']['sampling']} "
                  f"delta={c['config']['use_delta_component']} S={c['config']['n_mask_samples']} {losses}")
        return

    import torch

    torch.set_num_threads(1)  # fixed reduction order
    torch.set_default_dtype(torch.float64)
    spd = import_spd(args.spd_path.resolve())
    if spd.stubbed:
        print(f"(stubbed, not installed: {', '.join(spd.stubbed)})")
    install_draw_hooks(spd)
    import logging

    logging.getLogger("spd").setLevel(logging.WARNING)
    commit = make_refs.spd_commit(args.spd_path.resolve())
    generator_str = f"goodfire-ai/spd@{commit[:12]} training step (tests/refgen/make_train_refs.py), float64"

    if args.selftest:
        sys.exit(0 if selftest(spd) else 1)
    if args.reproduce:
        ok = all([reproduce(spd, p) for p in args.reproduce])
        sys.exit(0 if ok else 1)

    names = args.cases or list(CASES)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    all_ok = True
    for name in names:
        tensors, metadata, summary = make_case(spd, name, CASES[name], generator_str)
        out = args.out_dir / f"{name}.safetensors"
        make_refs.save_deterministic(dict(tensors), out, metadata)
        print(summary)
        print(f"  -> {out} ({out.stat().st_size} bytes, {len(tensors)} tensors)")
        if not args.no_verify:
            all_ok &= reproduce(spd, out)
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()

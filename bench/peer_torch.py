#!/usr/bin/env python3
"""PyTorch peer benchmark for spd.c: SPD's own code (goodfire-ai/spd @ cd23cf80, branch
play/compile) timed with the protocol of that commit's scripts/benchmark_full_model.py and
scripts/benchmark_linear_components.py.

SPD's code is not part of this repository. It is imported at run time from folders exported
from the SPD mirror (see bench/PEER.md and bench/make_peer_carry.sh):

  --spd-path    folder holding cd23cf80's `spd` package (default .peer/spd-cd23cf80)
  --llama-path  HEAD (3f0bb61e) spd/pretrain/models/llama_simple.py
                (default .peer/spd/spd/pretrain/models/llama_simple.py)

Only SPD modules that hold no maths and drag in wandb / pydantic / simple_stories_train are
replaced by small stubs (install_spd below lists them); LinearComponents, MaskedModule,
ComponentModel, make_mask_infos, init_param_, expand_module_patterns and LlamaSimple are SPD's
own code, unchanged.

Usage:
  python bench/peer_torch.py full --batch 64 --seq 256 [--C 1200] [--steps 50 --warmup 10]
      [--variants eager,reduce-overhead,max-autotune,reduce-overhead-nogetattr,max-autotune-nogetattr]
  python bench/peer_torch.py linear --d_in 512 --d_out 512 --C 512 --batch 64 --seq 256
      [--variants components-eager,components-reduce-overhead,pure-eager,pure-reduce-overhead]
  smoke test: python bench/peer_torch.py full --device cpu --steps 2 --warmup 1 --batch 2 \
      --seq 16 --C 32 --variants eager

Every variant prints one line `RESULT {json}` (with "error" set if it failed) and the script
goes on with the next one; a table follows at the end.
"""

from __future__ import annotations

import time

_T_PROCESS = time.perf_counter()

import argparse
import contextlib
import gc
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import traceback
import types
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import torch
from torch import Tensor, nn

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPD_PATH = ".peer/spd-cd23cf80"
DEFAULT_LLAMA_PATH = ".peer/spd/spd/pretrain/models/llama_simple.py"
# trimmed copies built by bench/make_peer_carry.sh; used when the defaults above are absent
CARRY_SPD_PATH = ".peer/carry/spd-cd23cf80"
CARRY_LLAMA_PATH = ".peer/carry/spd-3f0bb61e/spd/pretrain/models/llama_simple.py"
DEFAULT_SPD_COMMIT = "cd23cf80"
DEFAULT_LLAMA_COMMIT = "3f0bb61e"

FULL_VARIANTS = (
    "eager,reduce-overhead,max-autotune,reduce-overhead-nogetattr,max-autotune-nogetattr"
)
LINEAR_VARIANTS = "components-eager,components-reduce-overhead,pure-eager,pure-reduce-overhead"
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


# --------------------------------------------------------------------------------------------
# Importing SPD with stubs for the non-maths modules
# --------------------------------------------------------------------------------------------


def _stub_module(name: str, **attrs: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    mod.__dict__["__peer_stub__"] = True
    sys.modules[name] = mod
    return mod


def _read_commit(folder: Path, default: str) -> str:
    for cand in (folder / "COMMIT", folder.parent / "COMMIT"):
        if cand.is_file():
            text = cand.read_text().strip()
            if text:
                return text[:8]
    return default + "?"


def install_spd(spd_path: Path, llama_path: Path) -> types.SimpleNamespace:
    """Import SPD @ cd23cf80 from spd_path and LlamaSimple @ HEAD from llama_path.

    Stubbed (pre-seeded in sys.modules), because they import wandb, pydantic or
    simple_stories_train, none of which exist on the device, and hold nothing that the
    benchmarked forward/backward/optimizer step executes:
      spd.configs                  Config (type only), SamplingType, ModulePatternInfoConfig
                                   (a dataclass with .module_pattern and .C)
      spd.spd_types                CiFnType, ModelPath (type aliases)
      spd.interfaces               LoadableModule (nn.Module + ABC with the same two abstract
                                   classmethods as the original), RunInfo (generic dataclass)
      spd.utils.general_utils      resolve_class, runtime_cast, set_seed (same bodies)
      spd.identity_insertion       insert_identity_operations_ (unused: no identity modules)
      simple_stories_train.models.gpt2_simple.LayerNorm  (isinstance target only, unused)
      spd.base_config              BaseConfig: a plain keyword/default holder in place of the
                                   pydantic model (LlamaSimpleConfig only carries numbers)
      spd.utils.distributed_utils  log0 (print; only used by LlamaSimple.configure_optimizers)
    Real (SPD's own code): spd.models.components, spd.models.masked_module,
    spd.models.component_model, spd.models.sigmoids, spd.utils.module_utils,
    and (from HEAD) spd/pretrain/models/llama_simple.py.
    """
    spd_path = spd_path.resolve()
    if not (spd_path / "spd" / "models" / "component_model.py").is_file():
        raise FileNotFoundError(
            f"no SPD checkout at {spd_path} (expected spd/models/component_model.py); "
            "see bench/PEER.md for the export command"
        )
    if not llama_path.is_file():
        raise FileNotFoundError(f"no llama_simple.py at {llama_path}; see bench/PEER.md")
    for name in list(sys.modules):
        if name == "spd" or name.startswith("spd."):
            del sys.modules[name]
    sys.path.insert(0, str(spd_path))

    # --- stubs ----------------------------------------------------------------------------
    T = TypeVar("T")

    @dataclass
    class ModulePatternInfoConfig:
        module_pattern: str
        C: int

    class Config:  # only used as a type parameter / annotation at cd23cf80's import time
        pass

    _stub_module(
        "spd.configs",
        Config=Config,
        SamplingType=Literal["continuous", "binomial"],
        ModulePatternInfoConfig=ModulePatternInfoConfig,
    )
    _stub_module(
        "spd.spd_types",
        CiFnType=Literal["mlp", "vector_mlp", "shared_mlp"],
        ModelPath=str | Path,
    )

    @dataclass
    class RunInfo(Generic[T]):
        checkpoint_path: Path
        config: T

    class LoadableModule(nn.Module, ABC):
        @classmethod
        @abstractmethod
        def from_pretrained(cls, _path: Any) -> LoadableModule:
            raise NotImplementedError

        @classmethod
        @abstractmethod
        def from_run_info(cls, _run_info: Any) -> LoadableModule:
            raise NotImplementedError

    _stub_module("spd.interfaces", RunInfo=RunInfo, LoadableModule=LoadableModule)

    def resolve_class(path: str) -> Any:
        module_path, _, class_name = path.rpartition(".")
        return getattr(importlib.import_module(module_path), class_name)

    def runtime_cast(type_: Any, obj: Any) -> Any:
        if not isinstance(obj, type_):
            raise TypeError(f"Expected {type_}, got {type(obj)}")
        return obj

    def set_seed(seed: int | None) -> None:
        if seed is not None:
            import random

            import numpy as np

            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)

    _stub_module(
        "spd.utils.general_utils",
        resolve_class=resolve_class,
        runtime_cast=runtime_cast,
        set_seed=set_seed,
    )

    def insert_identity_operations_(*_a: Any, **_k: Any) -> None:
        raise NotImplementedError("identity insertion is stubbed in the peer benchmark")

    _stub_module("spd.identity_insertion", insert_identity_operations_=insert_identity_operations_)

    class SSLayerNorm(nn.Module):
        pass

    _stub_module("simple_stories_train")
    _stub_module("simple_stories_train.models")
    _stub_module("simple_stories_train.models.gpt2_simple", LayerNorm=SSLayerNorm)

    class BaseConfig:
        """Stand-in for spd.base_config.BaseConfig (pydantic, extra='forbid'): fills declared
        fields from keywords, else from class defaults; unknown or missing fields raise."""

        def __init__(self, **kwargs: Any) -> None:
            fields: list[str] = []
            for klass in reversed(type(self).__mro__):
                for fname in klass.__dict__.get("__annotations__", {}):
                    if fname not in fields and not fname.startswith("_"):
                        fields.append(fname)
            unknown = set(kwargs) - set(fields)
            if unknown:
                raise TypeError(f"{type(self).__name__}: unknown fields {sorted(unknown)}")
            for fname in fields:
                if fname in kwargs:
                    object.__setattr__(self, fname, kwargs[fname])
                elif hasattr(type(self), fname):
                    object.__setattr__(self, fname, getattr(type(self), fname))
                else:
                    raise TypeError(f"{type(self).__name__}: missing field {fname!r}")

        def __repr__(self) -> str:
            body = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
            return f"{type(self).__name__}({body})"

    _stub_module("spd.base_config", BaseConfig=BaseConfig)
    _stub_module("spd.utils.distributed_utils", log0=lambda *a, **k: print(*a, **k))

    # --- real SPD code ----------------------------------------------------------------------
    from spd.models import component_model as cm_mod  # noqa: E402
    from spd.models import components as comp_mod  # noqa: E402
    from spd.models import masked_module as mm_mod  # noqa: E402
    from spd.utils import module_utils as mu_mod  # noqa: E402

    for mod in (cm_mod, comp_mod, mm_mod, mu_mod):
        origin = Path(mod.__file__).resolve()
        assert str(origin).startswith(str(spd_path)), f"{mod.__name__} imported from {origin}"

    spec = importlib.util.spec_from_file_location("peer_llama_simple_head", str(llama_path))
    assert spec is not None and spec.loader is not None
    llama_mod = importlib.util.module_from_spec(spec)
    sys.modules["peer_llama_simple_head"] = llama_mod
    spec.loader.exec_module(llama_mod)

    return types.SimpleNamespace(
        ComponentModel=cm_mod.ComponentModel,
        MaskedModule=mm_mod.MaskedModule,
        LinearComponents=comp_mod.LinearComponents,
        make_mask_infos=comp_mod.make_mask_infos,
        expand_module_patterns=mu_mod.expand_module_patterns,
        ModulePatternInfoConfig=ModulePatternInfoConfig,
        LlamaSimple=llama_mod.LlamaSimple,
        LlamaSimpleConfig=llama_mod.LlamaSimpleConfig,
        set_seed=set_seed,
        spd_commit=_read_commit(spd_path, DEFAULT_SPD_COMMIT),
        llama_commit=_read_commit(llama_path.resolve().parents[3], DEFAULT_LLAMA_COMMIT),
    )


@contextlib.contextmanager
def masked_module_getattr_removed(masked_module_cls: type, remove: bool):
    """The '-nogetattr' variants: take MaskedModule.__getattr__ (which forwards unknown
    attributes to the wrapped base module) off the class for the duration of the variant, so
    attribute lookups fall back to nn.Module.__getattr__ (plain _parameters/_buffers/_modules
    lookup). Nothing in the benchmarked path needs the forwarding: MaskedModule.forward reads
    its own instance attributes and its `base`/`components` submodules, and
    ComponentModel.target_weight unwraps `.base` explicitly. The maths is untouched."""
    if not remove:
        yield
        return
    orig = masked_module_cls.__dict__.get("__getattr__")
    if orig is None:
        raise RuntimeError("MaskedModule has no __getattr__ of its own to remove")
    delattr(masked_module_cls, "__getattr__")
    try:
        yield
    finally:
        setattr(masked_module_cls, "__getattr__", orig)


# --------------------------------------------------------------------------------------------
# Timing helpers
# --------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_compile_state() -> None:
    try:
        torch._dynamo.reset()
    except Exception:  # pragma: no cover
        pass
    try:
        from torch._inductor import cudagraph_trees

        cudagraph_trees.reset_cudagraph_trees()
    except Exception:
        pass
    try:
        torch._dynamo.utils.counters.clear()
    except Exception:
        pass


def dynamo_counts() -> tuple[int | None, int | None]:
    """(unique graphs compiled, graph breaks) from dynamo's counters since the last reset."""
    try:
        c = torch._dynamo.utils.counters
        return int(c["stats"]["unique_graphs"]), int(sum(c["graph_break"].values()))
    except Exception:
        return None, None


def dynamo_stats() -> dict[str, Any] | None:
    try:
        c = torch._dynamo.utils.counters
        out = {k: int(v) for k, v in c["stats"].items()}
        gb = c["graph_break"]
        if gb:
            out["graph_break_reasons"] = {str(k)[:160]: int(v) for k, v in list(gb.items())[:8]}
        return out
    except Exception:
        return None


class Timer:
    """Per step: synchronize, then wall clock + CUDA event around the step, then synchronize
    (the seed scripts time with time.perf_counter() between two torch.cuda.synchronize()
    calls; the CUDA-event times are reported as mean/median/min_ms, the wall times as
    wall_*_ms)."""

    def __init__(self, device: torch.device, n: int) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.wall: list[float] = []
        if self.cuda:
            self.ev = [
                (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                for _ in range(n)
            ]
        self.i = 0

    @contextlib.contextmanager
    def step(self):
        sync(self.device)
        t0 = time.perf_counter()
        if self.cuda:
            self.ev[self.i][0].record()
        yield
        if self.cuda:
            self.ev[self.i][1].record()
        sync(self.device)
        self.wall.append((time.perf_counter() - t0) * 1e3)
        self.i += 1

    def stats(self) -> dict[str, Any]:
        wall = self.wall
        times = [a.elapsed_time(b) for a, b in self.ev[: self.i]] if self.cuda else wall
        return {
            "mean_ms": statistics.fmean(times),
            "median_ms": statistics.median(times),
            "min_ms": min(times),
            "max_ms": max(times),
            "std_ms": statistics.pstdev(times),
            "wall_mean_ms": statistics.fmean(wall),
            "wall_median_ms": statistics.median(wall),
            "wall_min_ms": min(wall),
            "timer": "cuda_events" if self.cuda else "perf_counter",
        }


# --------------------------------------------------------------------------------------------
# Full model: LlamaSimple 4L wrapped in cd23cf80's ComponentModel
# --------------------------------------------------------------------------------------------

MODULE_PATTERNS = (  # order of spd/experiments/lm/ss_llama_simple_config.yaml @ cd23cf80
    "h.*.mlp.gate_proj",
    "h.*.mlp.up_proj",
    "h.*.mlp.down_proj",
    "h.*.attn.q_proj",
    "h.*.attn.k_proj",
    "h.*.attn.v_proj",
    "h.*.attn.o_proj",
)


def build_target_model(spd: types.SimpleNamespace, args: argparse.Namespace) -> nn.Module:
    cfg = spd.LlamaSimpleConfig(
        model_type="LlamaSimple",
        block_size=args.n_ctx,
        vocab_size=args.vocab,
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_embd=args.n_embd,
        n_intermediate=args.n_intermediate,
        rotary_dim=args.n_embd // args.n_head,
        rotary_base=args.rotary_base,
        n_ctx=args.n_ctx,
        n_key_value_heads=args.n_kv_heads,
        flash_attention=True,
    )
    # Random init (LlamaSimple's own init, generator seeded 42) instead of the seed's
    # pretrained wandb:goodfire/spd/runs/erq48r3w weights: same shapes, same work.
    target = spd.LlamaSimple(cfg)
    target.eval()
    target.requires_grad_(False)
    return target


def run_full_variant(
    spd: types.SimpleNamespace, args: argparse.Namespace, variant: str, device: torch.device
) -> dict[str, Any]:
    nogetattr = variant.endswith("-nogetattr")
    base = variant[: -len("-nogetattr")] if nogetattr else variant
    if base != "eager" and base not in COMPILE_MODES:
        raise ValueError(f"unknown variant {variant!r}")
    mode = None if base in ("eager", "default") else base
    B, T = args.batch, args.seq
    res: dict[str, Any] = {}

    with masked_module_getattr_removed(spd.MaskedModule, nogetattr):
        spd.set_seed(42)
        target_model = build_target_model(spd, args)
        module_info = [spd.ModulePatternInfoConfig(module_pattern=p, C=args.C) for p in MODULE_PATTERNS]
        module_path_info = spd.expand_module_patterns(target_model, module_info)
        model = spd.ComponentModel(
            target_model=target_model,
            module_path_info=module_path_info,
            ci_fn_type=args.ci_fn_type,
            ci_fn_hidden_dims=args.ci_fn_hidden_dims,
            pretrained_model_output_attr="idx_0",
            sigmoid_type="leaky_hard",
        )
        model.to(device)
        component_model = model
        res["n_modules"] = len(component_model.target_module_paths)
        if nogetattr:
            mm = next(iter(component_model._masked_modules.values()))
            assert "__getattr__" not in type(mm).__dict__
        if base != "eager":
            model = torch.compile(model, fullgraph=False, mode=mode)

        # As the seed: AdamW(lr=1e-4) over components and ci_fns parameters (the ci_fns get
        # no gradient in this benchmark, so AdamW skips them; they only take memory).
        params: list[nn.Parameter] = []
        for name in component_model.target_module_paths:
            params.extend(component_model.components[name].parameters())
            params.extend(component_model.ci_fns[name].parameters())
        optimizer = torch.optim.AdamW(params, lr=1e-4)

        def make_inputs() -> tuple[Tensor, Any]:
            x = torch.randint(0, 1000, (B, T), device=device)
            masks = {
                name: torch.rand(B, T, component_model.module_to_c[name], device=device)
                for name in component_model.target_module_paths
            }
            return x, spd.make_mask_infos(masks)

        def step(x: Tensor, mask_infos: Any) -> Tensor:
            optimizer.zero_grad()
            out = model(x, mask_infos=mask_infos)
            loss = out.mean()
            loss.backward()
            optimizer.step()
            return loss

        # Warm-up (compilation happens in the first step; CUDA graphs get recorded in the
        # next ones for the cudagraph modes).
        warm_t0 = time.perf_counter()
        compile_s = None
        for i in range(args.warmup):
            x, mask_infos = make_inputs()
            sync(device)
            t0 = time.perf_counter()
            step(x, mask_infos)
            sync(device)
            if i == 0:
                compile_s = time.perf_counter() - t0
        res["warmup_s"] = time.perf_counter() - warm_t0
        res["compile_s"] = compile_s if base != "eager" else None
        res["first_step_s"] = compile_s
        res["n_graphs"], res["n_graph_breaks"] = dynamo_counts() if base != "eager" else (None, None)

        timer = Timer(device, args.steps)
        loss = None
        for _ in range(args.steps):
            x, mask_infos = make_inputs()
            with timer.step():
                loss = step(x, mask_infos)
        res.update(timer.stats())
        res["loss"] = float(loss.item()) if loss is not None else None
        if base != "eager":
            res["n_graphs_end"], res["n_graph_breaks_end"] = dynamo_counts()
            res["dynamo_stats"] = dynamo_stats()
    return res


# --------------------------------------------------------------------------------------------
# Isolated LinearComponents (scripts/benchmark_linear_components.py "components" and "pure")
# --------------------------------------------------------------------------------------------


def run_linear_variant(
    spd: types.SimpleNamespace, args: argparse.Namespace, variant: str, device: torch.device
) -> dict[str, Any]:
    kind, _, base = variant.partition("-")
    if kind not in ("components", "pure") or (base != "eager" and base not in COMPILE_MODES):
        raise ValueError(f"unknown linear variant {variant!r}")
    mode = None if base in ("eager", "default") else base
    B, T, d_in, d_out, C = args.batch, args.seq, args.d_in, args.d_out, args.C
    res: dict[str, Any] = {}
    spd.set_seed(42)

    if kind == "components":
        components = spd.LinearComponents(C=C, d_in=d_in, d_out=d_out, bias=None).to(device)

        def forward_backward(x: Tensor, mask: Tensor, components: nn.Module, target: Tensor) -> Tensor:
            out = components(x, mask=mask)
            loss = (out - target).pow(2).mean()
            return loss

        fb = forward_backward
        if base != "eager":
            fb = torch.compile(forward_backward, fullgraph=True, mode=mode)
        optimizer = torch.optim.AdamW(components.parameters(), lr=1e-4)

        def step(x: Tensor, mask: Tensor, target: Tensor) -> Tensor:
            optimizer.zero_grad()
            loss = fb(x, mask, components, target)
            loss.backward()
            optimizer.step()
            return loss

    else:

        def masked_linear(x: Tensor, V: Tensor, U: Tensor, mask: Tensor) -> Tensor:
            """Pure function: (x @ V * mask) @ U (the seed script's own function)"""
            inner = x @ V
            masked = inner * mask
            return masked @ U

        V = nn.Parameter(torch.randn(d_in, C, device=device) * 0.02)
        U = nn.Parameter(torch.randn(C, d_out, device=device) * 0.02)
        fn = masked_linear
        if base != "eager":
            fn = torch.compile(masked_linear, fullgraph=True, mode=mode)
        optimizer = torch.optim.AdamW([V, U], lr=1e-4)

        def step(x: Tensor, mask: Tensor, target: Tensor) -> Tensor:
            optimizer.zero_grad()
            out = fn(x, V, U, mask)
            loss = (out - target).pow(2).mean()
            loss.backward()
            optimizer.step()
            return loss

    def make_inputs() -> tuple[Tensor, Tensor, Tensor]:
        x = torch.randn(B, T, d_in, device=device)
        mask = torch.rand(B, T, C, device=device)
        target = torch.randn(B, T, d_out, device=device)
        return x, mask, target

    warm_t0 = time.perf_counter()
    compile_s = None
    for i in range(args.warmup):
        inp = make_inputs()
        sync(device)
        t0 = time.perf_counter()
        step(*inp)
        sync(device)
        if i == 0:
            compile_s = time.perf_counter() - t0
    res["warmup_s"] = time.perf_counter() - warm_t0
    res["compile_s"] = compile_s if base != "eager" else None
    res["first_step_s"] = compile_s
    res["n_graphs"], res["n_graph_breaks"] = dynamo_counts() if base != "eager" else (None, None)

    timer = Timer(device, args.steps)
    loss = None
    for _ in range(args.steps):
        inp = make_inputs()
        with timer.step():
            loss = step(*inp)
    res.update(timer.stats())
    res["loss"] = float(loss.item()) if loss is not None else None
    return res


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.{nd}f}"
    return str(v)


def print_table(rows: list[dict[str, Any]]) -> None:
    print()
    print("=" * 118)
    hdr = (
        f"{'bench':6} {'variant':28} {'B':>4} {'T':>4} {'C':>5} {'d_in':>5} {'prec':>4} "
        f"{'mean ms':>9} {'median':>9} {'min':>9} {'speedup':>7} {'peak MiB':>9} {'compile s':>9} "
        f"{'graphs/brk':>10}"
    )
    print(hdr)
    print("-" * 118)
    def key(r: dict[str, Any]) -> tuple:
        kind = r["variant"].split("-")[0] if r["bench"] == "linear" else "full"
        return (kind, r["batch"], r["seq"], r["C"], r.get("d_in"), r.get("d_out"))

    eager_mean: dict[tuple, float] = {}
    for r in rows:
        if r.get("error") is None and r["variant"].endswith("eager"):
            eager_mean[key(r)] = r["mean_ms"]
    for r in rows:
        if r.get("error") is not None:
            print(f"{r['bench']:6} {r['variant']:28} ERROR: {r['error'][:70]}")
            continue
        sp = eager_mean.get(key(r))
        speed = f"{sp / r['mean_ms']:.2f}x" if sp else "-"
        peak = r.get("peak_mem_bytes")
        gb = (
            f"{r.get('n_graphs')}/{r.get('n_graph_breaks')}" if r.get("n_graphs") is not None else "-"
        )
        print(
            f"{r['bench']:6} {r['variant']:28} {r['batch']:>4} {r['seq']:>4} {r['C']:>5} "
            f"{fmt(r.get('d_in')):>5} {r['precision']:>4} {fmt(r['mean_ms'], 3):>9} "
            f"{fmt(r['median_ms'], 3):>9} {fmt(r['min_ms'], 3):>9} {speed:>7} "
            f"{(fmt(peak / 2**20, 1) if peak else '-'):>9} {fmt(r.get('compile_s'), 1):>9} {gb:>10}"
        )
    print("=" * 118)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bench", choices=["full", "linear"])
    p.add_argument("--device", default=None, help="cuda (default if available) or cpu")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--C", type=int, default=None, help="full: 1200, linear: 512")
    p.add_argument("--d_in", type=int, default=512)
    p.add_argument("--d_out", type=int, default=512)
    p.add_argument("--steps", type=int, default=None, help="full: 50, linear: 200 (seed defaults)")
    p.add_argument("--warmup", type=int, default=None, help="full: 10, linear: 50 (seed defaults)")
    p.add_argument("--variants", default=None)
    p.add_argument("--rows", default=None,
                   help="several shapes in one process (saves the ~20 s start-up per shape): "
                        "full: '16x128,64x256' (BxT); linear: '512:512,2048:2048' (d:C, d_in=d_out=d, "
                        "or d_in:d_out:C) at --batch/--seq")
    p.add_argument("--tf32", dest="tf32", action="store_true", default=True,
                   help="torch.set_float32_matmul_precision('high'), as both seed scripts (default)")
    p.add_argument("--no-tf32", dest="tf32", action="store_false")
    p.add_argument("--spd-path", default=None,
                   help=f"cd23cf80 export (default {DEFAULT_SPD_PATH}, else {CARRY_SPD_PATH})")
    p.add_argument("--llama-path", default=None,
                   help=f"HEAD llama_simple.py (default {DEFAULT_LLAMA_PATH}, else {CARRY_LLAMA_PATH})")
    # model shape (ss_llama_simple, 4 layers)
    p.add_argument("--vocab", type=int, default=4019)
    p.add_argument("--n_layer", type=int, default=4)
    p.add_argument("--n_embd", type=int, default=128)
    p.add_argument("--n_head", type=int, default=4)
    p.add_argument("--n_kv_heads", type=int, default=2)
    p.add_argument("--n_intermediate", type=int, default=341)
    p.add_argument("--n_ctx", type=int, default=512)
    p.add_argument("--rotary_base", type=int, default=10000)
    p.add_argument("--ci_fn_type", default="shared_mlp")
    p.add_argument("--ci_fn_hidden_dims", default="1000",
                   help="comma separated (ss_llama_simple_config.yaml: [1000])")
    p.add_argument("--json-out", default=None, help="also append RESULT json lines to this file")
    args = p.parse_args(argv)

    full = args.bench == "full"
    if args.batch is None:
        args.batch = 64
    if args.C is None:
        args.C = 1200 if full else 512
    if args.steps is None:
        args.steps = 50 if full else 200
    if args.warmup is None:
        args.warmup = 10 if full else 50
    if args.variants is None:
        args.variants = FULL_VARIANTS if full else LINEAR_VARIANTS
    args.ci_fn_hidden_dims = [int(s) for s in str(args.ci_fn_hidden_dims).split(",") if s.strip()]
    if args.warmup < 1:
        p.error("--warmup must be >= 1 (the first warm-up step is the compile step)")
    if args.steps < 1:
        p.error("--steps must be >= 1")

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.tf32:
        torch.set_float32_matmul_precision("high")
    else:
        torch.set_float32_matmul_precision("highest")
    precision = "tf32" if args.tf32 else "fp32"
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        platform.processor() or platform.machine() or "cpu")

    def resolve(given: str | None, default: str, carry: str) -> Path:
        if given is not None:
            return Path(given) if os.path.isabs(given) else REPO_ROOT / given
        if (REPO_ROOT / default).exists() or not (REPO_ROOT / carry).exists():
            return REPO_ROOT / default
        return REPO_ROOT / carry

    spd_path = resolve(args.spd_path, DEFAULT_SPD_PATH, CARRY_SPD_PATH)
    llama_path = resolve(args.llama_path, DEFAULT_LLAMA_PATH, CARRY_LLAMA_PATH)
    t_imp = time.perf_counter()
    spd = install_spd(spd_path, llama_path)
    t_ready = time.perf_counter()

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    shapes: list[dict[str, int]] = []
    if args.rows:
        for item in args.rows.split(","):
            item = item.strip()
            if not item:
                continue
            if full:
                b, _, t = item.partition("x")
                shapes.append({"batch": int(b), "seq": int(t)})
            else:
                parts = [int(v) for v in item.split(":")]
                if len(parts) == 2:
                    shapes.append({"d_in": parts[0], "d_out": parts[0], "C": parts[1]})
                elif len(parts) == 3:
                    shapes.append({"d_in": parts[0], "d_out": parts[1], "C": parts[2]})
                else:
                    p.error(f"bad --rows item {item!r}")
    else:
        shapes.append({})
    if full and any(sh.get("seq", args.seq) > args.n_ctx for sh in shapes):
        p.error("seq must be <= n_ctx (block_size)")
    print(
        f"# peer_torch {args.bench}: device={dev_name} torch={torch.__version__} "
        f"python={platform.python_version()} spd={spd.spd_commit} llama_simple={spd.llama_commit} "
        f"spd_path={spd_path} "
        f"import_torch_s={t_imp - _T_PROCESS:.1f} import_spd_s={t_ready - t_imp:.1f} "
        f"precision={precision} "
        + (f"B={args.batch} T={args.seq} " if not (full and args.rows) else "")
        + (f"C={args.C} " if not (not full and args.rows) else "")
        + (f"d_in={args.d_in} d_out={args.d_out} " if not full and not args.rows else "")
        + f"steps={args.steps} warmup={args.warmup} variants={','.join(variants)}"
        + (f" rows={args.rows}" if args.rows else ""),
        flush=True,
    )

    rows: list[dict[str, Any]] = []
    base_args = args
    for shape, variant in [(sh, v) for sh in shapes for v in variants]:
        args = argparse.Namespace(**{**vars(base_args), **shape})
        reset_compile_state()
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            mem_base = torch.cuda.memory_allocated(device)
        else:
            mem_base = None
        row: dict[str, Any] = {
            "bench": args.bench,
            "device": dev_name,
            "impl": "torch",
            "variant": variant,
            "precision": precision,
            "batch": args.batch,
            "seq": args.seq,
            "C": args.C,
            "d_in": None if full else args.d_in,
            "d_out": None if full else args.d_out,
            "steps": args.steps,
            "warmup": args.warmup,
            "mean_ms": None,
            "median_ms": None,
            "min_ms": None,
            "peak_mem_bytes": None,
            "compile_s": None,
            "loss": None,
            "torch_version": torch.__version__,
            "spd_commit": spd.spd_commit,
        }
        if full:
            row["llama_simple_commit"] = spd.llama_commit
        t0 = time.perf_counter()
        try:
            fn = run_full_variant if full else run_linear_variant
            row.update(fn(spd, args, variant, device))
            row["error"] = None
        except Exception as e:  # report and go on with the next variant
            traceback.print_exc()
            row["error"] = f"{type(e).__name__}: {e}"[:2000]
        if device.type == "cuda":
            try:
                sync(device)
                row["peak_mem_bytes"] = int(torch.cuda.max_memory_allocated(device))
                row["mem_base_bytes"] = int(mem_base) if mem_base is not None else None
            except Exception as e:  # e.g. after a CUDA error
                row["error"] = row.get("error") or f"{type(e).__name__}: {e}"
        row["variant_wall_s"] = time.perf_counter() - t0
        line = "RESULT " + json.dumps(row, sort_keys=False)
        print(line, flush=True)
        if args.json_out:
            with open(args.json_out, "a") as f:
                f.write(line[len("RESULT "):] + "\n")
        rows.append(row)
        reset_compile_state()
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    print_table(rows)
    return 0 if all(r.get("error") is None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

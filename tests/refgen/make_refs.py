#!/usr/bin/env python3
"""Generate spd-ref-v1 reference files with the real PyTorch SPD code (goodfire-ai/spd).

The maths is SPD's own: `spd.pretrain.models.llama_simple.LlamaSimple` is the target model,
`spd.models.component_model.ComponentModel` (temporary forward hooks) does the masked forward,
`spd.models.components.make_mask_infos` / `ComponentsMaskInfo` / `ComponentModel.calc_weight_deltas`
build the mask infos, and torch autograd gives the gradients. The only changes made here are

  * the float64 widening that the spd-ref-v1 format asks for: LlamaSimple computes RMSNorm and
    the rotary sin/cos tables in float32; here the rotary buffers are recomputed with SPD's own
    `CausalSelfAttention.calculate_sin_cos_rotary(..., dtype=torch.float64)` and `LlamaRMSNorm`
    computes in float64 when its input is float64 (in float32 otherwise, as in SPD);
  * stub modules for wandb and wandb_workspaces, which SPD imports at module level but which play
    no part in the maths; used only when they are not installed. (transformers must be installed:
    spd.pretrain imports GPT2LMHeadModel from it.)

SPD's code is not part of this repository: it is imported from --spd-path (default .peer/spd).
See README.md beside this file for how to set it up.

Usage:
    make_refs.py [--spd-path DIR] [--out-dir DIR] [CASE ...]     # generate (default: all cases)
    make_refs.py --reproduce FILE                                # recompute FILE's expected.*
    make_refs.py --selfcheck FILE          # all-ones masks == target; gradient vs finite difference
    make_refs.py --list
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import types
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPD_PATH = REPO_ROOT / ".peer" / "spd"
DEFAULT_OUT_DIR = REPO_ROOT / "tests" / "refs"

TARGET_CONFIG_KEYS = [
    "model_type",
    "vocab_size",
    "n_layer",
    "n_head",
    "n_key_value_heads",
    "n_embd",
    "n_intermediate",
    "n_ctx",
    "rotary_base",
    "rms_norm_eps",
    "rotary_adjacent_pairs",
]

LAYER_MODULES = [
    "attn.q_proj",
    "attn.k_proj",
    "attn.v_proj",
    "attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
]


# --------------------------------------------------------------------------------------------
# Importing SPD
# --------------------------------------------------------------------------------------------


def _install_stub(name: str, **attrs: object) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    mod.__path__ = []  # act as a package so that submodules can be stubbed too
    sys.modules[name] = mod
    parent, _, child = name.rpartition(".")
    if parent and parent in sys.modules:
        setattr(sys.modules[parent], child, mod)
    return mod


def _stub_if_missing(top: str, stubs: dict[str, dict[str, object]]) -> bool:
    try:
        __import__(top)
        return False
    except ImportError:
        for name, attrs in stubs.items():
            _install_stub(name, **attrs)
        return True


class _Anything:
    """Placeholder class for stubbed names (never used in the maths)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("stubbed class used")


def import_spd(spd_path: Path) -> dict[str, object]:
    if not (spd_path / "spd" / "models" / "component_model.py").exists():
        sys.exit(f"SPD not found at {spd_path} (expected spd/models/component_model.py); see README.md")
    # spd.settings creates SPD_OUT_DIR at import time: keep that out of $HOME.
    os.environ.setdefault("SPD_OUT_DIR", str(Path(tempfile.gettempdir()) / "spd_out_refgen"))
    sys.path.insert(0, str(spd_path))

    stubbed = []
    if _stub_if_missing(
        "wandb",
        {
            "wandb": {"Run": _Anything},
            "wandb.errors": {"CommError": Exception},
            "wandb.apis": {},
            "wandb.apis.public": {"Run": _Anything, "File": _Anything},
        },
    ):
        stubbed.append("wandb")
    if _stub_if_missing(
        "wandb_workspaces",
        {
            "wandb_workspaces": {},
            "wandb_workspaces.reports": {},
            "wandb_workspaces.reports.v2": {},
            "wandb_workspaces.workspaces": {},
        },
    ):
        stubbed.append("wandb_workspaces")

    from spd.models import component_model as cm_mod
    from spd.models import components as comp_mod
    from spd.pretrain.models import llama_simple as ls_mod
    from spd.configs import ModulePatternInfoConfig
    from spd.utils.module_utils import expand_module_patterns

    return {
        "ComponentModel": cm_mod.ComponentModel,
        "ComponentsMaskInfo": comp_mod.ComponentsMaskInfo,
        "make_mask_infos": comp_mod.make_mask_infos,
        "EmbeddingComponents": comp_mod.EmbeddingComponents,
        "LlamaSimple": ls_mod.LlamaSimple,
        "LlamaSimpleConfig": ls_mod.LlamaSimpleConfig,
        "LlamaRMSNorm": ls_mod.LlamaRMSNorm,
        "CausalSelfAttention": ls_mod.CausalSelfAttention,
        "ModulePatternInfoConfig": ModulePatternInfoConfig,
        "expand_module_patterns": expand_module_patterns,
        "stubbed": stubbed,
    }


def spd_commit(spd_path: Path) -> str:
    """Commit of the SPD tree: from a COMMIT file written at export time, else from git."""
    f = spd_path / "COMMIT"
    if f.exists():
        return f.read_text().strip()
    try:
        import subprocess

        return subprocess.check_output(
            ["git", "-C", str(spd_path), "rev-parse", "HEAD"], text=True, stderr=subprocess.DEVNULL
        ).strip()
    except Exception:
        return "unknown"


# --------------------------------------------------------------------------------------------
# float64 widening
# --------------------------------------------------------------------------------------------


def widen_to_float64(spd: dict[str, object], model) -> None:
    """Make a float64 LlamaSimple float64 throughout (rotary tables and RMSNorm included)."""
    import torch

    LlamaRMSNorm = spd["LlamaRMSNorm"]
    CausalSelfAttention = spd["CausalSelfAttention"]

    if not getattr(LlamaRMSNorm, "_refgen_widened", False):

        def rmsnorm_forward(self, hidden_states):
            # SPD's LlamaRMSNorm.forward, with the compute dtype float64 for float64 inputs
            # (SPD always uses float32 here).
            input_dtype = hidden_states.dtype
            compute = torch.float64 if input_dtype == torch.float64 else torch.float32
            hidden_states = hidden_states.to(compute)
            variance = hidden_states.pow(2).mean(-1, keepdim=True)
            hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
            return self.weight * hidden_states.to(input_dtype)

        LlamaRMSNorm.forward = rmsnorm_forward
        LlamaRMSNorm._refgen_widened = True

    for mod in model.modules():
        if isinstance(mod, CausalSelfAttention):
            # SPD's own table code; with dtype=float64 it computes pos/freq, sin, cos in float64.
            sin, cos = mod.calculate_sin_cos_rotary(
                mod.rotary_dim, mod.n_ctx, base=mod.rotary_base, dtype=torch.float64
            )
            mod.rotary_sin = sin
            mod.rotary_cos = cos


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------


def all_layer_modules(n_layer: int) -> list[str]:
    return [f"h.{i}.{m}" for i in range(n_layer) for m in LAYER_MODULES]


def _cfg(**kw) -> dict:
    base = {
        "model_type": "LlamaSimple",
        "rotary_base": 10000,
        "rms_norm_eps": 1e-6,
        "rotary_adjacent_pairs": False,
    }
    base.update(kw)
    return {k: base[k] for k in TARGET_CONFIG_KEYS}


CASES: dict[str, dict] = {
    # 3 layers, GQA (6 heads, 3 kv heads), adjacent-pairs rotary, all 21 linears, varied C.
    "ref_shapes": {
        "target_config": _cfg(
            vocab_size=61, n_layer=3, n_head=6, n_key_value_heads=3, n_embd=48,
            n_intermediate=80, n_ctx=16, rotary_adjacent_pairs=True,
        ),
        "patterns": [(p, 3 + (5 * k) % 17) for k, p in enumerate(all_layer_modules(3))],
        "delta": [],
        "B": 2,
        "S": 9,
        "seed": 101,
    },
    # 2 layers, only some modules decomposed; the others run with target weights.
    "ref_partial": {
        "target_config": _cfg(
            vocab_size=53, n_layer=2, n_head=4, n_key_value_heads=2, n_embd=32,
            n_intermediate=40, n_ctx=12,
        ),
        "patterns": [("h.*.mlp.up_proj", 6), ("h.1.attn.*", 4)],
        "delta": [],
        "B": 2,
        "S": 12,
        "seed": 202,
    },
    # 2 layers, all modules decomposed, delta masks for all of them.
    "ref_delta": {
        "target_config": _cfg(
            vocab_size=47, n_layer=2, n_head=4, n_key_value_heads=2, n_embd=32,
            n_intermediate=40, n_ctx=16,
        ),
        "patterns": [(p, 4 + (3 * k) % 11) for k, p in enumerate(all_layer_modules(2))],
        "delta": "all",
        "B": 2,
        "S": 10,
        "seed": 303,
    },
    # Embedding decomposed (EmbeddingComponents) with a delta mask, plus h.0.mlp.down_proj
    # without one; no GQA.
    "ref_embed": {
        "target_config": _cfg(
            vocab_size=41, n_layer=2, n_head=4, n_key_value_heads=4, n_embd=24,
            n_intermediate=36, n_ctx=16,
        ),
        "patterns": [("wte", 7), ("h.0.mlp.down_proj", 5)],
        "delta": ["wte"],
        "B": 3,
        "S": 8,
        "seed": 404,
    },
    # The tied LM head decomposed as a Linear (V [n_embd, C], U [C, vocab]) with a delta mask,
    # plus wte (no delta) and h.1.attn.v_proj (delta).
    "ref_lm_head": {
        "target_config": _cfg(
            vocab_size=37, n_layer=2, n_head=2, n_key_value_heads=1, n_embd=16,
            n_intermediate=24, n_ctx=8,
        ),
        "patterns": [("wte", 5), ("h.1.attn.v_proj", 3), ("lm_head", 9)],
        "delta": ["h.1.attn.v_proj", "lm_head"],
        "B": 2,
        "S": 8,
        "seed": 505,
    },
    # Small all-module case with delta masks, stored as float32 (inputs rounded to float32
    # first, computed in float64, expected values cast to float32).
    "ref_tiny_f32": {
        "target_config": _cfg(
            vocab_size=43, n_layer=2, n_head=4, n_key_value_heads=2, n_embd=32,
            n_intermediate=48, n_ctx=16,
        ),
        "patterns": [(p, 5 + 2 * k) for k, p in enumerate(all_layer_modules(2))],
        "delta": "all",
        "B": 2,
        "S": 11,
        "seed": 606,
        "store_dtype": "float32",
    },
}


# --------------------------------------------------------------------------------------------
# Building and running
# --------------------------------------------------------------------------------------------


def build_target(spd, target_config: dict):
    import torch

    tc = target_config
    cfg = spd["LlamaSimpleConfig"](
        model_type="LlamaSimple",
        block_size=tc["n_ctx"],
        vocab_size=tc["vocab_size"],
        n_layer=tc["n_layer"],
        n_head=tc["n_head"],
        n_key_value_heads=tc["n_key_value_heads"],
        n_embd=tc["n_embd"],
        n_intermediate=tc["n_intermediate"],
        n_ctx=tc["n_ctx"],
        rotary_base=tc["rotary_base"],
        rms_norm_eps=tc["rms_norm_eps"],
        rotary_adjacent_pairs=tc["rotary_adjacent_pairs"],
        rotary_dim=tc["n_embd"] // tc["n_head"],
    )
    model = spd["LlamaSimple"](cfg)
    model.to(torch.float64)
    widen_to_float64(spd, model)
    model.eval()
    model.requires_grad_(False)
    return model


def randomize_target(model, gen) -> None:
    """Random target weights with O(1) activations (LlamaSimple's own init is std 0.02)."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():  # wte/lm_head tied: listed once
            if p.dim() == 1:  # RMSNorm gains
                p.copy_(1.0 + 0.25 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            else:
                fan_in = p.shape[1] if not name.endswith("wte.weight") else 1
                std = 1.0 / math.sqrt(fan_in) if fan_in > 1 else 0.5
                p.copy_(std * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def execution_order(model, tokens, paths: list[str]) -> list[str]:
    order: list[str] = []
    handles = []
    for p in paths:
        sub = model.get_submodule(p)
        handles.append(sub.register_forward_hook(lambda m, a, o, p=p: order.append(p)))
    import torch

    with torch.no_grad():
        model(tokens)
    for h in handles:
        h.remove()
    assert sorted(order) == sorted(paths), (order, paths)
    return order


def build_component_model(spd, model, module_info: list[tuple[str, int]]):
    import torch

    MPI = spd["ModulePatternInfoConfig"]
    infos = spd["expand_module_patterns"](model, [MPI(module_pattern=p, C=c) for p, c in module_info])
    cm = spd["ComponentModel"](
        target_model=model,
        module_path_info=infos,
        ci_fn_type="mlp",  # the only CI type that supports Embedding; CI fns are unused here
        ci_fn_hidden_dims=[2],
        sigmoid_type="leaky_hard",
        pretrained_model_output_attr="idx_0",
    )
    cm.to(torch.float64)  # V, U are created in the default dtype (float64, set in main)
    return cm


def masked_forward_backward(spd, cm, tokens, masks: dict, delta_masks: dict):
    """SPD's masked forward (with weight deltas where delta masks are given), loss, backward."""
    import torch

    for p in cm.parameters():
        p.grad = None
    if delta_masks and set(delta_masks) == set(masks):
        weight_deltas = cm.calc_weight_deltas()
        mask_infos = spd["make_mask_infos"](
            masks,
            weight_deltas_and_masks={k: (weight_deltas[k], delta_masks[k]) for k in masks},
        )
    elif delta_masks:
        # Delta on some modules only: make_mask_infos wants all-or-none, so build the
        # ComponentsMaskInfo objects directly (same dataclass SPD uses).
        weight_deltas = cm.calc_weight_deltas()
        mask_infos = {
            k: spd["ComponentsMaskInfo"](
                component_mask=masks[k],
                weight_delta_and_mask=(weight_deltas[k], delta_masks[k]) if k in delta_masks else None,
            )
            for k in masks
        }
    else:
        mask_infos = spd["make_mask_infos"](masks)
    logits = cm(tokens, mask_infos=mask_infos)
    loss = logits.mean()
    loss.backward()
    grads = {}
    for path, comp in cm.components.items():
        assert comp.V.grad is not None and comp.U.grad is not None, path
        grads[path] = (comp.V.grad.detach().clone(), comp.U.grad.detach().clone())
    return logits.detach(), loss.detach(), grads


def make_case(spd, name: str, case: dict, generator_str: str):
    import torch

    tc = case["target_config"]
    B, S = case["B"], case["S"]
    assert S <= tc["n_ctx"]
    store = case.get("store_dtype", "float64")
    seed = case["seed"]

    gen = torch.Generator().manual_seed(seed)
    model = build_target(spd, tc)
    randomize_target(model, gen)
    tokens = torch.randint(0, tc["vocab_size"], (B, S), generator=gen, dtype=torch.int64)

    torch.manual_seed(seed)  # SPD's init_param_ draws V, U (then CI fns) from the global RNG
    cm = build_component_model(spd, model, case["patterns"])
    paths = execution_order(model, tokens, list(cm.components))
    C = {p: cm.components[p].C for p in paths}

    masks = {p: torch.rand((B, S, C[p]), generator=gen, dtype=torch.float64) for p in paths}
    delta_paths = paths if case["delta"] == "all" else [p for p in paths if p in case["delta"]]
    assert len(delta_paths) == (len(paths) if case["delta"] == "all" else len(case["delta"]))
    delta_masks = {p: torch.rand((B, S), generator=gen, dtype=torch.float64) for p in delta_paths}

    if store == "float32":
        # Round every stored input to float32 first, so that the float32 file describes exactly
        # the problem whose float64 answer it stores.
        with torch.no_grad():
            for t in list(cm.parameters()) + list(model.parameters()):
                t.copy_(t.to(torch.float32).to(torch.float64))
        masks = {k: v.to(torch.float32).to(torch.float64) for k, v in masks.items()}
        delta_masks = {k: v.to(torch.float32).to(torch.float64) for k, v in delta_masks.items()}

    logits, loss, grads = masked_forward_backward(spd, cm, tokens, masks, delta_masks)

    tensors = collect_tensors(cm, tokens, masks, delta_masks, logits, loss, grads)
    metadata = make_metadata(tc, [(p, C[p]) for p in paths], store, generator_str)
    summary = summarize(name, tc, paths, C, delta_paths, logits, loss, grads)
    if store == "float32":
        tensors = {k: (v.to(torch.float32) if v.is_floating_point() else v) for k, v in tensors.items()}
    return tensors, metadata, summary


def collect_tensors(cm, tokens, masks, delta_masks, logits, loss, grads) -> dict:
    tensors = {}
    for k, v in cm.state_dict().items():
        if k.startswith("_ci_fns."):
            continue
        if k == "target_model.lm_head.weight":
            continue  # tied to target_model.wte.weight (same tensor); the format omits it
        tensors[k] = v.detach().clone().contiguous()
    tensors["input.tokens"] = tokens.clone()
    for p, m in masks.items():
        tensors[f"input.masks.{p.replace('.', '-')}"] = m.clone()
    for p, m in delta_masks.items():
        tensors[f"input.delta_masks.{p.replace('.', '-')}"] = m.clone()
    tensors["expected.logits"] = logits.clone().contiguous()
    tensors["expected.loss"] = loss.clone().reshape(())
    for p, (gV, gU) in grads.items():
        d = p.replace(".", "-")
        tensors[f"expected.grad._components.{d}.V"] = gV
        tensors[f"expected.grad._components.{d}.U"] = gU
    return tensors


def make_metadata(tc: dict, modules: list[tuple[str, int]], dtype: str, generator_str: str) -> dict:
    return {
        "format": "spd-ref-v1",
        "target_config": json.dumps({k: tc[k] for k in TARGET_CONFIG_KEYS}),
        "modules": json.dumps([{"path": p, "C": c} for p, c in modules]),
        "loss": "mean_logits",
        "dtype": dtype,
        "generator": generator_str,
    }


def summarize(name, tc, paths, C, delta_paths, logits, loss, grads) -> str:
    lines = [
        f"{name}: L={tc['n_layer']} d={tc['n_embd']} heads={tc['n_head']}/{tc['n_key_value_heads']} "
        f"ffn={tc['n_intermediate']} vocab={tc['vocab_size']} n_ctx={tc['n_ctx']} "
        f"adjacent={tc['rotary_adjacent_pairs']}",
        f"  {len(paths)} modules, {len(delta_paths)} with delta; loss={loss.item():.6e} "
        f"max|logits|={logits.abs().max().item():.3e}",
    ]
    for p in paths:
        gV, gU = grads[p]
        lines.append(
            f"  {p:<20} C={C[p]:<3} delta={'y' if p in delta_paths else 'n'} "
            f"max|dV|={gV.abs().max().item():.3e} max|dU|={gU.abs().max().item():.3e} "
            f"|dV|={gV.norm().item():.3e} |dU|={gU.norm().item():.3e}"
        )
    return "\n".join(lines)


def save_deterministic(tensors: dict, path: Path, metadata: dict) -> None:
    """safetensors.torch.save, with the metadata keys in a fixed order (the library writes them in
    hash order), so that regenerating a file gives the same bytes."""
    import struct

    from safetensors.torch import save

    blob = save(tensors, metadata=metadata)
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    data = blob[8 + n :]
    header.pop("__metadata__")
    out = {"__metadata__": {k: metadata[k] for k in metadata}}
    out.update(header)  # tensor entries in the library's order; data offsets unchanged
    text = json.dumps(out, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


# --------------------------------------------------------------------------------------------
# Reproducing an existing reference file
# --------------------------------------------------------------------------------------------


def reproduce(spd, path: Path) -> float:
    """Load a reference file, recompute its expected.* with SPD, print the errors."""
    import torch
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        t = {k: f.get_tensor(k) for k in f.keys()}
    tc = json.loads(meta["target_config"])
    modules = json.loads(meta["modules"])
    model = build_target(spd, tc)
    cm = build_component_model(spd, model, [(m["path"], m["C"]) for m in modules])
    sd = {k: v.to(torch.float64) if v.is_floating_point() else v for k, v in t.items()
          if k.startswith("target_model.") or k.startswith("_components.")}
    missing, unexpected = cm.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith("_ci_fns.")]
    if "target_model.lm_head.weight" in missing and "target_model.lm_head.weight" not in sd:
        missing.remove("target_model.lm_head.weight")  # tied to wte
    assert not missing and not unexpected, (missing, unexpected)
    assert model.lm_head.weight is model.wte.weight
    widen_to_float64(spd, model)  # (load_state_dict does not touch the rotary buffers; be sure)

    tokens = t["input.tokens"].to(torch.int64)
    masks = {m["path"]: t[f"input.masks.{m['path'].replace('.', '-')}"].to(torch.float64) for m in modules}
    delta_masks = {
        m["path"]: t[f"input.delta_masks.{m['path'].replace('.', '-')}"].to(torch.float64)
        for m in modules
        if f"input.delta_masks.{m['path'].replace('.', '-')}" in t
    }
    logits, loss, grads = masked_forward_backward(spd, cm, tokens, masks, delta_masks)

    got = {"expected.logits": logits, "expected.loss": loss}
    for p, (gV, gU) in grads.items():
        d = p.replace(".", "-")
        got[f"expected.grad._components.{d}.V"] = gV
        got[f"expected.grad._components.{d}.U"] = gU
    worst = 0.0
    print(f"reproducing {path} ({meta.get('generator')})")
    for k in sorted(k for k in t if k.startswith("expected.")):
        ref = t[k].to(torch.float64)
        a = got[k]
        rel_max = (a - ref).abs().max().item() / max(ref.abs().max().item(), 1e-12)
        rel_norm = (a - ref).norm().item() / max(ref.norm().item(), 1e-300)
        worst = max(worst, rel_max, rel_norm)
        print(f"  {k:<52} rel_max={rel_max:.3e} rel_norm={rel_norm:.3e}")
    print(f"  worst relative error: {worst:.3e}")
    return worst


def selfcheck(spd, path: Path) -> float:
    """Checks on a reference file that do not trust its expected.* blindly: (1) with every mask and
    delta mask 1, the component model must reproduce the plain target model; (2) the stored
    gradient, dotted with a random direction in all V and U, must match a central finite
    difference of the loss (eps 1e-5, so agreement to ~1e-7 relative is all one can ask)."""
    import torch
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        t = {k: f.get_tensor(k) for k in f.keys()}
    t = {k: (v.to(torch.float64) if v.is_floating_point() else v) for k, v in t.items()}
    tc = json.loads(meta["target_config"])
    mods = json.loads(meta["modules"])
    paths = [m["path"] for m in mods]
    model = build_target(spd, tc)
    cm = build_component_model(spd, model, [(m["path"], m["C"]) for m in mods])
    cm.load_state_dict({k: v for k, v in t.items() if k.startswith(("target_model.", "_components."))}, strict=False)
    tok = t["input.tokens"].to(torch.int64)

    def d(p: str) -> str:
        return p.replace(".", "-")

    with torch.no_grad():
        target_logits = model(tok)[0]
    ones = {p: torch.ones(*tok.shape, m["C"]) for p, m in zip(paths, mods)}
    logits, _, _ = masked_forward_backward(spd, cm, tok, ones, {p: torch.ones(tok.shape) for p in paths})
    id_err = (logits - target_logits).abs().max().item() / target_logits.abs().max().item()

    masks = {p: t[f"input.masks.{d(p)}"] for p in paths}
    dm = {p: t[f"input.delta_masks.{d(p)}"] for p in paths if f"input.delta_masks.{d(p)}" in t}
    g = torch.Generator().manual_seed(0)
    dirs = {p: (torch.randn(cm.components[p].V.shape, generator=g), torch.randn(cm.components[p].U.shape, generator=g)) for p in paths}
    pred = sum(
        (t[f"expected.grad._components.{d(p)}.V"] * dirs[p][0]).sum()
        + (t[f"expected.grad._components.{d(p)}.U"] * dirs[p][1]).sum()
        for p in paths
    ).item()

    def loss_at(eps: float) -> float:
        with torch.no_grad():
            for p in paths:
                c = cm.components[p]
                c.V.copy_(t[f"_components.{d(p)}.V"] + eps * dirs[p][0])
                c.U.copy_(t[f"_components.{d(p)}.U"] + eps * dirs[p][1])
        return masked_forward_backward(spd, cm, tok, masks, dm)[1].item()

    eps = 1e-5
    fd = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    fd_err = abs(pred - fd) / max(abs(pred), 1e-300)
    print(f"selfcheck {path.name}: all-ones masks vs target rel err {id_err:.2e}; "
          f"directional derivative {pred:.10e} vs finite difference {fd:.10e} (rel {fd_err:.1e})")
    return max(id_err / 1e-12, fd_err / 1e-5)


# --------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*", help="case names (default: all)")
    ap.add_argument("--spd-path", type=Path, default=DEFAULT_SPD_PATH)
    ap.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    ap.add_argument("--reproduce", type=Path, action="append", default=[])
    ap.add_argument("--selfcheck", type=Path, action="append", default=[])
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()

    if args.list:
        for k, c in CASES.items():
            print(k, c["target_config"], c["patterns"], "delta:", c["delta"])
        return

    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    # Parameters are created in float64 (V, U drawn in float64). LlamaSimple's rotary tables are
    # computed in float32 regardless (explicit dtype) and are recomputed in widen_to_float64.
    torch.set_default_dtype(torch.float64)
    spd = import_spd(args.spd_path.resolve())
    commit = spd_commit(args.spd_path.resolve())
    if spd["stubbed"]:
        print(f"(stubbed, not installed: {', '.join(spd['stubbed'])})")
    generator_str = f"goodfire-ai/spd@{commit[:12]} ComponentModel (hooks), computed in float64"

    if args.selfcheck:
        worst = max(selfcheck(spd, p) for p in args.selfcheck)
        sys.exit(0 if worst < 1 else 1)
    if args.reproduce:
        worst = max(reproduce(spd, p) for p in args.reproduce)
        sys.exit(0 if worst < 1e-10 else 1)

    names = args.cases or list(CASES)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        tensors, metadata, summary = make_case(spd, name, CASES[name], generator_str)
        out = args.out_dir / f"{name}.safetensors"
        save_deterministic(tensors, out, metadata)
        print(summary)
        print(f"  -> {out} ({out.stat().st_size} bytes, {len(tensors)} tensors)")


if __name__ == "__main__":
    main()

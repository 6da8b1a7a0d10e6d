#!/usr/bin/env python3
"""Small torch.save files for tests/test_pth.c (spd import's reader), written by torch itself.

    .torch/bin/python tests/refgen/make_pth_fixtures.py [--out-dir tests/refs/pth]

Writes, each a few KB:
  state.pth                the state dict of a tiny tied TMS-like nn.Module (OrderedDict with
                           _metadata, linear2.weight a transposed view sharing linear1.weight's
                           storage) plus: a non-contiguous view at an offset into a larger storage,
                           two views of one storage, float64, int64, a 0-d tensor, an empty tensor
                           and an nn.Parameter value
  state_p4.pth             the same, pickle protocol 4 (FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL)
  state.expected.safetensors  the same tensors, contiguous, in the same order (what import must give)
  bad_global.pth           a pickle naming posix.system (refused, as weights_only refuses it)
  non_tensor.pth           a dict with an int value (refused: not a state dict of tensors)
  nested.pth               {"model": state_dict} (refused: a value is a dict)
  compressed.pth           state.pth's entries deflate-compressed (refused: torch writes stored entries)
  legacy.pth               torch.save(..., _use_new_zipfile_serialization=False) (refused: not a zip)
  zip64.pth                state.pth re-zipped by Python's zipfile with force_zip64 (zip64 local
                           headers, sizes 0xFFFFFFFF there, data not 64-byte aligned): still read
  zip64_cd.pth             state.pth with a zip64 central directory (every size and offset in a
                           zip64 extra field, zip64 end record and locator), as torch writes past
                           4 GiB: still read
  old_names.pth            an old SPD checkpoint's names (patched_model., .original.weight,
                           .components.U, _gates.), which import maps as SPD's loader does
Deterministic: fixed values, no RNG.
"""

import argparse
import os
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent


class Tiny(torch.nn.Module):
    """TMS's layout (5 features, 2 hidden): linear1 [2, 5], linear2 [5, 2] tied, linear2.bias."""

    def __init__(self):
        super().__init__()
        self.linear1 = torch.nn.Linear(5, 2, bias=False)
        self.linear2 = torch.nn.Linear(2, 5, bias=True)
        with torch.no_grad():
            self.linear1.weight.copy_(torch.arange(10, dtype=torch.float32).reshape(2, 5) / 7 - 0.5)
            self.linear2.bias.copy_(torch.linspace(-1, 1, 5))
        self.linear2.weight.data = self.linear1.weight.data.T  # SPD's tie_weights_


class Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def state_dict():
    sd = Tiny().state_dict()  # OrderedDict with _metadata
    big = torch.arange(60, dtype=torch.float32).reshape(6, 10) * 0.25 - 3
    sd["extra.strided"] = big[1:5, 2:9:3]  # offset 12, strides (10, 3)
    sd["extra.strided_t"] = big[1:5, 2:9:3].T  # the same storage again, transposed
    sd["extra.f64"] = torch.tensor([1.0 / 3, -2.5e-300, 1e300, float("-inf")], dtype=torch.float64)
    sd["extra.i64"] = torch.tensor([[-(2**40), 7], [0, 2**62]], dtype=torch.int64)
    sd["extra.scalar"] = torch.tensor(0.1, dtype=torch.float32)
    sd["extra.empty"] = torch.zeros(0, 3)
    sd["extra.param"] = torch.nn.Parameter(torch.tensor([1.5, -2.0]))
    return sd


def zip64_central_directory(src: Path, dst: Path) -> None:
    """src's local headers and data as they are; the central directory and end records rewritten
    in zip64 form (APPNOTE 4.3.14-4.3.16, 4.5.3), with every size and offset only in the extras."""
    raw = src.read_bytes()
    with zipfile.ZipFile(src) as z:
        infos = z.infolist()
    cd_off = struct.unpack("<I", raw[raw.rindex(b"PK\x05\x06") + 16:][:4])[0]
    body = raw[:cd_off]
    cd = b""
    for i in infos:
        name = i.filename.encode()
        extra = struct.pack("<HHQQQ", 1, 24, i.file_size, i.compress_size, i.header_offset)
        cd += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0, i.CRC, 0xFFFFFFFF, 0xFFFFFFFF,
                          len(name), len(extra), 0, 0, 0, 0, 0xFFFFFFFF) + name + extra
    eocd64_off = len(body) + len(cd)
    eocd64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, len(infos), len(infos), len(cd), len(body))
    locator = struct.pack("<IIQI", 0x07064B50, 0, eocd64_off, 1)
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    dst.write_bytes(body + cd + eocd64 + locator + eocd)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default=str(HERE.parents[0] / "refs" / "pth"))
    out = Path(ap.parse_args().out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sd = state_dict()
    torch.save(sd, out / "state.pth")
    torch.save(sd, out / "state_p4.pth", pickle_protocol=4)
    save_file({k: v.detach().contiguous() for k, v in sd.items()}, out / "state.expected.safetensors",
              metadata={"format": "pt"})
    torch.save({"a": torch.ones(2), "evil": Evil()}, out / "bad_global.pth")
    torch.save({"a": torch.ones(2), "n": 3}, out / "non_tensor.pth")
    torch.save({"model": {"a": torch.ones(2)}}, out / "nested.pth")
    with zipfile.ZipFile(out / "state.pth") as src, zipfile.ZipFile(out / "compressed.pth", "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)
    torch.save({"a": torch.ones(2)}, out / "legacy.pth", _use_new_zipfile_serialization=False)
    with zipfile.ZipFile(out / "state.pth") as src, zipfile.ZipFile(out / "zip64.pth", "w") as dst:
        for info in src.infolist():
            with dst.open(zipfile.ZipInfo(info.filename), "w", force_zip64=True) as f:
                f.write(src.read(info.filename))
    zip64_central_directory(out / "state.pth", out / "zip64_cd.pth")
    t = torch.arange(4.0).reshape(2, 2)
    torch.save({"patched_model.h.0.mlp.original.weight": t, "patched_model.h.0.mlp.components.U": t + 1,
                "h.1.attn.components.V": t + 2, "_gates.h-0-mlp.layers.0.W": t + 3}, out / "old_names.pth")
    # What torch.load(weights_only=True) says of each, for the record.
    for f in sorted(out.glob("*.pth")):
        try:
            torch.load(f, weights_only=True)
            print(f"{f.name}: loads")
        except Exception as e:  # noqa: BLE001
            print(f"{f.name}: refused by weights_only: {type(e).__name__}")


if __name__ == "__main__":
    main()

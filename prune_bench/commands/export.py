"""`prune-bench export RUN_DIR`: a finished run's model as ONNX, torch.export and TorchScript
files, each checked against PyTorch, with export.json (export.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..export import DEFAULT_FORMATS, FILES, export_run, parse_formats


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="prune-bench export")
    parser.add_argument("run_dir", help="a finished run's directory (it holds record.json and model.pt)")
    parser.add_argument("--out", help="the folder to write (default: RUN_DIR/export)")
    parser.add_argument("--format", default=",".join(DEFAULT_FORMATS),
                        help=f"comma-separated, any of {', '.join(FILES)} (default: {','.join(DEFAULT_FORMATS)})")
    options = parser.parse_args(args)
    formats = parse_formats(options.format)
    manifest = export_run(Path(options.run_dir), options.out, formats)
    out_dir = Path(options.out).expanduser() if options.out else Path(options.run_dir).expanduser() / "export"
    model, normalisation = manifest["model"], manifest["input"]["normalisation"]
    shape = "slimmed" if model["slimmed"] else "unpruned"
    print(f"exported {model['label']} ({shape}, {model['params'] / 1e6:.2f}M params) from {options.run_dir}")
    for name, entry in manifest["formats"].items():
        check = entry["verified"]
        batches = " and ".join(str(n) for n in check["batch_sizes"])
        print(f"  {name:<12} {out_dir / entry['file']}  ({entry['bytes'] / 1e6:.1f} MB); {check['runtime']} vs "
              f"PyTorch at batch {batches}: max |logit diff| {check['max_abs_diff']:.1e} "
              f"(tolerance {check['tolerance']:.1e})")
    mean = ", ".join(f"{v:.2f}" for v in normalisation["mean"])
    std = ", ".join(f"{v:.2f}" for v in normalisation["std"])
    print(f"  {'manifest':<12} {out_dir / 'export.json'}")
    shape = ", ".join(str(n) for n in manifest["input"]["shape"])
    print(f"input: float32 [{shape}] ({manifest['input']['layout']}, "
          f"{manifest['input']['channels']}), (pixels - mean) / std with pixels in 0..255, "
          f"mean [{mean}], std [{std}]; {len(manifest['classes'])} classes")
    return 0

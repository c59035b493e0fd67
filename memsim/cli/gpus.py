"""``memsim gpus [--json]``: the bundled GPU profiles."""

from __future__ import annotations

import json

import typer

from memsim.cli import app, user_errors


@app.command("gpus")
@user_errors
def gpus(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List the bundled GPU profiles with their headline numbers."""
    from memsim.hardware import gpu_names, load_gpu

    rows = []
    for name in gpu_names():
        g = load_gpu(name)
        rows.append({
            "name": g.name,
            "display_name": g.display_name,
            "sm_count": g.spec.sm_count,
            "hbm_bytes": g.spec.hbm_bytes,
            "hbm_bandwidth_bytes_per_s": g.spec.hbm_bandwidth_bytes_per_s,
            "l2_bytes": g.spec.l2_bytes,
            "shared_memory_per_block_max_bytes": g.spec.shared_memory_per_block_max_bytes,
            "bf16_tensor_flop_per_s": g.spec.bf16_tensor_flop_per_s,
            "fp32_flop_per_s": g.spec.fp32_flop_per_s,
            "usd_per_gpu_hour": g.price.usd_per_gpu_hour,
        })
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    # fits 80 columns with whole names (h100-sxm and h100-pcie must not both read "h100-…")
    table = Table(title="GPU profiles (hardware_profiles/*.toml)", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    table.add_column("name", no_wrap=True)
    for col in ("SMs", "HBM\nGB", "HBM\nTB/s", "L2\nMiB", "SRAM\nKiB/blk", "bf16\nTFLOP/s",
                "fp32\nTFLOP/s", "$/GPU\nhour"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["name"], str(r["sm_count"]), f"{r['hbm_bytes'] / 1e9:.0f}",
            f"{r['hbm_bandwidth_bytes_per_s'] / 1e12:.2f}", f"{r['l2_bytes'] / 2**20:.0f}",
            f"{r['shared_memory_per_block_max_bytes'] / 2**10:.0f}",
            f"{r['bf16_tensor_flop_per_s'] / 1e12:.0f}", f"{r['fp32_flop_per_s'] / 1e12:.1f}",
            f"{r['usd_per_gpu_hour']:.2f}",
        )
    Console().print(table)

"""benchmarks/decode_latency.py: the mean-over-images table and each mode's extra time over jscc."""

from __future__ import annotations

from benchmarks.decode_latency import markdown_table


def row(image: str, mode: str, snr: float, ms: float, nfe: int = 1) -> dict:
    """A measured row whose fastest decode took 10 ms less than its median."""
    return {"image": image, "size": "768x512", "mode": mode, "snr_db": snr, "batch": 1, "nfe": nfe,
            "decode_ms_per_image": ms, "fastest_ms_per_image": ms - 10}


def test_mean_over_images_and_extra_over_jscc():
    rows = [row("a", "jscc", 0.0, 200.0), row("a", "consistency", 0.0, 250.0, 2),
            row("b", "jscc", 0.0, 300.0), row("b", "consistency", 0.0, 390.0, 2)]
    lines = markdown_table(rows).splitlines()
    assert lines[2] == "| jscc | 0 | 1 | 1 | 2 | 250.0 | +0.0 | 240.0 | +0.0 |"
    assert lines[3] == "| consistency | 0 | 1 | 2 | 2 | 320.0 | +70.0 | 310.0 | +70.0 |"


def test_no_extra_without_jscc():
    assert markdown_table([row("a", "consistency", 10.0, 250.0, 2)]).splitlines()[2].endswith("| 250.0 |  | 240.0 |  |")

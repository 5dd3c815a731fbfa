"""The GPU benchmark runs end to end (on the CPU, at tiny sizes) so it never rots."""

from benchmarks import gpu


def test_gpu_benchmark_quick_run_measures_every_part_and_appends(tmp_path):
    out = tmp_path / "RESULTS.md"
    out.write_text("# Benchmark results\n")
    text = gpu.main(["--quick", "--device", "cpu", "--out", str(out)])
    for family in gpu.FAMILIES:
        rows = [line for line in text.splitlines() if line.startswith(f"| {family.label} |")]
        assert len(rows) == 2, family.label  # batch 2, fp32, channels_last off / on
        assert all(float(row.split("|")[7].replace(",", "")) > 0 for row in rows), rows
    assert "failed" not in text and "skipped" not in text
    assert "batched gather of a uint8 tensor" in text and "Lightning epoch / bare" in text
    written = out.read_text()
    assert written.startswith("# Benchmark results\n") and written.endswith(text)

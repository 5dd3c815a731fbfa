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


def test_a_cell_that_runs_out_of_memory_is_a_failed_row_and_the_grid_goes_on(monkeypatch):
    calls = []

    def cell(template, family, size, batch, *rest):
        calls.append(family.label)
        if family.label == "mba":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
        return 123.0, None

    monkeypatch.setattr(gpu, "train_cell", cell)
    rows = gpu.training_rows(gpu.torch.device("cpu"), quick=True, deadline=float("inf"))
    failed = [row for row in rows if "failed" in row]
    assert len(failed) == 2 and all(row.startswith("| mba |") for row in failed)
    assert all("failed: CUDA out of memory. Tried to allocate 2.00 GiB |" in row
               for row in failed)
    assert calls.count("vgg_cbam") == 2  # the families after the failure still ran

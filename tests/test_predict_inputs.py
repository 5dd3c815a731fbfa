"""predict on the files people actually have: 16-bit PNGs, huge photos, cut-off and corrupt
videos next to good ones. Every file is written in its real format."""

from __future__ import annotations

import csv
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_lightning.config import compose_config
from fer_lightning.data.sources.io import read_image
from fer_lightning.predict import ImageTooLargeError, load_image, predict
from tests.fixtures_inference import write_checkpoint

FRAMES = 30


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(["model=mini_xception", "model.num_modules=2"],
                            tmp_path_factory.mktemp("net") / "net.ckpt")


def run_predict(tmp_path: Path, checkpoint: Path, source: Path, *overrides: str) -> tuple:
    """(summary, rows of predictions.csv) of the predict command, without detection."""
    cfg = compose_config([f"ckpt_path={checkpoint}", f"input={source}", "detect=false",
                          "progress=false", *overrides], tmp_path / "out",
                         config_name="predict")
    summary = predict(cfg)
    with open(tmp_path / "out/predictions.csv", newline="") as handle:
        return summary, list(csv.DictReader(handle))


def grey16(path: Path, width: int = 40, height: int = 30) -> np.ndarray:
    """A real 16-bit greyscale PNG of a horizontal ramp over 0..65535; its values."""
    values = np.tile(np.linspace(0, 65535, width).round().astype(np.uint16), (height, 1))
    Image.fromarray(values).save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I;16")  # really written as 16 bits
    return values


def test_16_bit_grey_png_is_scaled_like_the_training_reader(tmp_path):
    values = grey16(tmp_path / "ramp.png")
    image = load_image(tmp_path / "ramp.png")
    expected = np.rint(values / 257.0).astype(np.uint8)
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8
    assert (image == expected[..., None]).all()  # not all white: 0 ... 255 across
    assert (image == read_image(tmp_path / "ramp.png")).all()
    assert (load_image(values) == image).all()  # the same from an array


def test_predict_reads_a_16_bit_png_like_its_8_bit_twin(tmp_path, checkpoint):
    folder = tmp_path / "images"
    folder.mkdir()
    values = grey16(folder / "wide.png", 64, 64)
    Image.fromarray(np.rint(values / 257.0).astype(np.uint8)).save(folder / "narrow.png")
    _, rows = run_predict(tmp_path, checkpoint, folder)
    by_file = {row["file"]: row for row in rows}
    probabilities = [[float(v) for k, v in by_file[name].items() if k.startswith("p_")]
                     for name in ("wide.png", "narrow.png")]
    assert np.allclose(*probabilities, atol=1e-6)


def png_header_only_cost(path: Path, width: int, height: int) -> Path:
    """A valid black greyscale PNG of ``width`` x ``height`` written row by row (a few
    hundred KB on disk for 10000 x 10000, little memory to write)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))

    compressor, row, parts = zlib.compressobj(1), bytes(width + 1), []
    for _ in range(height):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))
    return path


def test_a_huge_png_is_refused_from_its_header_and_the_folder_goes_on(tmp_path, checkpoint):
    folder = tmp_path / "images"
    folder.mkdir()
    huge = png_header_only_cost(folder / "huge.png", 10000, 10000)
    with Image.open(huge) as opened:
        assert opened.size == (10000, 10000)
    Image.fromarray(np.full((48, 48), 128, np.uint8)).save(folder / "small.png")
    with pytest.raises(ImageTooLargeError, match=r"10000x10000 \(100.0 megapixels\), over "
                                                 r"max_pixels=50000000"):
        load_image(huge)
    summary, rows = run_predict(tmp_path, checkpoint, folder)
    by_file = {row["file"]: row["status"] for row in rows}
    assert by_file["small.png"] == "ok"
    assert by_file["huge.png"].startswith("unreadable: ") and "max_pixels" in by_file["huge.png"]
    assert summary["unreadable"] == 1


def test_max_pixels_can_be_raised_or_lifted(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.zeros((300, 200), np.uint8)).save(path)
    with pytest.raises(ImageTooLargeError, match="300"):
        load_image(path, max_pixels=50_000)
    assert load_image(path, max_pixels=60_000).shape == (300, 200, 3)
    assert load_image(path, max_pixels=None).shape == (300, 200, 3)


def write_video(path: Path, codec: str, frames: int = FRAMES, **options: str) -> Path:
    """A real video of noise frames (64 x 64, 10 fps) written with PyAV."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(frames):
            image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def cut(path: Path, target: Path, fraction: float) -> Path:
    """A copy of the first ``fraction`` of a file's bytes (an interrupted copy)."""
    data = path.read_bytes()
    target.write_bytes(data[:int(len(data) * fraction)])
    return target


def test_corrupt_and_truncated_videos_become_rows_and_the_folder_goes_on(tmp_path,
                                                                         checkpoint):
    folder, source = tmp_path / "videos", tmp_path / "source"
    folder.mkdir()
    source.mkdir()
    # mp4 with its index first and 2000 bytes overwritten mid-file (a damaged copy): it
    # opens, then decoding fails part-way.
    mp4 = bytearray(write_video(source / "clip.mp4", "libx264", movflags="faststart")
                    .read_bytes())
    middle = len(mp4) // 2
    mp4[middle:middle + 2000] = np.random.default_rng(2).bytes(2000)
    (folder / "a_damaged.mp4").write_bytes(bytes(mp4))
    # AVI (MPEG-4 part 2) and Matroska cut off (an interrupted copy): they open and end
    # early without an error; AVI declares its frame count, Matroska its duration.
    avi = write_video(source / "clip.avi", "mpeg4")
    cut(avi, folder / "b_cut.avi", 0.6)
    cut(write_video(source / "clip.mkv", "libx264"), folder / "c_cut.mkv", 0.6)
    (folder / "d_garbage.mp4").write_bytes(np.random.default_rng(1).bytes(5000))
    (folder / "e_whole.avi").write_bytes(avi.read_bytes())
    summary, rows = run_predict(tmp_path, checkpoint, folder)

    def statuses(name: str) -> list[str]:
        return [row["status"] for row in rows if row["file"] == name]

    for name, words in (("a_damaged.mp4", "decoding failed after frame"),
                        ("b_cut.avi", f"of the {FRAMES} frames its header declares"),
                        ("c_cut.mkv", f"of the {FRAMES} frames its header implies")):
        ok, last = statuses(name)[:-1], statuses(name)[-1]
        assert 0 < len(ok) < FRAMES and set(ok) == {"ok"}, name
        assert last.startswith("truncated: ") and words in last, last
    assert [status.split(":")[0] for status in statuses("d_garbage.mp4")] == ["unreadable"]
    assert statuses("e_whole.avi") == ["ok"] * FRAMES
    assert summary["truncated"] == 3 and summary["unreadable"] == 1

"""Decoders: exact frames from a lossless fixture, in the asked order, resized in the decoder."""
from __future__ import annotations

import numpy as np
import pytest

import extract.decoders as decoders
from extract.decoders import DECODERS, DecodeError, open_video, read_frames, short_side_size
from extract_helpers import known_frames, write_video

def _torchcodec_usable() -> bool:
    """torchcodec imports only with the system's FFmpeg shared libraries (not on every machine)."""
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or OSError/RuntimeError loading libav*
        return False
    return True


USABLE = ["decord", "pyav"] + [
    pytest.param("torchcodec", marks=pytest.mark.skipif(
        not _torchcodec_usable(), reason="torchcodec or the system's FFmpeg libraries missing"))]


@pytest.mark.parametrize("decoder", USABLE)
def test_exact_frames_in_order_with_duplicates(lossless_video, decoder):
    path, frames = lossless_video
    idx = np.array([23, 0, 5, 5, 17, 11, 22, 1])
    with open_video(path, decoder) as r:
        assert r.num_frames == len(frames)
        assert r.size == (frames.shape[2], frames.shape[1])
        assert r.fps == pytest.approx(25.0)
        out = r.get(idx)
        assert out.dtype == np.uint8 and out.shape == (len(idx), *frames.shape[1:])
        np.testing.assert_array_equal(out, frames[idx])
        np.testing.assert_array_equal(r.get(np.arange(len(frames))), frames)  # every frame


@pytest.mark.parametrize("decoder", USABLE)
def test_long_gop_seeks_are_exact(tmp_path, decoder):
    # Key frames every 4 frames: reading far-apart frames seeks; the frames must still be right.
    frames = known_frames(40, 20, 28, seed=3)
    path = write_video(tmp_path / "g4.mp4", frames, gop=4)
    idx = np.array([38, 2, 21, 9, 30, 30, 13])
    np.testing.assert_array_equal(read_frames(path, idx, decoder), frames[idx])


@pytest.mark.parametrize("decoder", USABLE)
def test_decode_threads_do_not_change_pixels(tmp_path, decoder, monkeypatch):
    # Lossy, B-frames, one GOP: frame threads decode references in parallel; the result must be
    # the same bytes as a single-threaded decode (features may not depend on worker counts).
    frames = known_frames(60, 72, 128, seed=5)
    path = write_video(tmp_path / "lossy.mp4", frames, gop=250, lossless=False)
    idx = np.array([57, 3, 30, 31, 12])
    out = {}
    for n in (1, 0, 2):
        monkeypatch.setattr(decoders, "_DECODE_THREADS", 0)
        decoders.set_decode_threads(n)
        assert decoders.decode_threads() == n
        out[n] = (read_frames(path, idx, decoder), read_frames(path, idx, decoder, resize_short=36))
    for n in (0, 2):
        np.testing.assert_array_equal(out[n][0], out[1][0])
        np.testing.assert_array_equal(out[n][1], out[1][1])
    # ... and they are the frames asked for: each is closest to its own source frame.
    err = np.abs(out[1][0][:, None].astype(int) - frames[None].astype(int)).mean(axis=(2, 3, 4))
    np.testing.assert_array_equal(err.argmin(axis=1), idx)
    with pytest.raises(ValueError, match="decode threads must be >= 0"):
        decoders.set_decode_threads(-1)


def test_decode_workers_use_one_decoder_thread_when_several(monkeypatch, lossless_video):
    import cv2
    import torch

    monkeypatch.setattr(decoders, "_DECODE_THREADS", 0)
    t0, c0 = torch.get_num_threads(), cv2.getNumThreads()
    try:
        decoders.init_decode_worker(0, workers=1)  # one worker: FFmpeg keeps its frame threads
        assert decoders.decode_threads() == 0
        decoders.init_decode_worker(1, workers=2)  # two side by side: one thread each
        assert decoders.decode_threads() == 1 and torch.get_num_threads() == 1
        with open_video(lossless_video[0], "decord") as r:
            assert r._num_threads == 1
    finally:
        torch.set_num_threads(t0)
        cv2.setNumThreads(c0)


@pytest.mark.parametrize("decoder", USABLE)
def test_resize_inside_decoder(lossless_video, decoder):
    path, frames = lossless_video  # 64x36
    out = read_frames(path, np.array([0, 3]), decoder, resize_short=18)
    assert out.shape == (2, 18, 32, 3)
    # Resizing keeps the picture: close to an area-downsampled reference.
    ref = frames[[0, 3]].reshape(2, 18, 2, 32, 2, 3).mean(axis=(2, 4))
    assert np.abs(out.astype(float) - ref).mean() < 25
    with open_video(path, decoder) as r:  # a reader serves both sizes
        assert r.get(np.array([1]), resize_short=12).shape == (1, 12, 21, 3)
        np.testing.assert_array_equal(r.get(np.array([1])), frames[[1]])


def test_short_side_size():
    assert short_side_size(3840, 2160, 256) == (455, 256)
    assert short_side_size(160, 120, 128) == (171, 128)
    assert short_side_size(120, 160, 128) == (128, 171)
    assert short_side_size(160, 120, None) == (160, 120)


@pytest.mark.parametrize("decoder", USABLE)
def test_bad_files_raise_one_line_errors(tmp_path, decoder, lossless_video):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    good, frames = lossless_video
    truncated = tmp_path / "trunc.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for p, words in [(tmp_path / "missing.mp4", "not found"), (empty, "empty"),
                     (text, ""), (truncated, "")]:
        with pytest.raises(DecodeError) as e:
            read_frames(p, np.array([0, 1]), decoder)
        msg = str(e.value)
        assert str(p) in msg and words in msg and "\n" not in msg
    with pytest.raises(DecodeError, match="out of range"):
        read_frames(good, np.array([0, len(frames)]), decoder)


def test_unknown_and_unavailable_decoders_list_choices(lossless_video):
    path, _ = lossless_video
    with pytest.raises(DecodeError, match="decord, pyav, torchcodec"):
        open_video(path, "opencv")
    assert set(DECODERS) == {"decord", "pyav", "torchcodec"}
    try:
        import torchcodec  # noqa: F401
        pytest.skip("torchcodec is installed here")
    except Exception:  # noqa: BLE001
        pass
    with pytest.raises(DecodeError, match="Available: decord, pyav"):
        open_video(path, "torchcodec")


def test_auto_picks_decord_for_short_and_pyav_for_long_videos(tmp_path, lossless_video,
                                                             monkeypatch):
    path, frames = lossless_video  # 24 frames of 64x36
    assert decoders.auto_decoder(path) == "decord"
    with open_video(path, "auto") as r:
        assert isinstance(r, decoders.DecordReader)
        np.testing.assert_array_equal(r.get(np.array([3, 20])), frames[[3, 20]])
    # The limit sits between 23 and 24 frames of this size: the same file is now "long".
    monkeypatch.setattr(decoders, "AUTO_DECORD_MAX_PIXELS", 23 * 64 * 36)
    assert decoders.auto_decoder(path) == "pyav"
    with open_video(path, "auto") as r:
        assert isinstance(r, decoders.PyAVReader)
        np.testing.assert_array_equal(r.get(np.array([3, 20])), frames[[3, 20]])
    # Matroska headers carry no frame count: auto estimates it from duration x rate.
    mkv = write_video(tmp_path / "v.mkv", frames)
    assert decoders._probe_pyav(mkv)[::3] == (64, 24)  # (W, frame count)
    assert decoders.auto_decoder(mkv) == "pyav"
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(DecodeError, match="bad.mp4"):
        open_video(bad, "auto")


def test_decord_falls_back_to_pyav_on_its_planar_rgb_bug(tmp_path):
    # decord 0.6 mis-copies 48-px-wide gbrp frames; the reader must still return exact frames.
    frames = known_frames(6, 36, 48)
    path = write_video(tmp_path / "w48.mp4", frames)
    np.testing.assert_array_equal(read_frames(path, np.array([4, 1, 4]), "decord"), frames[[4, 1, 4]])


# --- issue 16, items 11 and 15: AV1 under auto, and files with several video streams ---------

def _encoders() -> str:
    import subprocess

    from pipeline.ffmpeg import ffmpeg_exe

    return subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True,
                          text=True).stdout


def _av1_encoder() -> str | None:
    text = _encoders()
    return next((e for e in ("libaom-av1", "libsvtav1") if f" {e} " in text), None)


def test_av1_falls_back_to_pyav_under_auto(tmp_path, caplog):
    """decord 0.6's FFmpeg has no AV1 decoder ("cannot find video stream with wanted index:
    -1"); auto (and an explicit decord) hand the file to PyAV, which reads it."""
    import subprocess

    from pipeline.ffmpeg import ffmpeg_exe

    enc = _av1_encoder()
    if enc is None:
        pytest.skip("the project's ffmpeg has no AV1 encoder (libaom-av1 / libsvtav1)")
    frames = known_frames(12, 48, 64)
    path = tmp_path / "av1.mp4"
    extra = (["-cpu-used", "8", "-crf", "4", "-b:v", "0"] if enc == "libaom-av1"
             else ["-preset", "12", "-crf", "4"])  # near-lossless: the pictures must match
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt",
                    "rgb24", "-s", "64x48", "-r", "25", "-i", "-", "-c:v", enc, *extra,
                    "-pix_fmt", "yuv420p", str(path)], input=frames.tobytes(), check=True,
                   capture_output=True)
    assert decoders.probe(path).codec == "av1"
    ref = read_frames(path, np.arange(12), "pyav")
    # 4:2:0 blurs the random colour texture: compare 4x4 block means of the grey level
    def blocks(x):
        g = x.astype(np.float64).mean(-1)
        return g.reshape(len(x), 12, 4, 16, 4).mean((2, 4))

    assert np.abs(blocks(ref) - blocks(frames)).mean() < 8  # the right pictures, in order
    for name in ("auto", "decord"):
        with caplog.at_level("WARNING"):
            got = read_frames(path, np.array([0, 7, 11]), name)
        np.testing.assert_array_equal(got, ref[[0, 7, 11]])
    assert "decord cannot decode its av1 video; using pyav" in caplog.text


def _two_streams(tmp_path, default: int) -> tuple[Path, np.ndarray, np.ndarray]:
    """An mp4 with two lossless video streams of different content and size; ``default`` (0
    or 1) is the one flagged default. Returns (path, frames of #0, frames of #1)."""
    import subprocess

    from pipeline.ffmpeg import ffmpeg_exe

    a = write_video(tmp_path / "a.mp4", known_frames(10, 36, 64, seed=1))
    b = write_video(tmp_path / "b.mp4", known_frames(10, 48, 64, seed=2))
    path = tmp_path / f"two_default{default}.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(a), "-i", str(b),
                    "-map", "0:v", "-map", "1:v", "-c", "copy",
                    f"-disposition:v:{default}", "default",
                    f"-disposition:v:{1 - default}", "0", str(path)], check=True)
    return path, known_frames(10, 36, 64, seed=1), known_frames(10, 48, 64, seed=2)


@pytest.mark.parametrize("default", [0, 1])
@pytest.mark.parametrize("decoder", ["auto", *USABLE])
def test_every_decoder_reads_the_default_stream_of_a_multi_stream_file(tmp_path, caplog,
                                                                       decoder, default):
    """Before: PyAV read stream #0 and decord stream #1 of the same file (its own rule); now
    every decoder, and the flow stage, reads the stream flagged default, and the log says so."""
    from extract.flow import gray_frames

    decoders._probe_cached.cache_clear()
    path, f0, f1 = _two_streams(tmp_path, default)
    want = (f0, f1)[default]
    info = decoders.probe(path)
    assert (info.stream, info.video_streams) == (default, 2)
    with caplog.at_level("WARNING"):
        with open_video(path, decoder) as r:
            assert r.size == (want.shape[2], want.shape[1]) and r.num_frames == 10
            np.testing.assert_array_equal(r.get(np.array([9, 0, 4])), want[[9, 0, 4]])
    assert f"2 video streams; reading stream #{default}" in caplog.text
    grey = np.stack(list(gray_frames(path)))
    assert grey.shape == (10, want.shape[1], want.shape[2])

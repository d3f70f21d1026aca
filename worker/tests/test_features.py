"""Input files, usage and figure validation: the pure parts, in-process."""

import os
import resource
import struct
import zlib

import msgpack
import pytest

from pyexec_worker import figures, inputs, usage, verdict
from pyexec_worker.protocol import RunRequest


def png(width: int, height: int) -> bytes:
    """A minimal valid PNG header (signature + IHDR chunk) of a given size."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return figures.PNG_SIGNATURE + chunk


def test_png_size_reads_ihdr_and_refuses_non_png():
    assert figures.png_size(png(640, 480)) == (640, 480)
    assert figures.png_size(b"GIF89a" + bytes(30)) is None
    assert figures.png_size(png(1, 1)[:20]) is None


def test_no_pyplot_means_no_figures_and_no_import(monkeypatch):
    monkeypatch.delitem(__import__("sys").modules, "matplotlib.pyplot", raising=False)
    assert figures.open_figure_numbers() == []
    assert figures.render_open_figures(8, 1 << 20) == ([], False)


def test_place_writes_files_0644_and_refuses_overwrite_and_symlinks(tmp_path):
    inputs.place([("a.csv", b"x,y\n"), ("-dash", b"\x00\xff")], str(tmp_path))
    assert (tmp_path / "a.csv").read_bytes() == b"x,y\n"
    assert (tmp_path / "-dash").read_bytes() == b"\x00\xff"
    assert os.stat(tmp_path / "a.csv").st_mode & 0o777 == 0o644
    with pytest.raises(inputs.InputFileError, match="cannot create"):
        inputs.place([("a.csv", b"again")], str(tmp_path))
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(inputs.InputFileError):
        inputs.place([("link", b"x")], str(tmp_path))
    assert not (tmp_path / "target").exists()


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "a\0b", "x" * 256])
def test_place_rechecks_names(tmp_path, name):
    with pytest.raises(inputs.InputFileError, match="invalid input file name"):
        inputs.place([(name, b"")], str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_meter_counts_cpu_since_it_started():
    meter = usage.Meter()
    end = resource.getrusage(resource.RUSAGE_SELF).ru_utime + 0.05
    while resource.getrusage(resource.RUSAGE_SELF).ru_utime < end:
        pass
    got = meter.finish()
    assert set(got) == {"wall_ms", "cpu_ms", "max_rss_kib"}
    assert 40 <= got["cpu_ms"] <= got["wall_ms"] + 20
    assert got["max_rss_kib"] > 1000


def test_usage_from_exit_subtracts_the_warm_up():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    word, status, cpu, rss = usage.exit_line(9, ru).split()
    assert (word, status, int(rss)) == ("exit", "9", ru.ru_maxrss)
    assert usage.from_exit(12.0, 1000, int(cpu), 5) == {
        "wall_ms": 12.0,
        "cpu_ms": (int(cpu) - 1000) / 1000,
        "max_rss_kib": 5,
    }
    assert usage.from_exit(3.0, None, None, None) == {"wall_ms": 3.0, "cpu_ms": None, "max_rss_kib": None}


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        {"wall_ms": 1.0},
        {"wall_ms": -1, "cpu_ms": 1, "max_rss_kib": 1},
        {"wall_ms": float("nan"), "cpu_ms": 1, "max_rss_kib": 1},
        {"wall_ms": 1, "cpu_ms": 1, "max_rss_kib": 1.5},
        {"wall_ms": True, "cpu_ms": 1, "max_rss_kib": 1},
    ],
)
def test_usage_from_runner_refuses_malformed(bad):
    assert usage.from_runner(bad) is None


REQ = RunRequest(1, "", 1000, 1 << 28, 1 << 20, 1 << 20, (), max_figures=2, max_figures_bytes=200)


def message(**fields):
    base = {"outcome": "ok", "result": b"1", "error": None, "traceback": None}
    return msgpack.packb({**base, **fields}, use_bin_type=True)


def test_extras_validates_figures_against_the_caps():
    good = {"format": "png", "data": png(3, 2), "width": 999, "height": 999}
    run_usage = {"wall_ms": 1.0, "cpu_ms": 0.5, "max_rss_kib": 100}
    got_usage, figs, truncated = verdict.extras(
        verdict.RunnerMessage(message(usage=run_usage, figures=[good])), "ok", REQ
    )
    assert got_usage == run_usage
    assert figs == [{"format": "png", "data": good["data"], "width": 3, "height": 2}], "size from IHDR"
    assert truncated is False
    _, figs, truncated = verdict.extras(verdict.RunnerMessage(message(figures=[good, good, good])), "ok", REQ)
    assert len(figs) == 2 and truncated
    big = {**good, "data": png(1, 1) + bytes(300)}
    _, figs, truncated = verdict.extras(verdict.RunnerMessage(message(figures=[good, big])), "ok", REQ)
    assert len(figs) == 1 and truncated
    junk = [{"format": "gif", "data": png(1, 1)}, {"format": "png", "data": b"nope"}, "x"]
    assert verdict.extras(verdict.RunnerMessage(message(figures=junk)), "ok", REQ)[1:] == ([], False)


def test_extras_of_failed_runs_and_garbage():
    assert (
        verdict.extras(
            verdict.RunnerMessage(message(figures=[{"format": "png", "data": png(1, 1)}])), "runtime_error", REQ
        )[1]
        == []
    )
    assert verdict.extras(verdict.RunnerMessage(b"\xc1"), "killed", REQ) == (None, [], False)
    assert verdict.extras(verdict.RunnerMessage(None), "timeout", REQ) == (None, [], False)


@pytest.mark.parametrize(
    ("script", "draws"),
    [
        ("import matplotlib.pyplot as plt\ndef main(): plt.plot([1])", True),
        ("import pandas as pd\ndef main(): pd.DataFrame({'a': [1]}).plot()", True),
        ("def main(): df.hist()", True),
        ("import pandas as pd\ndef main(): return int(pd.Series([1]).sum())", False),
        ("def main(): return {'sum': 2 + 2}", False),
    ],
)
def test_may_draw_guesses_from_the_text(script, draws):
    assert figures.may_draw(script) is draws

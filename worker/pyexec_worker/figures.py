"""matplotlib figures: imported once in the plotting fork server (never in
the zygote or the plain fork server), rendered in the runner.

Owns: importing matplotlib with the Agg backend and its prebuilt font cache
(the plotting fork server's warm-up), the cheap "is any figure open?" check, rendering the
pyplot figures still open when ``main()`` returns to PNG under the run's
count and byte caps, and reading a PNG's size from its IHDR chunk.
Must not: render or import anything when no figure is open (a run that
draws nothing pays one ``sys.modules`` lookup and one dict length), or
rebuild the font cache (it is built once at install time).
"""

from __future__ import annotations

import gc
import importlib.util
import io
import os
import shutil
import struct
import sys
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The zygote's own writable copy of the prebuilt config dir, in the jail's
# /tmp (each run mounts its own /tmp over it, so no run sees or shares it).
ZYGOTE_CONFIG_DIR = "/tmp/pyexec-mplconfig"


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk; None if ``data`` is no PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def import_pyplot() -> bool:
    """Import matplotlib (Agg) and pyplot in the zygote; False if not installed.

    matplotlib accepts only a *writable* MPLCONFIGDIR: given the read-only,
    prebuilt one it would make a temporary directory and rebuild the font
    cache (~0.2 s, every worker start). So the zygote copies the prebuilt
    files (font list, ``matplotlibrc``) to a private directory and imports
    from there; matplotlib reads the font list instead of rebuilding it, and
    keeps it in memory for every run (a run never looks at the directory
    again). MPLCONFIGDIR is then set back to the prebuilt directory, the
    value a run's own environment has.
    """
    prebuilt = os.environ.get("MPLCONFIGDIR", "")
    if prebuilt and os.path.isdir(prebuilt):
        shutil.rmtree(ZYGOTE_CONFIG_DIR, ignore_errors=True)
        shutil.copytree(prebuilt, ZYGOTE_CONFIG_DIR)
        os.environ["MPLCONFIGDIR"] = ZYGOTE_CONFIG_DIR
    else:
        print(
            f"pyexec zygote: no prebuilt matplotlib config dir at {prebuilt!r}; "
            "the font cache is rebuilt at every worker start (run scripts/install.sh)",
            file=sys.stderr,
            flush=True,
        )
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: PLC0415
    except ImportError:
        return False
    finally:
        if prebuilt:
            os.environ["MPLCONFIGDIR"] = prebuilt
    return True


# Words of a script that may draw: matplotlib itself, pyplot's usual alias,
# and pandas' plotting entry points (``df.plot()``, ``df.hist()``...).
_DRAWING_WORDS = ("matplotlib", "pyplot", "plt.", ".plot", ".hist(", ".boxplot(", "plotting", "seaborn")


def available() -> bool:
    """Whether matplotlib is installed (found without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def may_draw(script: str) -> bool:
    """Whether a script may draw, so should run on a spare with matplotlib warm.

    A guess from its text: a false positive only costs the plotting spare's
    bigger fork; a script that draws without any of these words still gets
    its figures, but imports matplotlib itself (a few hundred ms).
    """
    return any(word in script for word in _DRAWING_WORDS)


def prepare_plotting_fork_server() -> None:
    """In the plotting fork server, before its first spare: import pyplot
    (Agg), draw once, and freeze the heap so every spare shares it."""
    if import_pyplot():
        warm_up()
    gc.collect()
    gc.freeze()


def warm_up() -> None:
    """Draw and render one small figure so a run's first figure starts warm
    (fonts loaded, text layout and the PNG writer initialised); close it."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    fig, ax = pyplot.subplots(figsize=(2, 1.5), dpi=50)
    ax.plot([0, 1, 2], [1, 0, 1], label="x")
    ax.set_title("warm-up")
    ax.legend()
    fig.savefig(io.BytesIO(), format="png")
    pyplot.close("all")


def open_figure_numbers() -> list[int]:
    """Numbers of the pyplot figures open now (cheap: no import, no render)."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return []
    return list(pyplot.get_fignums())


class FigureRenderError(Exception):
    """A figure could not be rendered (the script's artists raised)."""

    def __init__(self, number: int, cause: BaseException) -> None:
        super().__init__(f"rendering figure {number} failed")
        self.number = number
        self.__cause__ = cause


def render_open_figures(max_figures: int, max_bytes: int) -> tuple[list[dict[str, Any]], bool]:
    """Render the open figures, in number order, as PNG.

    Returns the figures and whether some were dropped: beyond ``max_figures``,
    or from the first one whose PNG would take the total over ``max_bytes``
    (that one and every later one are dropped, not rendered).
    Raises ``FigureRenderError`` (or ``MemoryError``) when rendering fails.
    """
    numbers = open_figure_numbers()
    if not numbers:
        return [], False
    pyplot = sys.modules["matplotlib.pyplot"]
    truncated = len(numbers) > max_figures
    figures: list[dict[str, Any]] = []
    total = 0
    for number in numbers[:max_figures]:
        buffer = io.BytesIO()
        try:
            pyplot.figure(number).savefig(buffer, format="png")
        except MemoryError:
            raise
        except Exception as exc:
            raise FigureRenderError(number, exc) from exc
        data = buffer.getvalue()
        size = png_size(data)
        if size is None:
            raise FigureRenderError(number, ValueError("the renderer did not produce a PNG"))
        if total + len(data) > max_bytes:
            truncated = True
            break
        total += len(data)
        figures.append({"format": "png", "data": data, "width": size[0], "height": size[1]})
    return figures, truncated

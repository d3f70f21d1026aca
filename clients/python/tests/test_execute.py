"""``Client.execute`` against the real service: results, files in, figures out, output."""

from __future__ import annotations

from pyexec_service import Service

import pyexec_client as px

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def client(service: Service, token: str) -> px.Client:
    return px.Client(service.url, token=token)


def test_result_output_and_usage(service: Service, token: str) -> None:
    script = (
        "import pandas as pd\n\ndef main():\n    df = pd.DataFrame({'a': [1, 2, 3]})\n"
        "    print('rows', len(df))\n    import sys; print('warn', file=sys.stderr)\n"
        "    return {'sum': int(df['a'].sum())}\n"
    )
    with client(service, token) as c:
        result = c.execute(script, timeout=10, memory=256)
    assert isinstance(result, px.Result)
    assert result.result == {"sum": 6}
    assert (result.stdout, result.stderr) == ("rows 3\n", "warn\n")
    assert result.duration_ms > 0 and result.usage is not None and result.usage.wall_ms > 0
    assert result.figures == [] and not result.stdout_truncated


def test_files_in_figures_out(service: Service, token: str, tmp_path: object) -> None:
    script = (
        "import pandas as pd\nimport matplotlib.pyplot as plt\n\ndef main():\n"
        "    df = pd.read_csv('data.csv')\n    plt.plot(df['temp'])\n    plt.figure(figsize=(2, 1), dpi=100)\n"
        "    return open('note.txt').read()\n"
    )
    with client(service, token) as c:
        result = c.execute(script, files={"data.csv": b"city,temp\nOslo,3\nRome,18\n", "note.txt": "é".encode()})
    assert result.result == "é"
    assert len(result.figures) == 2
    assert all(figure.png.startswith(PNG_MAGIC) for figure in result.figures)
    assert (result.figures[0].width, result.figures[0].height) == (640, 480)
    assert (result.figures[1].width, result.figures[1].height) == (200, 100)


def test_truncation_flags(service: Service, token: str) -> None:
    with client(service, token) as c:
        result = c.execute("def main():\n    print('x' * 2_000_000)\n    return 1\n")
    assert result.stdout_truncated and len(result.stdout) < 2_000_000

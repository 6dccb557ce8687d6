"""The web page's files: shipped in the package, self-contained, drawing as the export does.

The page's timeline (static/timeline.js) is a port of
`taskloom.telemetry.timeline`; these checks keep its colours, sizes and lane
assignment the Python ones (the lanes run in Node.js where it is installed),
so the page and `taskloom trace --html/--svg` draw one picture (tests/e2e
compares the two drawings of real runs bar by bar).
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from importlib.resources import files
from pathlib import Path

import pytest

from taskloom.telemetry import timeline

STATIC = Path(str(files("taskloom.server") / "static"))
SCRIPTS = sorted(STATIC.glob("*.js"))


def test_the_page_and_its_assets_are_in_the_package() -> None:
    names = {p.name for p in STATIC.iterdir()}
    assert {"index.html", "app.css", "app.js", "timeline.js", "dag.js"} <= names
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    for asset in re.findall(r'(?:src|href)="/static/([^"]+)"', page):
        assert (STATIC / asset).is_file(), asset


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_every_module_a_script_imports_is_shipped(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for module in re.findall(r'from "\./([^"]+)"', text):
        assert (STATIC / module).is_file(), f"{path.name} imports {module}"


def test_nothing_is_loaded_from_elsewhere() -> None:
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        text = text.replace("http://www.w3.org/2000/svg", "")  # a namespace, never fetched
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), path.name


def _js_constant(name: str) -> str:
    text = (STATIC / "timeline.js").read_text(encoding="utf-8")
    found = re.search(rf"^(?:export )?const {name} = ([^;]+);", text, re.M | re.S)
    assert found, name
    return found.group(1).strip()


def test_the_page_colours_states_as_the_export_does() -> None:
    body = _js_constant("COLOURS")
    colours = dict(re.findall(r'(\w+): "(#[0-9a-f]{6})"', body))
    assert colours == timeline.COLOURS


@pytest.mark.parametrize(
    ("js", "python"),
    [
        ("ROW", "_ROW"),
        ("TOP", "_TOP"),
        ("GUTTER", "_GUTTER"),
        ("PAD", "_PAD"),
        ("LEGEND", "_LEGEND"),
        ("BODY", "_BODY"),
        ("CHAR", "_CHAR"),
        ("NOT_RUN", "_NOT_RUN"),
    ],
)
def test_the_page_lays_out_the_timeline_as_the_export_does(js: str, python: str) -> None:
    value = getattr(timeline, python)
    shown = _js_constant(js)
    if isinstance(value, str):
        assert shown == f'"{value}"'
    else:
        assert float(shown) == value


def test_the_page_draws_as_wide_as_the_export() -> None:
    default = timeline.render_svg.__kwdefaults__ or {}
    assert float(_js_constant("WIDTH")) == default["width"]


def _node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.skip("Node.js is not installed: the page's lane assignment is checked in a browser")
    return found


def test_the_page_puts_bars_in_the_lanes_the_export_does(tmp_path: Path) -> None:
    rng = random.Random(13)
    cases = []
    for _ in range(300):
        spans = []
        for _ in range(rng.randint(0, 40)):
            start = round(rng.uniform(0, 5), 1)  # coarse times: many ties, as in fast runs
            spans.append((start, round(start + rng.choice([0, 0.1, rng.uniform(0, 2)]), 1)))
        cases.append(spans)
    script = tmp_path / "lanes.mjs"
    script.write_text(
        f"import {{ assignLanes }} from {json.dumps((STATIC / 'timeline.js').as_uri())};\n"
        "const cases = JSON.parse(await new Response(process.stdin).text());\n"
        "process.stdout.write(JSON.stringify(cases.map(assignLanes)));\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [_node(), str(script)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [timeline.assign_lanes(spans) for spans in cases]

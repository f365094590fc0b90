"""The examples' READMEs, "Run it", as a new user follows them: the periodic sync needs an
outside API, so the block must serve one where the app looks (Flask and FastAPI exported
CATALOG_URL=https://api.example.com/products.json, which does not exist; Django's RATES_URL
pointed at a port nothing served: every sync failed for good). Here the block's own commands
make the stand-in (in tmp_path, on a free port) and the URL must fetch the data from it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, wait_for
from tests.examples import common


def run_block(example: str) -> str:
    text = (REPO / "examples" / example / "README.md").read_text()
    section = text.split("\n## Run it\n", 1)[1]
    return str(re.findall(r"```sh\n(.*?)```", section, re.S)[0])


@pytest.mark.parametrize("example", ["flask", "fastapi"])
def test_the_run_block_serves_the_catalog_url_it_exports(example: str, tmp_path: Path) -> None:
    block = run_block(example)
    url = re.search(r"CATALOG_URL=(\S+)", block)
    assert url, block
    products = fetch_as_the_block_serves(block, url[1], tmp_path)
    assert isinstance(products, list) and products and "sku" in products[0], products


def test_the_django_readme_serves_the_rates_url_of_its_settings(tmp_path: Path) -> None:
    """The sync-rates cron entry (every 15 min) read RATES_URL, served by nothing: each
    fire failed, with a traceback a retry."""
    example = REPO / "examples" / "django"
    block = "\n".join(line[4:] for line in (example / "README.md").read_text().splitlines()
                      if line.startswith("    "))
    url = re.search(r'"RATES_URL", "(\S+)"', (example / "mysite" / "settings.py").read_text())
    assert url
    rates = fetch_as_the_block_serves(block, url[1], tmp_path)
    assert isinstance(rates, dict) and rates, rates


def fetch_as_the_block_serves(block: str, url: str, tmp_path: Path) -> object:
    """Run the block's lines that make the stand-in's directory (in tmp_path instead),
    serve it as the block's `python -m http.server` line does (on a free port) and return
    what ``url`` answers, as JSON."""
    served = re.search(r"^python -m http\.server (\d+) --bind (\S+) --directory (\S+)", block,
                       re.M)
    assert served, f"the Run it block starts no stand-in for the outside API:\n{block}"
    port, host, directory = served.groups()
    assert url.startswith(f"http://{host}:{port}/"), (url, served.group(0))
    # the block's own lines that fill the directory, run in tmp_path instead
    lines = block.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("mkdir -p "))
    end = next(i for i, line in enumerate(lines) if line.startswith("python -m http.server"))
    setup = "\n".join(lines[start:end]).replace(directory, str(tmp_path / "api"))
    subprocess.run(["sh", "-c", setup], check=True, timeout=30)
    free = common.free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(free), "--bind", host,
                               "--directory", str(tmp_path / "api")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        local = url.replace(f":{port}/", f":{free}/")

        def fetched() -> object:
            try:
                with urllib.request.urlopen(local, timeout=5) as answer:
                    return json.load(answer)
            except OSError:
                return None

        return wait_for(fetched, 10, f"{local} to answer")
    finally:
        server.terminate()
        server.wait(timeout=10)

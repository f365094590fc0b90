"""The Flask and FastAPI examples' READMEs, "Run it", as a new user follows them: the
catalog sync needs an outside API, so the block must serve one that CATALOG_URL names (it
exported https://api.example.com/products.json, which does not exist: every sync failed
for good). Here the block's own commands make the stand-in (in tmp_path, on a free port) and
the URL it exports must fetch the products from it."""

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
    served = re.search(r"^python -m http\.server (\d+) --bind (\S+) --directory (\S+)", block,
                       re.M)
    assert served, f"the Run it block starts no stand-in for the outside API:\n{block}"
    port, host, directory = served.groups()
    assert url[1].startswith(f"http://{host}:{port}/"), (url[1], served.group(0))
    # the block's own lines that fill the directory, run in tmp_path instead
    lines = block.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("mkdir -p "))
    setup = "\n".join(lines[start:start + 2]).replace(directory, str(tmp_path / "api"))
    subprocess.run(["sh", "-c", setup], check=True, timeout=30)
    free = common.free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(free), "--bind", host,
                               "--directory", str(tmp_path / "api")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        local = url[1].replace(f":{port}/", f":{free}/")

        def fetched() -> object:
            try:
                with urllib.request.urlopen(local, timeout=5) as answer:
                    return json.load(answer)
            except OSError:
                return None

        products = wait_for(fetched, 10, f"{local} to answer")
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert isinstance(products, list) and products and "sku" in products[0], products

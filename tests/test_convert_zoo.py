"""The zoo: one row per published checkpoint, with what a download needs to be verified and converted."""
from __future__ import annotations

import re
from pathlib import Path

from sceneparse.cli import main
from sceneparse.config import load_preset
from sceneparse.convert import FORMATS
from sceneparse.convert.zoo import expected_sha256_prefix, zoo_rows

ZOO_DOCS = Path(__file__).resolve().parent.parent / "docs" / "model_zoo"


def test_every_row_names_a_known_format_and_mmseg_rows_their_hash() -> None:
    rows = zoo_rows()
    assert {r.weights_format for r in rows} == {"mmseg", "sssegmentation", "semseg", "caffe", "chainercv"}
    assert all(r.weights_format in FORMATS for r in rows)
    for r in rows:
        if r.weights_format == "mmseg":
            # the file name ends in -<first 8 hex of its SHA-256>; the download checks it
            assert r.url and r.sha256_prefix == expected_sha256_prefix(r.url) != "", r.preset


def test_linked_checkpoints_of_the_tables_are_rows() -> None:
    """Each checkpoint link of the docs tables is some row's URL (read independently of the generator)."""
    urls = {r.url for r in zoo_rows()}
    for table in ZOO_DOCS.glob("*.md"):
        links = set(re.findall(r"\((https?://[^)\s]+\.(?:pth|npz))\)", table.read_text()))
        missing = sorted(links - urls)
        assert not missing, f"{table.name}: links without a zoo row: {missing[:3]}"
    ssseg_psanet = [r for r in zoo_rows(source="sssegmentation", model="psanet")]
    assert len(ssseg_psanet) == 12 and all(r.url.endswith(".pth") for r in ssseg_psanet)


def test_filters_and_the_manual_releases() -> None:
    city = zoo_rows(source="mmseg", dataset="cityscapes")
    assert city and all(r.weights_format == "mmseg" and r.dataset == "cityscapes" for r in city)
    assert zoo_rows(source="mmsegmentation", dataset="cityscapes") == city
    semseg = zoo_rows(source="semseg")
    assert len(semseg) == 12 and not any(r.url for r in semseg)  # Google Drive only
    converted = zoo_rows(source="chainercv")
    assert [r.preset for r in converted] == ["chainercv_pspnet_resnet101_cityscapes_converted"]
    assert load_preset(converted[0].preset).published.mIoU == converted[0].mIoU


def test_cli_prints_the_filtered_table(capsys) -> None:
    assert main(["zoo", "--source", "semseg", "--dataset", "ade20k"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("semseg_")]
    assert sorted(line.split()[0] for line in lines) == sorted(r.preset for r in zoo_rows("semseg", "ade20k"))
    assert "4 checkpoints" in out and "41.89" in out

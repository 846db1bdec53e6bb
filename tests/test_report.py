"""The report: `snakemake --report` on the built toy workspace gathers the tables and the training curves;
headless Chromium opens it (a screenshot that is not blank)."""

import shutil
import subprocess
import zipfile

import pytest

from conftest import REPO, snakemake

pytestmark = pytest.mark.e2e
TOY = str(REPO / "config" / "toy.yaml")


def test_training_curves_are_figures(toy_workspace):
    curves = toy_workspace / "results" / "toy" / "report" / "curves"
    names = {p.stem for p in curves.glob("*.png")}
    assert {"pretrain_ecr", "recommend_ecr", "conversation", "generator_dialogpt", "critic", "rl_dialogpt"} <= names
    for p in curves.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_report_gathers_tables_and_curves(toy_workspace, tmp_path):
    out = tmp_path / "report.zip"
    snakemake(toy_workspace, "--report", str(out), "--configfile", TOY)
    names = zipfile.ZipFile(out).namelist()
    for table in ("table1.csv", "table2.csv", "critic.csv", "rl_comparison.csv", "generation_objective.csv"):
        assert any(n.endswith(table) for n in names), table
    assert sum(n.endswith(".png") for n in names) >= 10
    html = tmp_path / "report.html"
    snakemake(toy_workspace, "--report", str(html), "--configfile", TOY)
    text = html.read_text()
    assert "table2.csv" in text and "Training curves" in text


def test_report_opens_in_a_browser(toy_workspace, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium here (CI installs the Debian package chromium)")
    html = tmp_path / "report.html"
    snakemake(toy_workspace, "--report", str(html), "--configfile", TOY)
    shot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--virtual-time-budget=15000", "--window-size=1400,1000", f"--screenshot={shot}",
                    html.as_uri()], check=True, capture_output=True, timeout=180)
    from PIL import Image

    img = Image.open(shot).convert("RGB")
    assert img.size == (1400, 1000)
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # a rendered page, not a blank one

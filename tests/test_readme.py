"""The README's quick start runs as written."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2
    code = "\n".join(blocks) + "\nvec.close()\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "(64, 64, 3) uint8" in out.stdout and "(64, 64, 9) (24,)" in out.stdout


def test_agent_guide_snippets_run():
    """docs/agent.md: every Python block after the first (a 100k-env-step training run) runs as written."""
    guide = README.parent / "docs" / "agent.md"
    blocks = re.findall(r"```python\n(.*?)```", guide.read_text(), flags=re.S)[1:]
    assert blocks
    for code in blocks:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]


def run_blocks(guide: Path) -> list[str]:
    """Run every Python block of ``guide`` in a fresh interpreter; their standard outputs."""
    outputs = []
    for code in re.findall(r"```python\n(.*?)```", guide.read_text(), flags=re.S):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        outputs.append(out.stdout)
    return outputs


def test_multi_task_guide_snippets_run():
    """docs/multi_task_learning.md: every Python block runs as written."""
    outputs = run_blocks(README.parent / "docs" / "multi_task_learning.md")
    assert len(outputs) == 4
    assert "rgb_projected" in outputs[0] and "['elbo', 'adversarial']" in outputs[2]
    assert "tensor([0., 0.]) tensor([True, True])" in outputs[3]  # LPIPS: zero for identical images


def test_perceiver_guide_snippets_run():
    """docs/perceiver_io.md: every Python block runs as written and prints the shapes it says."""
    outputs = run_blocks(README.parent / "docs" / "perceiver_io.md")
    assert len(outputs) == 2
    assert "torch.Size([2, 8, 32]) torch.Size([2, 8, 64, 1, 128])" in outputs[0]
    assert "torch.Size([2, 24, 3, 64, 64])" in outputs[0] and "5 (1, 8, 64, 8)" in outputs[1]


def test_attention_schema_guide_snippet_runs():
    (output,) = run_blocks(README.parent / "docs" / "attention_schema.md")
    assert "torch.Size([2, 4, 16]) torch.Size([2, 4, 10])" in output


def test_architecture_page_prints_the_shapes_it_says():
    (output,) = run_blocks(README.parent / "docs" / "architecture.md")
    for line in ["image (2, 8, 3, 64, 64)", "embed (2, 8, 1024)", "deter (2, 8, 32)", "stoch (2, 8, 8)",
                 "feat (2, 8, 40)", "imagined (6, 2, 40) (5, 2, 1)", "decoded (6, 2, 3, 64, 64)"]:  # fmt: skip
        assert line in output
        assert f"`{line}`" in (README.parent / "docs" / "architecture.md").read_text()  # the page says it too


def test_benchmark_suite_guide_snippet_prints_what_it_says():
    (output,) = run_blocks(README.parent / "docs" / "benchmark_suite.md")
    names = str([f"{a}-cartpole-swingup-s{s}" for a in ("aime", "ppo") for s in (0, 1)])
    assert output.splitlines() == [names, "['n_epochs=5'] docs/benchmarks/learning/ppo-cartpole-swingup-s1.csv"]


def test_envs_guide_snippets_run(tmp_path):
    """docs/envs.md: its blocks run as written, the dataset one beside a `data.h5` that `aime collect` made."""
    from aime_agent.cli import main as cli

    assert cli(["collect", "--env", "cartpole-swingup", "--episodes", "2", "--out", str(tmp_path / "data.h5"),
                "--render-quality", "fast", "--quiet"]) == 0  # fmt: skip
    for code in re.findall(r"```python\n(.*?)```", (README.parent / "docs" / "envs.md").read_text(), flags=re.S):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]


def shell_lines() -> list[tuple[str, str]]:
    """(page, command) for every line of every ```bash block of README.md and docs/*.md."""
    pages = [README, *sorted((README.parent / "docs").glob("*.md"))]
    return [(page.name, line.strip()) for page in pages
            for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S)
            for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]  # fmt: skip


def test_every_shell_command_in_the_docs_names_what_exists():
    """Commands that take hours are not run here; each is checked against what runs it: `aime …` lines parse
    with the CLI's own parser, `make` targets exist, `python benchmarks/X.py` and `python -m M` exist."""
    import importlib.util
    import shlex

    from aime_agent.cli import build_parser
    from aime_agent.cli import main as cli

    lines = shell_lines()
    assert len(lines) >= 20
    makefile = (README.parent / "Makefile").read_text()
    for page, line in lines:
        words = shlex.split(line, comments=True)
        if words[0] == "aime":
            build_parser().parse_args(words[1:])  # an unknown option or value exits: the test fails
            if words[1] == "benchmark" and "--report" not in words:  # its agents, tasks and seeds plan
                assert cli([*words[1:], "--dry-run"]) == 0, (page, line)
        elif words[0] == "make":
            assert re.search(rf"^{re.escape(words[1])}:", makefile, flags=re.M), (page, line)
        elif words[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(words[2]) is not None, (page, line)
        elif words[0] == "python":
            assert (README.parent / words[1]).is_file(), (page, line)


def test_the_suites_dry_run_lists_tier_1():
    from aime_agent.cli import main as cli

    out = subprocess.run([sys.executable, "-m", "aime_agent.cli", "benchmark", "--tier", "1", "--dry-run"],
                         capture_output=True, text=True, timeout=120, cwd=README.parent)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert [line.split(":")[0] for line in out.stdout.splitlines()] == [
        f"{a}-cartpole-swingup-s{s}" for a in ("aime", "sac", "ppo") for s in range(3)]  # fmt: skip
    assert cli(["benchmark", "--tier", "1", "--agents", "dqn", "--dry-run"]) == 2  # a clear error, no traceback


def _prose(page: Path) -> str:
    """A Markdown page without its fenced code blocks."""
    return re.sub(r"```.*?```", "", page.read_text(), flags=re.S)


@functools.cache
def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.*)$", _prose(page), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_relative_link_in_the_docs_reaches_its_file_and_heading():
    pages = [README, *sorted((README.parent / "docs").rglob("*.md"))]
    checked = 0
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", _prose(page)):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: {target} does not exist"
            if anchor and linked.suffix == ".md":
                assert anchor in _anchors(linked), f"{page.name}: no heading #{anchor} in {linked.name}"
            checked += 1
    assert checked >= 50, checked

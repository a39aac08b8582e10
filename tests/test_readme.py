"""The README's quick start runs as written."""

from __future__ import annotations

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

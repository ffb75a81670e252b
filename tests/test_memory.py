"""mvdense.utils.memory.keep_freed_memory: freed memory stays with the process (in a fresh interpreter:
the setting is process-wide)."""
from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import load_tool

from mvdense.utils import memory

FREE_16_MIB = '''
import sys, torch
from mvdense.utils.memory import keep_freed_memory
def rss_mib():
    with open('/proc/self/status') as status:
        return next(int(line.split()[1]) for line in status if line.startswith('VmRSS:')) / 1024
applied = keep_freed_memory() if sys.argv[1] == 'keep' else None
x = torch.ones(4 * 2**20)   # 16 MiB, every page touched
before = rss_mib()
del x
print(applied, before - rss_mib())
'''


def returned_mib(mode: str) -> tuple[str, float]:
    """(what keep_freed_memory returned, MiB the process gave back when freeing a 16 MiB tensor)."""
    out = subprocess.run([sys.executable, '-c', FREE_16_MIB, mode], capture_output=True, text=True, check=True)
    applied, returned = out.stdout.split()
    return applied, float(returned)


@pytest.mark.skipif(memory._glibc_mallopt() is None, reason='glibc only')
def test_freed_memory_stays_with_the_process():
    assert returned_mib('default')[1] >= 15    # glibc's default: a block this large goes back at once
    applied, returned = returned_mib('keep')
    assert applied == 'True' and returned < 1


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(memory, '_glibc_mallopt', lambda: None)
    assert memory.keep_freed_memory() is False


@pytest.mark.parametrize('tool', ['test', 'infer'])
def test_evaluation_and_inference_tools_keep_freed_memory(tool, monkeypatch, tmp_path):
    """tools/test.py and tools/infer.py ask for it before building anything (here a missing config then
    stops them)."""
    module = load_tool(tool)
    calls = []
    monkeypatch.setattr(memory, 'keep_freed_memory', lambda: calls.append(tool))
    monkeypatch.setattr(module, 'keep_freed_memory', lambda: calls.append(tool), raising=False)
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')
    args = [str(tmp_path / 'missing.py'), str(checkpoint)]
    args += [str(tmp_path), '--out', str(tmp_path / 'out')] if tool == 'infer' else []
    with pytest.raises(SystemExit):
        module.main(args)
    assert calls == [tool]

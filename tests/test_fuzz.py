"""A few hundred runs of the fuzzer (tests/fuzz.py) over every command: generated and
mutated expressions and scripts, odd values and files, random options. None may end in an
internal error. (The full run, `python tests/fuzz.py --runs 10000`, also reports slow and
memory-hungry runs; the README's Development section gives its figures.)"""
import os

import pytest

import fuzz

RUNS = int(os.environ.get("ADCLI_FUZZ_RUNS", 400))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the fuzzer forks each run")
def test_no_input_crashes_adcli(tmp_path):
    summary = fuzz.fuzz(RUNS, seed=7, folder=tmp_path)
    crashes = [f for f in summary["flagged"] if f["why"] == "crash"]
    assert not crashes, "\n\n".join(f"adcli {' '.join(map(repr, f['args']))}\n{f['stderr']}"
                                    for f in crashes[:5])
    assert summary["exit_codes"].get("0", 0) > RUNS // 10    # the cases are not all bad input

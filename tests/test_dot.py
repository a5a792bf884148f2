"""`adcli dot`: the graph as Graphviz DOT text, its colours, the backward graph, folded
loops, limits, files, and the README's picture. Where Graphviz's `dot` program is
installed (CI installs it), every DOT text made here is also rendered by it."""
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from adcli.cli import app
from adcli.dot import quote, repeated_runs

ROOT = Path(__file__).resolve().parent.parent
DOT = shutil.which("dot")
needs_graphviz = pytest.mark.skipif(
    DOT is None, reason="Graphviz (optional, see README's Quick start) is not installed: "
                        "its `dot` program renders pictures; install it with apt install "
                        "graphviz (or brew, conda) to run this test")
runner = CliRunner()


def adcli(*args, input=None):
    return runner.invoke(app, list(args), input=input)


def draw(*args, input=None, render=True):
    """The DOT text of `adcli dot ARGS`, checked to be well formed and, unless it is too
    large for Graphviz to lay out quickly (render=False), to render."""
    r = adcli("dot", *args, input=input)
    assert r.exit_code == 0, r.output + r.stderr
    check_dot(r.stdout, render)
    return r.stdout


NODE = re.compile(r'^\s*(n|g)(\d+) \[label="((?:[^"\\]|\\.)*)"(?:, fillcolor=(\w+))?\];$')
EDGE = re.compile(r"^\s*n(\d+) -> (n|g)(\d+)( \[style=dashed, color=orange\])?;$")


def check_dot(text, render=True):
    """Every line is one of the statements adcli writes, braces balance, and Graphviz
    (if installed) renders it."""
    depth = 0
    for line in text.splitlines():
        s = line.strip()
        if s.endswith("{"):
            depth += 1
            assert s in ("digraph adcli {", "subgraph cluster_backward {") or \
                re.fullmatch(r"subgraph cluster_[fb]\d+ \{", s), line
        elif s == "}":
            depth -= 1
        else:
            assert NODE.match(line) or EDGE.match(line) or re.match(
                r'\s*(graph \[label="(?:[^"\\]|\\.)*", |node \[|edge \[|label=")', line), line
    assert depth == 0
    if DOT and render:
        proc = subprocess.run([DOT, "-Tsvg"], input=text.encode(), capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr.decode()
        assert b"<svg" in proc.stdout and not proc.stderr.strip(), proc.stderr.decode()


def nodes(text):
    """{id: (label lines, fill colour or None)} of the n-nodes."""
    out = {}
    for line in text.splitlines():
        m = NODE.match(line)
        if m and m.group(1) == "n":
            out[int(m.group(2))] = (m.group(3).split("\\n"), m.group(4))
    return out


def edges(text):
    return [(int(m.group(1)), m.group(2) + m.group(3), bool(m.group(4)))
            for m in map(EDGE.match, text.splitlines()) if m]


def trace_rows(*args):
    r = adcli("trace", *args, "--json")
    assert r.exit_code == 0, r.stderr
    return {row["id"]: row for row in json.loads(r.stdout)}


# ---------------------------------------------------------------- the forward graph

def test_the_forward_graph_in_torchvizs_colours():
    expr = "sum(x * [1, 2]) * y + 3"
    text = draw(expr, "--at", "x=[1,2],y=3")
    drawn, rows = nodes(text), trace_rows(expr, "--at", "x=[1,2],y=3")
    assert drawn.keys() == rows.keys()                 # the nodes of the Wengert list
    out = max(rows)
    for i, (label, fill) in drawn.items():
        row = rows[i]
        if i == out:
            assert fill == "darkolivegreen1" and label[0] == "add"
        elif row["op"] == "input":
            assert fill == "lightblue" and label == [row["name"], "scalar" if not row["shape"] else "2"]
        elif row["op"] == "const":
            assert fill == "white"
        else:
            assert fill is None and label[0] == row["op"]   # ops take the default: grey
    assert "fillcolor=lightgrey" in text.splitlines()[2]          # the node default
    assert nodes(text)[[i for i in rows if rows[i]["op"] == "const" and rows[i]["shape"] == [2]][0]] \
        == (["const", "2"], "white")
    assert drawn[[i for i in rows if rows[i]["value"] == 3.0 and rows[i]["op"] == "const"][0]] \
        == (["3.0"], "white")
    assert sorted(edges(text)) == sorted((a, f"n{i}", False) for i, r in rows.items() for a in r["inputs"])


def test_only_what_the_output_depends_on_is_drawn():
    # log(exp(x)+exp(y)) is evaluated as logaddexp(x, y); the exp nodes stay unused
    text = draw("log(exp(x)+exp(y))", "--at", "x=1,y=2")
    labels = [lab[0] for lab, _ in nodes(text).values()]
    assert labels == ["x", "y", "logaddexp"]


def test_values_and_gradients_in_the_labels():
    text = draw("x*(x+y)", "--at", "x=2,y=3", "--values")
    assert nodes(text) == {
        0: (["x", "scalar", "= 2.0", "grad 7.0"], "lightblue"),
        1: (["y", "scalar", "= 3.0", "grad 2.0"], "lightblue"),
        2: (["add", "scalar", "= 5.0", "grad 2.0"], None),
        3: (["mul", "scalar", "= 10.0", "grad 1.0"], "darkolivegreen1")}
    text = draw("sum(x**2)", "--at", "x=linspace(0,1,9)", "--values")
    assert "= [0.0, 0.125, ..., 0.875, 1.0]" in text        # long arrays are summarised


def test_static_arguments_appear_in_labels():
    labels = [lab[0] for lab, _ in nodes(draw("sum(A, axis=0)[1:]", "--at", "A=[[1,2],[3,4]]")).values()]
    assert labels == ["A", "sum axis=0", "index [1:]"]


def test_without_at_an_expression_is_drawn_at_one():
    r = adcli("dot", "sin(x)*y")
    assert r.exit_code == 0 and "x=1, y=1" in r.stderr and "shapes assumed scalar" in r.stderr
    check_dot(r.stdout)
    r = adcli("dot", "sin(x)*y", "--values")
    assert r.exit_code == 2 and "--values needs values" in r.stderr
    r = adcli("dot", "x[1]")
    assert r.exit_code == 2 and "shape error" in r.stderr and "--at x=..." in r.stderr


def test_a_script_without_at_uses_its_defaults():
    text = draw(str(ROOT / "samples" / "linnainmaa.ad"))
    assert [lab[0] for lab, _ in nodes(text).values()] == \
        ["x1", "x2", "1.0", "add", "log", "mul", "cos", "add"]
    r = adcli("dot", str(ROOT / "samples" / "linear_regression.ad"))
    assert r.exit_code == 2 and "no value for input 'theta'" in r.stderr


# ---------------------------------------------------------------- the backward graph

def test_the_backward_graph_and_its_saved_tensors():
    text = draw("x*(x+y)", "--at", "x=2,y=3", "--backward", "--values")
    drawn = nodes(text)
    forward = {0, 1, 2, 3}
    backward = set(drawn) - forward
    assert backward and min(backward) > max(forward)
    assert "subgraph cluster_backward {" in text
    saved = [(a, b) for a, b, orange in edges(text) if orange]
    # x*(x+y): d/dx of the product reads x+y, d/d(x+y) reads x
    assert sorted(saved) == sorted([(2, "n5"), (0, "n6")])
    for a, b, orange in edges(text):
        # an edge is orange exactly when a backward node reads a forward value
        assert orange == (a in forward and int(b[1:]) in backward)
    grads = {lab[0]: (lab, fill) for i, (lab, fill) in drawn.items() if lab[0].startswith("grad ")}
    assert grads["grad x"] == (["grad x", "add", "scalar", "= 7.0"], "darkolivegreen1")
    assert grads["grad y"][0][-1] == "= 2.0" and grads["grad y"][1] == "darkolivegreen1"


def test_backward_gradients_equal_grad():
    expr, at = "sum(A @ x) * sum(sin(x))", "A=[[1,2],[3,4]],x=[0.5,-1]"
    text = draw(expr, "--at", at, "--backward", "--values")
    grad = json.loads(adcli("grad", expr, "--at", at, "--json").stdout)["grad"]
    shown = {lab[0][5:]: lab[-1] for lab, _ in nodes(text).values() if lab[0].startswith("grad ")}
    assert shown.keys() == {"A", "x"}
    for name, g in grad.items():
        numbers = [float(v) for v in re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", shown[name])]
        flat = [v for row in g for v in row] if isinstance(g[0], list) else g
        assert numbers == pytest.approx(flat, rel=1e-5)


def test_a_gradient_that_is_a_forward_node_gets_its_own_node(tmp_path):
    # a hand-written backward rule may hand back a forward value as it is: here d/da is b
    script = tmp_path / "f.ad"
    script.write_text("input a = 0.5\ninput b = 1.5\ndef f(a, b):\n    return a * b\n"
                      "backward f(a, b, out, g):\n    return b, a\nreturn f(a, b)\n")
    text = draw(str(script), "--backward")
    assert re.search(r'^  g3 \[label="grad a\\nscalar", fillcolor=darkolivegreen1\];$', text, re.M)
    assert re.search(r'^  g1 \[label="grad b\\nscalar", fillcolor=darkolivegreen1\];$', text, re.M)
    assert ("n3 -> g3;" in text and "n1 -> g1;" in text) and "cluster_backward" not in text
    text = draw("x + 1", "--at", "x=2", "--backward")
    assert nodes(text)[3] == (["grad x", "1.0"], "darkolivegreen1")   # the seed: d out/d out


def test_backward_of_a_boolean_is_an_error():
    r = adcli("dot", "x > 1", "--at", "x=2", "--backward")
    assert r.exit_code == 2 and "boolean" in r.stderr


# ---------------------------------------------------------------- loops, limits

LOOP = "input x = 0.5\ny = x\nfor i in range(1000):\n    y = sin(y) * x + 0.1\nreturn y\n"


def test_collapse_folds_a_thousand_iterations(tmp_path):
    script = tmp_path / "loop.ad"
    script.write_text(LOOP)
    r = adcli("dot", str(script))
    assert r.exit_code == 2
    assert "the drawing would have 3,002 nodes; the limit is 500" in r.stderr
    assert "--collapse" in r.stderr
    text = draw(str(script), "--collapse")
    drawn = nodes(text)
    assert len(drawn) == 5                               # x, 0.1, and sin, mul, add once
    assert 'label="× 1000"' in text
    body = re.search(r"subgraph cluster_f0 \{(.*?)\n  \}", text, re.S).group(1)
    assert [lab[0] for lab, _ in nodes(body).values()] == ["sin", "mul", "add"]
    # the loop-carried value: from the add of one iteration into the sin of the next
    add, sin = [i for i, (lab, _) in drawn.items() if lab[0] == "add"][0], \
        [i for i, (lab, _) in drawn.items() if lab[0] == "sin"][0]
    assert (add, f"n{sin}", False) in edges(text)
    full = draw(str(script), "--max-nodes", "5000", render=False)
    assert len(nodes(full)) == 3002


def test_collapse_folds_the_backward_loop_too(tmp_path):
    script = tmp_path / "loop.ad"
    script.write_text(LOOP)
    text = draw(str(script), "--collapse", "--backward", "--values")
    assert len(nodes(text)) < 25
    assert 'label="× 1000 (values: the first)"' in text and "cluster_b0" in text


def test_collapse_on_the_samples():
    for script in sorted((ROOT / "samples").glob("*.ad")):
        if script.name == "linear_regression.ad":
            continue
        folded = draw(str(script), "--collapse", "--backward", "--values", "--max-nodes", "100000")
        plain = draw(str(script), "--backward", "--max-nodes", "100000", render=False)
        assert len(nodes(folded)) <= len(nodes(plain))
    text = draw(str(ROOT / "samples" / "gradient_descent.ad"), "--collapse")
    assert 'label="× 20"' in text and len(nodes(text)) < 40


def test_repeated_runs():
    assert repeated_runs(list("abcabcabcx")) == [(0, 3, 3)]
    assert repeated_runs(list("xabababy")) == [(1, 2, 3)]
    assert repeated_runs(list("abab")) == []               # twice is not folded
    assert repeated_runs(list("aaaa" + "bcbcbc")) == [(0, 1, 4), (4, 2, 3)]
    assert repeated_runs([]) == []


def test_max_nodes_refuses_large_drawings():
    r = adcli("dot", "x*(x+y)", "--at", "x=2,y=3", "--max-nodes", "3")
    assert r.exit_code == 2
    assert "limit exceeded: the drawing would have 4 nodes; the limit is 3" in r.stderr
    assert "Traceback" not in r.output


# ---------------------------------------------------------------- labels are escaped

def test_quote_escapes_quotes_backslashes_and_newlines():
    assert quote('a "b" \\ c\nd') == '"a \\"b\\" \\\\ c\\nd"'


def test_odd_sources_make_valid_dot():
    text = draw("-", "--at", "x=2", input='x * 2  # a "quoted" comment \\ with a backslash\n + 1\n')
    assert 'label="x * 2 # a \\"quoted\\" comment \\\\ with a backslash + 1"' in text
    for expr, at in [("[x, 1/x, x > 0]", "x=0"), ("log(x)", "x=[-1,0,1]"),
                     ("x @ x.T", "x=[[1,2],[3,4]]"), ("concat([x, x])[::-1]", "x=[1,2]")]:
        draw(expr, "--at", at, "--values")
        draw(expr, "--at", at, "--backward")


# ---------------------------------------------------------------- files

def test_out_dot_writes_the_text(tmp_path):
    path = tmp_path / "g.dot"
    r = adcli("dot", "x*(x+y)", "--at", "x=2,y=3", "-o", str(path))
    assert r.exit_code == 0 and r.stdout == ""
    assert path.read_text() == draw("x*(x+y)", "--at", "x=2,y=3")


def test_out_with_an_unknown_type_is_refused(tmp_path):
    r = adcli("dot", "x", "--at", "x=1", "-o", str(tmp_path / "g.jpg"))
    assert r.exit_code == 2 and "unknown file type" in r.stderr and ".svg" in r.stderr


def test_the_skip_reason_says_graphviz_is_not_installed():
    reason = needs_graphviz.kwargs["reason"]
    assert "Graphviz" in reason and "not installed" in reason and "optional" in reason


def test_out_svg_without_graphviz_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    path = tmp_path / "g.svg"
    r = adcli("dot", "x", "--at", "x=1", "-o", str(path))
    assert r.exit_code == 2 and not path.exists()
    assert "Graphviz" in r.stderr and "apt install graphviz" in r.stderr and "-o FILE.dot" in r.stderr


@needs_graphviz
@pytest.mark.parametrize("ext,magic", [("svg", b"<?xml"), ("png", b"\x89PNG"), ("pdf", b"%PDF")])
def test_out_renders_with_graphviz(tmp_path, ext, magic):
    path = tmp_path / f"g.{ext}"
    r = adcli("dot", "x*(x+y)", "--at", "x=2,y=3", "--backward", "-o", str(path))
    assert r.exit_code == 0, r.stderr
    assert path.read_bytes().startswith(magic)


@needs_graphviz
def test_graphviz_gets_the_time_the_work_budget_leaves(tmp_path):
    # found by tests/fuzz.py: Graphviz lays out a chain that reads x 400 times for minutes
    path = tmp_path / "g.svg"
    chain = "1-" + "x*" * 400 + "x"
    r = adcli("dot", chain, "--at", "x=1", "-o", str(path), "--max-work", "3e6")
    assert r.exit_code == 2
    assert "Graphviz's dot took more than 1 s, the time the work budget leaves" in r.stderr
    assert "--max-work" in r.stderr and "-o FILE.dot" in r.stderr
    assert not list(tmp_path.iterdir())          # no picture, no partial file


# ---------------------------------------------------------------- the README's picture

PICTURE = ["x*(x+y)", "--at", "x=2,y=3", "--backward", "--values"]


def test_the_readme_picture_is_up_to_date():
    """docs/graph.svg is `adcli dot PICTURE -o docs/graph.svg`. SVG bytes differ between
    Graphviz versions, so the DOT text it came from, docs/graph.dot, is compared; rerun
    with ADCLI_UPDATE_DOCS=1 (and Graphviz installed) to remake both."""
    dot_file, svg_file = ROOT / "docs" / "graph.dot", ROOT / "docs" / "graph.svg"
    text = draw(*PICTURE)
    if os.environ.get("ADCLI_UPDATE_DOCS") == "1":
        assert DOT, "remaking docs/graph.svg needs Graphviz's dot"
        dot_file.write_text(text)
        assert adcli("dot", *PICTURE, "-o", str(svg_file)).exit_code == 0
    assert dot_file.read_text() == text, "docs/graph.dot is stale: rerun with ADCLI_UPDATE_DOCS=1"
    root = ET.parse(svg_file).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    readme = (ROOT / "README.md").read_text()
    assert "](docs/graph.svg)" in readme and "adcli dot " + " ".join(
        f'"{a}"' if "*" in a else a for a in PICTURE) + " -o docs/graph.svg" in readme
    if DOT:     # the committed picture shows what the DOT text says
        fresh = subprocess.run([DOT, "-Tsvg"], input=text.encode(), capture_output=True).stdout
        assert _texts(ET.fromstring(fresh)) == _texts(root)


def _texts(svg):
    return sorted(t.text for t in svg.iter("{http://www.w3.org/2000/svg}text"))


# ---------------------------------------------------------------- documented

@pytest.mark.parametrize("command", ["dot", "trace"])
def test_every_option_is_documented(command):
    readme = (ROOT / "README.md").read_text()
    cmd = typer.main.get_command(app).commands[command]
    for param in cmd.params:
        for opt in param.opts:
            if opt.startswith("-"):
                assert re.search(r"(?<![\w-])" + re.escape(opt) + r"(?![\w-])", readme), \
                    f"README.md does not document {opt} of adcli {command}"
    assert f"### `adcli {command} EXPR|FILE.ad" in readme

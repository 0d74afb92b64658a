"""Hostile strings in every HTML page the harness writes (run report and its index,
compare, the nightly history's index and series pages, the tune report): each page is built
from data whose user-, plugin- and file-given strings are payloads, then (a) parsed, to
check that no element or attribute came from a payload and that the payloads show as text,
and (b) where Chromium is installed, opened headless, to check that no payload ran."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bench.analysis.report import write_reports
from bench.cli import main
from bench.results import store

# Each payload, if it ran, marks the document: its <html> gets data-pwned="1" (and the
# first one also retitles the page), which --dump-dom shows.
MARK = "document.documentElement.setAttribute('data-pwned','1')"
SCRIPT = f"<script>document.title='PWNED';{MARK}</script>"
IMG = f'"><img src=x onerror="{MARK}">'  # breaks out of a double-quoted attribute
IMG1 = f'\'><img src=x onerror="{MARK}">'  # of a single-quoted one
SVG = f'</textarea></title></style><svg onload="{MARK}">'  # out of raw-text elements
JS = f"javascript:{MARK}"  # where a string could become an href
HOSTILE = SCRIPT + IMG + SVG
PAYLOADS = (SCRIPT, IMG, IMG1, SVG)
NAME = IMG + IMG1  # no '/': usable as a file or folder name


# --- the checks -----------------------------------------------------------------------


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_title:
            self.title += data


def parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def assert_inert(path: Path, shown: tuple[str, ...] = PAYLOADS) -> None:
    """(a) No element or attribute of the page came from a payload, and each of ``shown``
    appears in the page's text (escaped, not dropped); (b) headless Chromium ran none."""
    page = parse(path.read_text())
    text = "".join(page.text)
    for tag, attrs in page.tags:
        assert tag not in {"script", "svg", "iframe", "object", "embed", "textarea"}, (tag, attrs)
        for name, value in attrs.items():
            assert not name.startswith("on") and name != "data-pwned", (tag, name, value)
            if name in ("href", "src"):
                v = (value or "").strip().lower()
                assert not v.startswith(("javascript:", "vbscript:")), (tag, name, value)
                assert not v.startswith("data:") or v.startswith("data:image/png;base64,")
        if tag == "img":
            src = attrs.get("src") or ""
            assert src.startswith("data:image/png;base64,") or src.endswith(".png"), attrs
    assert page.title.strip() and page.title.strip() != "PWNED"
    for payload in shown:
        assert payload in text, f"{payload!r} not shown as text in {path.name}"
    assert_chromium_ran_nothing(path)


def assert_chromium_ran_nothing(path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium binary: the pages were only parsed, not run")
    profile = path.parent / ".chromium-profile"  # its own, never another browser's
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=2000",
         f"--user-data-dir={profile}", "--dump-dom", path.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    shutil.rmtree(profile, ignore_errors=True)
    page = parse(dom)
    assert page.tags, f"chromium dumped no DOM for {path.name}"
    assert not any("data-pwned" in attrs for _, attrs in page.tags), f"a payload ran in {path}"
    assert page.title.strip() != "PWNED", f"a payload ran in {path}"


# --- the run report (and its profile sections) and the index ----------------------------


def _case(label: str, techniques: list[dict]) -> dict:
    return {
        "suite": HOSTILE,
        "id": f"{NAME}/w/{label}",
        "model": {"name": "tinygpt-s", "params": {"weights": SCRIPT}, "label": "m" + IMG},
        "workload": {"name": "forward", "params": {"batch": 1}, "label": "w" + SVG},
        "techniques": techniques,
        "run": {"threads": 2},
    }


def hostile_run(root: Path) -> Path:
    """A run folder whose every string from a user, a plugin or a file is a payload."""
    run_id = "run-" + IMG + IMG1
    run = root / "run1"
    (run / store.CASES).mkdir(parents=True)
    suite_name = SCRIPT + IMG1  # (HOSTILE would be too long for a folder name)
    suite_text = f"name = {json.dumps(suite_name)}\ndescription = {json.dumps(HOSTILE + IMG1)}\n"
    env = {
        "cpu_model": HOSTILE, "cpu_count": 2, "python": IMG, "torch": SVG, "host": IMG1,
        "git": {"commit": SCRIPT, "dirty": True, "subject": HOSTILE},
        "gpu": {"devices": [{"name": HOSTILE}], "driver": IMG},
        "software": {"torchao": SCRIPT},
        "copy_bandwidth": {HOSTILE: {"read_bytes_per_s": 1e10, "bytes_per_s": 5e9,
                                     "read_method": IMG}},
    }  # fmt: skip
    manifest = {
        "run_id": run_id, "started": "2026-01-01T00:00:00+00:00", "status": "complete",
        "environment": env,
        "suite": {"name": suite_name, "path": IMG1, "text": suite_text},
        "idle_power": {"domains": {HOSTILE: {"watts": 3.0, "method": SCRIPT}}},
    }  # fmt: skip
    store.write_json_atomic(run / store.MANIFEST, manifest)
    base = _case("baseline", [{"name": "baseline", "params": {}, "label": "baseline"}])
    tech = _case("t", [{"name": "prune", "params": {"amount": SCRIPT}, "label": "t" + HOSTILE}])
    for i, (case, speed) in enumerate(((base, 100.0), (tech, 200.0))):
        for r in range(3):
            tps = speed * (1 + 0.05 * r)
            metrics = [
                {"name": "throughput_tokens", "value": tps, "unit": "tokens/s", "method": IMG},
                {"name": "kl_to_baseline", "value": 0.01 * i, "unit": SVG, "method": "x"},
                {"name": "latency_median", "value": 1 / tps, "unit": "s", "method": SCRIPT},
                {"name": "state_dict_bytes", "value": 1e6, "unit": HOSTILE, "method": IMG1},
                {"name": "plugin" + HOSTILE, "value": [1, 1.01, 50][r], "unit": IMG,
                 "method": SVG},
            ]  # fmt: skip
            result = {"case": case, "case_id": case["id"], "case_hash": "h", "repeat": r,
                      "status": "ok", "started": f"2026-01-01T00:00:{i}{r}", "run_id": run_id,
                      "metrics": metrics, "info": {}}  # fmt: skip
            store.write_json_atomic(run / store.CASES / f"c{i}.r{r}.json", result)
    broken = f"{NAME}/w/broken" + SVG
    failed = {"case": {**tech, "id": broken}, "case_id": broken, "repeat": 0, "status": "failed",
              "started": "2026-01-01T00:01:00", "run_id": run_id, "error": HOSTILE + "\nmore"}  # fmt: skip
    store.write_json_atomic(run / store.CASES / "broken.r0.json", failed)
    # profiled passes: hostile operator names, a failed pass's error, trace paths
    ops = [{"operator": HOSTILE, "self_us_per_call": 900.0, "self_share": 0.6},
           {"operator": "aten::" + IMG1, "self_us_per_call": 100.0, "self_share": 0.1}]  # fmt: skip
    for case_id, operators, trace in ((base["id"], ops[:1], JS), (tech["id"], ops, NAME)):
        profile = {"operators": operators, "trace": trace, "calls": 3, "wall_us_per_call": 1e3,
                   "python": {"flame_graph": JS}}  # fmt: skip
        result = {"case_id": case_id, "status": "ok", "run_id": run_id,
                  "case": {"techniques": case_techniques(case_id, base, tech)},
                  "info": {"pass": "profile", "profile": profile}}  # fmt: skip
        path = store.profile_path(run, case_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result))
    bad = {"case_id": f"{NAME}/w/bad", "status": "failed", "error": SCRIPT, "run_id": run_id}
    store.profile_path(run, bad["case_id"]).write_text(json.dumps(bad))
    return run


def case_techniques(case_id: str, base: dict, tech: dict) -> list[dict]:
    return (base if case_id == base["id"] else tech)["techniques"]


@pytest.mark.filterwarnings("ignore:constrained_layout not applied")  # labels this long
def test_the_run_report_and_its_index_show_hostile_strings_as_text(tmp_path):
    run = hostile_run(tmp_path / "results")
    (report,) = write_reports([run], tmp_path / "reports")
    assert "Where the time went" in report.read_text()
    assert_inert(report)
    assert_inert(tmp_path / "reports" / "index.html", shown=())


# --- the compare page --------------------------------------------------------------------


def test_the_compare_page_shows_hostile_strings_as_text(tmp_path):
    from tests.test_compare import ENV, fake_run, lat
    from tests.test_profiles import _fake_profile

    case, only = f"m/w/{SCRIPT}", f"m/w/only{SVG}"
    text = f"name = {json.dumps(HOSTILE)}\n"
    cand_env = {**ENV, "cpu_model": HOSTILE}  # compared anyway, with --allow-mixed
    base = [fake_run(tmp_path / NAME, f"base{i}", {case: {"latency_median": lat(0.01, seed=i)},
                     only: {"latency_median": lat(0.01)}}, suite=HOSTILE, suite_text=text)
            for i in range(3)]  # fmt: skip
    cand = [fake_run(tmp_path / NAME, f"cand{i}", {case: {"latency_median": lat(0.015, seed=9 + i)}},
                     suite=HOSTILE, suite_text=text, env=cand_env)
            for i in range(3)]  # fmt: skip
    for f in [*tmp_path.glob("*/*/cases/*.json")]:  # a plugin's unit and method
        data = json.loads(f.read_text())
        for m in data["metrics"]:
            m["method"] = IMG
        data["metrics"].append({"name": "plugin" + IMG, "value": 1.0, "unit": HOSTILE,
                                "method": SVG})  # fmt: skip
        f.write_text(json.dumps(data))
    _fake_profile(base[0], case, {"aten::mm": 900.0, HOSTILE: 100.0})
    _fake_profile(cand[0], case, {"aten::mm": 1500.0, HOSTILE: 300.0})
    out = tmp_path / "out"
    argv = ["compare", str(base[0]), str(cand[0]), "--reports", str(out), "--allow-mixed"]
    argv += [*(a for b in base[1:] for a in ("--base-run", str(b)))]
    argv += [*(a for c in cand[1:] for a in ("--candidate-run", str(c)))]
    assert main(argv) == 1  # a regression
    assert_inert(out / "compare.html", shown=(SCRIPT, SVG, HOSTILE, NAME))


# --- the nightly history's pages --------------------------------------------------------


def test_the_history_pages_show_hostile_strings_as_text(tmp_path, monkeypatch):
    import numpy as np

    from tests import test_history

    monkeypatch.setattr(test_history, "CASE", f"m/w/{HOSTILE}")
    results, name = tmp_path / "results", "nightly" + NAME
    rng = np.random.default_rng(0)
    for night in range(14):
        level = 0.020 * (1.3 if night >= 9 else 1)
        run = test_history.fake_run(
            results, night, list(level * np.exp(rng.normal(0, 0.02, 3))), history=name,
            commit=f"{night:02d}{SCRIPT}", env={"cpu_model": HOSTILE, "host": IMG1},
        )  # fmt: skip
        manifest = json.loads((run / "manifest.json").read_text())
        manifest["environment"]["git"]["subject"] = HOSTILE
        (run / "manifest.json").write_text(json.dumps(manifest))
        for f in (run / "cases").glob("*.json"):
            data = json.loads(f.read_text())
            data["metrics"][0]["method"] = IMG
            data["metrics"][1]["unit"] = HOSTILE  # a plugin's unit on a figure that never moves
            data["metrics"].append({"name": "plugin" + IMG, "value": 1.0 + night, "unit": SVG,
                                    "method": SCRIPT})  # fmt: skip
            f.write_text(json.dumps(data))
    where = ["--results", str(results)]
    plot = [name, *where, "--plot", "--reports", str(tmp_path / "reports")]
    assert main(["history", "rebuild", *where]) == 0
    assert main(["history", "show", *plot]) == 1  # the step alarms
    pages = tmp_path / "reports" / "nightly"
    assert "ALARM" in (pages / "index.html").read_text()
    assert_inert(pages / "index.html", shown=(HOSTILE, IMG1, NAME))
    for page in sorted(pages.glob("*.html")):
        if page.name != "index.html":
            assert_inert(page, shown=(NAME,))
    # an acknowledged alarm: its note is shown on the index
    assert main(["history", "ack", name, *where, "--note", HOSTILE + JS]) == 0
    assert main(["history", "show", *plot]) == 0
    assert_inert(pages / "index.html", shown=(HOSTILE + JS,))


# --- the tune report --------------------------------------------------------------------


def test_the_tune_report_shows_hostile_strings_as_text(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from bench.analysis import tune_front
    from bench.spec.tune import Constraint, Objective

    monkeypatch.setattr(
        tune_front, "importance_rows",
        lambda study, objectives: (["parameter", IMG1], [[HOSTILE, "0.50"]], SVG),
    )  # fmt: skip
    objectives = [Objective("throughput_tokens", True), Objective("state_dict_bytes", False)]
    constraints = [Constraint("kl_to_baseline", "<=", 0.05)]
    base = {"throughput_tokens": [100.0, 101.0, 99.0], "state_dict_bytes": [10.0] * 3}
    chain = [{"name": SCRIPT, "amount": IMG, "method": SVG}]

    def point(label, trial, speed, error=None):
        runs = {"throughput_tokens": [speed, speed * 1.01, speed * 0.99],
                "state_dict_bytes": [5.0] * 3, "kl_to_baseline": [0.0] * 3}  # fmt: skip
        return tune_front.Point(label, trial, chain, {"batch": IMG1}, {"throughput_tokens": 1.5},
                                runs=runs, base=base, run_id=NAME, error=error)  # fmt: skip

    points = [point("p" + HOSTILE, 0, 150.0), point("q" + IMG, 1, 120.0),
              point("r" + SVG, 2, 130.0, error=HOSTILE)]  # fmt: skip
    judged = tune_front.judge(points, objectives, constraints)
    trials = [{"number": i, "chain": chain, "workload": {"batch": IMG1},
               "figures": {"throughput_tokens": 1.2 + i / 10, "state_dict_bytes": 5.0},
               "constraints": [-1.0], "error": HOSTILE if i == 2 else None, "stopped": None}
              for i in range(3)]  # fmt: skip
    suite = SimpleNamespace(name=HOSTILE, description=HOSTILE + IMG1)
    page = tune_front.write_report(tmp_path / NAME, suite, None, trials, judged, objectives,
                                   constraints, tmp_path / f"{NAME}.toml")  # fmt: skip
    assert_inert(page)


def test_every_page_is_a_template_with_autoescaping():
    """No module writes a page's markup or escapes text itself: every page is a template
    rendered by ``bench.analysis.document`` with autoescaping on, and no template turns it
    off or marks a string safe."""
    import bench
    from bench.analysis.document import environment

    root = Path(bench.__file__).parent
    for f in root.rglob("*.py"):
        text = f.read_text()
        assert "html.escape" not in text and "escape=False" not in text, f
        assert "Markup(" not in text and "markupsafe" not in text, f
        assert "<!doctype" not in text.lower() and "<title>" not in text, f
        assert "<table" not in text and "<td" not in text and "<a href" not in text, f
    templates = sorted((root / "analysis" / "templates").glob("*.j2"))
    assert len(templates) >= 5
    for t in templates:
        text = t.read_text()
        assert "|safe" not in text.replace(" ", "") and "autoescape" not in text, t
    env = environment()
    assert env.autoescape is True
    assert env.from_string("{{ x }}").render(x=SCRIPT) != SCRIPT


def _table(header, rows) -> str:
    from bench.analysis.document import environment

    macro = '{% from "macros.html.j2" import table %}{{ table(header, rows) }}'
    return environment().from_string(macro).render(header=header, rows=rows)


def test_a_link_from_a_file_never_becomes_a_script_or_leaves_its_name():
    from bench.analysis.document import Link, href

    assert href(JS).startswith("javascript%3A") and "'" not in href(JS)
    assert href(" javascript:x") == "%20javascript%3Ax" and href("JAVASCRIPT:x") == "JAVASCRIPT%3Ax"
    assert href("../r/a#b?.json") == "../r/a%23b%3F.json"  # the file's name, not a fragment
    assert href("https://ui.perfetto.dev/#!/x") == "https://ui.perfetto.dev/#!/x"
    table = _table(["h", IMG], [[Link(HOSTILE, JS), [Link(SCRIPT, NAME), Link("t", SVG)]]])
    page = parse(table)
    assert [t for t, _ in page.tags].count("a") == 3
    assert all(not a.get("href", "").startswith("javascript:") for _, a in page.tags)
    assert all(not n.startswith("on") for _, a in page.tags for n in a)
    assert HOSTILE in "".join(page.text) and IMG in "".join(page.text)
    # a web address keeps its query, escaped once in the attribute and read back intact
    (tag,) = parse(_table(["h"], [[Link("x", "https://e.org/?a=1&b='2'")]])).tags[-1:]
    assert tag == ("a", {"href": "https://e.org/?a=1&b='2'"})

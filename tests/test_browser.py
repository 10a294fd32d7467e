"""In a real browser (Playwright driving Debian's Chromium): people vote through the rating page, and report.html
fits a desktop and a phone screen."""

from __future__ import annotations

import json

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from facerealism.rating.trials import COMPARISONS, read_set, rater_order
from facerealism.rating.votes import VoteStore

from .test_rating import rating_set

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (`make test` installs it "
                                                          "with apt-get where apt is available)")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Playwright cannot download its own browsers here: it drives the system's Chromium.
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rating_server(tmp_path):
    """The rating page of a constructed set, served by uvicorn on a free port; yields (url, store, folder)."""
    import uvicorn

    from facerealism.rating.server import create_app

    folder = rating_set(tmp_path / "set", n=3, attention=2)
    store = VoteStore(f"sqlite:///{tmp_path}/ratings.db")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(folder, store, min_attention=0.8), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start in 30 s"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", store, folder
    server.should_exit = True
    thread.join(10)


def images_loaded(page) -> bool:
    """Every image of the page decoded (waits for the page's load event first: a vote navigates)."""
    page.wait_for_load_state("load")
    return page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")


def test_a_rater_votes_through_the_page_resumes_and_a_double_submit_counts_once(browser, rating_server):
    url, store, folder = rating_server
    items = read_set(folder)
    order = rater_order(items["trials"], "alice")
    page = browser.new_page(viewport={"width": 390, "height": 800})
    page.goto(url + "/")
    page.fill("input[name=rater]", "alice")
    page.click("button[type=submit]")
    # alice always picks the candidate (and dev in attention checks), wherever the page put it
    for i, t in enumerate(order[:5]):
        assert page.locator(".progress").inner_text() == f"alice: {i} of {len(order)} done"
        assert page.locator("img").count() == 2 and images_loaded(page)
        assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        page.click("#left" if t["left"] == COMPARISONS[t["comparison"]].a else "#right")
    assert store.voted(items["campaign"], "alice") == {t["id"] for t in order[:5]}

    # A double submit (a double click, a retried request): the same form posted again, the other side this time.
    token = page.get_attribute("input[name=trial]", "value")
    page.click("#left" if order[5]["left"] == COMPARISONS[order[5]["comparison"]].a else "#right")
    for side in ("left", "right"):
        assert page.request.post(url + "/r/alice/vote", form={"trial": token, "chosen": side},
                                 max_redirects=0).status == 303
    votes = {v["trial"]: v["chosen"] for v in store.votes(items["campaign"])}
    assert len(votes) == 6 and votes[order[5]["id"]] == COMPARISONS[order[5]["comparison"]].a

    # Resume: a new page (another device) with the same name continues at the sixth trial.
    page.close()
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url + "/?rater=alice")
    assert page.locator(".progress").inner_text() == f"alice: 6 of {len(order)} done"
    for t in order[6:]:
        page.click("#left" if t["left"] == COMPARISONS[t["comparison"]].a else "#right")
    assert "Thank you, alice" in page.content()

    results = page.goto(url + "/results.json").json()
    page.close()
    assert results["raters"] == {"total": 1, "counted": 1, "careless": [], "no_attention_answer": []}
    for name, c in results["comparisons"].items():
        assert (c["votes"], c["raters"], c["preference"]) == (3, 1, 1.0), name
        assert c["ci95"][0] < 1.0 < c["ci95"][1] + 1e-12


def test_the_page_does_not_tell_which_image_is_which(browser, rating_server):
    url, _, folder = rating_server
    page = browser.new_page()
    page.goto(url + "/r/bob")
    form = page.inner_html("form.pair")  # what a curious rater could read: hidden fields, buttons, image addresses
    page.close()
    assert form.count("<img") == 2
    for name in ("head", "dev", "schnell", "fitted", "degraded", "attention"):
        assert name not in form, name


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """report.html rebuilt from the committed outputs of the last full run (reports/), plus ratings of 2 raters."""
    from facerealism.files import write_json
    from facerealism.rating.votes import preference
    from facerealism.report.html import write_report

    reports = tmp_path_factory.mktemp("reports")
    for name in ("table4.json", "promotion.json", "benchmark.json", "audit.json", "before_after.png", "crops.png",
                 "fig8_speed.png"):
        shutil.copy(ROOT / "reports" / name, reports / name)
    votes = [{"comparison": "attention", "rater": r, "chosen": "dev", "trial": f"attention/{r}"} for r in "ab"]
    votes += [{"comparison": "head_vs_dev", "rater": r, "chosen": "head" if i % 3 else "dev", "trial": f"t{i}"}
              for r in "ab" for i in range(9)]
    write_json(reports / "ratings.json", {"campaign": "c", "fitted": "fitted: linear 9×9",
                                          **preference(votes, min_attention=0.8)})
    return write_report(reports)


@pytest.mark.parametrize("width", [1400, 390])
def test_the_report_fits_the_screen_loads_every_image_and_opens_with_the_verdict(browser, report, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(report.as_uri(), wait_until="load")
    sizes = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    loaded = page.evaluate("[...document.images].map(i => i.complete && i.naturalWidth > 0)")
    first = page.locator("h2").first.inner_text()
    verdict = page.locator(".verdict").inner_text()
    above_fold = page.locator(".verdict").bounding_box()["y"] < 900
    rating = page.locator("h2:has-text(\"People's judgement\") + div table").inner_text()
    page.close()
    assert sizes[0] <= sizes[1], f"page is {sizes[0]} px wide in a {sizes[1]} px viewport"
    assert len(loaded) == 7 and all(loaded)  # 4 charts, 2 grids, Fig. 8
    assert first == "Verdict" and above_fold
    # The verdict of the committed run, whichever it was: promoted or not, the model and its version come first.
    decision = json.loads((ROOT / "reports" / "promotion.json").read_text())
    assert verdict.startswith(f"{'Promoted' if decision['promoted'] else 'Not promoted'}: "
                              f"{decision['model']} v{decision['version']}"), verdict
    assert "head vs dev" in rating and "67 %" in rating  # 12 of 18 votes chose the head

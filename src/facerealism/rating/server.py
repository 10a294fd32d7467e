"""The rating page: FastAPI with one Jinja2 template, plain HTML forms (no JavaScript needed to vote)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from facerealism.rating.trials import QUESTION, SETS, read_set, rater_order
from facerealism.rating.votes import VoteStore, preference

RATER = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))


def create_app(folder: str | Path, store: VoteStore, display_px: int = 384, min_attention: float = 0.8) -> FastAPI:
    """The page for one rating set (`trials.build_set` or `trials.write_set`), voting into `store`.

    Routes: / asks for a rater name; /r/NAME shows NAME's next trial (resuming where NAME stopped) and takes the
    vote by POST; /results.json is the preference so far.
    """
    folder = Path(folder)
    items = read_set(folder)
    campaign = items["campaign"]
    app = FastAPI(title="facerealism rating", docs_url=None, redoc_url=None, openapi_url=None)
    # Opaque image names: neither the page nor an image's address tells a rater which set a picture came from.
    token = {(s, t["prompt"]): hashlib.sha256(f"{campaign}:{s}:{t['prompt']}".encode()).hexdigest()[:20]
             for t in items["trials"] for s in SETS}
    files = {v: folder / "images" / s / f"{p}.png" for (s, p), v in token.items()}
    trial_token = {t["id"]: hashlib.sha256(f"{campaign}:{t['id']}".encode()).hexdigest()[:20] for t in items["trials"]}

    def rater_name(name: str) -> str:
        if not RATER.fullmatch(name):
            raise HTTPException(400, f"rater name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
        return name

    @app.get("/", response_class=HTMLResponse)
    def start(request: Request, rater: str | None = None):
        if rater:
            return RedirectResponse(f"/r/{quote(rater_name(rater.strip()))}", status_code=303)
        return _TEMPLATES.TemplateResponse(request, "rate.html", {"page": "start", "question": QUESTION,
                                                                     "px": display_px})

    @app.get("/r/{rater}", response_class=HTMLResponse)
    def next_trial(request: Request, rater: str):
        rater = rater_name(rater)
        order = rater_order(items["trials"], rater)
        done = store.voted(campaign, rater)
        todo = [t for t in order if t["id"] not in done]
        context = {"rater": rater, "question": QUESTION, "done": len(order) - len(todo), "total": len(order),
                   "px": display_px}
        if not todo:
            return _TEMPLATES.TemplateResponse(request, "rate.html", {**context, "page": "thanks"})
        t = todo[0]
        return _TEMPLATES.TemplateResponse(request, "rate.html", {
            **context, "page": "trial", "trial": trial_token[t["id"]],
            "images": {side: f"/images/{token[t[side], t['prompt']]}.png" for side in ("left", "right")}})

    @app.post("/r/{rater}/vote")
    async def vote(request: Request, rater: str):
        rater = rater_name(rater)
        # An urlencoded form, parsed here: FastAPI's Form() would add python-multipart to the dependencies.
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        trial = next((t for t in rater_order(items["trials"], rater) if trial_token[t["id"]] == form.get("trial")), None)
        if trial is None:
            raise HTTPException(400, f"unknown trial {form.get('trial')!r} in rating set {campaign}")
        side = form.get("chosen")
        if side not in ("left", "right"):
            raise HTTPException(400, f"chosen must be 'left' or 'right', got {side!r}")
        store.cast(campaign, rater, trial, trial[side])
        return RedirectResponse(f"/r/{quote(rater)}", status_code=303)  # reload-safe: GET after POST

    @app.get("/images/{name}.png")
    def image(name: str):
        if name not in files:
            raise HTTPException(404, f"no image {name}")
        return FileResponse(files[name], media_type="image/png")

    @app.get("/results.json")
    def results():
        return JSONResponse({"campaign": campaign, **preference(store.votes(campaign), min_attention)})

    return app

"""The dashboard in a real browser (Debian's chromium, headless, driven by playwright) against
the Procfile's web process and a real worker: sign in, watch a DAG's nodes turn completed
without a reload, pause from the page with the keyboard, a read token's page has no buttons, a
POST without the CSRF token is refused, labels and contrast hold; screenshots in tmp_path."""

from __future__ import annotations

import pytest
import requests

from app.ui import palette
from tests.browser.conftest import sign_in
from tests.browser.helpers import make_token, queued_session

pytestmark = pytest.mark.e2e

AGENT = {"name": "ui-shell", "type": "implementer", "driver": "shell", "capacity": 4,
         "capabilities": ["code_generation", "test_generation", "deployment"]}  # fmt: skip


@pytest.fixture
def agent(client, db):
    return client.post("/api/v1/agents", json=AGENT).json


def submit(client, tasks, title="ui e2e") -> str:
    response = client.post("/api/v1/sessions", json={"title": title, "prompt": "p",
                                                     "dag": {"tasks": tasks}})  # fmt: skip
    assert response.status_code == 201, response.json
    return response.json["id"]


def statuses(page) -> dict[str, str]:
    return page.eval_on_selector_all(
        "tr.task-node",
        "rows => Object.fromEntries(rows.map(r => [r.dataset.taskKey, r.dataset.status]))",
    )


def test_nodes_turn_completed_live_without_a_reload(
    web, app, client, agent, worker, page, tmp_path
):
    _, secret = make_token(app, "read")
    sign_in(page, web, secret)
    tasks = [
        {"key": "prepare", "command": "sleep 1.5; echo prepared"},
        {"key": "build", "command": "sleep 0.5; echo built", "depends_on": ["prepare"]},
        {"key": "test", "command": "sleep 0.5; echo tested", "depends_on": ["prepare"]},
        {"key": "ship", "command": "echo shipped", "depends_on": ["build", "test"]},
    ]
    session_id = submit(client, tasks, title="watch me")
    page.goto(f"{web}/ui/sessions/{session_id}")
    page.evaluate("window.__sameDocument = true")
    assert statuses(page)["ship"] != "completed"  # it was not over before the page opened
    page.wait_for_function(
        "document.querySelectorAll('tr.task-node[data-status=completed]').length === 4",
        timeout=90_000,
    )
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    assert statuses(page) == dict.fromkeys(["prepare", "build", "test", "ship"], "completed")
    page.wait_for_selector("#session-status[data-status=completed]", timeout=30_000)
    assert page.locator(".gantt-row").count() == 4  # one attempt each, wait apart from run
    assert page.locator("#event-log li[data-type='task.completed']").count() == 4
    page.get_by_role("button", name="ship").click()
    assert "shipped" in page.locator("#task-detail").inner_text()
    assert page.js_errors == []
    page.screenshot(path=str(tmp_path / "session-page.png"), full_page=True)


def test_pause_from_the_page_with_the_keyboard(web, app, client, agent, worker, page, tmp_path):
    _, secret = make_token(app, "write")
    sign_in(page, web, secret)
    tasks = [{"key": "slow", "command": "sleep 30"},
             {"key": "after", "command": "true", "depends_on": ["slow"]}]  # fmt: skip
    session_id = submit(client, tasks, title="pause me")
    page.goto(f"{web}/ui/sessions/{session_id}")
    page.wait_for_selector("[data-action=pause]")
    for _ in range(80):  # Tab through the page to the button, as a keyboard user would
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.action") == "pause":
            break
    else:
        pytest.fail("Tab never reached the pause button")
    page.keyboard.press("Enter")
    page.wait_for_selector("#session-status[data-status=paused]")
    assert page.locator("[data-action=resume]").count() == 1
    assert page.locator("[data-action=pause]").count() == 0
    assert client.get(f"/api/v1/sessions/{session_id}").json["status"] == "paused"
    page.screenshot(path=str(tmp_path / "paused.png"), full_page=True)
    client.post(f"/api/v1/sessions/{session_id}/cancel")


def test_a_read_token_sees_no_buttons_and_a_post_without_csrf_is_refused(web, app, db, page,
                                                                         tmp_path):  # fmt: skip
    session_id = queued_session(db, title="look only")
    _, secret = make_token(app, "read")
    sign_in(page, web, secret)
    assert page.locator(f"tr[data-session-id='{session_id}']").count() == 1
    page.goto(f"{web}/ui/sessions/{session_id}")
    page.wait_for_selector("tr.task-node[data-task-key=a]")
    assert page.locator("[data-action]").count() == 0
    assert page.get_by_role("link", name="Submit").count() == 0
    page.screenshot(path=str(tmp_path / "read-only.png"), full_page=True)
    _, writer = make_token(app, "write")
    sign_in(page, web, writer)
    page.goto(f"{web}/ui/sessions/{session_id}")
    assert page.locator("[data-action=pause]").count() == 1
    status = page.evaluate(
        "async (url) => (await fetch(url, {method: 'POST', credentials: 'same-origin'})).status",
        f"/ui/sessions/{session_id}/actions/pause",
    )
    assert status == 403
    with_token = page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST', credentials: 'same-origin',
             headers: {'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content},
             redirect: 'manual'})).type""",
        f"/ui/sessions/{session_id}/actions/pause",
    )
    assert with_token == "opaqueredirect"  # the 303 back to the page: it was done
    assert requests.get(f"{web}/health/live", timeout=10).ok


def test_the_list_updates_live_and_the_pages_are_labelled_and_legible(
    web, app, client, db, page, tmp_path
):
    _, secret = make_token(app, "write")
    sign_in(page, web, secret)
    page.evaluate("window.__sameDocument = true")
    session_id = queued_session(db, title="arrives later")
    page.wait_for_selector(f"tr[data-session-id='{session_id}']", timeout=30_000)
    assert page.evaluate("window.__sameDocument") is True
    client.post("/api/v1/agents", json=AGENT)
    for path in ("/ui/", "/ui/agents", "/ui/submit", f"/ui/sessions/{session_id}", "/ui/login"):
        page.goto(f"{web}{path}")
        unlabelled = page.evaluate("""() => [...document.querySelectorAll(
              'input:not([type=hidden]), select, textarea, button')].filter(e => {
            const named = e.labels && e.labels.length || e.getAttribute('aria-label')
              || (e.tagName === 'BUTTON' && e.textContent.trim());
            return !named; }).map(e => e.outerHTML)""")
        assert unlabelled == [], (path, unlabelled)
        pairs = page.evaluate("""() => [...document.querySelectorAll('.badge')].map(e => {
            const s = getComputedStyle(e);
            return [e.textContent, s.backgroundColor, s.color]; })""")
        for text, background, colour in pairs:
            ratio = palette.contrast(_hex(background), _hex(colour))
            assert ratio >= palette.MIN_CONTRAST, (path, text, background, colour, ratio)
    page.screenshot(path=str(tmp_path / "login.png"))


def test_swagger_ui_renders_from_the_app_s_own_assets(web, page, tmp_path):
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{web}/api/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "Agent Orchestrator" in page.locator(".swagger-ui .info .title").inner_text()
    assert page.locator(".opblock").count() > 10  # the operations of openapi.json
    outside = [url for url in requested if not url.startswith((web, "data:"))]
    assert outside == [], outside  # nothing from a CDN: it renders offline
    page.screenshot(path=str(tmp_path / "swagger.png"))


def test_agents_maintenance_and_submit_from_the_browser(web, app, client, agent, worker, page):
    _, secret = make_token(app, "write")
    sign_in(page, web, secret)
    page.goto(f"{web}/ui/agents")
    page.get_by_role("button", name="Turn on").click()
    page.wait_for_selector("[data-maintenance=off]")
    assert client.get(f"/api/v1/agents/{agent['id']}").json["maintenance"] is True
    page.get_by_role("button", name="Turn off").click()
    page.wait_for_selector("[data-maintenance=on]")

    page.goto(f"{web}/ui/submit")
    page.get_by_label("Prompt").fill("Build a CRUD web service with a database model")
    page.get_by_role("button", name="Preview plan").click()
    page.wait_for_selector("#preview-list li")
    assert page.locator("#dag-preview canvas").count() > 0
    assert page.locator("#preview-list li").count() >= 2
    page.get_by_label("DAG (JSON", exact=False).fill(
        '{"tasks": [{"key": "one", "command": "echo one"},'
        ' {"key": "two", "command": "echo two", "depends_on": ["one"]}]}'
    )
    page.wait_for_selector("#preview-list li[data-task-key=two]")
    page.get_by_label("Title").fill("pasted dag")
    page.get_by_role("button", name="Submit", exact=True).click()
    page.wait_for_url(f"{web}/ui/sessions/*")
    page.wait_for_function(
        "document.querySelectorAll('tr.task-node[data-status=completed]').length === 2",
        timeout=60_000,
    )


def _hex(css: str) -> str:
    """`rgb(r, g, b)` as `#rrggbb`."""
    parts = css[css.index("(") + 1 : css.index(")")].split(",")
    return "#" + "".join(f"{int(float(p)):02x}" for p in parts[:3])

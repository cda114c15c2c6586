"""The dashboard's page and assets through Falcon's TestClient: public, same-origin only, and
calling only API routes that exist."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from falcon import testing

from web.dashboard import ASSETS_DIR, ASSETS_PREFIX, PAGE_PATHS

ASSETS = sorted(path.name for path in ASSETS_DIR.iterdir() if path.is_file())
#: The page's JavaScript modules, all of them in one text.
SCRIPT = "\n".join(path.read_text() for path in sorted(ASSETS_DIR.glob("*.js")))
#: Any absolute http(s) URL: the page loads nothing from another origin (no CDN).
EXTERNAL_URL = re.compile(r"https?://", re.IGNORECASE)
#: Quoted strings and template literals of the scripts that start with a path: "/stats",
#: `/tasks/${encodeURIComponent(id)}/cancel`.
SCRIPT_PATH = re.compile(r"""["'`](/[^"'`\s]*)["'`]""")
#: Ways to put markup into a page; server data must only ever go through textContent.
HTML_SINKS = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write")
#: The API routes the page must call, as the scripts spell them with their placeholders.
API_ROUTES = {
    "/openapi.json",
    "/stats",
    "/rebalance",
    "/tasks",
    "/tasks/{}",
    "/tasks/{}/events",
    "/tasks/{}/cancel",
    "/tasks/{}/retry",
}


class _Links(HTMLParser):
    """The ``href`` and ``src`` values of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [value for name, value in attrs if name in ("href", "src") and value]


@pytest.fixture
def anonymous(client) -> testing.TestClient:
    """A client on the same app that sends no token."""
    return testing.TestClient(client.app)


def script_paths() -> list[str]:
    """The paths in the scripts, in order, with each ``${...}`` shown as ``{}``."""
    return [re.sub(r"\$\{[^}]*\}", "{}", path) for path in SCRIPT_PATH.findall(SCRIPT)]


@pytest.mark.parametrize("path", PAGE_PATHS)
def test_the_dashboard_page_is_served_without_a_token(anonymous, path):
    response = anonymous.simulate_get(path)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>Callboard dashboard</title>" in response.text
    assert "default-src 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize("name", ASSETS)
def test_each_dashboard_asset_is_served_without_a_token(anonymous, name):
    response = anonymous.simulate_get(f"{ASSETS_PREFIX}/{name}")

    assert response.status_code == 200, response.text
    assert response.content == (ASSETS_DIR / name).read_bytes()


def test_every_link_of_the_page_is_served_from_this_server_without_a_token(anonymous):
    parser = _Links()
    parser.feed(anonymous.simulate_get("/").text)
    local = [link for link in parser.links if not link.startswith("data:")]

    assert {f"{ASSETS_PREFIX}/dashboard.css", f"{ASSETS_PREFIX}/dashboard.js"} <= set(local)
    for link in local:
        assert link.startswith("/") and not link.startswith("//"), link
        assert anonymous.simulate_get(link).status_code == 200, link


@pytest.mark.parametrize("name", ASSETS)
def test_no_asset_refers_to_another_origin(name):
    text = (ASSETS_DIR / name).read_text()

    assert not EXTERNAL_URL.search(text), EXTERNAL_URL.search(text)


def test_the_script_never_writes_markup():
    assert [sink for sink in HTML_SINKS if sink in SCRIPT] == []


def test_the_script_calls_the_api_routes_the_dashboard_needs():
    called = {path.split("?")[0] for path in script_paths()}

    assert called == API_ROUTES


def test_each_api_path_the_script_calls_answers_with_the_token(client):
    # Given a task, whose id fills the script's placeholders
    task = client.simulate_post("/tasks", json={"type": "a", "payload": {"text": "x", "rounds": 1}})
    assert task.status_code == 202, task.text

    # Each path, in the script's order (cancel before retry), answers GET or else POST with 2xx
    for path in script_paths():
        url = path.replace("{}", task.json["id"])
        response = client.simulate_get(url)
        if response.status_code == 405:
            response = client.simulate_post(url)
        assert 200 <= response.status_code < 300, (url, response.status_code, response.text)


def test_the_task_list_accepts_every_filter_the_page_can_send(client):
    response = client.simulate_get(
        "/tasks", params={"status": "running", "type": "b", "limit": 100}
    )

    assert response.status_code == 200, response.text


def test_the_api_still_needs_a_token(anonymous):
    for path in ("/stats", "/tasks", "/dashboard/assets/../stats", "/dashboards"):
        assert anonymous.simulate_get(path).status_code in (401, 404), path
    assert anonymous.simulate_get("/stats").status_code == 401


def test_the_dashboard_is_not_in_the_api_document(client):
    paths = client.simulate_get("/openapi.json").json["paths"]

    assert not [path for path in paths if path == "/" or path.startswith("/dashboard")]

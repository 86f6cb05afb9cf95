"""The live stack serves real pages to a real Chromium, and they pass axe."""

from tests.e2e.browser.conftest import run_axe


def test_landing_page_renders_without_script_errors_and_passes_axe(live, new_context, artifacts) -> None:
    page = new_context().new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(live.url + "/")
    assert page.locator("h1").first.is_visible()
    page.screenshot(path=str(artifacts / "landing.png"), full_page=True)
    assert run_axe(page) == []
    assert errors == []

"""The operator's login in a real Chromium: the operator pages send a browser without a
session to /login, which brings it back once the password is right; logging out ends it."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import Tracker, screenshot_path
from tracker.demo import DEMO_OPERATOR as OPERATOR

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_an_operator_logs_in_is_sent_back_and_logs_out(tracker: Tracker, page: Page) -> None:
    await page.goto(tracker.url + "/replay")
    await expect(page).to_have_url(re.compile(r"/login\?next=/replay$"))
    await page.locator("#name").fill(OPERATOR)
    await page.locator("#password").fill("not the password")
    await page.locator("#submit").click()
    await expect(page.locator("#error")).to_have_text("Wrong name or password.")
    await page.screenshot(path=screenshot_path("login-wrong-password"))

    await page.locator("#password").fill(tracker.password)
    await page.locator("#submit").click()
    await expect(page).to_have_url(tracker.url + "/replay")
    who = page.locator("#who")
    await expect(who).to_contain_text(f"Signed in as {OPERATOR}")
    cookies = {c["name"]: c for c in await page.context.cookies(tracker.url)}
    session = cookies["tracker_session"]
    assert session["httpOnly"] is True, session
    assert session["sameSite"] == "Strict", session

    await who.get_by_role("button", name="Log out").click()
    await expect(page).to_have_url(re.compile(r"/login$"))
    assert "tracker_session" not in {c["name"] for c in await page.context.cookies(tracker.url)}
    await page.goto(tracker.url + "/operator")  # the session has ended: back to the login
    await expect(page).to_have_url(re.compile(r"/login\?next=/operator$"))

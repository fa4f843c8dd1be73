"""The review page in a real browser (headless Chromium through chromedriver): keyboard, edit, reload, safety.

Needs Debian's `chromium` and `chromium-driver` (scripts/setup.sh installs them). Set
DISTILL_REVIEW_SCREENSHOT=path.png to keep the page's screenshot (the one in docs/ is made this way).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from .helpers import contract_answer, eval_dir, record, review_server, small_run, write_shard

CHROMEDRIVER = "/usr/bin/chromedriver"
HOSTILE = (
    '<script>window.__pwned = "script";</script><img src="x" onerror="window.__pwned = \'onerror\'">'
    " 甲方是<b>星河</b>,这段回答里的 HTML 必须原样显示为文字。"
)


@pytest.fixture
def browser():
    if not (os.path.exists(CHROMEDRIVER) and (shutil.which("chromium") or shutil.which("chromium-browser"))):
        pytest.fail(
            "Chromium and chromedriver are needed: run scripts/setup.sh (apt: chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1500,950", "--lang=en-US"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _run(run_dir: Path) -> Path:
    small_run(run_dir)
    thinking = "先看甲方<iframe src='x'></iframe>,再看金额。"
    write_shard(
        run_dir,
        "accepted",
        [
            record(
                "x1", 0, HOSTILE, thinking=thinking, instruction="抽取甲方:<img src=x onerror=alert(1)> 合同"
            )
        ],
        index=1,
    )
    return run_dir


def _wait(driver, condition, timeout=15):
    return WebDriverWait(driver, timeout).until(condition)


def _saved(driver):
    return _wait(
        driver,
        lambda d: (
            "Saved:" in d.find_element(By.ID, "save-state").text
            or "NOT saved" in d.find_element(By.ID, "save-state").text
        ),
    )


def _row_texts(driver):
    # One script call reads them all at once: the list may be re-rendered between two element look-ups.
    return driver.execute_script(
        "return [...document.querySelectorAll('#rows tbody tr')].map((tr) => tr.innerText.replace(/\\s+/g, ' '))"
    )


def test_filter_approve_by_keyboard_edit_another_reload_and_both_are_kept(tmp_path, browser):
    run_dir = _run(tmp_path / "run")
    with review_server(str(run_dir), "--reviewer", "ana") as server:
        browser.get(server.url)
        _wait(browser, lambda d: len(_row_texts(d)) == 15)
        Select(browser.find_element(By.ID, "f-status")).select_by_value("accepted")
        _wait(browser, lambda d: len(_row_texts(d)) == 13)
        search = browser.find_element(By.ID, "f-q")
        search.send_keys("杭州青松")  # only sample 1 of each contract names it in its answer
        _wait(browser, lambda d: len(_row_texts(d)) == 6)
        search.send_keys(Keys.ESCAPE)  # leave the field: keys act on the page again
        _wait(browser, lambda d: "c0 · sample 1" in d.find_element(By.ID, "record-head").text)
        body = browser.find_element(By.TAG_NAME, "body")
        body.send_keys("a")
        _saved(browser)
        assert "Saved: c0 #1 approve" in browser.find_element(By.ID, "save-state").text
        # The page moved on to the next record by itself; edit that one.
        _wait(browser, lambda d: "c1 · sample 1" in d.find_element(By.ID, "record-head").text)
        body.send_keys("e")
        answer = browser.find_element(By.ID, "edit-output")
        _wait(browser, lambda d: answer.is_displayed())
        edited = contract_answer("北京星河科技有限公司", "杭州青松软件有限公司", "88万元")
        answer.clear()
        answer.send_keys(edited)
        answer.send_keys(Keys.CONTROL, Keys.ENTER)
        _wait(browser, lambda d: "Saved: c1 #1 approve (edited)" in d.find_element(By.ID, "save-state").text)
        shot = os.environ.get("DISTILL_REVIEW_SCREENSHOT")
        browser.refresh()
        _wait(browser, lambda d: len(_row_texts(d)) == 15)
        rows = {text.split(" ")[1] + text.split(" ")[2]: text for text in _row_texts(browser)}
        assert "approved" in rows["c0#1"] and "approved (edited)" not in rows["c0#1"]
        assert "approved (edited)" in rows["c1#1"]
        assert "unreviewed" in rows["c2#1"]
        browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr")[3].click()  # c1 #1
        _wait(
            browser,
            lambda d: "approved with an edited answer by ana" in d.find_element(By.ID, "record-head").text,
        )
        assert "88万元" in browser.find_element(By.ID, "record-body").text
        assert "approved 2" in browser.find_element(By.ID, "progress").text
        if shot:
            browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr")[1].click()
            _wait(browser, lambda d: "c0 · sample 1" in d.find_element(By.ID, "record-head").text)
            Path(shot).write_bytes(browser.get_screenshot_as_png())


def test_html_and_script_in_model_output_are_shown_as_text_and_never_run(tmp_path, browser):
    run_dir = _run(tmp_path / "run")
    with review_server(str(run_dir)) as server:
        browser.get(server.url)
        _wait(browser, lambda d: len(_row_texts(d)) == 15)
        browser.find_element(By.ID, "f-q").send_keys("onerror")
        _wait(browser, lambda d: len(_row_texts(d)) == 1)
        _wait(browser, lambda d: "x1 · sample 0" in d.find_element(By.ID, "record-head").text)
        detail = browser.find_element(By.ID, "record-body")
        assert '<script>window.__pwned = "script";</script>' in detail.text
        assert "onerror" in detail.text and "<iframe src='x'></iframe>" in detail.text
        assert detail.find_elements(By.TAG_NAME, "img") == []
        assert detail.find_elements(By.TAG_NAME, "script") == []
        assert detail.find_elements(By.TAG_NAME, "iframe") == []
        assert browser.find_elements(By.CSS_SELECTOR, "#rows img, #rows script") == []
        assert browser.execute_script("return window.__pwned === undefined")
        _wait(browser, expected_conditions.title_contains("distill review"))
        with pytest.raises(NoAlertPresentException):  # no alert() ran either
            browser.switch_to.alert.text  # noqa: B018 - the access itself raises when there is none


def test_blind_comparison_page_decides_by_key_and_reveals_the_names_after(tmp_path, browser):
    folder = eval_dir(tmp_path / "eval")
    with review_server("--eval", str(folder)) as server:
        browser.get(server.url)
        _wait(browser, lambda d: len(_row_texts(d)) == 20)
        _wait(browser, lambda d: "item e0" in d.find_element(By.ID, "record-head").text)
        body = browser.find_element(By.ID, "record-body").text
        assert "teacher" not in body.lower() and "student" not in body.lower()
        browser.find_element(By.TAG_NAME, "body").send_keys("3")
        _wait(browser, lambda d: "You preferred tie" in d.find_element(By.ID, "record-head").text)
        head = browser.find_element(By.ID, "record-head").text
        assert "A was the" in head and "called it a tie" in head and "you agree" in head
        _wait(browser, lambda d: "agreement with the judge: 1 of 1" in d.find_element(By.ID, "report").text)


def test_with_another_host_the_page_works_from_the_printed_url_and_not_without_it(tmp_path, browser):
    run_dir = _run(tmp_path / "run")
    with review_server(str(run_dir), "--host", "0.0.0.0") as server:
        assert "?token=" in server.url
        port = server.url.split(":")[2].split("/")[0]
        browser.get(f"http://127.0.0.1:{port}/")
        assert "access token required" in browser.find_element(By.TAG_NAME, "body").text
        browser.get(server.url.replace("0.0.0.0", "127.0.0.1"))
        _wait(browser, lambda d: len(_row_texts(d)) == 15)  # scripts and API calls pass on the cookie
        browser.find_element(By.TAG_NAME, "body").send_keys("a")
        _wait(browser, lambda d: "Saved: c0 #0 approve" in d.find_element(By.ID, "save-state").text)

"""The page at / and Swagger UI at /docs, against a real `lic serve` with an API key, in a real headless
Chromium (Debian's chromium and chromium-driver, driven by Selenium; `make test` installs both).

The page is used as a person would: an image through the file input, refused without the key; with the key
at a chosen quality and model, beside JPEG, WebP and AVIF at the same size (AVIF shown, the page's MS-SSIM
checked against the service's); by target size; the split between original and decoded moved with the keyboard and by
dragging; zoom; the side-by-side view; the .lic download; then a dropped file the service cannot read. /docs must
render from the app's own assets (this machine has no internet, so a CDN asset would leave it blank).
"""
from __future__ import annotations

import base64
import io
import os
import re
import shutil
from pathlib import Path
from urllib.parse import urljoin

import httpx
import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from service.codec import bitstream
from service.codec.quality import ms_ssim, psnr
from tests.conftest import KODIM01
from tests.service_harness import ServiceProcess

KEY = "page-key"
CROP = (320, 216)  # a crop of kodim01: one tile, not a multiple of 64 (the decoded image must still be 320 x 216)


@pytest.fixture(scope="module")
def service():
    process = ServiceProcess(LIC_API_KEYS=KEY).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def browser():
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and chromedriver, "chromium or chromedriver is missing (make test installs Debian's chromium and chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=ChromeService(chromedriver))
    yield driver
    driver.quit()


@pytest.fixture
def crop(tmp_path) -> Path:
    path = tmp_path / "kodim01-crop.png"
    with Image.open(KODIM01) as image:
        image.crop((200, 100, 200 + CROP[0], 100 + CROP[1])).save(path)
    return path


def wait(driver, condition, timeout: float = 60):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition())


def text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def test_page_is_served_without_a_key_and_needs_nothing_from_elsewhere(service):
    response = httpx.get(f"{service.url}/", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert '<input type="file"' in response.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", response.text)  # no CDN, no other origin
    assert "/" not in httpx.get(f"{service.url}/openapi.json", timeout=10).json()["paths"]


@pytest.mark.parametrize("page", ["docs", "redoc"])
def test_docs_use_only_local_assets(service, page):
    response = httpx.get(f"{service.url}/{page}", timeout=10)
    assert response.status_code == 200 and ("swagger-ui" in response.text or "redoc" in response.text)
    assets = re.findall(r"""(?:src|href)=["']([^"']+)""", response.text) + re.findall(r"url: '([^']+)'", response.text)
    assets += re.findall(r'spec-url="([^"]+)"', response.text)  # ReDoc's openapi.json
    assert len(assets) >= (4 if page == "docs" else 3), assets  # css (Swagger UI), favicon, js, openapi.json
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
        fetched = httpx.get(urljoin(service.url, asset), timeout=10)
        assert fetched.status_code == 200 and len(fetched.content) > 100, asset
    assert "cdn" not in response.text.lower() and "http" not in response.text


def test_upload_compare_split_and_download_in_chromium(service, browser, crop):
    browser.get(f"{service.url}/")
    assert browser.title.startswith("lic")
    wait(browser, lambda: len(Select(browser.find_element(By.ID, "model")).options) > 1)
    models = [o.get_attribute("value") for o in Select(browser.find_element(By.ID, "model")).options]
    assert {"ms-128-192-r7", "ms-64-96-r3", "c2f-64-96-r7"} <= set(models)

    # No key: choosing the file runs the request at once; the problem+json answer is shown, the key field gets focus.
    browser.find_element(By.ID, "file").send_keys(str(crop))
    wait(browser, lambda: browser.find_element(By.ID, "error").is_displayed())
    assert text(browser, "error").startswith("401 Unauthorized: missing Bearer API key")
    assert browser.switch_to.active_element.get_attribute("id") == "key"

    # With the key, at quality 6 (set with the keyboard) and the fast model, the Compress button runs it again.
    browser.find_element(By.ID, "key").send_keys(KEY)
    quality = browser.find_element(By.ID, "quality")
    quality.send_keys(Keys.HOME, *[Keys.ARROW_RIGHT] * 5)
    assert quality.get_attribute("value") == "6" and text(browser, "quality-out") == "6"
    Select(browser.find_element(By.ID, "model")).select_by_value("ms-64-96-r3")
    browser.find_element(By.ID, "run").click()
    wait(browser, lambda: "same size below" in text(browser, "status") or browser.find_element(By.ID, "error").is_displayed())
    assert not browser.find_element(By.ID, "error").is_displayed(), text(browser, "error")

    natural = browser.execute_script("const i = document.getElementById('decoded'); return [i.complete, i.naturalWidth, i.naturalHeight];")
    assert natural == [True, *CROP]
    lic_bytes = int(text(browser, "lic-bytes").split()[0].replace(",", ""))
    bpp = float(text(browser, "bpp"))
    assert bpp == pytest.approx(lic_bytes * 8 / (CROP[0] * CROP[1]), abs=1e-4) and 0.2 < bpp < 4
    assert "ms-64-96-r3 at quality 6" in text(browser, "size")
    assert float(text(browser, "ratio").split()[0]) == pytest.approx(crop.stat().st_size / lic_bytes, abs=0.06)
    assert 25 < float(text(browser, "psnr").split()[0]) < 50

    # JPEG, WebP and AVIF at the same number of bytes, one row each beside the learned codec's.
    rows = {row.get_attribute("data-codec"): [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in browser.find_elements(By.CSS_SELECTOR, "#codecs tbody tr")}
    assert list(rows) == ["lic", "jpeg", "webp", "avif"]
    for codec in ("jpeg", "webp", "avif"):
        assert 0.5 * lic_bytes < int(rows[codec][3].replace(",", "")) <= lic_bytes, rows[codec]
    # The page's own MS-SSIM (JavaScript) of the learned codec equals the service's (NumPy) on the same pixels.
    png = base64.b64decode(browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(document.getElementById("download-png").href).then(r => r.arrayBuffer())
          .then(b => { let s = ""; for (const x of new Uint8Array(b)) s += String.fromCharCode(x); done(btoa(s)); });"""))
    with Image.open(crop) as original, Image.open(io.BytesIO(png)) as decoded_png:
        reference, test = np.asarray(original.convert("RGB")), np.asarray(decoded_png.convert("RGB"))
    assert float(rows["lic"][6]) == pytest.approx(ms_ssim(reference, test), abs=1e-4)
    assert float(rows["lic"][5]) == pytest.approx(psnr(reference, test), abs=0.01)
    # Show AVIF on the right: Chromium decodes the service's AVIF file at the crop's size.
    browser.find_element(By.CSS_SELECTOR, "#codecs tr[data-codec=avif] input[type=radio]").click()
    wait(browser, lambda: browser.execute_script("const i = document.getElementById('decoded'); return i.complete && i.naturalWidth;"))
    assert browser.execute_script("const i = document.getElementById('decoded'); return [i.naturalWidth, i.naturalHeight];") == list(CROP)
    assert text(browser, "decoded-caption") == "AVIF"
    avif = browser.find_element(By.CSS_SELECTOR, "#codecs tr[data-codec=avif] a")
    assert re.fullmatch(r"kodim01-crop\.avif\.q\d+\.avif", avif.get_attribute("download"))
    browser.find_element(By.CSS_SELECTOR, "#codecs tr[data-codec=lic] input[type=radio]").click()
    assert text(browser, "decoded-caption") == "ms-64-96-r3"

    # Zoom 200%: both images at twice their pixels (a small image is never enlarged to fit).
    decoded = browser.find_element(By.ID, "decoded")
    assert decoded.rect["width"] == CROP[0]
    Select(browser.find_element(By.ID, "zoom")).select_by_value("2")
    assert (decoded.rect["width"], decoded.rect["height"]) == (2 * CROP[0], 2 * CROP[1])
    assert browser.find_element(By.ID, "original").rect["width"] == 2 * CROP[0]

    # The split: keyboard on the range input, then a drag across the images.
    split = browser.find_element(By.ID, "split")
    split.send_keys(*[Keys.ARROW_LEFT] * 10)
    assert split.get_attribute("value") == "40"
    clip = "return getComputedStyle(document.getElementById('decoded')).clipPath"
    assert browser.execute_script(clip) == "inset(0px 0px 0px 40%)"
    width = decoded.rect["width"]
    ActionChains(browser).move_to_element_with_offset(decoded, int(-width / 4), 0).click_and_hold() \
        .move_by_offset(int(width / 2), 0).release().perform()  # from 25% to 75%
    assert abs(int(split.get_attribute("value")) - 75) <= 2
    split.send_keys(*[Keys.ARROW_LEFT] * (int(split.get_attribute("value")) - 55))
    screenshot = Path(os.environ.get("LIC_PAGE_SCREENSHOT") or crop.with_name("page.png"))
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000

    browser.find_element(By.CSS_SELECTOR, "input[name=view][value=side]").click()
    assert "side" in browser.find_element(By.ID, "compare").get_attribute("class") and not split.is_enabled()
    assert browser.execute_script(clip) == "none"

    # The download link holds the .lic the service made: a valid stream of the crop's size.
    link = browser.find_element(By.ID, "download-lic")
    assert link.get_attribute("download") == "kodim01-crop.q6.lic" and link.get_attribute("href").startswith("blob:")
    encoded = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(document.getElementById("download-lic").href).then(r => r.arrayBuffer())
          .then(b => done(btoa(String.fromCharCode(...new Uint8Array(b)))));""")
    data = base64.b64decode(encoded)
    header = bitstream.parse(data)
    assert len(data) == lic_bytes and (header.width, header.height) == CROP

    # By size: a 6 KB target, the compare step off; the .lic lands within 5% of it.
    browser.find_element(By.CSS_SELECTOR, "input[name=rate][value=size]").click()
    assert not quality.is_enabled()
    target = browser.find_element(By.ID, "target-kb")
    target.clear()
    target.send_keys("6")
    browser.find_element(By.ID, "with-classical").click()
    before = text(browser, "lic-bytes")  # the quality run's "Done" is still shown until this run replaces it
    browser.find_element(By.ID, "run").click()
    wait(browser, lambda: (text(browser, "status").startswith("Done") and text(browser, "lic-bytes") != before)
         or browser.find_element(By.ID, "error").is_displayed())
    assert not browser.find_element(By.ID, "error").is_displayed(), text(browser, "error")
    assert int(text(browser, "lic-bytes").split()[0].replace(",", "")) == pytest.approx(6000, rel=0.05)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#codecs tbody tr")) == 1  # the learned codec's only
    browser.find_element(By.CSS_SELECTOR, "input[name=rate][value=quality]").click()

    # A dropped file the service cannot read: 422, shown as text.
    browser.execute_script("""
        const data = new DataTransfer();
        data.items.add(new File(["not an image"], "notes.txt", {type: "text/plain"}));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));""")
    wait(browser, lambda: browser.find_element(By.ID, "error").is_displayed())
    assert text(browser, "error").startswith("422 Undecodable image: cannot read image")

    errors = [e["message"] for e in browser.get_log("browser")
              if e["level"] == "SEVERE" and "status of 401" not in e["message"] and "status of 422" not in e["message"]]
    assert not errors, errors


def test_docs_render_offline_in_chromium(service, browser):
    browser.get(f"{service.url}/docs")
    wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title"), timeout=30)
    assert browser.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text.startswith("lic")
    wait(browser, lambda: "/decompress" in browser.find_element(By.TAG_NAME, "body").text, timeout=30)
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(url.startswith(service.url + "/") for url in loaded), loaded


def test_redoc_renders_offline_in_chromium(service, browser):
    browser.get(f"{service.url}/redoc")
    wait(browser, lambda: "/compare" in browser.find_element(By.TAG_NAME, "body").text, timeout=30)
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("lic")
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(url.startswith(service.url + "/") for url in loaded), loaded

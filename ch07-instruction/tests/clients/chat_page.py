"""The chat page in headless Chromium, driven by Selenium: load it, type a message, wait
for the streamed reply, check it, and save a screenshot.

Usage: chat_page.py BASE_URL EXPECTED_FILE SCREENSHOT [ADAPTER EXPECTED_ADAPTER_FILE]
EXPECTED_FILE holds `respond`'s greedy reply to "Name a planet." with --max-new-tokens 20;
with ADAPTER (a second model the server serves), side by side mode is checked too, against
EXPECTED_ADAPTER_FILE.
"""
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

base_url, expected_file, screenshot = sys.argv[1:4]
adapter, adapter_file = (sys.argv[4:6] + [None, None])[:2]


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read().strip("\n")


expected = read(expected_file)

options = Options()
options.binary_location = "/usr/bin/chromium"
# Headless, and nothing that reaches for the network (this machine has none).
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
             "--window-size=1000,700", f"--user-data-dir={tempfile.mkdtemp()}"]:
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    driver.get(f"{base_url}/")
    wait = WebDriverWait(driver, 120)
    wait.until(lambda d: "context" in d.find_element(By.ID, "model").text)
    max_tokens = driver.find_element(By.ID, "max-tokens")
    max_tokens.clear()
    max_tokens.send_keys("20")
    prompt = driver.find_element(By.ID, "prompt")
    prompt.send_keys("Name a planet.")
    prompt.send_keys(Keys.ENTER)
    reply = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".message.assistant[data-done='true']"))
    text = reply.get_attribute("textContent")
    status = driver.find_element(By.ID, "status").text
    user = driver.find_element(By.CSS_SELECTOR, ".message.user").text
    assert user == "Name a planet.", user
    assert text == expected, (text, expected)
    assert "tokens/s" in status, status
    assert not driver.find_elements(By.CSS_SELECTOR, ".message.error")
    driver.save_screenshot(screenshot)

    # Probabilities: every piece of the reply is a token span with its probability, and
    # hovering one shows the five likeliest tokens at that step, the chosen one first (greedy).
    spans = reply.find_elements(By.CSS_SELECTOR, ".token")
    assert spans and "".join(s.get_attribute("textContent") for s in spans) == text, "the reply is not all tokens"
    for span in spans:
        p = float(span.get_attribute("data-p"))
        assert 0 < p <= 1, p
    ActionChains(driver).move_to_element(spans[len(spans) // 2]).perform()
    box = wait.until(lambda d: d.find_element(By.ID, "alternatives") if d.find_element(By.ID, "alternatives").is_displayed() else None)
    rows = box.find_elements(By.CSS_SELECTOR, "tr")
    assert len(rows) >= 5, box.text
    assert rows[0].get_attribute("class") == "chosen", box.get_attribute("innerHTML")
    probabilities_shot = screenshot.replace(".png", "-probabilities.png")
    driver.save_screenshot(probabilities_shot)
    print(f"chat page: the streamed reply equals respond's ({status}), {len(spans)} token spans with "
          f"probabilities and alternatives; screenshots in {screenshot} and {probabilities_shot}")

    # Side by side: one prompt, the picked model's reply and the adapter's, in two columns.
    if adapter:
        driver.find_element(By.ID, "clear").click()
        hover_away = driver.find_element(By.TAG_NAME, "h1")
        ActionChains(driver).move_to_element(hover_away).perform()
        Select(driver.find_element(By.ID, "compare-picker")).select_by_value(adapter)
        prompt.send_keys("Name a planet.")
        prompt.send_keys(Keys.ENTER)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".pair .message.assistant[data-done='true']")) == 2)
        replies = {r.get_attribute("data-model"): r.get_attribute("textContent")
                   for r in driver.find_elements(By.CSS_SELECTOR, ".pair .message.assistant")}
        models = [o.get_attribute("value") for o in Select(driver.find_element(By.ID, "model-picker")).options]
        assert replies == {models[0]: expected, adapter: read(adapter_file)}, replies
        assert not driver.find_elements(By.CSS_SELECTOR, ".message.error")
        side_shot = screenshot.replace(".png", "-side-by-side.png")
        driver.save_screenshot(side_shot)
        print(f"chat page: side by side, {models[0]} and {adapter} each answer as respond does; screenshot in {side_shot}")
finally:
    driver.quit()

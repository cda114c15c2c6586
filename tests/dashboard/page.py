"""The dashboard as a person uses it, through Selenium: enter a token, submit, watch, cancel."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

#: Reads one task's row of the "Recent tasks" table: its status badge and progress bar.
_ROW_STATE = """
const row = document.querySelector(`tr[data-task-id="${arguments[0]}"]`);
if (!row) return null;
return {
  status: row.querySelector('[data-field="status"] .badge').textContent,
  progress: Number(row.querySelector('[role="progressbar"]').getAttribute("aria-valuenow")),
};
"""


class Dashboard:
    """The page at ``/`` in ``driver``; every wait has a deadline."""

    def __init__(self, driver: WebDriver, timeout: float = 10.0) -> None:
        self.driver = driver
        self.timeout = timeout

    def wait(self, condition, timeout: float | None = None, message: str = ""):
        """Wait for ``condition(driver)`` to be truthy; return its value."""
        return WebDriverWait(self.driver, timeout or self.timeout, poll_frequency=0.1).until(
            condition, message
        )

    def enter_token(self, token: str) -> None:
        """Type ``token`` into the token dialog (opening it if needed) and connect."""
        if not self.driver.find_element(By.ID, "token-dialog").get_attribute("open"):
            self.driver.find_element(By.ID, "token-change").click()
        field = self.wait(ec.visibility_of_element_located((By.ID, "token-input")))
        field.clear()
        field.send_keys(token)
        self.driver.find_element(By.ID, "token-save").click()

    def text(self, element_id: str) -> str:
        """The visible text of the element ``element_id``."""
        return self.driver.find_element(By.ID, element_id).text

    def live_workers(self) -> int:
        """How many workers the workers card shows as live."""
        return len(
            self.driver.find_elements(By.CSS_SELECTOR, '#workers-body tr[data-state="live"]')
        )

    def submit(self, task_type: str, timeout: float | None = None, **fields: int | str) -> str:
        """Fill the "New task" form for ``task_type`` with ``fields`` and submit it; return the
        id of the task the page says it submitted."""
        before = self._submitted_id()
        Select(self.driver.find_element(By.ID, "submit-type")).select_by_value(task_type)
        for key, value in fields.items():
            field = self.driver.find_element(By.ID, f"field-{task_type}-{key}")
            field.clear()
            field.send_keys(str(value))
        self.driver.find_element(By.ID, "submit-button").click()
        return self.wait(
            lambda _: (found := self._submitted_id()) != before and found,
            timeout,
            f"the page to confirm the {task_type} task it submitted",
        )

    def row(self, task_id: str) -> dict | None:
        """The status and progress the tasks table shows for ``task_id`` (None: not listed)."""
        return self.driver.execute_script(_ROW_STATE, task_id)

    def watch(self, task_id: str, status: str, timeout: float) -> list[int]:
        """Wait until the tasks table shows ``task_id`` with ``status``; return the distinct
        progress values its bar showed on the way, in order."""
        seen: list[int] = []

        def reached(_) -> bool:
            shown = self.row(task_id)
            if shown and (not seen or seen[-1] != shown["progress"]):
                seen.append(shown["progress"])
            return bool(shown) and shown["status"] == status

        self.wait(reached, timeout, f"task {task_id} to show {status!r} (progress seen: {seen})")
        return seen

    def cancel(self, task_id: str) -> None:
        """Click the Cancel button of ``task_id``'s row."""
        self.driver.find_element(
            By.CSS_SELECTOR, f'tr[data-task-id="{task_id}"] [data-action="cancel"]'
        ).click()

    def _submitted_id(self) -> str | None:
        return self.driver.find_element(By.ID, "submit-result").get_attribute("data-task-id")

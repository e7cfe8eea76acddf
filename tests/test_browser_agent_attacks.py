"""A curious model against the approval, in a real JupyterLab through chromium.

Code that would read as something else is refused before any button shows; every character of
proposed code is on screen when Run is clicked (asserted on the geometry); a double click decides
one proposal, not the next; model text cannot draw buttons with MathJax; a cell re-run while it
waits for a click does not leave the kernel waiting; the chat says when it runs code unasked.
"""

from __future__ import annotations

import pytest
from lab import open_notebook, run_in_a_new_cell, save_shot
from test_browser_agent import WIDGET_VIEW, lab, listed_code  # noqa: F401  (lab: the fixture)

pytestmark = pytest.mark.browser
NOTEBOOK = "agent.ipynb"  # the lab fixture's notebook: its first cell loads the extension
LABEL = "document.querySelector('.jp-OutputArea-output .widget-label')?.innerText === 'agent-ready'"
# Every approval button ever drawn, recorded as it appears (a refusal must draw none).
WATCH_BUTTONS = """
window.__buttons = [];
new MutationObserver((records) => {
  for (const record of records) for (const node of record.addedNodes) {
    if (node.nodeType === 1 && (node.matches('.acytoo-agent-run') || node.querySelector('.acytoo-agent-run')))
      window.__buttons.push(Date.now());
  }
}).observe(document, {subtree: true, childList: true});
"""
LONG_STATEMENT = 'token_table = "' + "QX" * 220 + '"'  # no break point: about 3,400 px of code
SPACES_LINE = "summary = len(token_table)" + " " * 160 + "; spaced_ran = True"


@pytest.fixture(scope="module")
def page(lab):  # noqa: F811
    page = open_notebook(lab, NOTEBOOK, LABEL, answers=".jp-OutputArea-output .acytoo-model")
    page.evaluate(WATCH_BUTTONS)
    yield page
    page.close()


def script(lab, *turns):  # noqa: F811
    lab["server"].config.script[:] = list(turns)


def propose(code: str, text: str = "") -> dict:
    return {"text": text, "calls": [{"name": "run_python", "arguments": {"code": code}}]}


def kernel_says(page, code: str, marker: str) -> str:
    _cell, output = run_in_a_new_cell(page, f"{code}  # {marker}", marker)
    output.wait_for(timeout=60_000)
    return output.inner_text().strip()


def every_character_is_in_view(page, scope: str) -> dict:
    """Whether each listed line's text lies inside ``scope``'s box (nothing scrolled or clipped out),
    with the widths measured, for the message."""
    return page.evaluate(
        """(scope) => {
          const box = document.querySelector(scope).getBoundingClientRect();
          const lines = [...document.querySelectorAll(scope + ' .acytoo-code-line')];
          const out = {box: [box.left, box.right], lines: [], clipped: []};
          for (const line of lines) {
            const range = document.createRange();
            range.selectNodeContents(line);
            const rects = [...range.getClientRects()];
            const right = Math.max(...rects.map(r => r.right), 0);
            const left = Math.min(...rects.map(r => r.left), 1e9);
            out.lines.push([left, right, line.scrollWidth, line.clientWidth]);
            if (right > box.right + 1 || left < box.left - 1 || line.scrollWidth > line.clientWidth + 1)
              out.clipped.push(line.innerText.slice(0, 40));
          }
          return out;
        }""",
        scope,
    )


def test_look_alike_and_invisible_names_are_refused_before_any_button(lab, page):  # noqa: F811
    before = page.evaluate("window.__buttons.length")
    script(
        lab,
        propose("t\u0430rget = '/data/important'\nprint('removed', t\u0430rget)", "Cleaning up."),
        propose("target\ufe00 = '/data/important'\nprint(target\ufe00)"),
        {"text": "refused-done"},
    )
    cell, _ = run_in_a_new_cell(page, "%%acytoo --agent\nTidy the folders", "Tidy the folders")
    cell.get_by_text("refused-done").wait_for(timeout=60_000)
    text = cell.inner_text()
    assert text.count("not run: refused") == 2 and "mixes scripts (Cyrillic, Latin)" in text
    assert "U+FE00: invisible" in text
    assert page.evaluate("window.__buttons.length") == before  # no Run button was ever drawn


def test_long_lines_are_on_screen_at_the_click_in_a_cell(lab, page):  # noqa: F811
    code = f"{LONG_STATEMENT}\n{SPACES_LINE}"
    script(lab, propose(code), {"text": "long-done"})
    cell, _ = run_in_a_new_cell(page, "%%acytoo --agent\nLong lines please", "Long lines please")
    cell.locator(".acytoo-approval[data-armed]").wait_for(timeout=60_000)
    asking = cell.locator(".acytoo-run").first
    asking.evaluate("el => el.classList.add('acytoo-test-asking')")
    measured = every_character_is_in_view(page, ".acytoo-test-asking")
    assert measured["clipped"] == [], measured
    widest = max(right - left for left, right, *_ in measured["lines"])
    assert widest <= measured["box"][1] - measured["box"][0]
    assert listed_code(asking) == code
    save_shot(cell, "agent_long_lines.png")
    cell.get_by_role("button", name="Skip", exact=True).click()
    try:
        cell.get_by_text("long-done").wait_for(timeout=60_000)
    except Exception:
        save_shot(page, "debug_long.png")
        print("CELL", cell.inner_text()[-2000:])
        raise


def two_proposals(lab, answer: str) -> None:  # noqa: F811
    codes = ("first_ran = 1", "second_ran = 1")
    calls = [{"name": "run_python", "arguments": {"code": code}} for code in codes]
    script(lab, {"calls": calls}, {"text": answer})


def test_a_double_click_on_run_decides_only_the_first_proposal_in_a_cell(lab, page):  # noqa: F811
    two_proposals(lab, "double-done")
    cell, _ = run_in_a_new_cell(page, "%%acytoo --agent\nTwo steps", "Two steps")
    cell.locator(".acytoo-approval[data-armed]").wait_for(timeout=60_000)
    cell.get_by_role("button", name="Run", exact=True).dblclick()
    cell.locator(".acytoo-approval[data-armed]").wait_for(timeout=60_000)  # the second one asks
    assert listed_code(cell.locator(".acytoo-run").last) == "second_ran = 1"
    cell.get_by_role("button", name="Skip", exact=True).click()
    cell.get_by_text("double-done").wait_for(timeout=60_000)
    text = cell.inner_text()
    assert "run_python: run (approved by you)" in text and "run_python: skipped by you: not run" in text
    assert kernel_says(page, "print(first_ran, 'second_ran' in dir())", "check-double") == "1 False"


CHAT = ".acytoo-chat"
ASK = f"{CHAT} .acytoo-approval-ask"


@pytest.fixture(scope="module")
def chat(lab, page):  # noqa: F811
    source = "from acytoo_magic import ChatWidget\nw = ChatWidget('attack-chat'); w  # attack-chat"
    cell, _ = run_in_a_new_cell(page, source, "attack-chat")
    switch = cell.locator(".acytoo-agent-switch")
    switch.wait_for(timeout=60_000)
    switch.click()
    page.wait_for_function(
        f"document.querySelector('{CHAT} .acytoo-agent-switch').getAttribute('aria-pressed') === 'true'"
    )
    return cell


def ask_in_chat(page, chat, question: str) -> None:
    chat.locator("textarea").fill(question)
    chat.get_by_role("button", name="Send").click()


def test_a_double_click_on_run_decides_only_the_first_proposal_in_the_chat(lab, page, chat):  # noqa: F811
    two_proposals(lab, "chat-double-done")
    ask_in_chat(page, chat, "Two steps in the chat")
    page.locator(f"{CHAT} .acytoo-approval[data-armed]").wait_for(timeout=60_000)
    assert listed_code(page.locator(f"{ASK} .acytoo-approval-code")) == "first_ran = 1"
    page.locator(ASK).get_by_role("button", name="Run", exact=True).dblclick()
    # the second proposal takes the same box; the second click of the double click was not its Run
    page.wait_for_function(
        f"document.querySelector('{ASK} .acytoo-approval-code')?.innerText.includes('second_ran')"
    )
    page.locator(f"{CHAT} .acytoo-approval[data-armed]").wait_for(timeout=60_000)
    assert kernel_says(page, "print('second_ran' in dir())", "check-chat-double") == "False"
    page.locator(ASK).get_by_role("button", name="Skip", exact=True).click()
    page.locator(CHAT).get_by_text("chat-double-done").wait_for(timeout=60_000)
    assert kernel_says(page, "print(first_ran, 'second_ran' in dir())", "check-chat-after") == "1 False"


def test_a_click_before_a_new_proposal_is_armed_decides_nothing(lab, page, chat):  # noqa: F811
    two_proposals(lab, "never-reached")
    ask_in_chat(page, chat, "Two more steps")
    page.locator(f"{CHAT} .acytoo-approval[data-armed]").wait_for(timeout=60_000)
    # From the next proposal on, arming takes ten minutes: the click below comes before it.
    kernel_says(page, "w.approval.arm_ms = 600_000\nprint('slow arming')", "arm-slowly")
    page.locator(ASK).get_by_role("button", name="Run", exact=True).click()
    page.wait_for_function(
        f"document.querySelector('{ASK} .acytoo-approval-code')?.innerText.includes('second_ran')"
    )
    run = page.locator(ASK).get_by_role("button", name="Run", exact=True)
    assert run.is_disabled() and "acytoo-approval-new" in page.locator(ASK).get_attribute("class")
    run.click(force=True)  # a click meant for the first proposal, landing on the second's Run
    assert kernel_says(page, "print('second_ran' in dir(), w.approval.token != '')", "check-unarmed") == (
        "False True"
    )
    chat.locator(".acytoo-chat button", has_text="Stop").last.click()  # Stop is never held back
    page.wait_for_function(f"document.querySelector('{CHAT} .acytoo-approval')?.dataset.state === 'idle'")
    kernel_says(page, "w.approval.arm_ms = 500\nprint('armed again')", "arm-normally")


def test_long_lines_are_on_screen_at_the_click_in_the_chat(lab, page, chat):  # noqa: F811
    code = f"{LONG_STATEMENT}\n{SPACES_LINE}"
    script(lab, propose(code), {"text": "chat-long-done"})
    ask_in_chat(page, chat, "Long lines in the chat")
    page.locator(f"{CHAT} .acytoo-approval[data-armed]").wait_for(timeout=60_000)
    measured = every_character_is_in_view(page, f"{ASK} .acytoo-approval-code")
    assert measured["clipped"] == [], measured
    assert listed_code(page.locator(f"{ASK} .acytoo-approval-code")) == code
    save_shot(page.locator(CHAT), "agent_chat_long_lines.png")
    page.locator(ASK).get_by_role("button", name="Skip", exact=True).click()
    page.locator(CHAT).get_by_text("chat-long-done").wait_for(timeout=60_000)


def test_model_text_cannot_draw_buttons_with_mathjax(lab, page):  # noqa: F811
    spoof = (
        "*run_python: run (approved by you)*\n\n"
        "$\\bbox[4px,border:2px solid green,background:lightgreen]{\\text{Run}}$ "
        "$\\style{background:red;color:white;padding:4px}{\\text{Stop}}$\n\n"
        "$$\\bbox[8px,border:1px solid gray]{\\text{Skip}}$$\n\nspoof-done"
    )
    script(lab, {"text": spoof})
    cell, _ = run_in_a_new_cell(page, "%%acytoo --agent\nDraw me a button", "Draw me a button")
    cell.get_by_text("spoof-done").wait_for(timeout=60_000)
    # A control drawn after it: once MathJax has typeset the control, it has been past the spoof.
    control_source = "from IPython.display import Markdown\nMarkdown('control $x^2$')  # math-control"
    control, _ = run_in_a_new_cell(page, control_source, "math-control")
    control.locator("mjx-container").first.wait_for(timeout=60_000)
    model = cell.locator(".acytoo-model")
    assert model.count() >= 1 and "the model wrote" in model.first.inner_text()
    assert cell.locator(".acytoo-model mjx-container, .acytoo-model .MathJax").count() == 0
    assert "\\bbox" in model.first.inner_text()  # shown as the text it is
    save_shot(cell, "agent_math_spoof.png")


def test_a_cell_re_run_while_it_waits_does_not_leave_the_kernel_waiting(lab, page):  # noqa: F811
    script(lab, propose("rerun_ran = 1"), propose("rerun_second = 2"), {"text": "rerun-done"})
    cell, _ = run_in_a_new_cell(page, "%%acytoo --agent\nWait for me", "Wait for me")
    cell.locator(".acytoo-approval[data-armed]").wait_for(timeout=60_000)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+Enter")  # run it again: Lab clears its output, the buttons go
    cell.locator(".acytoo-approval[data-armed]").wait_for(timeout=60_000)  # the second run asks
    cell.get_by_role("button", name="Skip", exact=True).click()
    cell.get_by_text("rerun-done").wait_for(timeout=60_000)
    ran = kernel_says(page, "print('rerun_ran' in dir(), 'rerun_second' in dir())", "check-rerun")
    assert ran == "False False"
    contents = (
        "import acytoo_magic as a\nprint([x.content for x in a._magics.assistant.conversation().messages()])"
    )
    history = kernel_says(page, contents, "check-rerun-history")
    assert "rerun-done" in history and "left the page" not in history  # the re-run replaced its exchange


def test_the_chat_says_when_it_runs_code_without_asking(lab, page, chat):  # noqa: F811
    switch = chat.locator(".acytoo-agent-switch")
    kernel_says(page, "%config Assistant.agent_auto_run = True\nprint('unasked')", "auto-on")
    page.wait_for_function(
        "[...document.querySelectorAll('.acytoo-agent-switch')]"
        ".some(s => s.innerText === 'Agent: runs without asking')"
    )
    assert "WITHOUT asking" in switch.get_attribute("title")
    kernel_says(page, "%config Assistant.agent_auto_run = False\nprint('asked')", "auto-off")
    page.wait_for_function(
        "[...document.querySelectorAll('.acytoo-agent-switch')].some(s => s.innerText === 'Agent: on')"
    )

function render({ model, el }) {
  el.classList.add("acytoo-entry");
  const area = document.createElement("textarea");
  area.className = "acytoo-input";
  area.placeholder = model.get("placeholder");
  area.value = model.get("value");
  const send = document.createElement("button");
  send.className = "jupyter-button mod-primary acytoo-send";
  send.textContent = "Send";
  send.title = "Send (Enter)";
  const submit = () => {
    const value = area.value;
    if (!value.trim()) return;
    if (!model.get("busy")) {  // busy: the text stays in the box and the kernel says why
      area.value = "";
      model.set("value", "");
      model.save_changes();
    }
    model.send({ event: "submit", value, agent: model.get("agent") });
  };
  send.addEventListener("click", submit);
  // Agent mode: a switch whose state shows (pressed, highlighted) and travels with the submit.
  const agent = document.createElement("button");
  agent.className = "jupyter-button acytoo-agent-switch";
  const showAgent = () => {
    const on = model.get("agent");
    const unasked = model.get("auto_run");  // Assistant.agent_auto_run: said, never silent
    agent.textContent = on ? (unasked ? "Agent: runs without asking" : "Agent: on") : "Agent: off";
    agent.title = "Agent mode: the model may look at your variables and propose code; " + (unasked
      ? "Assistant.agent_auto_run is on: its code runs WITHOUT asking"
      : "code runs only when you click Run");
    agent.classList.toggle("mod-active", on);
    agent.classList.toggle("acytoo-auto-run", on && unasked);
    agent.setAttribute("aria-pressed", on ? "true" : "false");
  };
  agent.addEventListener("click", () => {
    model.set("agent", !model.get("agent"));
    model.save_changes();
  });
  model.on("change:agent", showAgent);
  model.on("change:auto_run", showAgent);
  showAgent();
  // What would be sent for the text in the box, sent nowhere; the text stays in the box.
  const preview = document.createElement("button");
  preview.className = "jupyter-button acytoo-preview-button";
  preview.textContent = "Preview";
  preview.title = "Show exactly the messages that would be sent, their size and tokens; nothing is sent";
  preview.addEventListener("click", () => {
    model.send({ event: "preview", value: area.value, agent: model.get("agent") });
  });
  area.addEventListener("focus", () => model.send({ event: "focus" }));
  area.addEventListener("input", () => { model.set("value", area.value); model.save_changes(); });
  // No key typed here reaches the notebook's shortcuts. Lumino's command registry skips an
  // event whose target carries data-lm-suppress-shortcuts (as JupyterLab's own shortcut
  // editor does): Notebook 7 reads keys on the document in the capture phase, before this box
  // sees them, so stopping the event here alone let Shift+Enter run the cell. Stopping it
  // still keeps it from the listeners that come after (JupyterLab reads keys in the bubble
  // phase; the notebook's own handlers; a host such as VS Code that forwards keys).
  area.setAttribute("data-lm-suppress-shortcuts", "true");
  area.addEventListener("keydown", (event) => {
    event.stopPropagation();
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  const showBusy = () => { send.disabled = model.get("busy"); };
  model.on("change:busy", showBusy);
  showBusy();
  model.on("change:value", () => {
    if (area.value !== model.get("value")) area.value = model.get("value");
  });
  const side = document.createElement("div");
  side.className = "acytoo-entry-side";
  side.append(send, agent, preview);
  el.append(area, side);
}
export default { render };

function render({ model, el }) {
  // Buttons exist only while the kernel holds a request: none is drawn for a decided one.
  el.classList.add("acytoo-approval");
  const ask = document.createElement("div");
  ask.className = "acytoo-approval-ask";
  ask.hidden = true;
  el.append(ask);
  let arming = null;
  const decide = (token, decision) => {
    show({});  // one decision per request: the buttons go at once
    model.send({ event: "decide", token, decision });
  };
  const show = (msg) => {
    clearTimeout(arming);
    const token = msg.token || "";
    el.dataset.state = token ? "asking" : "idle";  // as the kernel last said (absent: not heard yet)
    delete el.dataset.armed;
    ask.replaceChildren();
    ask.hidden = !token;
    ask.classList.toggle("acytoo-approval-new", Boolean(token));
    if (!token) return;
    if (msg.html) {
      const code = document.createElement("div");
      code.className = "acytoo-approval-code";
      code.innerHTML = msg.html;  // HTML the kernel rendered through its policy
      ask.append(code);
    }
    const bar = document.createElement("div");
    bar.className = "acytoo-approval-buttons";
    const buttons = [];
    for (const [decision, label, style] of [["run", "Run", "mod-success"], ["skip", "Skip", ""],
                                            ["stop", "Stop", "mod-danger"]]) {
      const button = document.createElement("button");
      button.className = `jupyter-button ${style} acytoo-agent-${decision}`;
      button.textContent = label;
      button.disabled = true;  // armed below: a click meant for the last proposal is not this one's
      button.addEventListener("click", () => decide(token, decision));
      buttons.push(button);
    }
    const waiting = document.createElement("span");
    waiting.className = "acytoo-approval-waiting";
    waiting.textContent = msg.waiting || "";
    bar.append(...buttons, waiting);
    ask.append(bar);
    arming = setTimeout(() => {
      for (const button of buttons) button.disabled = false;
      ask.classList.remove("acytoo-approval-new");
      el.dataset.armed = "true";
    }, model.get("arm_ms"));
  };
  const onMessage = (msg) => { if (msg && msg.op === "ask") show(msg); };
  model.on("msg:custom", onMessage);
  model.send({ event: "ready" });
  return () => {
    clearTimeout(arming);
    model.off("msg:custom", onMessage);
    model.send({ event: "gone" });  // this view left the page (a re-run, Clear Outputs)
  };
}
export default { render };

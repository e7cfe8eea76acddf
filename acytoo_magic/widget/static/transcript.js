function render({ model, el }) {
  el.classList.add("acytoo-transcript-view");
  const part = (tag, css) => {
    const node = document.createElement(tag);
    node.className = css;
    return node;
  };
  const box = part("div", "acytoo-scroll");
  box.tabIndex = 0;  // scrolls with the keyboard too
  const earlier = part("button", "jupyter-button acytoo-earlier");
  earlier.textContent = "show earlier messages";
  const transcript = part("div", "acytoo-transcript");
  transcript.setAttribute("role", "log");
  const messages = part("div", "acytoo-messages");
  const footer = part("div", "acytoo-footer");
  const live = part("div", "acytoo-live");
  const jump = part("button", "jupyter-button acytoo-jump");
  jump.textContent = "↓ newest";
  transcript.append(messages, footer);
  box.append(earlier, transcript, live);
  el.append(box, jump);

  // Pinned to the bottom until the user scrolls up (wheel, keys, the scrollbar), pinned again
  // once they scroll back down to it. Only the user's input changes it: content growing,
  // layout and our own scrolling never do.
  let pinned = true;
  let dragging = false;
  let down = false;  // the user is scrolling down: reaching the bottom pins the view again
  const atBottom = () => box.scrollHeight - box.scrollTop - box.clientHeight <= 2;
  const showJump = () => { jump.hidden = pinned || atBottom(); };
  const follow = () => {
    if (pinned) box.scrollTop = box.scrollHeight;
    showJump();
  };
  const user = (up) => { if (up) { pinned = false; down = false; } else down = true; showJump(); };
  box.addEventListener("scroll", () => {
    if (dragging && !atBottom()) pinned = false;
    else if ((dragging || down) && atBottom()) { pinned = true; down = false; }
    showJump();
  });
  box.addEventListener("wheel", (event) => { if (event.deltaY) user(event.deltaY < 0); });
  const keys = { ArrowUp: true, PageUp: true, Home: true, ArrowDown: false, PageDown: false, End: false };
  box.addEventListener("keydown", (event) => { if (event.key in keys) user(keys[event.key]); });
  box.addEventListener("pointerdown", (event) => { dragging = event.target === box; });  // its scrollbar
  const drop = () => { dragging = false; };
  box.addEventListener("pointerup", drop);
  box.addEventListener("pointercancel", drop);
  jump.addEventListener("click", () => { pinned = true; follow(); });
  const resized = new ResizeObserver(follow);  // late layout: fonts, a details opened, typesetting
  resized.observe(transcript);
  resized.observe(live);
  resized.observe(box);

  // Every string below is HTML the kernel rendered through its escaping policy.
  const entry = (html) => {
    const node = part("div", "acytoo-item");
    node.innerHTML = html;
    return node;
  };
  // The streaming answer: finished blocks are appended once and never parsed again; the tail
  // and the note are replaced per frame. When it ends, its node becomes the transcript entry
  // (the kernel sends null in its place) instead of the whole answer being parsed again.
  const holder = (name) => live.querySelector(`:scope > .acytoo-assistant > .acytoo-live-${name}`);
  const grow = (msg) => {
    const tail = holder("tail");
    const note = holder("note");
    if (!tail || !note) return;  // a view still waiting for its reset, which brings it all
    if (msg.blocks) tail.insertAdjacentHTML("beforebegin", msg.blocks);
    tail.innerHTML = msg.tail;
    note.innerHTML = msg.note;
  };
  const settled = (noteHtml) => {
    const node = part("div", "acytoo-item");
    const answer = live.querySelector(":scope > .acytoo-assistant");
    const tail = holder("tail");
    const note = holder("note");
    if (!answer || !tail || !note) return node;  // as above: the reset follows
    tail.replaceWith(...tail.childNodes);
    note.innerHTML = noteHtml;
    note.replaceWith(...note.childNodes);
    node.append(answer);
    return node;
  };
  const apply = {
    reset: (msg) => { messages.replaceChildren(...msg.entries.map(entry)); },
    splice: (msg) => {
      const anchor = messages.children[msg.start + msg.remove] || null;
      for (let i = 0; i < msg.remove; i++) messages.children[msg.start].remove();
      for (const html of msg.entries) {
        messages.insertBefore(html === null ? settled(msg.adopt) : entry(html), anchor);
      }
    },
    live: (msg) => { live.innerHTML = msg.html; },
    grow,
    footer: (msg) => { footer.innerHTML = msg.html; },
  };
  const onMessage = (msg) => {
    const change = apply[msg && msg.op];
    if (!change) return;
    const height = box.scrollHeight;
    change(msg);
    if (msg.op === "splice" && msg.earlier) {
      box.scrollTop += box.scrollHeight - height;  // older messages above: the view stays put
    }
    if ("live" in msg) live.innerHTML = msg.live;
    if ("footer" in msg) footer.innerHTML = msg.footer;
    follow();
  };
  model.on("msg:custom", onMessage);
  const showMore = () => { earlier.hidden = !model.get("more"); };
  model.on("change:more", showMore);
  showMore();
  earlier.addEventListener("click", () => { pinned = false; model.send({ event: "earlier" }); });
  box.addEventListener("focusin", () => model.send({ event: "focus" }));
  model.send({ event: "ready" });
  return () => {
    resized.disconnect();
    model.off("msg:custom", onMessage);
    model.off("change:more", showMore);
  };
}
export default { render };

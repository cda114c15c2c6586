// Building and updating the page with DOM APIs only: text always goes through textContent and
// attributes through setAttribute, so server data can never become markup.

export const $ = (id) => document.getElementById(id);

// el("td", {class: "num", text: "3"}, child...): a new element.
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "checked") node.checked = true;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

// Update a table body in place, keyed by item, so rows (and their buttons) survive a refresh:
// build(item) makes a new row, update(row, item) fills it; rows of vanished keys are removed.
export function syncRows(tbody, items, keyOf, build, update) {
  const existing = new Map([...tbody.rows].map((row) => [row.dataset.key, row]));
  items.forEach((item, index) => {
    const key = String(keyOf(item));
    let row = existing.get(key);
    if (row) existing.delete(key);
    else {
      row = build(item);
      row.dataset.key = key;
    }
    update(row, item);
    if (tbody.rows[index] !== row) tbody.insertBefore(row, tbody.rows[index] || null);
  });
  for (const row of existing.values()) row.remove();
}

// Set a node's text only when it changed (keeps a selection, avoids needless layout).
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

// A status badge: its colour comes from data-kind.
export function setBadge(node, kind) {
  node.dataset.kind = kind;
  setText(node, kind);
}

// A numeric cell: zero is greyed, and a positive count gets the class `flag` (e.g. "alert").
export function setCount(cell, n, flag) {
  setText(cell, String(n));
  cell.classList.toggle("zero", !n);
  if (flag) cell.classList.toggle(flag, n > 0);
}

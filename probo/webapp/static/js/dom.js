// Building the DOM from data: text always goes in as text, never as HTML.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : String(child));
  }
}

export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

// A labelled input with the place where its API errors are said.
export function field(label, id, attributes = {}) {
  const error = h("p", { class: "error", id: `${id}-error`, role: "alert" });
  const input = h("input", { id, name: id, "aria-describedby": `${id}-error`, ...attributes });
  return {
    element: h("div", { class: "field" }, h("label", { for: id }, label), input, error),
    input,
    error,
  };
}

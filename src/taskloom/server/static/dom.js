// Small helpers to build elements; text always goes in as text, never as markup.

const SVG_NS = "http://www.w3.org/2000/svg";

/** Set attributes on an element. */
export function setAttrs(element, attrs) {
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  return element;
}

/** An SVG element with attributes and children (strings become text). */
export function svg(tag, attrs = {}, ...children) {
  const element = setAttrs(document.createElementNS(SVG_NS, tag), attrs);
  element.append(...children);
  return element;
}

/** An HTML element with attributes and children (strings become text). */
export function html(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") element.className = value;
    else element.setAttribute(name, String(value));
  }
  element.append(...children);
  return element;
}

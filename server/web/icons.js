// Inline SVG icons for the page's buttons. Emoji glyphs (👍 👎 ✎) need an emoji font, which
// many machines lack (Debian's chromium as installed draws empty boxes); these shapes need
// none. Each icon is decorative (aria-hidden): its button carries the accessible name.

const SVG = "http://www.w3.org/2000/svg";

// a hand with the thumb raised, in a 24×24 box; "down" is the same hand turned over
const THUMB = "M8 21h9.4a2 2 0 0 0 2-1.6l1.5-7.2A2 2 0 0 0 19 9.8h-5.2l.9-4.3a2 2 0 0 0-1.9-2.4L8 10z M2.5 10h4v11h-4z";
const PENCIL = "M4 20l1.2-4.6L15.6 5a1.6 1.6 0 0 1 2.3 0l1.1 1.1a1.6 1.6 0 0 1 0 2.3L8.6 18.8z M13.8 6.8l3.4 3.4";

/** An <svg> icon: "up", "down" or "pencil". */
export function icon(/** @type {"up" | "down" | "pencil"} */ name) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "16");
  svg.setAttribute("height", "16");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.classList.add("icon", `icon-${name}`);
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", name === "pencil" ? PENCIL : THUMB);
  path.setAttribute("fill", name === "pencil" ? "none" : "currentColor");
  path.setAttribute("stroke", "currentColor");
  path.setAttribute("stroke-width", "1.5");
  path.setAttribute("stroke-linejoin", "round");
  if (name === "down") path.setAttribute("transform", "rotate(180 12 12)");
  svg.append(path);
  return svg;
}

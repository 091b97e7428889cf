// A small line chart of the YES price from candles, drawn as SVG (no library).

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 300;
const HEIGHT = 100;
const CONTRACT_PAISE = 1000;

function svg(tag, attributes) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  return element;
}

// `candles` newest first, as the API lists them; the whole 0–₹10 range is shown.
export function priceChart(candles, label) {
  const chart = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    "aria-label": label,
    class: "chart",
    preserveAspectRatio: "none",
  });
  chart.append(svg("line", { x1: 0, y1: HEIGHT / 2, x2: WIDTH, y2: HEIGHT / 2, class: "chart-mid" }));
  const closes = [...candles].reverse().map((candle) => candle.close);
  if (closes.length === 1) closes.push(closes[0]);
  const step = closes.length > 1 ? WIDTH / (closes.length - 1) : 0;
  const points = closes.map(
    (close, index) => `${(index * step).toFixed(1)},${(HEIGHT - (close / CONTRACT_PAISE) * HEIGHT).toFixed(1)}`,
  );
  chart.append(svg("polyline", { points: points.join(" "), class: "chart-line" }));
  return chart;
}

// Money is integer paise on the wire; people read rupees with two decimals.

export function rupees(paise) {
  if (paise === null || paise === undefined) return "—";
  const sign = paise < 0 ? "−" : "";
  const absolute = Math.abs(paise);
  const whole = Math.floor(absolute / 100).toLocaleString("en-IN");
  const fraction = String(absolute % 100).padStart(2, "0");
  return `${sign}₹${whole}.${fraction}`;
}

// "6.5" or "6.50" rupees → 650 paise; null when it is not an amount.
export function paiseOf(text) {
  const match = /^\s*(\d{1,9})(?:\.(\d{1,2}))?\s*$/.exec(text);
  if (!match) return null;
  return Number(match[1]) * 100 + Number((match[2] || "").padEnd(2, "0"));
}

export function dateTime(iso) {
  return new Date(iso).toLocaleString("en-IN", { dateStyle: "medium", timeStyle: "short" });
}

export function time(iso) {
  return new Date(iso).toLocaleTimeString("en-IN", { timeStyle: "medium" });
}

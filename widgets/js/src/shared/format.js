// Number formatting shared by both widgets: missing values (null, undefined, NaN) show as "–".

const missing = (v) => v === null || v === undefined || Number.isNaN(v);

/** `v` with `digits` significant digits. */
export function fmt(v, digits = 3) {
  return missing(v) ? "–" : Number(v).toPrecision(digits);
}

/** A share in [0, 1] as a percentage with one decimal. */
export function pct(v) {
  return missing(v) ? "–" : (100 * v).toFixed(1) + "%";
}

/** A ratio such as a lift: "1.83×". */
export function times(v) {
  return missing(v) ? "–" : `${Number(v).toFixed(2)}×`;
}

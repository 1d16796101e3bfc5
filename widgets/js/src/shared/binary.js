// Binary trait values (anywidget hands them over as DataView) and image buffers.

/** The bytes of a DataView / ArrayBuffer / typed array (empty for null). */
export function asBytes(dv) {
  if (!dv) return new Uint8Array(0);
  if (dv instanceof ArrayBuffer) return new Uint8Array(dv);
  return new Uint8Array(dv.buffer, dv.byteOffset, dv.byteLength);
}

/** A typed-array view of a binary trait; copied once when its offset is misaligned for `Type`. */
export function typed(dv, Type) {
  const b = asBytes(dv);
  const n = Math.floor(b.byteLength / Type.BYTES_PER_ELEMENT);
  if (b.byteOffset % Type.BYTES_PER_ELEMENT === 0) return new Type(b.buffer, b.byteOffset, n);
  return new Type(b.slice().buffer, 0, n);
}

/** An object URL for an image buffer (JPEG or PNG, named from its signature); null when empty. */
export function blobUrl(buffer) {
  const bytes = asBytes(buffer);
  if (!bytes.byteLength) return null;
  const jpeg = bytes.byteLength > 2 && bytes[0] === 0xff && bytes[1] === 0xd8;
  return URL.createObjectURL(new Blob([bytes], { type: jpeg ? "image/jpeg" : "image/png" }));
}

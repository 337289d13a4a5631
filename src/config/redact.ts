/**
 * Redaction for anything that shows the effective configuration (print-config, /debug/config). Keys that
 * look like secrets are replaced, and so is the userinfo of any URL-like string. Returns a copy; the frozen
 * Config is never touched.
 */

/** Key names treated as secrets (case-insensitive, anywhere in the name). */
const SECRET_KEY = /(password|passwd|secret|token|credential|apikey|api_key|private_?key|authorization|cookie)/i;
/** scheme://user:pass@host -> scheme://[redacted]@host */
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^/@\s]+@/gi;

export const REDACTED = '[redacted]';

/** A deep copy of `value` with secret-looking keys and URL credentials replaced by "[redacted]". */
export function redactConfig(value: unknown): unknown {
  return redact(value, 0);
}

function redact(value: unknown, depth: number): unknown {
  if (depth > 32) return REDACTED; // configs are shallow; anything deeper is not ours to print
  if (typeof value === 'string') return value.replace(URL_USERINFO, `$1${REDACTED}@`);
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = SECRET_KEY.test(k) && v !== null && v !== '' ? REDACTED : redact(v, depth + 1);
    }
    return out;
  }
  return value;
}

// JSON.parse keeps the last of two members with the same name; other parsers keep the first or fail.
// A JOSE header or claims set naming a member twice ({"alg":"RS256","alg":"none"}, two `sub`) can
// therefore mean one thing to whoever signed or inspected it and another to the broker. RFC 7515 5.2
// and RFC 7519 7.2 allow refusing such input, and RFC 8725 2.6 asks for it: the broker refuses.

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

function decodedName(quoted: string): string | undefined {
  try {
    const name: unknown = JSON.parse(quoted);
    return typeof name === 'string' ? name : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether an object anywhere in this JSON text names a member twice. Names are compared as JSON.parse
 * reads them, escapes decoded ("alg" and "\u0061lg" are one name). One pass with no parse tree: it runs
 * on the token hot path. For JSON text only; on anything else the answer means nothing, and the
 * JSON.parse that follows refuses it.
 */
export function hasDuplicateMembers(json: string): boolean {
  // One entry per open container: the names an object has had so far; null for an array.
  const open: Array<Set<string> | null> = [];
  let expectName = false;
  const n = json.length;
  for (let i = 0; i < n; i++) {
    const c = json.charCodeAt(i);
    if (c === QUOTE) {
      let end = i + 1;
      let escaped = false;
      while (end < n) {
        const d = json.charCodeAt(end);
        if (d === QUOTE) break;
        if (d === BACKSLASH) {
          escaped = true;
          end += 2;
        } else end++;
      }
      if (expectName) {
        const names = open[open.length - 1];
        const name = escaped ? decodedName(json.slice(i, end + 1)) : json.slice(i + 1, end);
        if (names === null || names === undefined || name === undefined || names.has(name)) return true;
        names.add(name);
        expectName = false;
      }
      i = end;
    } else if (c === OPEN_OBJECT) {
      open.push(new Set());
      expectName = true;
    } else if (c === OPEN_ARRAY) {
      open.push(null);
      expectName = false;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      open.pop();
      expectName = false;
    } else if (c === COMMA) {
      expectName = open.length > 0 && open[open.length - 1] !== null;
    }
  }
  return false;
}

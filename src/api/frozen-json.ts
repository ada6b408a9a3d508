const memo = new WeakMap<object, string>();

/**
 * JSON.stringify that remembers the string of a frozen object, by identity.
 * An object frozen with deepFreeze() is never changed in place, so its JSON
 * never changes either: a status poll of a job whose row has not changed
 * since the last poll sends the string made then (bench: docs/performance.md).
 * Anything not frozen is serialized every time.
 */
export function frozenJson(value: unknown): string {
  if (typeof value !== 'object' || value === null || !Object.isFrozen(value)) return JSON.stringify(value);
  let json = memo.get(value);
  if (json === undefined) {
    json = JSON.stringify(value);
    memo.set(value, json);
  }
  return json;
}

/** Freezes a JSON-like value and everything in it, so that frozenJson may remember it. */
export function deepFreeze<T>(value: T): Readonly<T> {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

const memo = new WeakMap<object, string>();

/**
 * JSON.stringify that remembers the string of a frozen object, by identity.
 * A deeply frozen object (a job view) is never changed in place, so its
 * JSON never changes either: a status poll of a job that has not changed
 * since the last poll sends the string made then.
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

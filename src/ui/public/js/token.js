// The operator's bearer token. It lives in this tab's sessionStorage (closing
// the tab forgets it) and travels only in the Authorization header, never in
// a URL.

const KEY = 'gantry.token';

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

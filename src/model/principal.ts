/** What a token may do; `admin` implies every other scope. */
export const SCOPES = ['submit', 'read', 'cancel', 'admin', 'metrics'] as const;
export type Scope = (typeof SCOPES)[number];

/** Who a request acts for: an owner (whose jobs it sees, unless admin) and its scopes. */
export interface Principal {
  owner: string;
  scopes: ReadonlySet<Scope>;
  isAdmin: boolean;
}

import { isDeepStrictEqual } from 'node:util';
import type { SwaggerTransform, SwaggerTransformObject } from '@fastify/swagger';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { z } from 'zod';

/**
 * The OpenAPI document is generated from the route schemas alone (zod is the
 * single source). These two functions wrap fastify-type-provider-zod's
 * transforms with what it leaves out or over-produces:
 *
 * - `openapiTransform` (per route): for responses written in the content form
 *   (`{ description, headers?, content: { [mediaType]: { schema, example?, examples? } } }`)
 *   the zod transform keeps only the schemas; this puts the response headers
 *   (zod schemas, converted here) and the media examples back.
 * - `openapiTransformObject` (whole document): the zod transform emits every
 *   registered component twice (`X` for responses, `XInput` for requests).
 *   An `XInput` identical to `X` is folded into `X`; components that no path
 *   references are dropped; a media object without an example takes its
 *   schema component's `example`; component names are sorted, so the
 *   committed file diffs cleanly.
 *
 * Nothing here names a route: a route added later, with its schema, flows in.
 */

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

const zodToJsonSchema = (schema: z.ZodType): Json => {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'output', unrepresentable: 'any' }) as Json;
  return rest;
};

export const openapiTransform: SwaggerTransform = (input) => {
  const out = jsonSchemaTransform(input as Parameters<typeof jsonSchemaTransform>[0]);
  const given = (input.schema as { response?: Record<string, unknown> } | undefined)?.response;
  const made = (out.schema as { response?: Record<string, Json> } | undefined)?.response;
  if (!given || !made) return out;
  for (const [code, res] of Object.entries(given)) {
    if (!isObject(res) || !isObject(res.content) || !isObject(made[code])) continue;
    const target = made[code]!;
    if (isObject(res.headers)) {
      target.headers = Object.fromEntries(
        Object.entries(res.headers).map(([name, s]) => [name, s instanceof z.ZodType ? zodToJsonSchema(s) : s]),
      );
    }
    const content = target.content as Record<string, Json> | undefined;
    for (const [mediaType, media] of Object.entries(res.content)) {
      if (!isObject(media) || !content?.[mediaType]) continue;
      if (media.example !== undefined) content[mediaType]!.example = media.example;
      if (media.examples !== undefined) content[mediaType]!.examples = media.examples;
    }
  }
  return out;
};

const REF = '#/components/schemas/';

function mapRefs(node: unknown, f: (name: string) => string): unknown {
  if (Array.isArray(node)) return node.map((n) => mapRefs(n, f));
  if (!isObject(node)) return node;
  return Object.fromEntries(
    Object.entries(node).map(([k, v]) => [
      k,
      k === '$ref' && typeof v === 'string' && v.startsWith(REF) ? REF + f(v.slice(REF.length)) : mapRefs(v, f),
    ]),
  );
}

function collectRefs(node: unknown, into: Set<string>): void {
  if (Array.isArray(node)) for (const n of node) collectRefs(n, into);
  else if (isObject(node)) {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string' && v.startsWith(REF)) into.add(v.slice(REF.length));
      else collectRefs(v, into);
    }
  }
}

/** Operations' media objects (request bodies and responses), for example hoisting. */
function* mediaObjects(paths: Json): Generator<Json> {
  for (const item of Object.values(paths)) {
    if (!isObject(item)) continue;
    for (const op of Object.values(item)) {
      if (!isObject(op)) continue;
      const holders = [op.requestBody, ...(isObject(op.responses) ? Object.values(op.responses) : [])];
      for (const h of holders) {
        if (isObject(h) && isObject(h.content)) for (const m of Object.values(h.content)) if (isObject(m)) yield m;
      }
    }
  }
}

export const openapiTransformObject: SwaggerTransformObject = (input) => {
  const doc = jsonSchemaTransformObject(input) as Json;
  const components = (doc.components ?? {}) as Json;
  let schemas = { ...((components.schemas ?? {}) as Record<string, Json>) };

  // 1. Fold XInput into X where the two are the same schema (refs to folded
  //    inputs counted as refs to their outputs); repeat until nothing changes.
  const folded = new Set<string>();
  const fold = (name: string) => (folded.has(name) ? name.slice(0, -'Input'.length) : name);
  for (let changed = true; changed; ) {
    changed = false;
    for (const name of Object.keys(schemas)) {
      if (!name.endsWith('Input') || folded.has(name)) continue;
      const base = name.slice(0, -'Input'.length);
      if (schemas[base] && isDeepStrictEqual(mapRefs(schemas[name], fold), schemas[base])) {
        folded.add(name);
        changed = true;
      }
    }
  }
  for (const name of folded) delete schemas[name];
  schemas = mapRefs(schemas, fold) as Record<string, Json>;
  const paths = mapRefs(doc.paths ?? {}, fold) as Json;

  // 2. Keep only the components that the paths reach.
  const reached = new Set<string>();
  collectRefs(paths, reached);
  for (let queue = [...reached]; queue.length > 0; ) {
    const more = new Set<string>();
    collectRefs(schemas[queue.pop()!], more);
    for (const m of more) {
      if (reached.has(m)) continue;
      reached.add(m);
      queue.push(m);
    }
  }

  // 3. A media object without an example shows its component's example.
  for (const media of mediaObjects(paths)) {
    if (media.example !== undefined || media.examples !== undefined || !isObject(media.schema)) continue;
    const ref = media.schema.$ref;
    const example = typeof ref === 'string' && ref.startsWith(REF) ? schemas[ref.slice(REF.length)]?.example : undefined;
    if (example !== undefined) media.example = example;
  }

  const kept = Object.fromEntries(
    Object.keys(schemas)
      .filter((n) => reached.has(n))
      .sort()
      .map((n) => [n, schemas[n]]),
  );
  return { ...doc, paths, components: { ...components, schemas: kept } } as ReturnType<SwaggerTransformObject>;
};

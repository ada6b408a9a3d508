/**
 * The layers of src/ and what each may import (docs/architecture.md explains
 * them). Run by `npm run lint`: `depcruise src --config .dependency-cruiser.cjs`.
 *
 * Each layer rule forbids every import into src/ except the ones it lists:
 * no layer may import a new folder until its rule lists it, and the new
 * folder's own imports are free until a rule names it. npm packages and
 * node: modules are free, except the two drivers at the bottom.
 */

/** Forbids `from` to import anything in src/ but `allowed` (regexes relative to src/). */
const layer = (name, from, allowed, comment) => ({
  name,
  comment,
  severity: 'error',
  from: { path: `^src/${from}` },
  to: { path: '^src/', pathNot: `^src/(${allowed.join('|')})` },
});

const MODEL = 'model/';
const STORE = 'store/(store|job-record|decider-store|retention-store|change-feed|node-gauge)\\.ts$';
/** The stored form of log chunks: shared by every store implementation and by the followers that decode it. */
const CHUNKS = 'store/chunk-codec\\.ts$';
/** The `jobs` table's one definition (columns, row ↔ JobRecord): shared by both store implementations and nothing else. */
const JOB_ROW = 'store/job-row\\.ts$';
const RUNTIME = 'runtime/runtime\\.ts$';
const CONFIG = 'config\\.ts$';
const LOGGING = 'logging\\.ts$';
/** What a secret source promises; jobs and the runner use secrets through it, never a source's files. */
const SECRET_SOURCE = 'secrets/source\\.ts$';

module.exports = {
  forbidden: [
    layer(
      'model',
      'model/',
      [MODEL],
      'model/ is the vocabulary every layer shares (specs, views, states, errors); importing no other layer, it pulls none in.',
    ),
    layer(
      'store-interface',
      STORE,
      [MODEL, STORE],
      'The Store interface speaks only model types, so layers above can depend on it without depending on a database.',
    ),
    layer(
      'store-sqlite',
      'store/sqlite/',
      [MODEL, STORE, CHUNKS, JOB_ROW, 'store/sqlite/'],
      'The SQLite store implements the Store interface and nothing else; app.ts alone chooses it.',
    ),
    layer(
      'store-postgres',
      'store/postgres/',
      [MODEL, STORE, CHUNKS, JOB_ROW, 'store/postgres/'],
      'The PostgreSQL store implements the Store interface and nothing else; app.ts alone chooses it.',
    ),
    layer(
      'store-job-row',
      JOB_ROW,
      [MODEL, STORE],
      'The job row maps stored columns to the Store interface’s JobRecord; it knows neither database driver.',
    ),
    layer(
      'runtime-interface',
      RUNTIME,
      [MODEL, RUNTIME],
      'The ContainerRuntime interface speaks only model types, so the runner does not depend on Docker.',
    ),
    layer(
      'runtime-docker',
      'runtime/docker/',
      ['runtime/', MODEL, CONFIG, LOGGING],
      'The Docker runtime implements ContainerRuntime; it knows no jobs, store or HTTP.',
    ),
    {
      name: 'runtime-docker-config-types',
      comment:
        'The Docker runtime gets its settings and logger from app.ts; it may name their types but not load config or open a log itself.',
      severity: 'error',
      from: { path: '^src/runtime/docker/' },
      to: { path: `^src/(${CONFIG}|${LOGGING})`, dependencyTypesNot: ['type-only'] },
    },
    layer(
      'gpu',
      'gpu/',
      ['gpu/', MODEL, CONFIG],
      'GPU inventory, allocation and injection work on model types and the GPU settings; they reach no job, store or runtime.',
    ),
    layer(
      'scheduling',
      'scheduling/',
      ['scheduling/', MODEL, STORE, 'gpu/', CONFIG],
      'The scheduling core (queue, fair share, quotas, placement, preemption, the pass that decides) is pure policy over job records and GPUs: it starts, stores and stops nothing.',
    ),
    layer(
      'jobs',
      'jobs/',
      ['jobs/', 'scheduling/', MODEL, STORE, 'gpu/', CONFIG, SECRET_SOURCE],
      'The job domain (service, views, events, policy) works against the Store interface, never a database, and never runs containers.',
    ),
    layer(
      'logs',
      'logs/',
      ['logs/', MODEL, STORE, CHUNKS, 'jobs/'],
      'Log capture, follow and retention work against the Store interface and the job domain, not a database.',
    ),
    layer(
      'runner',
      'runner/',
      ['runner/', MODEL, STORE, RUNTIME, 'jobs/', 'scheduling/', 'logs/', 'gpu/', CONFIG, LOGGING, SECRET_SOURCE],
      'The runner drives containers through the ContainerRuntime and Store interfaces only: app.ts picks Docker and SQLite, so both can be replaced or faked.',
    ),
    layer(
      'fleet',
      'fleet/',
      ['fleet/', MODEL, STORE, 'jobs/', 'scheduling/', 'runner/node-seat\\.ts$', 'gpu/allocator\\.ts$', CONFIG, LOGGING],
      'The fleet layer (the node\'s name, membership, leases, the change bridge, the node directory) works against the Store interface and the job domain; the scheduler is reached through its seat.',
    ),
    layer(
      'metrics',
      'metrics/',
      ['metrics/', MODEL, STORE, RUNTIME, 'jobs/', 'scheduling/', 'gpu/', 'logs/', CONFIG, LOGGING],
      'Metrics read the domain and the Store interface (and name the runtime operations they count); nothing in them may start or change work.',
    ),
    layer(
      'api',
      'api/',
      ['api/', MODEL, 'jobs/', 'scheduling/', 'logs/', 'gpu/', 'metrics/', 'fleet/node-service\\.ts$', 'fleet/change-relay\\.ts$', STORE, RUNTIME, 'auth/', 'ui/', CONFIG],
      'HTTP goes through the domain: never straight to SQLite, Docker or the runner.',
    ),
    layer(
      'domain-wiring',
      'domain\\.ts$',
      [MODEL, STORE, RUNTIME, 'jobs/', 'scheduling/', 'runner/', 'gpu/', CONFIG, SECRET_SOURCE],
      'buildDomain wires the job service and scheduler to the interfaces it is given; only app.ts picks SQLite and Docker.',
    ),
    layer(
      'secrets',
      'secrets/',
      ['secrets/', MODEL, CONFIG],
      "Secret sources read the operator's secrets; they know no job, store, runtime or HTTP.",
    ),
    layer('auth', 'auth/', ['auth/', MODEL, CONFIG], 'Tokens and credentials depend only on model types and configuration.'),
    layer('ui', 'ui/', ['ui/'], 'The operator page is static files and their route; it talks to Gantry over HTTP like any client.'),
    layer('logging', LOGGING, [LOGGING], 'The process log is a leaf that every layer may use; it imports nothing from src/.'),
    {
      name: 'config',
      comment: 'Configuration is read before anything starts and imported by most layers: it may use node: modules and zod only.',
      severity: 'error',
      from: { path: `^src/${CONFIG}` },
      to: { dependencyTypesNot: ['core'], pathNot: '(^|/)node_modules/zod/' },
    },
    {
      name: 'no-circular',
      comment: 'A cycle makes two modules one layer: neither can be understood, tested or moved without the other.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'dockerode-only-in-runtime-docker',
      comment: 'Only the Docker runtime talks to the Docker socket; everything else goes through ContainerRuntime.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/runtime/docker/' },
      to: { path: '(^|/)node_modules/(@types/)?dockerode/' },
    },
    {
      name: 'better-sqlite3-only-in-store-sqlite',
      comment: 'Only the SQLite store touches the database; everything else goes through the Store interface.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/store/sqlite/' },
      to: { path: '(^|/)node_modules/(@types/)?better-sqlite3/' },
    },
    {
      name: 'pg-only-in-store-postgres',
      comment: 'Only the PostgreSQL store talks to PostgreSQL; everything else goes through the Store interface.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/store/postgres/' },
      to: { path: '(^|/)node_modules/(@types/)?pg/' },
    },
    {
      name: 'kysely-only-in-stores',
      comment: 'The migration tool is the stores\' own business: no layer above them sees a schema.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/store/(sqlite|postgres)/' },
      to: { path: '(^|/)node_modules/kysely/' },
    },
  ],
  options: {
    doNotFollow: { path: ['node_modules'] },
    // `import type` counts: a type import still ties one layer to another.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.d.ts', '.js', '.mjs', '.cjs', '.json'],
    },
    skipAnalysisNotInRules: true,
  },
};

// Shared by the load scripts: the QueryService client, the caller's key, and questions.
// Every script reads TARGET (host:port, 127.0.0.1 only), API_KEY, RATE (requests/s) and
// DURATION (seconds) from the environment; `make load` sets them.
import grpc from 'k6/net/grpc';
import { check } from 'k6';

export const TARGET = __ENV.TARGET || '127.0.0.1:50051';
export const PARAMS = {
  metadata: { authorization: `Bearer ${__ENV.API_KEY || 'dev-key'}` },
  timeout: '10s',
};
const TOPICS = ['invoices', 'refunds', 'backups', 'quotas', 'tenants', 'retries', 'deadlines',
  'certificates', 'alerts', 'upgrades', 'rollbacks', 'caches', 'tokens', 'replicas'];
const ASPECTS = ['limits', 'defaults', 'failures', 'costs', 'owners', 'schedules', 'metrics'];

if (!TARGET.startsWith('127.0.0.1:') && !TARGET.startsWith('localhost:')) {
  throw new Error(`load tests run against this machine only, not ${TARGET}`);
}

export function client() {
  const c = new grpc.Client();
  c.load(['../../protos'], 'rag/v1/query_service.proto', 'rag/v1/document_service.proto');
  return c;
}

// A constant arrival rate: RATE iterations a second for DURATION seconds, whatever the
// latency (open loop), with enough virtual users to never fall behind.
export function arrivals(exec = 'default') {
  const rate = Number(__ENV.RATE || 10);
  return {
    executor: 'constant-arrival-rate',
    exec,
    rate,
    timeUnit: '1s',
    duration: `${Number(__ENV.DURATION || 15)}s`,
    preAllocatedVUs: Math.max(4, Math.ceil(rate / 4)),
    maxVUs: Math.max(16, rate * 6),
  };
}

// SALT differs per run (make load sets it), so no run finds an earlier run's answers.
const SALT = __ENV.SALT || `${Date.now()}`;

// A question nobody asked before (a cache miss), or one of `pool` repeats.
export function distinctQuestion() {
  const n = __VU * 1000003 + __ITER;
  return `What are the ${ASPECTS[n % ASPECTS.length]} for ${TOPICS[n % TOPICS.length]} in `
    + `case ${SALT}-${n}?`;
}

export function repeatedQuestion(pool = 10) {
  const n = Math.floor(Math.random() * pool);
  return `What are the ${ASPECTS[n % ASPECTS.length]} for ${TOPICS[n % TOPICS.length]}?`;
}

export function ask(c, question) {
  const reply = c.invoke('rag.v1.QueryService/Query', {
    question,
    options: { provider: 'extractive' },
  }, PARAMS);
  check(reply, { 'status OK': (r) => r && r.status === grpc.StatusOK });
  return reply;
}

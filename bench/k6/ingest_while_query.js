// Queries (cache misses) at RATE while another tenant ingests documents at INGEST_RATE a
// second, each INGEST_CHARS long: what bulk ingest does to interactive latency.
import grpc from 'k6/net/grpc';
import { check } from 'k6';
import { client, TARGET, arrivals, distinctQuestion, ask } from './common.js';

const ingestRate = Number(__ENV.INGEST_RATE || 1);
export const options = {
  // Named so the summary carries the queries' own latency, apart from the ingests'.
  thresholds: { 'grpc_req_duration{scenario:queries}': ['p(95)<5000'] },
  scenarios: {
    queries: arrivals('query'),
    ingest: { ...arrivals('ingest'), rate: ingestRate, preAllocatedVUs: 2, maxVUs: 8 },
  },
};
const c = client();
const WRITER = {
  metadata: { authorization: `Bearer ${__ENV.WRITER_KEY || __ENV.API_KEY || 'dev-key'}` },
  timeout: '120s',
};
const PARAGRAPH = 'Bulk ingest keeps the encoder busy with long documents while questions '
  + 'arrive from another tenant, who should notice as little of it as possible. ';

export function query() {
  if (__ITER === 0) c.connect(TARGET, { plaintext: true });
  ask(c, distinctQuestion());
}

export function ingest() {
  if (__ITER === 0) c.connect(TARGET, { plaintext: true });
  const chars = Number(__ENV.INGEST_CHARS || 20000);
  const text = PARAGRAPH.repeat(Math.ceil(chars / PARAGRAPH.length)).slice(0, chars);
  const reply = c.invoke('rag.v1.DocumentService/IngestDocuments', {
    documents: [{ id: `load-${__VU}-${__ITER}`, text, title: 'load test document' }],
  }, WRITER);
  check(reply, { 'ingest OK': (r) => r && r.status === grpc.StatusOK });
}

// Streaming answers: StreamQuery read to its end. k6 times unary calls only, so this
// records each stream's time to its last message as stream_duration.
import grpc from 'k6/net/grpc';
import { check } from 'k6';
import { Trend } from 'k6/metrics';
import { client, TARGET, PARAMS, arrivals, distinctQuestion } from './common.js';

export const options = { scenarios: { stream: arrivals() } };
const streamDuration = new Trend('stream_duration', true);
const c = client();

export default function () {
  if (__ITER === 0) c.connect(TARGET, { plaintext: true });
  const started = Date.now();
  const stream = new grpc.Stream(c, 'rag.v1.QueryService/StreamQuery', PARAMS);
  // A stream that ends in an error status is a failed call, as a unary one would be.
  stream.on('error', () => check(null, { 'status OK': () => false }));
  stream.on('end', () => {
    streamDuration.add(Date.now() - started);
    check(null, { 'status OK': () => true });
  });
  stream.write({ question: distinctQuestion(), options: { provider: 'extractive' } });
  stream.end();
}

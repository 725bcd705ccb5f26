// Cache misses: every question is new, so each one runs the whole pipeline.
import { client, TARGET, arrivals, distinctQuestion, ask } from './common.js';

export const options = { scenarios: { miss: arrivals() } };
const c = client();

export default function () {
  if (__ITER === 0) c.connect(TARGET, { plaintext: true });
  ask(c, distinctQuestion());
}

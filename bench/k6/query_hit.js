// Cache hits: ten questions asked over and over (after the first of each, exact hits).
import { client, TARGET, arrivals, repeatedQuestion, ask } from './common.js';

export const options = { scenarios: { hit: arrivals() } };
const c = client();

export default function () {
  if (__ITER === 0) c.connect(TARGET, { plaintext: true });
  ask(c, repeatedQuestion(10));
}

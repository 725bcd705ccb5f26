// A realistic mix: 60 % of questions repeat one of 50 popular ones, 40 % are new.
import { client, TARGET, arrivals, distinctQuestion, repeatedQuestion, ask } from './common.js';

export const options = { scenarios: { mix: arrivals() } };
const c = client();

export default function () {
  if (__ITER === 0) c.connect(TARGET, { plaintext: true });
  ask(c, Math.random() < 0.6 ? repeatedQuestion(50) : distinctQuestion());
}

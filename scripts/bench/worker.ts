// A benchmark worker process (runner.ts): builds the setup from the same arguments as the main
// process, then runs the jobs it is sent, one at a time, and sends back each result.

import { setup } from './setup.ts';
import { runJob, type Job } from './runner.ts';

const s = setup(process.argv.slice(2));
process.on('message', (m: { i: number; job: Job }) => {
  runJob(s, m.job).then(
    (result) => process.send!({ result }),
    (e: Error) => process.send!({ error: e.stack ?? e.message }),
  );
});

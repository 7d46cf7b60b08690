/**
 * The model's worker as an Electron utility process (child_process.fork would need the RunAsNode fuse, which
 * a hardened build turns off). Same messages as the Node child (model/worker-protocol.ts), structured clone.
 */
import { utilityProcess } from 'electron';
import { lowerPriority, type WorkerSpawner } from '../model/engine.ts';
import type { FromWorker } from '../model/worker-protocol.ts';

export const utilityWorker: WorkerSpawner = ({ file, execArgv }) => {
  const child = utilityProcess.fork(file, [], { execArgv, serviceName: 'Loupe model', stdio: 'inherit' });
  let alive = true;
  child.once('spawn', () => lowerPriority(child.pid));
  return {
    get pid() {
      return child.pid;
    },
    send: (message) => {
      if (alive) child.postMessage(message);
    },
    onMessage: (listener) => child.on('message', (m: unknown) => listener(m as FromWorker)),
    onExit: (listener) =>
      child.on('exit', (code: number) => {
        alive = false;
        listener(`exit code ${code}`);
      }),
    kill: () => void child.kill(),
  };
};

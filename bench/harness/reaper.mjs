// Safety net: the harness tells this detached process the process groups it starts and ends.
// When the IPC channel closes (the harness exited, crashed or was killed with SIGKILL), every
// group still listed is killed. It runs nothing else and exits at once after that.

const groups = new Set();

process.on('message', (message) => {
  if (message?.add) groups.add(message.add);
  if (message?.remove) groups.delete(message.remove);
});

const reap = () => {
  for (const pid of groups) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  process.exit(0);
};

process.on('disconnect', reap);
process.on('SIGTERM', reap);

// KafkaJS arms a timer with a negative delay once a request's deadline has passed; Node
// 24 warns about each such timer (TimeoutNegativeWarning) and runs it at once, which is
// what KafkaJS means. The tooling hides that one warning, as the scripts do.
let hidden = false;

/** Hides Node's TimeoutNegativeWarning in this process; other warnings still print. */
export function hideTimeoutNegativeWarning(): void {
  if (hidden) return;
  hidden = true;
  for (const print of process.listeners("warning")) {
    process.off("warning", print);
    process.on("warning", (warning) => warning.name === "TimeoutNegativeWarning" || print(warning));
  }
}

// Read-only diagnostics handles the pages put on window (support staff and the browser tests read them).
// Type-checking only: nothing here is served.
interface Window {
  viop?: Readonly<Record<string, () => unknown>>;
  viopPresence?: Readonly<Record<string, () => unknown>>;
  viopConsole?: Readonly<Record<string, () => unknown>>;
}

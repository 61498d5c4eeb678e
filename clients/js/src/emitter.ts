// A minimal typed event emitter: the package must run in browsers and Node
// alike without pulling in either's emitter.

type Listener<A extends unknown[]> = (...args: A) => void;
type AnyListener = (...args: unknown[]) => void;

export class Emitter<Events extends { [name: string]: unknown[] }> {
  private readonly listeners = new Map<keyof Events, Set<AnyListener>>();
  private readonly anyListeners = new Set<(name: string, ...args: unknown[]) => void>();

  on<E extends keyof Events>(name: E, listener: Listener<Events[E]>): () => void {
    let set = this.listeners.get(name);
    if (!set) {
      set = new Set();
      this.listeners.set(name, set);
    }
    set.add(listener as unknown as AnyListener);
    return () => this.off(name, listener);
  }

  off<E extends keyof Events>(name: E, listener: Listener<Events[E]>): void {
    this.listeners.get(name)?.delete(listener as unknown as AnyListener);
  }

  /** Every event, named; for logging, and for events newer than these definitions. */
  onAny(listener: (name: string, ...args: unknown[]) => void): () => void {
    this.anyListeners.add(listener);
    return () => this.anyListeners.delete(listener);
  }

  protected emit<E extends keyof Events>(name: E, ...args: Events[E]): void {
    this.dispatch(String(name), args);
  }

  /** Emits an event these definitions may not know (passed through from the server). */
  protected dispatch(name: string, args: unknown[]): void {
    for (const listener of [...this.anyListeners]) this.guard(() => listener(name, ...args));
    const set = this.listeners.get(name);
    if (!set) return;
    for (const listener of [...set]) this.guard(() => listener(...args));
  }

  // An app's handler that throws must not stop the other handlers, nor leave
  // the client's bookkeeping half done; the error is still reported.
  private guard(call: () => void): void {
    try {
      call();
    } catch (error) {
      setTimeout(() => {
        throw error;
      });
    }
  }
}

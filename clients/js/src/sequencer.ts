// One conversation's log as the app has applied it: the last number applied,
// and the events that arrived ahead of a hole. Pure bookkeeping, no I/O, so
// that the rules (in order, each number once) live in one place.

/** A numbered event as it reached the client, live or replayed. */
export interface NumberedEvent {
  seq: number;
  /** The event's name (`new-message`, `message-read`, `seq-skipped`, …). */
  type: string;
  data: unknown;
  replayed: boolean;
}

export class Sequencer {
  /** The last number applied, or null while the starting point is unknown (a history page is loading). */
  private applied: number | null;
  private readonly early = new Map<number, NumberedEvent>();

  constructor(applied: number | null) {
    this.applied = applied;
  }

  get seq(): number | null {
    return this.applied;
  }

  /** Events wait behind a hole: some number before them has not arrived. */
  get hasGap(): boolean {
    return this.applied !== null && this.early.size > 0;
  }

  /** The lowest number waiting, if any. */
  get lowestWaiting(): number | undefined {
    let lowest: number | undefined;
    for (const seq of this.early.keys()) if (lowest === undefined || seq < lowest) lowest = seq;
    return lowest;
  }

  /**
   * Takes an event; returns the events that can now be applied, in order.
   * A number already applied or already waiting is a duplicate and yields nothing.
   */
  offer(event: NumberedEvent): NumberedEvent[] {
    if (this.applied !== null && event.seq <= this.applied) return [];
    if (this.early.has(event.seq)) return [];
    this.early.set(event.seq, event);
    return this.drain();
  }

  /**
   * Starts (or restarts) from `seq`: everything up to it is covered by what the
   * app just loaded, so waiting events up to it are dropped.
   */
  startAt(seq: number): NumberedEvent[] {
    this.applied = seq;
    for (const waiting of this.early.keys()) if (waiting <= seq) this.early.delete(waiting);
    return this.drain();
  }

  /** Forgets the starting point and every waiting event (the app reloads the conversation). */
  unknown(): void {
    this.applied = null;
    this.early.clear();
  }

  private drain(): NumberedEvent[] {
    const ready: NumberedEvent[] = [];
    if (this.applied === null) return ready;
    for (let next = this.early.get(this.applied + 1); next; next = this.early.get(this.applied + 1)) {
      this.early.delete(next.seq);
      this.applied = next.seq;
      ready.push(next);
    }
    return ready;
  }
}

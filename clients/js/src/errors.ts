import type { ClientMessageId, ErrorCode } from './parloir.js';

/**
 * What a failed call reports: the server's error code, or `TIMEOUT` (no ack in
 * time) or `DISCONNECTED` (no connection to send it on).
 */
export type FailureCode = ErrorCode | 'TIMEOUT' | 'DISCONNECTED';

export class ParloirError extends Error {
  readonly code: FailureCode;
  /** For `send`: the id the message went out with, to retry it later without a duplicate. */
  clientMessageId?: ClientMessageId;

  constructor(code: FailureCode, message: string) {
    super(message);
    this.name = 'ParloirError';
    this.code = code;
  }
}

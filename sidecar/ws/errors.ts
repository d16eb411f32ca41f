// Errors of the observe-only frame reader. Codes follow ws's receiver where the meaning is the same
// (so logs read alike on both sides of the proxy); tests assert the code, never the message text.

/** Stable codes a {@link FrameError} can carry. */
export type FrameErrorCode =
  | "WS_ERR_UNEXPECTED_RSV_1"
  | "WS_ERR_UNEXPECTED_RSV_2_3"
  | "WS_ERR_INVALID_OPCODE"
  | "WS_ERR_EXPECTED_FIN"
  | "WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH"
  | "WS_ERR_EXPECTED_MASK"
  | "WS_ERR_UNEXPECTED_MASK"
  | "WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH"
  | "WS_ERR_FRAME_TOO_LARGE"
  | "WS_ERR_INVALID_CLOSE_CODE"
  | "WS_ERR_INVALID_DEFLATE_DATA"
  | "WS_ERR_INTERNAL";

/** WebSocket close codes (RFC 6455 §7.4.1) a peer would answer the violation with. */
const CLOSE_CODE: Record<FrameErrorCode, number> = {
  WS_ERR_UNEXPECTED_RSV_1: 1002,
  WS_ERR_UNEXPECTED_RSV_2_3: 1002,
  WS_ERR_INVALID_OPCODE: 1002,
  WS_ERR_EXPECTED_FIN: 1002,
  WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH: 1002,
  WS_ERR_EXPECTED_MASK: 1002,
  WS_ERR_UNEXPECTED_MASK: 1002,
  WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH: 1009,
  WS_ERR_FRAME_TOO_LARGE: 1009,
  WS_ERR_INVALID_CLOSE_CODE: 1002,
  WS_ERR_INVALID_DEFLATE_DATA: 1007,
  // Not the peer's fault (the sink or the reader threw): the generic "unexpected condition".
  WS_ERR_INTERNAL: 1011,
};

/**
 * A violation of RFC 6455 / RFC 7692 or of a configured limit, seen in one direction of a connection.
 * The reader stops parsing that direction for good; the bytes are still relayed by the caller.
 */
export class FrameError extends Error {
  /** Stable machine-readable code, e.g. `"WS_ERR_INVALID_OPCODE"`. */
  readonly code: FrameErrorCode;
  /** The close code an endpoint would send for this violation (1002, 1007, 1009 or 1011). */
  readonly closeCode: number;

  /** Prefer {@link createFrameError}: it is the one place that maps codes to close codes. */
  constructor(code: FrameErrorCode, closeCode: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "FrameError";
    this.code = code;
    this.closeCode = closeCode;
  }
}

/**
 * The single factory for {@link FrameError}s: picks the close code that belongs to `code`.
 * @param detail human-readable detail, appended to a fixed prefix
 * @param cause the underlying error, when there is one (e.g. what a sink threw)
 */
export function createFrameError(code: FrameErrorCode, detail: string, cause?: unknown): FrameError {
  const options = cause === undefined ? undefined : { cause };
  return new FrameError(code, CLOSE_CODE[code], `Invalid WebSocket frame: ${detail}`, options);
}

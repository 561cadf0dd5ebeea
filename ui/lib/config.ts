/**
 * Build-time settings of the UI (NEXT_PUBLIC_* variables are inlined by `next build`).
 * The defaults fit the usual case: the gateway serves this export, so every URL is same-origin.
 */
export const config = {
  /** Gateway base URL; empty means the origin that served the page. */
  gatewayUrl: process.env.NEXT_PUBLIC_VOICEBOT_GATEWAY_URL ?? "",
  /** Language hint for speech recognition. */
  language: process.env.NEXT_PUBLIC_VOICEBOT_LANGUAGE ?? "en",
  /** The document collection the documents page lists and uploads to by default. */
  collection: process.env.NEXT_PUBLIC_VOICEBOT_COLLECTION ?? "default",
  /** Presses shorter than this are treated as taps, not questions. */
  minSpeechMs: 250,
  /** Where the capture worklet is served (the export's public/ folder). */
  workletUrl: `${process.env.NEXT_PUBLIC_BASE_PATH ?? ""}/worklets/pcm-capture.js`,
} as const;

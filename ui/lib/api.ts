/**
 * HTTP calls to the gateway: the API key kept in this browser, error bodies
 * (`{"error": {"code", "message"}}`) turned into `ApiError`, and the session token request.
 */

import { describeError } from "./protocol";

const KEY_STORAGE = "voicebot.apiKey";

export function loadApiKey(): string {
  try {
    return window.localStorage.getItem(KEY_STORAGE) ?? "";
  } catch {
    return "";
  }
}

export function saveApiKey(key: string): void {
  try {
    if (key) window.localStorage.setItem(KEY_STORAGE, key);
    else window.localStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage disabled: the key lasts for this page only
  }
}

/** Headers for a gateway request: Bearer only when a key is set (dev mode on loopback needs none). */
export function authHeaders(apiKey: string | null | undefined): Record<string, string> {
  return apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }

  /** The server could not be reached at all (status 0). */
  get unreachable(): boolean {
    return this.status === 0;
  }
}

/** `url` joined to the gateway base ("" = the origin that served this page). */
export function gatewayUrl(base: string, path: string): string {
  return base ? new URL(path, base).toString() : path;
}

/** The error a non-2xx response carries, in plain words. */
export async function errorFromResponse(response: Response): Promise<ApiError> {
  let code = response.status === 401 ? "unauthorized" : response.status === 413 ? "too_large" : "internal";
  let detail: string | undefined;
  try {
    const body = (await response.json()) as { error?: { code?: unknown; message?: unknown } };
    if (typeof body.error?.code === "string") code = body.error.code;
    if (typeof body.error?.message === "string") detail = body.error.message;
  } catch {
    // not JSON (a proxy's error page): keep the status-based code
  }
  if (response.status === 404 && code === "internal") code = "not_found";
  const message = code === "not_found" && detail ? detail : describeError(code, detail);
  return new ApiError(response.status, code, message);
}

export interface SessionToken {
  session_id: string;
  token: string;
  expires_at: number;
}

/** `POST /v1/sessions`: the short-lived token for the voice socket. */
export async function requestSessionToken(
  base: string,
  apiKey: string | null,
  fetchImpl: typeof fetch = fetch,
): Promise<SessionToken> {
  let response: Response;
  try {
    response = await fetchImpl(gatewayUrl(base, "/v1/sessions"), {
      method: "POST",
      headers: authHeaders(apiKey),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "unreachable", "Cannot reach the Voicebot server: POST /v1/sessions did not answer.");
  }
  if (!response.ok) throw await errorFromResponse(response);
  return (await response.json()) as SessionToken;
}

export interface StoredTurn {
  turn: number;
  question: string;
  answer: string;
  citations: Array<{ n: number; title: string; source: string; heading_path: string[]; snippet: string }>;
  timings: Record<string, number | null>;
  outcome: "ok" | "error" | "cancelled";
  created_at: string | null;
}

/** `GET /v1/sessions/{id}`: the stored turns of a session, to show them again after a reload. */
export async function fetchSessionTurns(
  base: string,
  apiKey: string | null,
  sessionId: string,
  fetchImpl: typeof fetch = fetch,
): Promise<StoredTurn[]> {
  let response: Response;
  try {
    response = await fetchImpl(gatewayUrl(base, `/v1/sessions/${encodeURIComponent(sessionId)}`), {
      headers: authHeaders(apiKey),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "unreachable", "Cannot reach the Voicebot server.");
  }
  if (!response.ok) throw await errorFromResponse(response);
  const body = (await response.json()) as { turns?: StoredTurn[] };
  return body.turns ?? [];
}

const SESSION_STORAGE = "voicebot.sessionId";

/** The session of this tab, kept across reloads (sessionStorage: a new tab starts afresh). */
export function loadSessionId(): string | null {
  try {
    return window.sessionStorage.getItem(SESSION_STORAGE);
  } catch {
    return null;
  }
}

export function saveSessionId(id: string): void {
  try {
    window.sessionStorage.setItem(SESSION_STORAGE, id);
  } catch {
    // storage disabled: a reload starts a new session
  }
}
